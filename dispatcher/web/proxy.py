"""Behind a reverse proxy: the client address, and who the TCP peer really was.

uvicorn's own proxy handling (`FORWARDED_ALLOW_IPS`, default `127.0.0.1,::1`) replaces the
client address by the one in `X-Forwarded-For` when the peer is trusted — and then nobody
can tell any more whether a request came through the proxy. The desk's single sign-on
(`DISPATCHER_DESK_TRUSTED_HEADER`, docs/desk.md) must know exactly that: the header naming
the editor is believed only from the proxy itself. So the server runs uvicorn with
`proxy_headers=False`, and `ClientAddress` does the same rewrite here after keeping the TCP
peer in the scope (`peer_host`). The variable and its meaning stay uvicorn's.
"""

from __future__ import annotations

import ipaddress
import os

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

PEER = "dispatcher.peer"  #: scope key: the TCP peer's host, before any proxy header
DEFAULT_ALLOW = "127.0.0.1,::1"  #: uvicorn's default for FORWARDED_ALLOW_IPS


def forwarded_allow_ips() -> str:
    """`FORWARDED_ALLOW_IPS` as uvicorn reads it: addresses or networks, comma-separated, `*`."""
    return os.environ.get("FORWARDED_ALLOW_IPS", DEFAULT_ALLOW)


def is_trusted(host: str | None, allowed: str) -> bool:
    """Whether `host` (an IP address) is one of `allowed` (addresses, CIDR networks or `*`)."""
    if not host:
        return False
    entries = [entry.strip() for entry in allowed.split(",") if entry.strip()]
    if "*" in entries:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in entries  # a unix socket path, as uvicorn allows
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for entry in entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def peer_host(connection: HTTPConnection) -> str | None:
    """The TCP peer of the request, whatever `X-Forwarded-For` said."""
    peer = connection.scope.get(PEER)
    if isinstance(peer, str):
        return peer
    return connection.client.host if connection.client else None


class ClientAddress:
    """Keep the TCP peer (`PEER`), then apply `X-Forwarded-For`/`-Proto` from trusted peers."""

    def __init__(self, app: ASGIApp, *, trusted: str | None = None) -> None:
        self.trusted = forwarded_allow_ips() if trusted is None else trusted
        self.app = app
        self.proxied = ProxyHeadersMiddleware(app, trusted_hosts=self.trusted)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        scope[PEER] = client[0] if client else None
        await self.proxied(scope, receive, send)  # type: ignore[arg-type]
