"""Bluesky / AT Protocol: one `app.bsky.feed.post` record per delivery, written idempotently.

Bluesky has no idempotency header, but the client chooses the record key: the delivery key is
a TID computed before the first request (`delivery_key`), and the record is fixed per dispatch
(`createdAt` is the planned send time). `putRecord` with `swapRecord: null` then means
"create if absent": the reference PDS answers a repeat of the same record with the same
uri/cid and writes nothing, and a *different* record under the key with `InvalidSwap`. So a
retry after a timeout or a 5xx cannot create a second post (`social_apis.md` §2).

The server neither detects links/hashtags nor builds link cards: the facets (UTF-8 *byte*
offsets) and the `app.bsky.embed.external` card with its uploaded thumbnail are ours.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from typing import Any

import requests

from dispatcher.channels import http, tid
from dispatcher.channels.base import ChannelError, ErrorKind, Post, Receipt
from dispatcher.content.post_length import BLUESKY_LIMIT, BLUESKY_MAX_BYTES, bluesky_fits, graphemes

#: the settings this network needs (DISPATCHER_<NAME>); without them it writes to the outbox
CREDENTIALS = ("bluesky_handle", "bluesky_app_password")

KIND = "bluesky"
COLLECTION = "app.bsky.feed.post"
CREDENTIAL = "DISPATCHER_BLUESKY_APP_PASSWORD"
HANDLE_SETTING, PDS_SETTING = "DISPATCHER_BLUESKY_HANDLE", "DISPATCHER_BLUESKY_PDS_URL"
THUMB_MAX_BYTES = 1_000_000  #: embed/external.json: thumb maxSize (the PDS rejects bigger blobs)
TAG_MAX_GRAPHEMES, TAG_MAX_BYTES = 64, 640  #: richtext/facet.json #tag

log = logging.getLogger(__name__)

# Like Bluesky's own RichText.detectFacets: a URL runs to whitespace; trailing sentence
# punctuation is not part of it, nor a closing bracket that was not opened inside it.
_URL = re.compile(r"(?<![\w/])https?://[^\s<>\"]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?'\"…"
_JSON = {"Accept": "application/json"}
_STALE = ("ExpiredToken", "InvalidToken")  #: the reference PDS answers both with 400


def delivery_key(*, campaign_id: str, day: dt.date, send_at: dt.datetime, recipient: str) -> str:
    """The record key: a valid TID from the planned send time and a per-delivery clock id.

    Deterministic, so the ledger can store it before the first request and every retry (even
    from another worker) writes the same key. The clock id separates campaigns planned for the
    same microsecond on the same account. `day` is implied by `send_at`; it is accepted because
    all channel modules share this signature.
    """
    del day
    digest = hashlib.sha256(f"{campaign_id}\x00{recipient}".encode()).digest()
    return tid.from_datetime(send_at, int.from_bytes(digest[:2], "big") % (tid.MAX_CLOCK_ID + 1))


def created_at(when: dt.datetime) -> str:
    """The lexicon's datetime as Bluesky's clients write it: UTC, milliseconds, `Z`."""
    if when.tzinfo is None:
        raise ValueError("Post.created_at must be timezone-aware")
    utc = when.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _byte_range(text: str, start: int, end: int) -> dict[str, int]:
    """Facet indices are UTF-8 byte offsets ("ü" is 2 bytes), start inclusive, end exclusive."""
    byte_start = len(text[:start].encode("utf-8"))
    return {"byteStart": byte_start, "byteEnd": byte_start + len(text[start:end].encode("utf-8"))}


def _urls(text: str) -> list[tuple[int, int, str]]:
    found = []
    for match in _URL.finditer(text):
        url = match.group().rstrip(_URL_TRAILING)
        while url.endswith(")") and url.count("(") < url.count(")"):
            url = url[:-1].rstrip(_URL_TRAILING)
        found.append((match.start(), match.start() + len(url), url))
    return found


def facets(text: str, hashtags: tuple[str, ...]) -> list[dict[str, Any]]:
    """Link facets for every http(s) URL and tag facets for the post's hashtags, in text order.

    A hashtag only counts as a whole word ("#Zukunft" is not inside "#Zukunftsfragen") and
    never inside a URL (facets must not overlap). A tag beyond the lexicon's limits stays
    plain text: the PDS would refuse the whole post for it.
    """
    found: list[tuple[int, int, dict[str, str]]] = [
        (start, end, {"$type": "app.bsky.richtext.facet#link", "uri": url})
        for start, end, url in _urls(text)
    ]
    links = list(found)
    for hashtag in dict.fromkeys(hashtags):
        name = hashtag.removeprefix("#")
        if not name or graphemes(name) > TAG_MAX_GRAPHEMES or len(name.encode()) > TAG_MAX_BYTES:
            continue
        feature = {"$type": "app.bsky.richtext.facet#tag", "tag": name}
        for match in re.finditer(rf"(?<![\w#&]){re.escape('#' + name)}(?![\w])", text):
            if not any(s < match.end() and match.start() < e for s, e, _ in links):
                found.append((match.start(), match.end(), feature))
    return [
        {"index": _byte_range(text, start, end), "features": [feature]}
        for start, end, feature in sorted(found, key=lambda item: item[0])
    ]


def build_record(post: Post, *, thumb: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `app.bsky.feed.post` record; identical for identical input, so retries match."""
    record: dict[str, Any] = {
        "$type": COLLECTION,
        "text": post.text,
        "createdAt": created_at(post.created_at),
        # The lexicon's `langs` (BCP 47, at most 3): what the post's text is written in.
        "langs": [post.lang],
    }
    found = facets(post.text, post.hashtags)
    if found:
        record["facets"] = found
    if post.link:
        external: dict[str, Any] = {"uri": post.link, "title": post.title}
        external["description"] = post.description
        if thumb is not None:
            external["thumb"] = thumb
        record["embed"] = {"$type": "app.bsky.embed.external", "external": external}
    return record


