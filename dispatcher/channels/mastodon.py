"""Mastodon: one public status per delivery, safe to retry thanks to `Idempotency-Key`.

Why `idempotent = True`: Mastodon remembers an `Idempotency-Key` per account and answers a
repeated `POST /api/v1/statuses` with the status the first request created instead of a new
one (mastodon/documentation content/en/methods/statuses.md: "Idempotency keys are stored for
up to 1 hour"; mastodon app/services/post_status_service.rb `with_idempotency`:
`redis.setex(idempotency_key, 3_600, @status.id)`). So a timeout or a 5xx after sending is an
ambiguous but *retryable* outcome, provided the retry carries the same key: `delivery_key` is
derived from the delivery and stored in the ledger before the first request.

Limits of that protection, which the pipeline must respect:
- A retry more than one hour after the first attempt is NOT protected: Mastodon has forgotten
  the key and posts again. The pipeline's first retries come within minutes, well inside it.
- Some Mastodon versions detect the duplicate but answer HTTP 500 (mastodon/mastodon#40399).
  That stays ambiguous here: no second post, but no receipt either until it is reconciled.

Only the status request carries the key. Media uploads are not idempotent but harmless: a
retry uploads the image again and the unattached copy is garbage-collected by Mastodon.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from dispatcher.channels import http
from dispatcher.channels.base import ChannelError, ErrorKind, Post, Receipt, readable_key
from dispatcher.content import post_length

#: the settings this network needs (DISPATCHER_<NAME>); without them it writes to the outbox
CREDENTIALS = ("mastodon_base_url", "mastodon_access_token")

KIND = "mastodon"
CREDENTIAL = "DISPATCHER_MASTODON_ACCESS_TOKEN"
BASE_URL_SETTING = "DISPATCHER_MASTODON_BASE_URL"
SCOPES = "write:statuses and write:media"  #: what the token needs
#: Mastodon's 403 `error` strings (app/controllers/api/base_controller.rb, application_controller.rb)
#: and what to do about each; `functional?` is false for a disabled *or suspended* account.
_FORBIDDEN = (
    (
        "outside the authorized scopes",
        "the access token lacks a scope: create a token with {scopes} and set {credential}",
    ),
    (
        "login is currently disabled",
        "the account is disabled or suspended on {host}: ask its moderators (or appeal in the "
        "account's settings); a new token will not help",
    ),
    (
        "account is currently suspended",
        "the account is suspended on {host}: ask its moderators (or appeal in the account's "
        "settings); a new token will not help",
    ),
    (
        "missing a confirmed e-mail",
        "the account's e-mail address is not confirmed: follow the link in its sign-up mail",
    ),
    ("pending approval", "{host} has not approved the account yet: wait for its moderators"),
    (
        "requires two-factor",
        "{host} requires two-factor authentication: enable it for the account",
    ),
)
MAX_IMAGE_BYTES = 16 * 1024 * 1024  #: Mastodon's default image limit is 16 MB (was 10 MB)


def delivery_key(*, campaign_id: str, day: dt.date, send_at: dt.datetime, recipient: str) -> str:
    """The `Idempotency-Key` of one delivery: the same for every retry, unique per delivery.

    `send_at` is accepted for a uniform signature across channels but left out on purpose: a
    rescheduled delivery is still the same post and must not get a second chance to appear.
    Header values must be ASCII, so other characters are replaced and a hash keeps it unique.
    """
    return readable_key(campaign_id, day, recipient, max_length=64)


def iso_639_1(lang: str) -> str:
    """The status's `language`: Mastodon takes an ISO 639-1 code ("de"), so a regional tag
    ("pt-BR") is sent as its language alone (Mastodon drops a code it does not know)."""
    return lang.split("-", 1)[0].lower()


def describe_request(
    post: Post, *, key: str, base_url: str, media_ids: Sequence[str] = ()
) -> dict[str, Any]:
    """The exact status request, without the Authorization header.

    The channel sends exactly this (plus the token), and the outbox writes it to a file in dev
    mode, so what the outbox shows is what would be sent.
    """
    return {
        "method": "POST",
        "url": f"{base_url.rstrip('/')}/api/v1/statuses",
        "headers": {"Idempotency-Key": key},
        "json": {
            "status": post.text,
            "language": iso_639_1(post.lang),
            "visibility": "public",
            "media_ids": list(media_ids),
        },
    }


def rate_limit_wait(response: requests.Response, *, now: dt.datetime) -> float | None:
    """Seconds until `X-RateLimit-Reset`: ISO-8601 on Mastodon (rack_attack.rb `iso8601(6)`),
    epoch seconds on GoToSocial and others; else `Retry-After`, if any."""
    value = response.headers.get("X-RateLimit-Reset", "").strip()
    try:
        reset = dt.datetime.fromisoformat(value)
    except ValueError:
        epoch = float(value) if value.replace(".", "", 1).isdigit() else 0.0
        if epoch < 1e9:
            return http.retry_after_header(response, now=now)
        reset = dt.datetime.fromtimestamp(epoch, dt.UTC)
    if reset.tzinfo is None:
        reset = reset.replace(tzinfo=dt.UTC)
    return max((reset - now).total_seconds(), 0.0)


class MastodonChannel:
    """Posts to one Mastodon account; implements `SocialChannel`."""

    kind: str = KIND
    idempotent: bool = True

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        clock: Callable[[], dt.datetime] = http.utc_now,
        poll_interval: float = 1.0,
        poll_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: tuple[float, float] = (http.CONNECT_TIMEOUT, http.READ_TIMEOUT),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Per request, not on the session: the session also downloads the post image from a
        # third-party host, which must never see the token.
        self._auth = {"Authorization": f"Bearer {access_token}"}
        self._clock = clock
        self._poll_interval = poll_interval
        self._poll_timeout = poll_timeout
        self._sleep = sleep
        self._timeout = timeout
        self._session = http.new_session()
        self._limits: tuple[int, int] | None = None
        self._limits_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MastodonChannel(base_url={self.base_url!r})"

    def send(self, post: Post, *, key: str) -> Receipt:
        max_characters, url_length = self._instance_limits()
        length = post_length.mastodon_length(post.text, url_length=url_length)
        if length > max_characters:
            # The pipeline renders for 500; a stricter instance must not get a cut post.
            raise ChannelError(
                f"mastodon: the post has {length} characters, {self.base_url} allows "
                f"{max_characters}; shorten it for this instance",
                kind=ErrorKind.PERMANENT,
            )
        media_ids = [self._upload_image(post, post.image_url)] if post.image_url else []
        request = describe_request(post, key=key, base_url=self.base_url, media_ids=media_ids)
        response = self._api(
            request["method"], request["url"], headers=request["headers"], json=request["json"]
        )
        status = _json_object(response)
        if not status.get("id"):
            raise ChannelError("mastodon: HTTP 200 without a status id", kind=ErrorKind.AMBIGUOUS)
        url = str(status.get("url") or status.get("uri") or "")
        return Receipt(provider_id=str(status["id"]), details={"url": url})

    def close(self) -> None:
        self._session.close()

    def _api(
        self, method: str, url: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> requests.Response:
        """A request to the instance, with the token; any other status is a `ChannelError`."""
        kwargs["headers"] = {**self._auth, **kwargs.get("headers", {})}
        response = http.send(
            self._session, method, url, network=KIND, timeout=self._timeout, **kwargs
        )
        if response.status_code in ok:
            return response
        # Mastodon sends X-RateLimit-* on every answer; only a 429 means "wait until Reset".
        if response.status_code == 429:
            wait = rate_limit_wait(response, now=self._clock())
        else:
            wait = http.retry_after_header(response, now=self._clock())
        detail = http.json_detail(response, "error", "error_description")
        raise http.error_for(
            response,
            network=KIND,
            credential=CREDENTIAL,
            detail=detail,
            retry_after=wait,
            cause=self._cause(response.status_code, detail),
        )

    def _cause(self, status: int, detail: str) -> str | None:
        """What Mastodon's `error` string means and what to do (Api::BaseController,
        doorkeeper), or None for `http.error_for`'s reading of the status."""
        if status == 401 or (status == 422 and "requires an authenticated user" in detail):
            return (
                f"the access token was refused: create a new one for the account (Preferences → "
                f"Development, scopes {SCOPES}) and set {CREDENTIAL}"
            )
        if status == 404 and detail != "Record not found":
            return f"{self.base_url} does not answer as a Mastodon API: check {BASE_URL_SETTING}"
        if status != 403:
            return None
        host = urlsplit(self.base_url).hostname
        for needle, cause in _FORBIDDEN:
            if needle in detail.lower():
                return cause.format(host=host, credential=CREDENTIAL, scopes=SCOPES)
        return None

    def _instance_limits(self) -> tuple[int, int]:
        """`(max_characters, characters_reserved_per_url)`, asked once per channel.

        `/api/v2/instance` exists since Mastodon 4.0; without it the upstream defaults apply.
        """
        with self._limits_lock:
            if self._limits is None:
                try:
                    response = self._api("GET", f"{self.base_url}/api/v2/instance", ok=(200, 404))
                except ChannelError as error:
                    raise _before_posting(error) from None
                statuses: Any = {}
                if response.status_code == 200:
                    configuration = _json_object(response).get("configuration")
                    if isinstance(configuration, dict):
                        statuses = configuration.get("statuses") or {}
                self._limits = (
                    _int(statuses, "max_characters", post_length.MASTODON_LIMIT),
                    _int(statuses, "characters_reserved_per_url", post_length.MASTODON_URL_LENGTH),
                )
            return self._limits

    def _upload_image(self, post: Post, image_url: str) -> str:
        """The media id of the post image, processed and ready to attach.

        Every failure here is before posting, so none is ambiguous. A failed download fails the
        delivery temporarily rather than posting without the image: the image is part of what
        the editor approved, and a later retry usually succeeds.
        """
        try:
            data, content_type = self._download(image_url)
            name = urlsplit(image_url).path.rsplit("/", 1)[-1] or "image"
            response = self._api(
                "POST",
                f"{self.base_url}/api/v2/media",
                ok=(200, 202),
                files={"file": (name, data, content_type)},
                data={"description": post.image_alt or ""},
            )
            media_id = str(_json_object(response).get("id") or "")
            if not media_id:
                raise ChannelError("mastodon: media upload answered without an id")
            ready = response.status_code == 200
            waited = 0.0
            while not ready:
                if waited >= self._poll_timeout:
                    raise ChannelError(
                        f"mastodon: the image is still processing after {waited:.0f} s; retry later"
                    )
                self._sleep(self._poll_interval)
                waited += self._poll_interval
                # 206 while processing (methods/media.md); 200 with a url once done.
                poll = self._api("GET", f"{self.base_url}/api/v1/media/{media_id}", ok=(200, 206))
                ready = poll.status_code == 200 and bool(_json_object(poll).get("url"))
            return media_id
        except ChannelError as error:
            raise _before_posting(error) from None

    def _download(self, url: str) -> tuple[bytes, str]:
        """The image bytes and their type; without the token (it is another host)."""
        image = http.fetch_image(
            self._session, url, network=KIND, max_bytes=MAX_IMAGE_BYTES, timeout=self._timeout
        )
        return image.data, image.content_type


def _before_posting(error: ChannelError) -> ChannelError:
    """The same error, never ambiguous: nothing can have been posted yet (an unreachable
    instance stays `unavailable`)."""
    if not error.ambiguous:
        return error
    return ChannelError(
        f"mastodon: {_reason(error)}, before posting (nothing was posted)",
        kind=ErrorKind.PERMANENT if error.permanent else ErrorKind.TEMPORARY,
        retry_after=error.retry_after,
    )


def _reason(error: ChannelError) -> str:
    """`http.send`'s message without its prefix and its "the post may have been created"."""
    return error.message.removeprefix(f"{KIND}: ").split("; the post may", 1)[0]


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _int(mapping: Any, name: str, default: int) -> int:
    value = mapping.get(name) if isinstance(mapping, dict) else None
    return value if isinstance(value, int) and value > 0 else default
