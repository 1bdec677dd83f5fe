"""Raw bytes of the list headers, as a receiving mail server reads them (not re-decoded)."""

from __future__ import annotations

import datetime as dt

from dispatcher import mime


def test_long_list_unsubscribe_is_folded_never_encoded() -> None:
    https = "https://newsletter.clusterplattform.example.org/u/" + "t" * 90
    mailto = "mailto:unsubscribe@clusterplattform.example.org?subject=unsubscribe%20" + "t" * 60
    message = mime.build_email(
        subject="Grüße", text="Hallo", html="<p>Hallo</p>",
        mail_from="Clusterplattform <newsletter@clusterplattform.example.org>",
        to="erika@example.org", message_id="<m@clusterplattform.example.org>",
        date=dt.datetime(2019, 4, 2, 6, tzinfo=dt.UTC),
        list_headers=mime.ListHeaders("Clusterwoche <cw.example.org>", https, mailto),
    )  # fmt: skip
    data = message.as_bytes()
    start = data.index(b"List-Unsubscribe:")
    header = data[start : data.index(b"\r\nList-Unsubscribe-Post", start)]
    assert header == f"List-Unsubscribe: <{https}>,\r\n <{mailto}>".encode()
    assert b"=?utf-8?" not in header
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data
