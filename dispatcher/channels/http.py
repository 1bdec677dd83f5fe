"""The one HTTP helper every social channel uses: a session, timeouts, error classes.

Channels know their provider's API; this module knows HTTP: which failures a retry
can fix, which mean the provider may already have acted (ambiguous), and how to
tell the operator which credential to renew. Channel modules pass their own
rate-limit reading (`retry_after`), since every network spells it differently.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from dispatcher import __version__
from dispatcher.channels.base import ChannelError, ErrorKind
from dispatcher.clock import Clock, utc_now

CONNECT_TIMEOUT = 5.0  #: seconds to open the connection: nothing was sent before it
READ_TIMEOUT = 30.0  #: seconds for the answer: after it, the provider may have acted
USER_AGENT = f"cluster-week-dispatcher/{__version__}"
IMAGE_DEADLINE = 60.0  #: seconds for a whole image download (a trickling host cannot hold a lane)

__all__ = ["Clock", "utc_now"]  # the channels' clock is the one clock (dispatcher.clock)


def new_session() -> requests.Session:
    """One session per channel: connections are kept alive between posts."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    network: str,
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    **kwargs: Any,
) -> requests.Response:
    """The request, or a `ChannelError` saying whether the provider may have acted."""
    try:
        return session.request(method, url, timeout=timeout, **kwargs)
    except requests.ConnectTimeout:
        # The exception text holds the URL, and webhook URLs carry their tokens: never echo it.
        raise ChannelError(
            f"{network}: cannot connect within {timeout[0]:g} s", kind=ErrorKind.UNAVAILABLE
        ) from None
    except requests.ConnectionError as error:
        # A refused or unreachable server never saw the request; a reset after
        # sending might have: only the connect phase is certain.
        refused = "Connection refused" in str(error) or "Name or service" in str(error)
        raise ChannelError(
            f"{network}: connection failed ({type(error).__name__})",
            kind=ErrorKind.UNAVAILABLE if refused else ErrorKind.AMBIGUOUS,
        ) from None
    except requests.Timeout:
        acted = "; the post may have been created" if method.upper() != "GET" else ""
        raise ChannelError(
            f"{network}: no answer within {timeout[1]:g} s{acted}",
            kind=ErrorKind.AMBIGUOUS if method.upper() != "GET" else ErrorKind.TEMPORARY,
        ) from None
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema):
        raise ChannelError(
            f"{network}: the configured URL is not valid", kind=ErrorKind.PERMANENT
        ) from None


def retry_after_header(response: requests.Response, *, now: dt.datetime) -> float | None:
    """RFC 9110 `Retry-After`: seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0)


def error_for(
    response: requests.Response,
    *,
    network: str,
    credential: str,
    detail: str,
    retry_after: float | None = None,
) -> ChannelError:
    """Classify a non-success answer. `credential` names the setting to renew on 401/403;
    `detail` is the provider's own message, already extracted from its error body."""
    status = response.status_code
    prefix = f"{network}: HTTP {status}"
    if status in (401, 403):
        return ChannelError(
            f"{prefix}: {detail}; the credential was refused, renew {credential}",
            kind=ErrorKind.PERMANENT,
        )
    if status == 429:
        wait = "" if retry_after is None else f" for {retry_after:.0f} s"
        return ChannelError(f"{prefix}: rate limited{wait}: {detail}", retry_after=retry_after)
    if status >= 500:
        # The provider may have stored the post before failing: only a key makes a retry safe.
        return ChannelError(
            f"{prefix}: {detail}", kind=ErrorKind.AMBIGUOUS, retry_after=retry_after
        )
    if status == 408:
        return ChannelError(f"{prefix}: {detail}", kind=ErrorKind.AMBIGUOUS)
    return ChannelError(f"{prefix}: {detail}", kind=ErrorKind.PERMANENT)


def json_detail(response: requests.Response, *keys: str) -> str:
    """The provider's error text from a JSON body (first key present), else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason or ""
    if isinstance(body, dict):
        for key in keys:
            if body.get(key):
                return str(body[key])[:500]
    return str(body)[:300]


@dataclass(frozen=True)
class Image:
    """A post image as downloaded: the bytes and their media type (`image/png`)."""

    data: bytes
    content_type: str


class ImageError(ChannelError):
    """The post image could not be fetched. `kind` says whether a later attempt may succeed
    (no answer, an HTTP error: `temporary`) or not (not an image, too big: `permanent`);
    `status` is the image host's HTTP status when it answered. Each channel decides what a
    missing image means for its post (docs/architecture.md, channels)."""

    def __init__(self, message: str, *, kind: ErrorKind, status: int | None = None) -> None:
        super().__init__(message, kind=kind)
        self.status = status


def fetch_image(
    session: requests.Session,
    url: str,
    *,
    network: str,
    max_bytes: int,
    types: Collection[str] = (),
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    deadline: float = IMAGE_DEADLINE,
) -> Image:
    """The image at `url`, streamed and size-checked, or `ImageError` saying why not.

    Sent without any credential (pass a session whose headers carry none): the image host is a
    third party. `types`, if given, are the media types the provider accepts; otherwise any
    `image/*`. `deadline` bounds the whole download, not just each read.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise ImageError(
            f"{network}: image {url!r} is not an http(s) URL", kind=ErrorKind.PERMANENT
        )
    try:
        response = send(session, "GET", url, network=network, timeout=timeout, stream=True)
    except ChannelError as error:
        # The image host being down says nothing about the provider: a plain temporary failure.
        reason = error.message.removeprefix(f"{network}: ").split("; the post may", 1)[0]
        kind = ErrorKind.PERMANENT if error.permanent else ErrorKind.TEMPORARY
        raise ImageError(f"{network}: image {url}: {reason}", kind=kind) from None
    started = time.monotonic()
    with response:
        status = response.status_code
        if status != 200:
            raise ImageError(
                f"{network}: image {url}: HTTP {status}", kind=ErrorKind.TEMPORARY, status=status
            )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        accepted = content_type in types if types else content_type.startswith("image/")
        if not accepted:
            wanted = ", ".join(sorted(types)) if types else "an image"
            raise ImageError(
                f"{network}: image {url} is {content_type or 'untyped'}, not {wanted}",
                kind=ErrorKind.PERMANENT,
                status=status,
            )
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise ImageError(
                        f"{network}: image {url} is larger than {max_bytes:,} bytes",
                        kind=ErrorKind.PERMANENT,
                        status=status,
                    )
                if time.monotonic() - started > deadline:
                    raise ImageError(
                        f"{network}: image {url}: not downloaded within {deadline:g} s",
                        kind=ErrorKind.TEMPORARY,
                        status=status,
                    )
                chunks.append(chunk)
        except requests.RequestException as error:
            raise ImageError(
                f"{network}: image {url}: download broke off ({type(error).__name__})",
                kind=ErrorKind.TEMPORARY,
                status=status,
            ) from None
    return Image(b"".join(chunks), content_type)
