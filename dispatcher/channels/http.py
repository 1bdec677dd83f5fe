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
import urllib3

from dispatcher import __version__
from dispatcher.channels.base import ChannelError, ErrorKind
from dispatcher.clock import Clock, utc_now

CONNECT_TIMEOUT = 5.0  #: seconds to open the connection: nothing was sent before it
READ_TIMEOUT = 30.0  #: seconds for the answer: after it, the provider may have acted
USER_AGENT = f"cluster-week-dispatcher/{__version__}"
IMAGE_DEADLINE = 60.0  #: seconds for a whole image download (a trickling host cannot hold a lane)

# The channels' clock is the one clock (dispatcher.clock), and it is always the real one
# (`utc_now`): channels only read provider waits with it, which are wall-clock time.
__all__ = ["Clock", "utc_now"]


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
    """RFC 9110 `Retry-After`: seconds or an HTTP date. `now` is the wall clock (`utc_now`),
    never a rehearsal's: a provider's date is real time, and only the resulting duration is
    applied to the dispatch's clock (see docs/architecture.md, "Provider waits")."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" in an HTTP date still means UTC
        when = when.replace(tzinfo=dt.UTC)
    return max((when - now).total_seconds(), 0.0)


def seconds(value: float) -> str:
    """A wait as people read it: `3 s`, `1 min 30 s`, `2 h 5 min`."""
    total = round(value)
    if total < 60:
        return f"{total} s"
    minutes, rest = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def error_for(
    response: requests.Response,
    *,
    network: str,
    credential: str,
    detail: str,
    retry_after: float | None = None,
    cause: str | None = None,
    kind: ErrorKind | None = None,
    refused: ErrorKind = ErrorKind.UNAVAILABLE,
    location: str | None = None,
) -> ChannelError:
    """Classify a non-success answer into a message that names the cause and what to do.

    `detail` is the provider's own message, already extracted from its error body; `cause`
    (with `kind`) is the channel's reading of a documented provider error code, which wins.
    Without one: 401 → renew `credential`; 403 → a permission of `credential`; 404 → the
    address (`location`, the setting holding it) is wrong. `refused` is the kind of those:
    `unavailable` where the credential serves the whole channel (no verdict on the post: it
    waits in the queue until the setting is fixed), `permanent` for one webhook target among
    several (it must not hold up the others). A token never appears: only setting names.
    """
    status = response.status_code
    prefix = f"{network}: HTTP {status}"
    said = f"{prefix}: {detail}" if detail else prefix
    if cause is not None:
        return ChannelError(f"{said}; {cause}", kind=kind or refused, retry_after=retry_after)
    if status == 401:
        return ChannelError(f"{said}; the credential was refused: renew {credential}", kind=refused)
    if status == 403:
        return ChannelError(
            f"{said}; the account behind {credential} may not do this: check its "
            "permissions with the provider",
            kind=refused,
        )
    if status == 404 and location is not None:
        return ChannelError(f"{said}; nothing there: check {location}", kind=refused)
    if status == 429:
        asked = (
            "" if retry_after is None else f" (the provider asks to wait {seconds(retry_after)})"
        )
        return ChannelError(f"{prefix}: rate limited{asked}: {detail}", retry_after=retry_after)
    if status >= 500:
        # The provider may have stored the post before failing: only a key makes a retry safe.
        return ChannelError(said, kind=ErrorKind.AMBIGUOUS, retry_after=retry_after)
    if status == 408:
        return ChannelError(said, kind=ErrorKind.AMBIGUOUS)
    return ChannelError(said, kind=ErrorKind.PERMANENT)


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
            # read1: whatever has arrived (one socket read), so the limits are checked as the
            # bytes come in; iter_content would block until a whole 64 KiB chunk is there.
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
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
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
            raise ImageError(
                f"{network}: image {url}: download broke off ({type(error).__name__})",
                kind=ErrorKind.TEMPORARY,
                status=status,
            ) from None
    return Image(b"".join(chunks), content_type)
