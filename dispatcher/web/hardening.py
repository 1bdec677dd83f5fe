"""What every response and every form POST goes through: security headers, an Origin check.

`Hardening` is a plain ASGI middleware (no `BaseHTTPMiddleware`: it would buffer
responses and cost a task per request).

* Every response gets a Content-Security-Policy (no scripts at all, no framing:
  `frame-ancestors 'none'`), `X-Content-Type-Options: nosniff`, `X-Frame-Options:
  DENY` for old browsers and a `Referrer-Policy`. A route may set its own CSP, X-Frame-Options
  or Referrer-Policy, which is then kept (two CSP headers would both be enforced): the desk's
  item page allows a frame of our own, the email it shows is served to that frame only
  (`dispatcher.web.desk.items`).
* A form POST (the content types a foreign page can send without CORS) must come
  from our own pages: its `Origin` — or, when a browser sends none, its `Referer` —
  must be the origin of `DISPATCHER_PUBLIC_URL`, of the `Host` it was sent to, or
  one of `DISPATCHER_FORM_ORIGINS` (sites that embed the sign-up form).
  A request with neither header is allowed (old browsers, privacy extensions,
  scripts: none of them is a cross-site forgery). A foreign or `null` origin gets 403.
  Exempt: `POST /u/{token}`, the RFC 8058 one-click unsubscribe that mailbox
  providers send from their own servers, and which only ever unsubscribes; and
  `POST /u/{token}/language` on the same page, whose `no-referrer` makes browsers
  send `Origin: null`. The token in the path proves both: a forger cannot know it.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
EXEMPT_PREFIXES = ("/u/",)  #: RFC 8058 one-click unsubscribe


def content_security_policy(public_url: str) -> str:
    public = origin_of(public_url)
    form_action = "'self'" + (f" {public}" if public else "")
    return "; ".join(
        [
            "default-src 'none'",
            "style-src 'unsafe-inline'",  # the pages' one inline <style>; scripts stay banned
            "img-src 'self' https: data:",
            f"form-action {form_action}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def origin_of(url: str | None) -> str | None:
    """`scheme://host[:port]` of a URL, lower-case, default ports dropped; None if none."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def has_control_characters(text: str, *, allow: str = "") -> bool:
    """NUL and every other control character (Unicode category Cc) not in `allow`."""
    return any(unicodedata.category(c) == "Cc" and c not in allow for c in text)


class Hardening:
    def __init__(self, app: ASGIApp, *, public_url: str, form_origins: str = "") -> None:
        self.app = app
        self.public_origin = origin_of(public_url)
        self.allowed = {origin_of(o) for o in [public_url, *form_origins.split(",")]} - {None}
        self.headers = [
            (b"content-security-policy", content_security_policy(public_url).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    if name.decode() not in headers:
                        headers.append(name.decode(), value.decode())
                if "referrer-policy" not in headers:
                    headers.append("referrer-policy", "same-origin")
            await send(message)

        refusal = self._foreign_form_post(scope)
        if refusal is not None:
            await PlainTextResponse(refusal, 403)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _foreign_form_post(self, scope: Scope) -> str | None:
        """Why a cross-site form POST is refused, or None when it may pass."""
        if scope["method"] != "POST" or scope["path"].startswith(EXEMPT_PREFIXES):
            return None
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in FORM_TYPES:
            return None
        claimed = headers.get("origin")
        source = "Origin"
        if claimed is None:
            claimed, source = headers.get("referer"), "Referer"
            if claimed is None:
                return None
        sender = origin_of(claimed)
        scheme = scope.get("scheme", "http")
        host = headers.get("host")
        if sender is not None and (
            sender in self.allowed or (host and sender == origin_of(f"{scheme}://{host}"))
        ):
            return None
        return (
            f"This form must be sent from our own page ({self.public_origin or 'this site'}); "
            f"the request's {source} header names another site. "
            "Open the form on our site and send it from there."
        )
