"""A fake Bluesky PDS: the XRPC calls the channel makes, with the reference PDS's answers.

Modelled on what the real `@atproto/pds` does (observed in `/work/shared/atproto-pds`,
`check_pds.py`): `putRecord` with the same record again is a no-op answering the same uri/cid
without `commit`; a different record with `swapRecord: null` is `400 InvalidSwap`; expired
access tokens are `400 ExpiredToken`; a wrong password is `401 AuthenticationRequired`.
It checks a little *more* than the real PDS: facet byte ranges must lie within the UTF-8 text
(the real one accepts any), so a wrong offset fails loudly in tests. `langs` is checked as the
lexicon says (at most 3 BCP 47 tags); `posts()` shows it as stored.
Also serves images (`add_image`) for link-card thumbnails.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any

import regex

from dispatcher.channels import tid
from tests.support.httpserver import FakeHTTPServer, Request, Response

HANDLE = "herbst.test"
PASSWORD = "fake-app-pass-1234"
DID = "did:plc:fakeherbst2a3b4c5d6e7f"
#: the lexicon's `language` format, as @atproto/syntax checks it: a BCP 47 tag's shape
_LANGUAGE_TAG = regex.compile(r"(?:[a-z]{2,3}|i)(?:-[A-Za-z0-9]{1,8})*")


def cid(data: bytes, *, raw: bool) -> str:
    """A CIDv1 like the PDS's: base32 "b" + version 1 + codec (raw 0x55 for blobs, dag-cbor
    0x71 for records) + sha2-256 multihash. Blob CIDs equal the real ones; record CIDs hash
    canonical JSON instead of DAG-CBOR, so they are merely deterministic."""
    prefix = bytes([0x01, 0x55 if raw else 0x71, 0x12, 0x20])
    digest = hashlib.sha256(data).digest()
    return "b" + base64.b32encode(prefix + digest).decode().lower().rstrip("=")


def record_cid(record: Any) -> str:
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return cid(canonical.encode(), raw=False)


def error(status: int, name: str, message: str, **headers: str) -> Response:
    return Response(status, json={"error": name, "message": message}, headers=headers)


def rate_limited(reset_at: int, *, limit: int = 5000, window: int = 3600) -> Response:
    """The PDS's 429: `RateLimit-Reset` is a Unix time in seconds."""
    return error(
        429,
        "RateLimitExceeded",
        "Rate Limit Exceeded",
        **{
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(reset_at),
            "RateLimit-Policy": f"{limit};w={window}",
        },
    )


@dataclass
class Image:
    data: bytes
    content_type: str


