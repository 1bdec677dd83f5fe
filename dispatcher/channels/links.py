"""A link to a post from what its network answered: for `status`, so ops can open every post.

`post_url` takes the provider id the ledger keeps (and, at send time, the receipt's details):
Mastodon answers the status URL itself; a Bluesky `at://DID/app.bsky.feed.post/RKEY` becomes
`https://bsky.app/profile/DID/post/RKEY`; a LinkedIn post URN `https://www.linkedin.com/feed/
update/URN`; a Matrix event `https://matrix.to/#/ROOM/EVENT` (the room from the receipt or the
target's name). Slack and Teams answer without an id, Discord without the guild a link needs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

_AT_POST = re.compile(
    r"at://(?P<did>did:[a-z0-9]+:[A-Za-z0-9._:%-]+)/app\.bsky\.feed\.post/(?P<rkey>[A-Za-z0-9._:~-]+)"
)
_LINKEDIN_URN = re.compile(r"urn:li:(?:share|ugcPost|activity):\d+")
#: a further language's delivery is `<target>#<lang>` (ledger/targets.py): not part of the room
_MATRIX_TARGET = re.compile(r"webhook:matrix:[^/]+/(?P<room>![^/#]+)")


def post_url(
    channel: str, provider_id: str | None, details: Mapping[str, str] = {}, recipient: str = ""
) -> str | None:
    """The post's public link, or None where the network gives nothing to build one from."""
    if details.get("url", "").startswith(("https://", "http://")):
        return details["url"]
    if not provider_id:
        return None
    if channel == "bluesky" and (post := _AT_POST.fullmatch(provider_id)):
        return f"https://bsky.app/profile/{post['did']}/post/{post['rkey']}"
    if channel == "linkedin" and _LINKEDIN_URN.fullmatch(provider_id):
        return f"https://www.linkedin.com/feed/update/{provider_id}"
    if channel == "webhook" and provider_id.startswith("$"):
        room = details.get("room") or ((m := _MATRIX_TARGET.match(recipient)) and m["room"])
        if room:
            return f"https://matrix.to/#/{quote(room, safe='!')}/{quote(provider_id, safe='')}"
    return None
