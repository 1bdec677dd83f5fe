"""A fake LinkedIn Posts API (`POST /rest/posts`) with the provider's answers and its one trap.

What it checks like LinkedIn: the Bearer token (401), `LinkedIn-Version` as YYYYMM (400; a
version in `sunset` gets 426), `X-Restli-Protocol-Version: 2.0.0`, the author (403), the
required fields (422 "ERROR :: /field :: …"), the commentary length (≤ 3000), and a repeated
commentary (422 DUPLICATE_POST naming the first post's URN). On success: 201, empty body, the
URN in `x-restli-id`.

The trap: LinkedIn publishes "little" text and silently cuts it at the first *unescaped*
reserved character while still answering 201. `Published.text` is what a reader would see,
so a test can prove that escaping matters. `{hashtag|\\#|Tag}` elements render as "#Tag".

The Images API (learn.microsoft.com/linkedin/marketing/community-management/shares/images-api):
`POST /rest/images?action=initializeUpload` with `{"initializeUploadRequest": {"owner": …}}`,
same headers and token checks, answers 200 `{"value": {"uploadUrlExpiresAt": <ms>, "uploadUrl":
…, "image": "urn:li:image:…"}}`; an owner the token may not post as gets 403 ("Not enough
permissions to access: …"). The bytes go by `PUT` to the upload URL (with the token, as in the
docs' curl example): 201, empty body. A post whose `content.article.thumbnail` names an image
that was not uploaded (or belongs to another owner) is refused with a 422 on that field. Also an
image host: `images` maps `/images/…` paths to (bytes, Content-Type), served without a token.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.fake_mastodon import PNG
from tests.support.httpserver import FakeHTTPServer, Request, Response

RESERVED = frozenset("\\|{}@[]()<>#*_~")
_HASHTAG = re.compile(r"\{hashtag\|\\#\|([^{}|\\]+)\}")
_REQUIRED = ("author", "commentary", "visibility", "distribution", "lifecycleState")
#: the Post schema's fields a create may carry (…/shares/post-api-schema); LinkedIn refuses any
#: other, e.g. a `language` — the Posts API has no field for the post's language
_KNOWN = frozenset(
    {
        *_REQUIRED,
        "adContext",
        "container",
        "content",
        "contentCallToActionLabel",
        "contentLandingPage",
        "isReshareDisabledByAuthor",
        "lifecycleStateInfo",
        "reshareContext",
    }
)


@dataclass
class Published:
    urn: str
    author: str
    commentary: str  #: as sent (escaped)
    text: str  #: as LinkedIn shows it: unescaped, cut at the first unescaped reserved char
    body: dict[str, Any]

    @property
    def article(self) -> dict[str, Any]:
        article: dict[str, Any] = self.body["content"]["article"]
        return article


@dataclass
class Upload:
    """One image registered with initializeUpload; `data` is None until its bytes are PUT."""

    urn: str
    owner: str
    path: str  #: the upload URL's path on this server
    data: bytes | None = None
    content_type: str = ""


def render_little(commentary: str) -> str:
    """What readers see: escapes resolved, hashtag elements as "#Tag", cut where LinkedIn cuts."""
    out: list[str] = []
    i = 0
    while i < len(commentary):
        ch = commentary[i]
        if ch == "\\" and i + 1 < len(commentary):
            out.append(commentary[i + 1])
            i += 2
            continue
        if ch == "{" and (element := _HASHTAG.match(commentary, i)):
            out.append("#" + element.group(1))
            i = element.end()
            continue
        if ch in RESERVED:
            break  # LinkedIn's silent truncation
        out.append(ch)
        i += 1
    return "".join(out)


def error(status: int, message: str, **extra: Any) -> Response:
    return Response(status, json={"message": message, "status": status, **extra})


UNAUTHORIZED = error(
    401, "Invalid access token", serviceErrorCode=65600, code="INVALID_ACCESS_TOKEN"
)
THROTTLED = error(
    429,
    "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
    code="TOO_MANY_REQUESTS",
)


class FakeLinkedIn(FakeHTTPServer):
    def __init__(
        self, *, token: str = "li-secret-token", author: str = "urn:li:organization:4711"
    ) -> None:
        super().__init__()
        self.token = token
        self.author = author
        self.sunset: set[str] = {"202401", "202507"}
        self.posts: list[Published] = []
        self.uploads: dict[str, Upload] = {}  #: by image URN
        self.images: dict[str, tuple[bytes, str]] = {"/images/werft.png": (PNG, "image/png")}
        self._next = 7_260_000_000_000_000_001
        self._image_ids = itertools.count(1)

    def reset(self) -> None:
        """Forget posts, uploads, requests and scripted faults: one server serves a module."""
        with self._lock:
            self.posts.clear()
            self.uploads.clear()
            self.images = {"/images/werft.png": (PNG, "image/png")}
            self.requests.clear()
            self._faults.clear()

    def handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path.startswith("/images/"):
            if request.path not in self.images:
                return Response(404, body=b"not found", headers={"Content-Type": "text/plain"})
            data, content_type = self.images[request.path]
            return Response(200, body=data, headers={"Content-Type": content_type})
        if request.method == "PUT" and request.path.startswith("/dms-uploads/"):
            return self._put_image(request)
        route = (request.method, request.path)
        if route not in (("POST", "/rest/posts"), ("POST", "/rest/images")):
            return error(404, f"No resource found for {request.method} {request.path}")
        refused = self._refuse_headers(request)
        if refused is not None:
            return refused
        if request.path == "/rest/images":
            return self._initialize_upload(request)
        body = request.json()
        if not isinstance(body, dict):
            return error(
                400, "Request body could not be converted to data map", code="ILLEGAL_ARGUMENT"
            )
        missing = [f for f in _REQUIRED if f not in body]
        if missing:
            lines = "".join(
                f"ERROR :: /{f} :: field is required but not found and has no default value\n"
                for f in missing
            )
            return error(422, lines)
        unknown = sorted(f for f in body if f not in _KNOWN)
        if unknown:
            return error(
                422,
                "Unpermitted fields present in REQUEST_BODY: Data Processing Exception while "
                f"processing fields [{', '.join('/' + f for f in unknown)}]",
            )
        if body["author"] != self.author:
            return error(
                403,
                "Unpermitted fields present in REQUEST_BODY: Data Processing Exception while "
                "processing fields [/author]",
                serviceErrorCode=100,
                code="ACCESS_DENIED",
            )
        thumbnail = ((body.get("content") or {}).get("article") or {}).get("thumbnail")
        if thumbnail is not None:
            upload = self.uploads.get(str(thumbnail))
            if upload is None or upload.data is None or upload.owner != body["author"]:
                return error(
                    422,
                    f"ERROR :: /content/article/thumbnail :: {thumbnail} is not an available "
                    "image of this author\n",
                )
        commentary = str(body["commentary"])
        if len(commentary) > 3000:
            return error(422, f"ERROR :: /commentary :: length {len(commentary)} exceeds 3000")
        for earlier in self.posts:
            if earlier.author == body["author"] and earlier.commentary == commentary:
                return self._duplicate(earlier.urn)
        urn = f"urn:li:share:{self._next}"
        self._next += 1
        self.posts.append(
            Published(urn, body["author"], commentary, render_little(commentary), body)
        )
        return Response(201, headers={"x-restli-id": urn})

    def _refuse_headers(self, request: Request) -> Response | None:
        """Token and version headers, checked alike on every /rest/ call."""
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return UNAUTHORIZED
        version = request.headers.get("linkedin-version", "")
        if not re.fullmatch(r"\d{6}", version):
            return error(
                400, f"Invalid LinkedIn-Version header: {version!r}", code="VERSION_MISSING"
            )
        if version in self.sunset:
            return error(
                426, f"Requested version {version} is not active", code="NONEXISTENT_VERSION"
            )
        if request.headers.get("x-restli-protocol-version") != "2.0.0":
            return error(400, "X-Restli-Protocol-Version 2.0.0 is required")
        return None

    def _initialize_upload(self, request: Request) -> Response:
        if request.query.get("action") != ["initializeUpload"]:
            return error(400, "Unsupported or missing action parameter", code="ILLEGAL_ARGUMENT")
        body = request.json()
        upload_request = body.get("initializeUploadRequest") if isinstance(body, dict) else None
        owner = upload_request.get("owner") if isinstance(upload_request, dict) else None
        if not owner:
            return error(
                422,
                "ERROR :: /initializeUploadRequest/owner :: field is required but not found "
                "and has no default value\n",
            )
        if owner != self.author:
            version = request.headers["linkedin-version"]
            return error(
                403,
                f"Not enough permissions to access: partnerApiImages.ACTION.{version}01",
                serviceErrorCode=100,
                code="ACCESS_DENIED",
            )
        number = next(self._image_ids)
        urn = f"urn:li:image:D4E10AQH{number:011d}"
        path = f"/dms-uploads/sp/v2/D4E10AQH{number:011d}/uploaded-image/0"
        self.uploads[urn] = Upload(urn, str(owner), path)
        expires = int((time.time() + 86_400) * 1000)
        upload_url = f"{self.url}{path}?ca=vector_feedshare&cn=uploads&ut=upload-token-{number}"
        return Response(
            200,
            json={"value": {"uploadUrlExpiresAt": expires, "uploadUrl": upload_url, "image": urn}},
        )

    def _put_image(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return UNAUTHORIZED
        for upload in self.uploads.values():
            if upload.path == request.path:
                upload.data = request.body
                upload.content_type = request.headers.get("content-type", "")
                return Response(201)
        return error(404, f"No upload found for {request.path}")

    @staticmethod
    def _duplicate(urn: str) -> Response:
        # Shape as reported in Arisamiga/Linkedin-RSS#5 (social_apis.md §3).
        return Response(
            422,
            json={
                "errorDetailType": "com.linkedin.common.error.BadRequest",
                "message": f"Content is a duplicate of {urn}",
                "errorDetails": {
                    "inputErrors": [
                        {
                            "description": "Duplicate post is detected",
                            "input": {"inputPath": {"fieldPath": "/commentary"}},
                            "code": "DUPLICATE_POST",
                        }
                    ]
                },
                "status": 422,
            },
        )


#: the author and token the `fake_linkedin` server accepts
AUTHOR = "urn:li:organization:4711"
TOKEN = "li-secret-token"


@pytest.fixture(scope="module")
def linkedin_server() -> Iterator[FakeLinkedIn]:
    """One fake LinkedIn API per test module (a pytest plugin: see tests/conftest.py)."""
    with FakeLinkedIn(token=TOKEN, author=AUTHOR) as running:
        yield running


@pytest.fixture
def fake_linkedin(linkedin_server: FakeLinkedIn) -> FakeLinkedIn:
    """The module's fake LinkedIn, with what earlier tests left behind forgotten."""
    linkedin_server.reset()
    return linkedin_server
