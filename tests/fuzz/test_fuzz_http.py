"""Arbitrary requests to every HTTP endpoint: methods, paths, tokens, bodies, content types
and headers. Whatever arrives, the answer is never a 5xx (the ledger is reachable)."""

from __future__ import annotations

import string
from pathlib import Path
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.mail import tokens
from dispatcher.web.subscription import confirm_token
from tests.support.bounce import TOKEN, bounce_settings, make_state, serve
from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.smtpd import SmtpServer
from tests.support.webapp import SECRET, START, ManualClock

HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=60,
).map(lambda text: "v" + text)  # requests refuses leading whitespace (U+0085 included)
PATHS = ["/u/{t}", "/confirm/{t}", "/subscribe", "/webhooks/bounce", "/healthz", "/readyz",
         "/metrics", "/archive", "/feed.atom", "/{t}", "/u/{t}/x", "/webhooks/bounce/{t}"]  # fmt: skip
CONTENT_TYPES = [
    None, "application/json", "application/x-www-form-urlencoded", "multipart/form-data",
    "multipart/form-data; boundary=xyz", "multipart/form-data; boundary=", "text/plain",
    "application/json; charset=latin-1", "application/x-www-form-urlencoded; charset=utf-16",
]  # fmt: skip


def _tokens() -> st.SearchStrategy[str]:
    signed = st.builds(
        lambda sid, cid, purpose: tokens.sign(tokens.TokenSubject(purpose, sid, cid), key=SECRET),
        st.integers(-(2**63), 2**63),
        st.text(max_size=20),
        st.sampled_from(["unsubscribe", "confirm"]),
    )
    confirm = st.builds(
        lambda sid, minutes: confirm_token(
            sid, "clusterwoche-2019", issued=START, key=SECRET
        ).replace(str(int(START.timestamp() // 60)), str(minutes), 1),
        st.integers(0, 2**40),
        st.integers(0, 10**13),
    )
    raw = st.text(alphabet=string.ascii_letters + string.digits + "-_.~%=", max_size=80)
    return st.one_of(raw, signed, confirm, signed.map(lambda t: t[:-1]), HEADER_TEXT)


@st.composite
def requests_(draw: st.DrawFn) -> dict[str, object]:
    template = draw(st.sampled_from(PATHS))
    path = template.format(t=quote(draw(_tokens()), safe=""))
    headers: dict[str, str] = {}
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    auth = draw(st.sampled_from([None, f"Bearer {TOKEN}", "Bearer ", "bearer x", "other"]))
    if auth is not None:
        headers["Authorization"] = auth + draw(st.sampled_from(["", "", " ", "x"]))
    if draw(st.booleans()):
        headers[draw(st.sampled_from(["Referer", "Origin", "Accept", "Cookie", "X-Forwarded-For"]))] = draw(HEADER_TEXT)  # fmt: skip
    body = draw(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from([b"List-Unsubscribe=One-Click", b"email=a%40b.de&consent=ja",
                             b'{"email": "leser00000@example.org", "kind": "soft"}',
                             b'[{"email": "x@y.de", "kind": "complaint", "reason": "\\ud800"}]',
                             b"--xyz\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n",
                             b"email=" + b"%ff" * 50 + b"&name=" + b"%00" * 10]),
            st.text(max_size=200).map(str.encode),
        )
    )  # fmt: skip
    method = draw(st.sampled_from(["GET", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]))
    return {"method": method, "path": path, "headers": headers, "body": body, "kind": template}


def test_no_request_gets_a_5xx(
    sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    add_subscribers(sqlite_database, 3)
    settings_ = bounce_settings(
        sqlite_database,
        smtp_server,
        tmp_path,
        bounce_webhook_token=TOKEN,
        subscribe_per_minute=10**6,
    )
    cases: dict[str, int] = {}
    state = make_state(settings_, sqlite_database, ManualClock())
    with serve(state) as url:
        session = requests.Session()

        @settings(max_examples=600, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
        @given(requests_())
        def run(request: dict[str, object]) -> None:
            path = str(request["path"])
            kind = str(request["kind"])
            cases[kind] = cases.get(kind, 0) + 1
            response = session.request(
                str(request["method"]),
                url + path,
                headers=request["headers"],  # type: ignore[arg-type]
                data=request["body"],  # type: ignore[arg-type]
                allow_redirects=False,
                timeout=10,
            )
            assert response.status_code < 500, (request, response.status_code, response.text[:500])
            assert "Traceback" not in response.text
            # Sign-up work runs after the answer and composes mail (MIME boundaries come from
            # the `random` module): let it end before Hypothesis draws the next request.
            assert state.background.join()

        run()
    print(f"\nHTTP endpoints: {sum(cases.values())} requests, by path: {cases}")
