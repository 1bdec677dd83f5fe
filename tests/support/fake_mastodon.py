"""A fake Mastodon 4.x on a loopback port: the parts of its API the dispatcher uses.

Behaviour follows upstream (mastodon/documentation content/en/methods/statuses.md, media.md,
instance.md, api/rate-limits.md; mastodon app/services/post_status_service.rb,
app/validators/status_length_validator.rb, config/initializers/rack_attack.rb):

- every `/api/` call needs `Authorization: Bearer <token>` (401 otherwise);
- `Idempotency-Key` is remembered per account for one hour: a repeat returns the SAME status;
- a status longer than `max_characters` (grapheme clusters, every http(s) URL counting
  `characters_reserved_per_url`, `@user@domain` counting as `@user`) is a 422;
- images are processed synchronously (200) or, with `processing_polls`, answer 202 and then
  206 on `GET /api/v1/media/:id` until ready;
- with `rate_limit` set, the token gets that many requests per window, then 429 with the
  `X-RateLimit-*` headers (the reset as ISO-8601, `iso8601(6)`).

The length rule is implemented here independently of `dispatcher.content.post_length`, so the tests
check the channel against Mastodon's rule rather than against itself.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs

import regex

from tests.support.httpserver import FakeHTTPServer, Request, Response

IDEMPOTENCY_TTL = dt.timedelta(hours=1)
RATE_WINDOW = dt.timedelta(minutes=5)
# A small PNG (1x1, transparent): real image bytes for the download and upload path.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082"
)
_URL = regex.compile(r"https?://\S+", regex.IGNORECASE)
_REMOTE_MENTION = regex.compile(r"(?<![\w/])@(\w+)@[\w.-]+\w")
_ISO_639_1 = frozenset(("de", "en", "fr", "it", "es", "nl", "pl", "da", "sv", "cs", "uk", "ja"))
_INVALID_TOKEN = {"error": "The access token is invalid"}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    """Rails' `iso8601(6)`: `2026-11-26T08:00:00.000000Z`."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Media:
    id: str
    description: str
    content_type: str
    data: bytes
    polls_left: int  #: GETs answering 206 before the attachment is ready
    attached: bool = False

    @property
    def ready(self) -> bool:
        return self.polls_left <= 0


