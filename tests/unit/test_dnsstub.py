"""The DNS stub the real-server tests resolve DKIM/SPF/DMARC records through (tests/support)."""

from __future__ import annotations

import dns.resolver
import pytest

from tests.support.dnsstub import start_dns_stub

KEY_RECORD = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A" * 12  # > 255 bytes


def resolver(address: str, port: int) -> dns.resolver.Resolver:
    result = dns.resolver.Resolver(configure=False)
    result.nameservers, result.port, result.lifetime = [address], port, 3.0
    return result


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_long_txt_records_come_back_whole_in_strings_of_at_most_255_bytes(tcp: bool) -> None:
    records = {"sel._domainkey.Example.org.": KEY_RECORD, "example.org": "v=spf1 -all"}
    with start_dns_stub(records, {"mail.example.org": "127.0.0.7"}, port=0) as stub:
        ask = resolver(stub.address, stub.port)
        (key,) = ask.resolve("sel._domainkey.example.org", "TXT", tcp=tcp)
        assert max(len(s) for s in key.strings) == 255 and len(key.strings) > 1
        assert b"".join(key.strings).decode() == KEY_RECORD
        assert [r.to_text() for r in ask.resolve("mail.example.org", "A", tcp=tcp)] == ["127.0.0.7"]
        with pytest.raises(dns.resolver.NXDOMAIN):
            ask.resolve("other.example.org", "TXT", tcp=tcp)
        with pytest.raises(dns.resolver.NoAnswer):
            ask.resolve("mail.example.org", "TXT", tcp=tcp)
        stub.txt["_dmarc.example.org"] = "v=DMARC1; p=reject"  # changed while running
        (dmarc,) = ask.resolve("_dmarc.example.org", "TXT", tcp=tcp)
        assert dmarc.strings == (b"v=DMARC1; p=reject",)
    assert "sel._domainkey.example.org TXT" in stub.queries
