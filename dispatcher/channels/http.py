"""The one HTTP helper every social channel uses: a session, timeouts, error classes.

Channels know their provider's API; this module knows HTTP: which failures a retry
can fix, which mean the provider may already have acted (ambiguous), and how to
tell the operator which credential to renew. Channel modules pass their own
rate-limit reading (`retry_after`), since every network spells it differently.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any

import requests

from dispatcher import __version__
from dispatcher.channels.base import ChannelError, ErrorKind
from dispatcher.clock import Clock, utc_now

CONNECT_TIMEOUT = 5.0  #: seconds to open the connection: nothing was sent before it
READ_TIMEOUT = 30.0  #: seconds for the answer: after it, the provider may have acted
USER_AGENT = f"cluster-week-dispatcher/{__version__}"

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