class FakeMastodon(FakeHTTPServer):
    """Statuses created are in `statuses` (newest last); uploads in `media` by id."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        account: str = "clusterwoche",
        max_characters: int = 500,
        characters_reserved_per_url: int = 23,
        instance_v2: bool = True,
        processing_polls: int = 0,
        rate_limit: int | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        super().__init__()
        self.token = token
        self.account = account
        self.max_characters = max_characters
        self.characters_reserved_per_url = characters_reserved_per_url
        self.instance_v2 = instance_v2  #: False: `/api/v2/instance` is a 404 (Mastodon < 4.0)
        self.processing_polls = processing_polls
        self.rate_limit = rate_limit  #: authenticated requests per window; None: unlimited
        self.rate_limit_reset: dt.datetime | None = None  #: end of the current window
        self.clock = clock
        self.statuses: list[dict[str, Any]] = []
        self.media: dict[str, Media] = {}
        self.images: dict[str, tuple[bytes, str]] = {"/images/werft.png": (PNG, "image/png")}
        self._keys: dict[str, tuple[str, dt.datetime]] = {}  #: key -> (status id, when)
        self._ids = itertools.count(110_000_000_000_000_001)
        self._media_ids = itertools.count(22_348_641)
        self._remaining: int | None = None
        self._state = threading.Lock()

    def length(self, text: str) -> int:
        """Mastodon's StatusLengthValidator: graphemes; URLs a fixed placeholder."""
        countable = _URL.sub("x" * self.characters_reserved_per_url, text)
        countable = _REMOTE_MENTION.sub(r"@\1", countable)
        return len(regex.findall(r"\X", countable))

    def handle(self, request: Request) -> Response:
        with self._state:
            if request.path.startswith("/images/"):
                return self._image(request)
            if request.method == "GET" and request.path == "/api/v2/instance":
                return self._instance()
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return Response(401, json=_INVALID_TOKEN)
            limited = self._rate_limit()
            if limited is not None:
                return limited
            response = self._route(request)
            response.headers.update(self._rate_headers())
            return response

    def _route(self, request: Request) -> Response:
        if request.method == "POST" and request.path == "/api/v2/media":
            return self._upload(request)
        if request.method == "GET" and request.path.startswith("/api/v1/media/"):
            return self._poll(request.path.rsplit("/", 1)[-1])
        if request.method == "POST" and request.path == "/api/v1/statuses":
            return self._post_status(request)
        return Response(404, json={"error": "Record not found"})

    def _image(self, request: Request) -> Response:
        if request.path not in self.images:
            return Response(404, body=b"not found", headers={"Content-Type": "text/plain"})
        data, content_type = self.images[request.path]
        return Response(200, body=data, headers={"Content-Type": content_type})

    def _instance(self) -> Response:
        if not self.instance_v2:
            return Response(404, body=b"<html>404</html>", headers={"Content-Type": "text/html"})
        statuses = {
            "max_characters": self.max_characters,
            "max_media_attachments": 4,
            "characters_reserved_per_url": self.characters_reserved_per_url,
        }
        return Response(200, json={"domain": "127.0.0.1", "configuration": {"statuses": statuses}})

    def _rate_limit(self) -> Response | None:
        """Rack::Attack's fixed window: `rate_limit` requests until `rate_limit_reset`."""
        if self.rate_limit is None:
            return None
        now = self.clock()
        if self.rate_limit_reset is None or now >= self.rate_limit_reset:
            self.rate_limit_reset = now + RATE_WINDOW
            self._remaining = self.rate_limit
        elif self._remaining is None:
            self._remaining = self.rate_limit
        if self._remaining <= 0:
            return Response(429, json={"error": "Too many requests"}, headers=self._rate_headers())
        self._remaining -= 1
        return None

    def _rate_headers(self) -> dict[str, str]:
        if self.rate_limit is None or self.rate_limit_reset is None:
            return {}
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self._remaining or 0, 0)),
            "X-RateLimit-Reset": _iso(self.rate_limit_reset),
        }

    def _upload(self, request: Request) -> Response:
        fields = _multipart(request)
        upload = fields.get("file")
        if upload is None:
            return Response(422, json={"error": "Validation failed: File can't be blank"})
        data, content_type = upload
        if not content_type.startswith("image/"):
            return Response(
                422,
                json={"error": "Validation failed: File content type is invalid, File is invalid"},
            )
        description = fields.get("description", (b"", ""))[0].decode("utf-8")
        media = Media(
            str(next(self._media_ids)), description, content_type, data, self.processing_polls
        )
        self.media[media.id] = media
        status = 200 if media.ready else 202
        return Response(status, json=self._media_json(media))

    def _poll(self, media_id: str) -> Response:
        media = self.media.get(media_id)
        if media is None:
            return Response(404, json={"error": "Record not found"})
        if not media.ready:
            media.polls_left -= 1
            return Response(206, json=self._media_json(media))
        return Response(200, json=self._media_json(media))

    def _media_json(self, media: Media) -> dict[str, Any]:
        url = f"{self.url}/system/media/{media.id}.png" if media.ready else None
        return {"id": media.id, "type": "image", "url": url, "description": media.description}

    def _post_status(self, request: Request) -> Response:
        params = _params(request)
        key = request.headers.get("idempotency-key")
        now = self.clock()
        if key:
            known = self._keys.get(key)
            if known is not None and now - known[1] < IDEMPOTENCY_TTL:
                existing = next(s for s in self.statuses if s["id"] == known[0])
                return Response(200, json=existing)
        text = str(params.get("status") or "")
        media_ids = [str(m) for m in params.get("media_ids") or []]
        if not text and not media_ids:
            return Response(422, json={"error": "Validation failed: Text can't be blank"})
        missing = [m for m in media_ids if m not in self.media or self.media[m].attached]
        if missing:
            return Response(
                422, json={"error": f"Media {', '.join(missing)} not found or already attached"}
            )
        if any(not self.media[m].ready for m in media_ids):
            return Response(
                422,
                json={
                    "error": "Cannot attach files that have not finished processing. "
                    "Try again in a moment!"
                },
            )
        if self.length(text) > self.max_characters:
            return Response(
                422,
                json={
                    "error": f"Validation failed: Text character limit of {self.max_characters} exceeded"
                },
            )
        language = params.get("language")
        status_id = str(next(self._ids))
        for m in media_ids:
            self.media[m].attached = True
        status = {
            "id": status_id,
            "created_at": _iso(now),
            "url": f"{self.url}/@{self.account}/{status_id}",
            "uri": f"{self.url}/users/{self.account}/statuses/{status_id}",
            "text": text,  # the source text; real Mastodon returns `content` as HTML
            "content": f"<p>{text}</p>",
            "visibility": params.get("visibility") or "public",
            # Mastodon ignores an unknown language instead of rejecting the post.
            "language": language if language in _ISO_639_1 else None,
            "media_attachments": [self._media_json(self.media[m]) for m in media_ids],
        }
        self.statuses.append(status)
        if key:
            self._keys[key] = (status_id, now)
        return Response(200, json=status)


def _params(request: Request) -> dict[str, Any]:
    """JSON or form-encoded parameters, as Rails accepts both (`media_ids[]` as a list)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = request.json()
        return body if isinstance(body, dict) else {}
    form = parse_qs(request.body.decode("utf-8"))
    params: dict[str, Any] = {k: v[-1] for k, v in form.items() if not k.endswith("[]")}
    params.update({k[:-2]: v for k, v in form.items() if k.endswith("[]")})
    return params


def _multipart(request: Request) -> dict[str, tuple[bytes, str]]:
    """Form fields of a multipart body: name -> (bytes, content type)."""
    head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    message: Message = BytesParser().parsebytes(head + request.body)
    fields: dict[str, tuple[bytes, str]] = {}
    if not message.is_multipart():
        return fields
    for part in message.get_payload():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            fields[name] = (data, part.get_content_type() if part.get("content-type") else "")
    return fields