class FakeBluesky(FakeHTTPServer):
    """One account (`HANDLE`/`PASSWORD`/`DID`); `records[(collection, rkey)] = (cid, value)`."""

    def __init__(self, *, handle: str = HANDLE, password: str = PASSWORD, did: str = DID) -> None:
        super().__init__()
        self.login_handle, self.password, self.did = handle, password, did
        self.records: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self.blobs: dict[str, bytes] = {}
        self.images: dict[str, Image] = {}
        self._access: set[str] = set()
        self._refresh: set[str] = set()
        self._expired: set[str] = set()
        self._sessions = itertools.count(1)
        self._commits = itertools.count(1)
        self._state = threading.Lock()

    # -- test controls -----------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Every access token issued so far now answers `400 ExpiredToken`."""
        with self._state:
            self._expired |= self._access
            self._access.clear()

    def expire_refresh_tokens(self) -> None:
        with self._state:
            self._expired |= self._refresh
            self._refresh.clear()

    def revoke_sessions(self) -> None:
        """Every token issued so far is unknown now: `400 InvalidToken`, like a revoked session."""
        with self._state:
            self._access.clear()
            self._refresh.clear()

    def add_image(self, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
        self.images[name] = Image(data, content_type)
        return f"{self.url}/images/{name}"

    def posts(self) -> list[dict[str, Any]]:
        return [value for _, (_, value) in sorted(self.records.items())]

    # -- the XRPC methods --------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/images/"):
            image = self.images.get(request.path.removeprefix("/images/"))
            if image is None:
                return Response(404, body=b"not found", headers={"Content-Type": "text/plain"})
            return Response(body=image.data, headers={"Content-Type": image.content_type})
        nsid = request.path.removeprefix("/xrpc/")
        if nsid == "com.atproto.server.createSession":
            return self._create_session(request)
        if nsid == "com.atproto.server.refreshSession":
            return self._refresh_session(request)
        denied = self._check_access(request)
        if denied is not None:
            return denied
        with self._state:
            if nsid == "com.atproto.repo.uploadBlob":
                return self._upload_blob(request)
            if nsid == "com.atproto.repo.putRecord":
                return self._put_record(request.json())
            if nsid == "com.atproto.repo.getRecord":
                return self._get_record(request)
            if nsid == "com.atproto.repo.listRecords":
                return self._list_records(request)
        return error(501, "MethodNotImplemented", f"Method Not Implemented: {nsid}")

    def _session(self) -> dict[str, Any]:
        n = next(self._sessions)
        access, refresh = f"fake-access-{n}", f"fake-refresh-{n}"
        self._access.add(access)
        self._refresh.add(refresh)
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": self.login_handle,
            "did": self.did,
            "active": True,
        }

    def _create_session(self, request: Request) -> Response:
        body = request.json() or {}
        if body.get("identifier") not in (self.login_handle, self.did) or body.get("password") != (
            self.password
        ):
            return error(401, "AuthenticationRequired", "Invalid identifier or password")
        with self._state:
            return Response(json=self._session())

    def _refresh_session(self, request: Request) -> Response:
        token = _bearer(request)
        with self._state:
            if token in self._expired:
                return error(400, "ExpiredToken", "Token has expired")
            if token not in self._refresh:
                return error(400, "InvalidToken", "Token could not be verified")
            self._refresh.discard(token)  # refresh tokens rotate
            return Response(json=self._session())

    def _check_access(self, request: Request) -> Response | None:
        token = _bearer(request)
        if token is None:
            return error(401, "AuthMissing", "Authentication Required")
        with self._state:
            if token in self._expired:
                return error(400, "ExpiredToken", "Token has expired")
            if token not in self._access:
                return error(400, "InvalidToken", "Token could not be verified")
        return None

    def _upload_blob(self, request: Request) -> Response:
        ref = cid(request.body, raw=True)
        self.blobs[ref] = request.body
        mime = request.headers.get("content-type", "application/octet-stream")
        blob = {"$type": "blob", "ref": {"$link": ref}, "mimeType": mime, "size": len(request.body)}
        return Response(json={"blob": blob})

    def _put_record(self, body: dict[str, Any]) -> Response:
        if body.get("repo") not in (self.did, self.login_handle):
            return error(401, "AuthenticationRequired", "Authentication Required")
        collection, rkey, record = body["collection"], body["rkey"], body["record"]
        if collection == "app.bsky.feed.post" and not tid.is_valid(rkey):
            message = f'Invalid record key for {collection}: Invalid TID string (got "{rkey}") at $'
            return error(400, "InvalidRequest", message)
        if body.get("validate", True):
            problem = self._invalid(record)
            if problem:
                return error(400, "InvalidRequest", f"Invalid {collection} record: {problem}")
        new_cid = record_cid(record)
        uri = f"at://{self.did}/{collection}/{rkey}"
        current = self.records.get((collection, rkey))
        if current is not None and current[0] == new_cid:
            return Response(json={"uri": uri, "cid": new_cid, "validationStatus": "valid"})
        if "swapRecord" in body:
            swap = body["swapRecord"]
            if (swap is None and current is not None) or (
                swap is not None and (current is None or current[0] != swap)
            ):
                at = current[0] if current else "null"
                return error(400, "InvalidSwap", f"Record was at {at}")
        self.records[(collection, rkey)] = (new_cid, record)
        commit = {"cid": cid(f"commit{next(self._commits)}".encode(), raw=False), "rev": rkey}
        return Response(
            json={"uri": uri, "cid": new_cid, "commit": commit, "validationStatus": "valid"}
        )

    def _invalid(self, record: dict[str, Any]) -> str | None:
        """The lexicon checks the tests rely on, plus facet ranges within the text."""
        text = record.get("text")
        if not isinstance(text, str):
            return 'Missing required key "text" at $.record'
        if "createdAt" not in record:
            return 'Missing required key "createdAt" at $.record'
        langs = record.get("langs", [])
        if not isinstance(langs, list) or len(langs) > 3:
            return "langs must be an array of at most 3 elements at $.record.langs"
        for i, lang in enumerate(langs):
            if not isinstance(lang, str) or not _LANGUAGE_TAG.fullmatch(lang):
                return f"langs/{i} must be a well-formed BCP 47 language tag at $.record.langs"
        count = len(regex.findall(r"\X", text))
        if count > 300:
            return f"grapheme too big (maximum 300, got {count}) at $.record.text"
        size = len(text.encode("utf-8"))
        if size > 3000:
            return f"string too long (maximum 3000, got {size}) at $.record.text"
        for i, facet in enumerate(record.get("facets") or []):
            start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
            if not 0 <= start < end <= size:
                return f"facet {i} bytes {start}..{end} outside the text ({size} bytes)"
        thumb = ((record.get("embed") or {}).get("external") or {}).get("thumb")
        if thumb is not None:
            ref = thumb.get("ref", {}).get("$link")
            if ref not in self.blobs:
                return f"Could not find blob: {ref}"
            if thumb.get("size", 0) > 1_000_000:
                return "blob too big at $.record.embed.external.thumb"
        return None

    def _get_record(self, request: Request) -> Response:
        collection, rkey = request.query["collection"][0], request.query["rkey"][0]
        uri = f"at://{self.did}/{collection}/{rkey}"
        stored = self.records.get((collection, rkey))
        if stored is None:
            return error(400, "RecordNotFound", f"Could not locate record: {uri}")
        return Response(json={"uri": uri, "cid": stored[0], "value": stored[1]})

    def _list_records(self, request: Request) -> Response:
        collection = request.query["collection"][0]
        records = [
            {"uri": f"at://{self.did}/{c}/{rkey}", "cid": stored_cid, "value": value}
            for (c, rkey), (stored_cid, value) in sorted(self.records.items(), reverse=True)
            if c == collection
        ]
        return Response(json={"records": records})


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None
