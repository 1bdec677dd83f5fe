"""A DNS stub for tests: TXT and A records from dicts, NXDOMAIN for every other name.

The real servers under test (OpenDKIM, rspamd) resolve DKIM keys, SPF and DMARC records
through it; nothing leaves the machine. See docs/architecture.md (testing).

    with start_dns_stub(txt={"sel._domainkey.example.org": record}) as dns:
        ...  # point the server at dns.address (port dns.port, 53 by default)

OpenDKIM's `Nameservers` takes addresses without a port, so by default the stub listens on
port 53 of a free loopback address 127.53.x.y (root only; Linux routes all of 127.0.0.0/8 to
the loopback interface). With `port=0` it takes a free port on 127.0.0.1 instead, for clients
that accept a port (dnspython, SpamAssassin's `dns_server`, rspamd's `nameserver`).

It answers UDP from one thread and each TCP connection from a thread of its own (a resolver
may hold an idle TCP connection open — rspamd's does — and UDP must not wait meanwhile). TXT
values longer than 255 bytes are split into several character-strings of at most 255 bytes
(RFC 6376 3.6.2.2: the verifier concatenates them), as a zone file would hold a 2048-bit DKIM
key. Records may be changed while it runs (`stub.txt[name] = value`).
"""

from __future__ import annotations

import errno
import random
import selectors
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

TTL = 60


def _key(name: str) -> str:
    return name.lower().rstrip(".")


def txt_strings(value: str) -> list[bytes]:
    """The character-strings of one TXT record: `value` in pieces of at most 255 bytes."""
    data = value.encode("ascii")
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


class DnsStub:
    """A running stub on `address`:`port` (UDP and TCP). Use `start_dns_stub` to get one."""

    def __init__(
        self,
        address: str,
        port: int,
        txt: Mapping[str, str] | None = None,
        a: Mapping[str, str] | None = None,
    ) -> None:
        self.txt: dict[str, str] = {_key(k): v for k, v in (txt or {}).items()}
        self.a: dict[str, str] = {_key(k): v for k, v in (a or {}).items()}
        #: "name TYPE" of every question received, in order (e.g. "s._domainkey.example.org TXT")
        self.queries: list[str] = []
        self.udp, self.tcp = _bind(address, port)
        self.address: str = self.udp.getsockname()[0]
        self.port: int = self.udp.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)
        self._thread.start()

    def answer(self, wire: bytes) -> bytes | None:
        """The reply to one query in wire format (None for garbage: no reply)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name = _key(question.name.to_text())
        self.queries.append(f"{name} {dns.rdatatype.to_text(question.rdtype)}")
        txt, a = self.txt.get(name), self.a.get(name)
        if txt is None and a is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and txt is not None:
            rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, txt_strings(txt))
            response.answer.append(dns.rrset.from_rdata(question.name, TTL, rdata))
        elif question.rdtype == dns.rdatatype.A and a is not None:
            response.answer.append(dns.rrset.from_text(question.name, TTL, "IN", "A", a))
        # else: the name exists but not with this type: NOERROR, no answer (NODATA)
        return response.to_wire()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.udp, selectors.EVENT_READ)
            selector.register(self.tcp, selectors.EVENT_READ)
            while not self._stopped.is_set():
                for event, _ in selector.select(timeout=0.2):
                    try:
                        if event.fileobj is self.udp:
                            wire, client = self.udp.recvfrom(65535)
                            reply = self.answer(wire)
                            if reply is not None:
                                self.udp.sendto(reply, client)
                        else:
                            connection, _ = self.tcp.accept()
                            threading.Thread(
                                target=self._serve_tcp, args=(connection,), daemon=True
                            ).start()
                    except OSError:
                        if self._stopped.is_set():
                            return

    def _serve_tcp(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(2)
            try:
                while True:  # several queries may come over one connection
                    size = _recv_exactly(connection, 2)
                    if size is None:
                        return
                    wire = _recv_exactly(connection, int.from_bytes(size, "big"))
                    reply = None if wire is None else self.answer(wire)
                    if reply is None:
                        return
                    connection.sendall(len(reply).to_bytes(2, "big") + reply)
            except OSError:  # an idle client (timeout) or one that went away
                return

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self.udp.close()
        self.tcp.close()


@contextmanager
def start_dns_stub(
    txt: Mapping[str, str] | None = None,
    a: Mapping[str, str] | None = None,
    *,
    port: int = 53,
) -> Iterator[DnsStub]:
    """A stub serving `txt` and `a` (name -> value) until the block ends.

    `port=53` (default) picks a free 127.53.x.y address; `port=0` a free port on 127.0.0.1.
    """
    address = "127.0.0.1" if port == 0 else ""
    stub = DnsStub(address, port, txt, a)
    try:
        yield stub
    finally:
        stub.close()


def _bind(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets bound to the same address and port ('' = a free 127.53.x.y)."""
    candidates = (
        [address]
        if address
        else [f"127.53.{random.randrange(256)}.{random.randrange(1, 255)}" for _ in range(50)]
    )
    for _attempt in range(50):
        for host in candidates:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                udp.bind((host, port))
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, udp.getsockname()[1]))  # port 0: the same port for TCP
                tcp.listen()
                return udp, tcp
            except OSError as error:
                udp.close()
                tcp.close()
                if error.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                    raise
        if port != 0:
            break
    raise RuntimeError(f"no loopback address free for a DNS stub on port {port}")


def _recv_exactly(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
