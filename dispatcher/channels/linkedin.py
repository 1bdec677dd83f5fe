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
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

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
VERSION_SETTING = "DISPATCHER_LINKEDIN_VERSION"

_VERSION = re.compile(r"\d{6}(?:\.\d{2})?")  # YYYYMM, or YYYYMM.RR for a revision
_AUTHOR = re.compile(r"urn:li:(?:person|organization):[A-Za-z0-9_-]+")
_DUPLICATE_URN = re.compile(r"duplicate of (urn:li:(?:share|ugcPost|activity):\d+)")


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
) -> dict[str, Any]:
    """The exact request, without the Authorization header (the channel adds only that).

    An article post: LinkedIn does not scrape the link, so title and description are given.
    No thumbnail: that would need an upload through the Images API first.
    """
    del key  # LinkedIn has no idempotency key; accepted for the uniform signature
    return {
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
            "content": {
                "article": {
                    "source": post.link,
                    "title": post.title,
                    "description": post.description,
                }
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        },
    }


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
        self._session = http.new_session()

    def __repr__(self) -> str:
        return f"LinkedInChannel(author_urn={self.author_urn!r}, version={self.version!r})"

    def send(self, post: Post, *, key: str) -> Receipt:
        if len(post.text) > LINKEDIN_LIMIT:
            raise ChannelError(
                f"{KIND}: commentary has {len(post.text)} characters, more than LinkedIn's "
                f"{LINKEDIN_LIMIT}; it was not sent",
                kind=ErrorKind.PERMANENT,
            )
        request = describe_request(
            post, key=key, author_urn=self.author_urn, version=self.version, base_url=self.base_url
        )
        response = http.send(
            self._session,
            request["method"],
            request["url"],
            network=KIND,
            timeout=(http.CONNECT_TIMEOUT, http.READ_TIMEOUT),
            headers={**request["headers"], "Authorization": f"Bearer {self._token}"},
            json=request["json"],
        )
        if response.status_code in (200, 201):
            urn = response.headers.get("x-restli-id")
            if not urn:
                # Created, but without its id nothing can prove it later: let a human look.
                raise ChannelError(
                    f"{KIND}: HTTP {response.status_code} without an x-restli-id header; "
                    "the post was probably created, check the page before sending again",
                    kind=ErrorKind.AMBIGUOUS,
                )
            return Receipt(urn, {"version": self.version})
        if response.status_code == 422:
            duplicate = _duplicate_of(response)
            if duplicate:
                return Receipt(duplicate, {"duplicate": "true"})
            if duplicate is not None:
                raise ChannelError(
                    f"{KIND}: HTTP 422: LinkedIn calls this post a duplicate but names no URN; "
                    "it is probably live already, check the page",
                    kind=ErrorKind.AMBIGUOUS,
                )
        raise self._error(response)

    def close(self) -> None:
        self._session.close()

    def _error(self, response: requests.Response) -> ChannelError:
        status = response.status_code
        detail = http.json_detail(response, "message")
        if status == 401:
            detail += "; LinkedIn access tokens expire after 60 days"
        elif status == 403:
            detail += (
                f"; the token needs w_member_social (posts as a member) or w_organization_social "
                f"(as a page, with an admin or content role), and {self.author_urn} must be an "
                "author it may post as"
            )
        elif status == 426:
            return ChannelError(
                f"{KIND}: HTTP 426: LinkedIn-Version {self.version} is no longer served ({detail}); "
                f"set {VERSION_SETTING} to a current YYYYMM",
                kind=ErrorKind.UNAVAILABLE,
            )
        # 429: LinkedIn sends no Retry-After or reset header; the pipeline's backoff applies.
        return http.error_for(
            response, network=KIND, credential=CREDENTIAL, detail=detail, retry_after=None
        )


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