def _put_request(pds_url: str, repo: str, key: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": f"{pds_url.rstrip('/')}/xrpc/com.atproto.repo.putRecord",
        "headers": {**_JSON, "Content-Type": "application/json", "User-Agent": http.USER_AGENT},
        # swapRecord null: "must not exist yet", but the same record again is a no-op.
        "json": {
            "repo": repo,
            "collection": COLLECTION,
            "rkey": key,
            "validate": True,
            "record": record,
            "swapRecord": None,
        },
    }


def describe_request(post: Post, *, key: str, pds_url: str, repo: str) -> dict[str, Any]:
    """The `putRecord` request the channel sends (no Authorization; no thumb, since the
    outbox uploads nothing — `thumb_source` names the image the real channel would upload)."""
    request = _put_request(pds_url, repo, key, build_record(post))
    if post.image_url:
        request["thumb_source"] = post.image_url
    return request


def _error_name(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error") or "") if isinstance(body, dict) else ""


class BlueskyChannel:
    """Posts to one Bluesky account through its PDS with an app password.

    One session (createSession is rate limited: 30 per 5 min) is reused for every post and
    refreshed when the PDS says `ExpiredToken`. Thread-safe: posts are sent one at a time.
    """

    kind = KIND
    idempotent = True

    def __init__(
        self,
        pds_url: str,
        handle: str,
        app_password: str,
        *,
        clock: http.Clock = http.utc_now,
    ) -> None:
        self.pds_url = pds_url.rstrip("/")
        self.handle = handle
        self._password = app_password
        self._clock = clock
        self._http = http.new_session()
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._did = ""

    def __repr__(self) -> str:
        return f"BlueskyChannel(pds_url={self.pds_url!r}, handle={self.handle!r})"

    def send(self, post: Post, *, key: str) -> Receipt:
        if not bluesky_fits(post.text):
            raise ChannelError(
                f"bluesky: the text has {graphemes(post.text)} graphemes and "
                f"{len(post.text.encode())} bytes; the limit is {BLUESKY_LIMIT} and {BLUESKY_MAX_BYTES}",
                kind=ErrorKind.PERMANENT,
            )
        if not tid.is_valid(key):
            raise ChannelError(
                f"bluesky: record key {key!r} is not a valid TID", kind=ErrorKind.PERMANENT
            )
        with self._lock:
            if self._access is None:
                self._login()
            details: dict[str, str] = {"rkey": key}
            thumb = self._thumbnail(post, details)
            request = _put_request(self.pds_url, self._did, key, build_record(post, thumb=thumb))
            response = self._xrpc(
                "POST",
                "com.atproto.repo.putRecord",
                json=request["json"],
                headers=request["headers"],
            )
            if response.status_code == 400 and _error_name(response) == "InvalidSwap":
                return self._existing(request["json"]["record"], key, details)
            body = self._ok(response)
            details["cid"] = str(body["cid"])
            if body.get("validationStatus"):
                details["validation"] = str(body["validationStatus"])
            if body.get("commit") is None:
                details["write"] = "unchanged: this record was already stored under the key"
            return Receipt(provider_id=str(body["uri"]), details=details)

    def close(self) -> None:
        self._http.close()

    # -- the parts of send ------------------------------------------------------------------

    def _existing(self, record: dict[str, Any], key: str, details: dict[str, str]) -> Receipt:
        """`InvalidSwap`: a record already exists under the key. It is this post if text and
        createdAt match (e.g. an earlier attempt stored it with a thumbnail and this one could
        not fetch the image); anything else is a real conflict that a retry cannot fix."""
        params = {"repo": self._did, "collection": COLLECTION, "rkey": key}
        body = self._ok(self._xrpc("GET", "com.atproto.repo.getRecord", params=params))
        value = body.get("value") or {}
        if value.get("text") == record["text"] and value.get("createdAt") == record["createdAt"]:
            details["cid"] = str(body.get("cid"))
            details["write"] = "unchanged: this post was already stored under the key"
            return Receipt(provider_id=str(body["uri"]), details=details)
        raise ChannelError(
            f"bluesky: a different post already exists at {body.get('uri')} (record key {key}, "
            f"created {value.get('createdAt')}); not overwriting it — delete it or re-plan",
            kind=ErrorKind.PERMANENT,
        )

    def _thumbnail(self, post: Post, details: dict[str, str]) -> dict[str, Any] | None:
        """The uploaded card image, or None (and why in `details`): a missing, oversized or
        refused image leaves a card without picture rather than failing the post. Identical
        bytes give the identical blob, so a retry writes the identical record."""
        if not post.image_url:
            return None
        image = self._download(post.image_url)
        if isinstance(image, str):
            reason = image
        else:
            data, mime = image
            headers = {"Content-Type": mime}
            upload = self._xrpc("POST", "com.atproto.repo.uploadBlob", data=data, headers=headers)
            if upload.status_code == 200:
                details["thumb"] = f"uploaded ({len(data)} bytes)"
                blob: dict[str, Any] = upload.json()["blob"]
                return blob
            if upload.status_code not in (400, 413, 415):
                # e.g. 500, which the reference PDS answers for a corrupt image (End-Of-Stream).
                refused = self._error(upload)
                message = f"{refused.message} (uploading the thumbnail {post.image_url})"
                kept = (ErrorKind.PERMANENT, ErrorKind.UNAVAILABLE)  # nothing is posted yet
                raise ChannelError(
                    message,
                    kind=refused.kind if refused.kind in kept else ErrorKind.TEMPORARY,
                    retry_after=refused.retry_after,
                )
            reason = f"the PDS refused it: {http.json_detail(upload, 'message', 'error')}"
        log.warning("bluesky: thumbnail %s omitted: %s", post.image_url, reason)
        details["thumb"] = f"omitted: {reason}"
        return None

    def _download(self, url: str) -> tuple[bytes, str] | str:
        """The image and its type, or why there is none. What a retry may fix (no answer, 5xx)
        is a plain temporary error: nothing is posted yet, and the image host is not the
        channel (so never `unavailable`)."""
        try:
            image = http.fetch_image(self._http, url, network=KIND, max_bytes=THUMB_MAX_BYTES)
        except http.ImageError as error:
            if error.permanent or (error.status is not None and error.status < 500):
                return error.message.removeprefix(f"{KIND}: ")
            raise ChannelError(f"bluesky: cannot fetch thumbnail: {error.message}") from None
        return image.data, image.content_type

    # -- XRPC and the session ---------------------------------------------------------------

    def _xrpc(self, method: str, nsid: str, **kwargs: Any) -> requests.Response:
        """One authenticated call; on `ExpiredToken` (or `InvalidToken`: a revoked session) the
        session is renewed and the call made once more (the PDS refused it before acting, so
        repeating it is safe)."""
        response = self._call(method, nsid, self._access, **kwargs)
        if response.status_code in (400, 401) and _error_name(response) in _STALE:
            self._renew()
            response = self._call(method, nsid, self._access, **kwargs)
        return response

    def _call(self, method: str, nsid: str, token: str | None, **kwargs: Any) -> requests.Response:
        headers = {**_JSON, **kwargs.pop("headers", {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self.pds_url}/xrpc/{nsid}"
        return http.send(self._http, method, url, network=KIND, headers=headers, **kwargs)

    def _login(self) -> None:
        credentials = {"identifier": self.handle, "password": self._password}
        response = self._call("POST", "com.atproto.server.createSession", None, json=credentials)
        self._adopt(self._ok(response))

    def _renew(self) -> None:
        """refreshSession with the refresh token (it rotates); a fresh login if that fails."""
        log.info("bluesky: access token expired, refreshing the session")
        response = self._call("POST", "com.atproto.server.refreshSession", self._refresh)
        if response.status_code == 200:
            self._adopt(response.json())
        else:
            self._login()

    def _adopt(self, session: dict[str, Any]) -> None:
        self._access, self._refresh = session["accessJwt"], session["refreshJwt"]
        self._did = str(session["did"])

    def _ok(self, response: requests.Response) -> dict[str, Any]:
        """The JSON body of a 200, else the classified error."""
        if response.status_code != 200:
            raise self._error(response)
        body: dict[str, Any] = response.json()
        return body

    def _error(self, response: requests.Response) -> ChannelError:
        name, message = _error_name(response), http.json_detail(response, "message", "error")
        detail = self._scrub(message if name in ("", message) else f"{name}: {message}")
        return http.error_for(
            response,
            network=KIND,
            credential=CREDENTIAL,
            detail=detail,
            retry_after=self._retry_after(response),
            cause=self._cause(response.status_code, name),
        )

    def _cause(self, status: int, name: str) -> str | None:
        """What the PDS's XRPC `error` name means and what to do (@atproto/pds auth-verifier.ts,
        createSession.ts; xrpc-server errors.ts), or None for the status alone."""
        passwords = "Settings → Privacy and security → App passwords"
        if name == "AccountTakedown":
            return (
                f"the account {self.handle} has been taken down by its PDS or by moderation: "
                "appeal there; a new password will not help"
            )
        if name == "AccountDeactivated":
            return f"the account {self.handle} is deactivated: reactivate it by logging in"
        if name == "AuthFactorTokenRequired":
            return (
                "the PDS asks for a sign-in code sent by e-mail: use an app password instead "
                f"({passwords}), which needs none, in {CREDENTIAL}"
            )
        if name in _STALE:
            return f"the PDS refused the session even after a fresh login: check {CREDENTIAL}"
        if status == 401:
            return (
                f"the PDS refused the login of {self.handle}: create an app password "
                f"({passwords}), set {CREDENTIAL} and check {HANDLE_SETTING}"
            )
        if status == 403 or name == "AccountNotFound":
            return f"the PDS does not know the account: check {HANDLE_SETTING} and {PDS_SETTING}"
        if status == 404 or name == "MethodNotImplemented":
            return f"{self.pds_url} does not answer as the account's PDS: check {PDS_SETTING}"
        return None

    def _retry_after(self, response: requests.Response) -> float | None:
        """Bluesky's `RateLimit-Reset` is a Unix time in seconds, not a delay."""
        reset = response.headers.get("RateLimit-Reset", "").strip()
        now = self._clock()
        if reset.isdigit():
            return max(int(reset) - now.timestamp(), 0.0)
        return http.retry_after_header(response, now=now)

    def _scrub(self, text: str) -> str:
        for secret in (self._password, self._access, self._refresh):
            if secret:
                text = text.replace(secret, "***")
        return text
