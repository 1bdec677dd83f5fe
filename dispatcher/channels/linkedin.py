"""LinkedIn: one article post per delivery via the versioned Posts API (`POST /rest/posts`).

LinkedIn has no idempotency key, so `idempotent` is False: a 5xx or a timeout after the
request was sent is *ambiguous* and the pipeline records `unknown` instead of retrying. The
one accidental dedupe is a 422 `DUPLICATE_POST` ("Content is a duplicate of urn:li:share:…"),
which names the post that already exists; it is returned as a success with that URN.

`Post.text` arrives already "little"-escaped (hashtags as `{hashtag|\\#|Tag}`): an unescaped
reserved character makes LinkedIn cut the published text there while still answering 201.
This module sends it unchanged and never escapes twice.

Docs (learn.microsoft.com/linkedin/marketing/community-management/shares/posts-api):
`LinkedIn-Version: YYYYMM` and `X-Restli-Protocol-Version: 2.0.0` on every call; 201 with the
new URN in `x-restli-id`. Rate limits (…/shared/api-guide/concepts/rate-limits) are daily,
reset at midnight UTC and a 429 names no wait, so `retry_after` stays None.

The reportage image becomes the article's thumbnail: downloaded (`http.fetch_image`), uploaded
through the Images API (`POST /rest/images?action=initializeUpload` with the author as owner,
then `PUT` of the bytes to the returned `uploadUrl`), and named in `content.article.thumbnail`
with the alt text in `content.article.thumbnailAltText`. A missing image never costs the post:
any failure on that path (download, upload, a thumbnail LinkedIn refuses) posts without it and
logs a warning. Uploads create no post, so they cannot double one; an uploaded image is
remembered per process (`Thumbnails`) so a retry of the same post does not upload it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from dispatcher.channels import http
from dispatcher.channels.base import ChannelError, ErrorKind, Post, Receipt, readable_key
from dispatcher.content.post_length import LINKEDIN_LIMIT

#: the settings this network needs (DISPATCHER_<NAME>); without them it writes to the outbox
CREDENTIALS = ("linkedin_access_token", "linkedin_author_urn")

KIND = "linkedin"
#: July 2026, the newest Marketing version in LinkedIn's changelog (learn.microsoft.com/linkedin/
#: marketing/integrations/recent-changes); versions are supported for at least a year after
#: release (…/marketing/versioning), so this one until about July 2027. A sunset version is
#: answered with 426: set DISPATCHER_LINKEDIN_VERSION to a current `YYYYMM` then.
DEFAULT_VERSION = "202607"
CREDENTIAL = "DISPATCHER_LINKEDIN_ACCESS_TOKEN"
AUTHOR_SETTING, API_URL_SETTING = "DISPATCHER_LINKEDIN_AUTHOR_URN", "DISPATCHER_LINKEDIN_API_URL"
VERSION_SETTING = "DISPATCHER_LINKEDIN_VERSION"

_VERSION = re.compile(r"\d{6}(?:\.\d{2})?")  # YYYYMM, or YYYYMM.RR for a revision
_AUTHOR = re.compile(r"urn:li:(?:person|organization):[A-Za-z0-9_-]+")
_DUPLICATE_URN = re.compile(r"duplicate of (urn:li:(?:share|ugcPost|activity):\d+)")
_IMAGE_URN = re.compile(r"urn:li:image:[A-Za-z0-9_-]+")
#: Images API (…/community-management/shares/images-api): JPG, PNG and GIF. LinkedIn documents a
#: pixel limit (36,152,320), not a byte limit; ours keeps memory bounded like Mastodon's.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif"})
MAX_IMAGE_BYTES = 16 * 1024 * 1024
THUMBNAIL_REUSE = 3600.0  #: seconds an uploaded image is reused for a retry of the same post

log = logging.getLogger(__name__)


def delivery_key(*, campaign_id: str, day: dt.date, send_at: dt.datetime, recipient: str) -> str:
    """The name of one delivery in logs and the outbox; LinkedIn itself never sees it.

    Same shape as the other channels' keys: stable per (campaign, day, recipient), ASCII only.
    `send_at` is left out so a rescheduled delivery keeps its name.
    """
    del send_at
    return readable_key(campaign_id, day, recipient, max_length=120)


def describe_request(
    post: Post,
    *,
    key: str,
    author_urn: str,
    version: str,
    base_url: str = "https://api.linkedin.com",
    thumbnail: str | None = None,
) -> dict[str, Any]:
    """The exact request, without the Authorization header (the channel adds only that).

    An article post: LinkedIn does not scrape the link, so title, description and thumbnail
    (an image URN from the Images API, with the post's alt text) are given. Without an uploaded
    `thumbnail` (the outbox uploads nothing) `thumbnail_source` names the image the channel
    would upload; it is not part of the request.
    """
    del key  # LinkedIn has no idempotency key; accepted for the uniform signature
    article: dict[str, Any] = {
        "source": post.link,
        "title": post.title,
        "description": post.description,
    }
    if thumbnail:
        article["thumbnail"] = thumbnail
        if post.image_alt:
            article["thumbnailAltText"] = post.image_alt
    request: dict[str, Any] = {
        "method": "POST",
        "url": f"{base_url.rstrip('/')}/rest/posts",
        "headers": {
            "LinkedIn-Version": version,
            "X-Restli-Protocol-Version": "2.0.0",
            "Content-Type": "application/json",
        },
        "json": {
            "author": author_urn,
            "commentary": post.text,
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "content": {"article": article},
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        },
    }
    if post.image_url and not thumbnail:
        request["thumbnail_source"] = post.image_url
        request["thumbnail_alt"] = post.image_alt
    return request


class Thumbnails:
    """Images already uploaded, by (API, author, sha256 of the bytes) → image URN.

    A post that failed after its image was uploaded (429, LinkedIn down) is retried within
    minutes by the same process: it reuses the URN instead of leaving another unattached image
    behind. Kept for `THUMBNAIL_REUSE` seconds only, since LinkedIn does not document how long
    an image that no post uses stays available; a URN it no longer knows costs the thumbnail
    (the post is sent again without it), never the post.
    """

    def __init__(self, reuse: float = THUMBNAIL_REUSE) -> None:
        self._reuse = reuse
        self._lock = threading.Lock()
        self._urns: dict[tuple[str, str, str], tuple[str, float]] = {}

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            urn, stored = self._urns.get(key, ("", 0.0))
            return urn if urn and time.monotonic() - stored < self._reuse else None

    def put(self, key: tuple[str, str, str], urn: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._urns = {k: v for k, v in self._urns.items() if now - v[1] < self._reuse}
            self._urns[key] = (urn, now)

    def forget(self, urn: str) -> None:
        with self._lock:
            self._urns = {k: v for k, v in self._urns.items() if v[0] != urn}


#: one per process: the channel is opened anew for every dispatch run, retries included
UPLOADED = Thumbnails()


class LinkedInChannel:
    """Posts as one member or organization (`author_urn`) with a 3-legged OAuth token."""

    kind = KIND
    idempotent = False

    def __init__(
        self,
        access_token: str,
        author_urn: str,
        *,
        version: str = DEFAULT_VERSION,
        base_url: str = "https://api.linkedin.com",
        clock: http.Clock = http.utc_now,
        thumbnails: Thumbnails = UPLOADED,
    ) -> None:
        if not _VERSION.fullmatch(version):
            raise ValueError(
                f"{VERSION_SETTING} must be a LinkedIn-Version like {DEFAULT_VERSION} (YYYYMM), "
                f"got {version!r}"
            )
        if not _AUTHOR.fullmatch(author_urn):
            raise ValueError(
                "DISPATCHER_LINKEDIN_AUTHOR_URN must be urn:li:person:<id> or "
                f"urn:li:organization:<id>, got {author_urn!r}"
            )
        if not access_token:
            raise ValueError(f"{CREDENTIAL} is empty")
        self._token = access_token
        self.author_urn = author_urn
        self.version = version
        self.base_url = base_url
        self._clock = clock
        # The token goes per request, never on the session: the session also downloads the
        # image from a third-party host.
        self._session = http.new_session()
        self._thumbnails = thumbnails

    def __repr__(self) -> str:
        return f"LinkedInChannel(author_urn={self.author_urn!r}, version={self.version!r})"

    def send(self, post: Post, *, key: str) -> Receipt:
        if len(post.text) > LINKEDIN_LIMIT:
            raise ChannelError(
                f"{KIND}: commentary has {len(post.text)} characters, more than LinkedIn's "
                f"{LINKEDIN_LIMIT}; it was not sent",
                kind=ErrorKind.PERMANENT,
            )
        details: dict[str, str] = {}
        thumbnail = self._thumbnail(post, key, details)
        response = self._post(post, key, thumbnail)
        if thumbnail and response.status_code in (400, 422) and _duplicate_of(response) is None:
            # Refused, so nothing was posted: the image must not cost the post.
            reason = http.json_detail(response, "message")
            log.warning(
                "linkedin: %s: LinkedIn refused the post with thumbnail %s (HTTP %s: %s); "
                "posting it without the image",
                key,
                thumbnail,
                response.status_code,
                reason,
            )
            self._thumbnails.forget(thumbnail)
            details["thumbnail"] = f"omitted: refused with the post (HTTP {response.status_code})"
            response = self._post(post, key, None)
        if response.status_code in (200, 201):
            urn = response.headers.get("x-restli-id")
            if not urn:
                # Created, but without its id nothing can prove it later: let a human look.
                raise ChannelError(
                    f"{KIND}: HTTP {response.status_code} without an x-restli-id header; "
                    "the post was probably created, check the page before sending again",
                    kind=ErrorKind.AMBIGUOUS,
                )
            return Receipt(urn, {"version": self.version, **details})
        if response.status_code == 422:
            duplicate = _duplicate_of(response)
            if duplicate:
                return Receipt(duplicate, {"duplicate": "true", **details})
            if duplicate is not None:
                raise ChannelError(
                    f"{KIND}: HTTP 422: LinkedIn calls this post a duplicate but names no URN; "
                    "it is probably live already, check the page",
                    kind=ErrorKind.AMBIGUOUS,
                )
        raise self._error(response)

    def close(self) -> None:
        self._session.close()

    def _post(self, post: Post, key: str, thumbnail: str | None) -> requests.Response:
        request = describe_request(
            post,
            key=key,
            author_urn=self.author_urn,
            version=self.version,
            base_url=self.base_url,
            thumbnail=thumbnail,
        )
        return http.send(
            self._session,
            request["method"],
            request["url"],
            network=KIND,
            timeout=(http.CONNECT_TIMEOUT, http.READ_TIMEOUT),
            headers={**request["headers"], "Authorization": f"Bearer {self._token}"},
            json=request["json"],
        )

    # -- the thumbnail: Images API ------------------------------------------------------------

    def _thumbnail(self, post: Post, key: str, details: dict[str, str]) -> str | None:
        """The image URN of the post's thumbnail, or None (why: in `details` and the log).

        Only a refused token stops the post here (it would be refused alike); anything else
        on this path degrades to an article without picture. Nothing here can post.
        """
        if not post.image_url:
            return None
        try:
            image = http.fetch_image(
                self._session,
                post.image_url,
                network=KIND,
                max_bytes=MAX_IMAGE_BYTES,
                types=IMAGE_TYPES,
                timeout=(http.CONNECT_TIMEOUT, http.READ_TIMEOUT),
            )
            cache_key = (self.base_url, self.author_urn, hashlib.sha256(image.data).hexdigest())
            urn = self._thumbnails.get(cache_key)
            if urn is None:
                urn = self._upload(image)
                self._thumbnails.put(cache_key, urn)
                details["thumbnail"] = f"{urn} (uploaded, {len(image.data):,} bytes)"
            else:
                details["thumbnail"] = f"{urn} (uploaded before)"
            return urn
        except _TokenRefusedError as refused:
            raise refused.error from None
        except ChannelError as error:
            reason = _reason(error)
            log.warning(
                "linkedin: %s: posting without the image %s: %s", key, post.image_url, reason
            )
            details["thumbnail"] = f"omitted: {reason}"
            return None

    def _upload(self, image: http.Image) -> str:
        """initializeUpload, then PUT the bytes: the image URN, or a `ChannelError`."""
        headers = {
            "LinkedIn-Version": self.version,
            "X-Restli-Protocol-Version": "2.0.0",
            "Authorization": f"Bearer {self._token}",
        }
        timeout = (http.CONNECT_TIMEOUT, http.READ_TIMEOUT)
        response = http.send(
            self._session,
            "POST",
            f"{self.base_url.rstrip('/')}/rest/images",
            network=KIND,
            timeout=timeout,
            params={"action": "initializeUpload"},
            headers=headers,
            json={"initializeUploadRequest": {"owner": self.author_urn}},
        )
        if response.status_code != 200:
            raise self._refused(response, "initializing the image upload")
        value = _json_object(response).get("value")
        value = value if isinstance(value, dict) else {}
        upload_url, urn = str(value.get("uploadUrl") or ""), str(value.get("image") or "")
        if not _IMAGE_URN.fullmatch(urn) or urlsplit(upload_url).scheme not in ("http", "https"):
            raise ChannelError(f"{KIND}: initializeUpload answered without uploadUrl and image")
        put_headers = {"Content-Type": "application/octet-stream"}
        if self._is_linkedin(upload_url):
            put_headers["Authorization"] = headers["Authorization"]
        response = http.send(
            self._session,
            "PUT",
            upload_url,
            network=KIND,
            timeout=timeout,
            headers=put_headers,
            data=image.data,
        )
        if response.status_code not in (200, 201):
            raise self._refused(response, "uploading the image")
        return urn

    def _refused(self, response: requests.Response, step: str) -> Exception:
        """A refused upload step. A refused token would refuse the post alike: that one stops
        the send (`_TokenRefusedError`); any other refusal costs only the thumbnail."""
        error = self._error(response)
        if response.status_code == 401:
            return _TokenRefusedError(error)
        return ChannelError(f"{error.message} ({step})", kind=error.kind)

    def _is_linkedin(self, url: str) -> bool:
        """The upload URL is LinkedIn's own (it wants the token there), not a third party's:
        the API's own origin, or https on linkedin.com (uploads go to www.linkedin.com)."""
        parts, api = urlsplit(url), urlsplit(self.base_url)
        if (parts.scheme, parts.netloc.lower()) == (api.scheme, api.netloc.lower()):
            return True
        host = (parts.hostname or "").lower()
        return parts.scheme == "https" and (
            host == "linkedin.com" or host.endswith(".linkedin.com")
        )

    def _error(self, response: requests.Response) -> ChannelError:
        status = response.status_code
        detail = http.json_detail(response, "message")
        if status == 426:
            return ChannelError(
                f"{KIND}: HTTP 426: LinkedIn-Version {self.version} is no longer served ({detail}); "
                f"set {VERSION_SETTING} to a current YYYYMM",
                kind=ErrorKind.UNAVAILABLE,
            )
        # 429: LinkedIn sends no Retry-After or reset header; the pipeline's backoff applies.
        return http.error_for(
            response,
            network=KIND,
            credential=CREDENTIAL,
            detail=detail,
            retry_after=None,
            cause=self._cause(status, _json_object(response), detail),
        )

    def _cause(self, status: int, body: dict[str, Any], detail: str) -> str | None:
        """What LinkedIn's `serviceErrorCode`/`code` means and what to do (65600
        INVALID_ACCESS_TOKEN, 65601 REVOKED_ACCESS_TOKEN, 65602 EXPIRED_ACCESS_TOKEN; 100
        ACCESS_DENIED "Not enough permissions to access: …"), or None for the status alone."""
        code = f"{body.get('code') or ''} {body.get('serviceErrorCode') or ''}"
        again = f"authorize the app again (3-legged OAuth) and set {CREDENTIAL}"
        if status == 401 and ("EXPIRED" in code or "65602" in code or "expired" in detail):
            return f"the access token expired (LinkedIn's last 60 days): {again}"
        if status == 401 and ("REVOKED" in code or "65601" in code):
            return f"the member revoked the app's access: {again}"
        if status == 401:
            return f"LinkedIn does not accept the access token (they expire after 60 days): {again}"
        if status == 403 and "/author" in detail:
            return (
                f"{self.author_urn} is not an author this token may post as: set {AUTHOR_SETTING} "
                "to the member's own urn:li:person:… or to a page the member administers (the "
                "token then needs w_organization_social)"
            )
        if status == 403:
            return (
                "the token lacks the permission: it needs w_member_social (posting as a member) "
                "or w_organization_social (as a page, with an admin or content role there); "
                f"{again}"
            )
        if status == 404:
            return f"no LinkedIn API answers at {self.base_url}: check {API_URL_SETTING}"
        return None


class _TokenRefusedError(Exception):
    """The Images API refused the token (401): the post's own error, raised past the
    thumbnail's "post without it" handling."""

    def __init__(self, error: ChannelError) -> None:
        super().__init__(error.message)
        self.error = error


def _reason(error: ChannelError) -> str:
    """The error's message without the network prefix and `http.send`'s "the post may have
    been created" (on the image path nothing can have been posted)."""
    return error.message.removeprefix(f"{KIND}: ").split("; the post may", 1)[0]


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _duplicate_of(response: requests.Response) -> str | None:
    """The URN of the post that already exists if this 422 is LinkedIn's DUPLICATE_POST
    ("" when the message names none), else None.

    Seen in the wild (not in the Posts API reference): the URN is only in the message. Treating
    it as success is safe for us since a post with this exact commentary is live.
    """
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    inputs = (body.get("errorDetails") or {}).get("inputErrors") or []
    codes = {str(e.get("code")) for e in inputs if isinstance(e, dict)}
    message = str(body.get("message") or "")
    if "DUPLICATE_POST" not in codes and "duplicate" not in message.lower():
        return None
    match = _DUPLICATE_URN.search(message)
    return match.group(1) if match else ""
