"""How long a post is by each network's own rule, and how to make it fit.

Every network counts differently (see `social_apis.md`): Mastodon and Bluesky count grapheme
clusters but disagree about links, X weighs code points, LinkedIn counts its "little" escaped
commentary. A post that is too long is rejected (Mastodon, Bluesky, X) or silently cut
(LinkedIn), so the dispatcher measures with the network's rule *before* sending, never after.
Pure functions only: no I/O, no clock.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import regex

MASTODON_LIMIT = 500
MASTODON_URL_LENGTH = 23  #: every http(s) URL counts this much, whatever its real length
BLUESKY_LIMIT = 300  #: graphemes
BLUESKY_MAX_BYTES = 3000  #: the lexicon's maxLength, in UTF-8 bytes
LINKEDIN_LIMIT = 3000  #: characters of the escaped commentary
X_LIMIT = 280  #: weighted length (twitter-text v3)
X_URL_LENGTH = 23
WEBHOOK_SOFT_LIMIT = 1900  #: Discord refuses more than 2000 characters; leave room for its framing

ELLIPSIS = "…"

# Close to the networks' URL extractors: scheme, then anything up to whitespace; trailing
# sentence punctuation is not part of the URL (it then counts as normal characters, which only
# errs towards "longer").
_URL = regex.compile(r"https?://[^\s<>\"]+?(?=[.,:;!?)\]'\"…]*(?:\s|$))", regex.IGNORECASE)
# Mastodon's Account::MENTION_RE: @user or @user@domain; only "@user" is counted.
_MENTION = regex.compile(
    r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@[\w.-]+\w)?", regex.IGNORECASE
)
_GRAPHEME = regex.compile(r"\X")
_EMOJI = regex.compile(r"\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F|\p{RI}")
_LINKEDIN_RESERVED = frozenset("\\|{}@[]()<>#*_~")
_X_LIGHT = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))


def graphemes(text: str) -> int:
    """User-perceived characters: "ä" is one whether typed as NFC or NFD."""
    return len(_GRAPHEME.findall(text))


def mastodon_length(text: str, *, url_length: int = MASTODON_URL_LENGTH) -> int:
    """Mastodon's StatusLengthValidator: URLs are a fixed placeholder, remote mentions local."""
    countable = _URL.sub("x" * url_length, text)
    countable = _MENTION.sub(lambda m: "@" + m.group(1), countable)
    return graphemes(countable)


def bluesky_length(text: str) -> int:
    """Graphemes with URLs in full: Bluesky has no t.co-style discount."""
    return graphemes(text)


def bluesky_fits(text: str) -> bool:
    """Bluesky has two limits; a text of many multi-byte graphemes can break the byte one."""
    return bluesky_length(text) <= BLUESKY_LIMIT and len(text.encode("utf-8")) <= BLUESKY_MAX_BYTES


def linkedin_escape(text: str) -> str:
    """Unescaped reserved characters make LinkedIn cut the post silently at that point."""
    return "".join("\\" + ch if ch in _LINKEDIN_RESERVED else ch for ch in text)


def linkedin_hashtag(tag: str) -> str:
    """A hashtag in LinkedIn's little template form, which stays a hashtag after escaping.

    An escaped `\\#Tag` would be plain text; `{hashtag|\\#|Tag}` is the documented element.
    `tag` comes from `hashtag()` (letters and digits only), so it needs no escaping itself.
    """
    return "{hashtag|\\#|" + tag.removeprefix("#") + "}"


def linkedin_length(text: str) -> int:
    """Characters of the commentary as sent, i.e. after escaping (the safe side of the limit)."""
    return len(text)


def _x_weight(ch: str) -> int:
    cp = ord(ch)
    return 100 if any(lo <= cp <= hi for lo, hi in _X_LIGHT) else 200


def x_length(text: str) -> int:
    """twitter-text v3: NFC, weighted code points, URLs 23, an emoji sequence weighs 2."""
    text = unicodedata.normalize("NFC", text)
    weighted = 0
    pos = 0
    for match in _URL.finditer(text):
        weighted += _x_weighted_plain(text[pos : match.start()]) + X_URL_LENGTH * 100
        pos = match.end()
    weighted += _x_weighted_plain(text[pos:])
    return weighted // 100


def _x_weighted_plain(text: str) -> int:
    weighted = 0
    for cluster in _GRAPHEME.findall(text):
        if _EMOJI.search(cluster):
            weighted += 200
        else:
            weighted += sum(_x_weight(ch) for ch in cluster)
    return weighted


def hashtag(tag: str) -> str:
    """An editor's tag as a hashtag every network links: one word, no punctuation.

    Words are joined in CamelCase so "Maritime Wirtschaft" stays readable (and screen readers
    can split it); letters after the first are left alone so "KMU" is not turned into "Kmu".
    """
    words = unicodedata.normalize("NFC", tag).removeprefix("#").split()
    parts = []
    for word in words:
        kept = "".join(ch for ch in word if unicodedata.category(ch)[0] in "LNM")
        if kept:
            first = kept[0].upper()
            parts.append((first if len(first) == 1 else kept[0]) + kept[1:])
    joined = "".join(parts)
    if not joined:
        raise ValueError(f"tag {tag!r} has no letters or digits; it cannot be a hashtag")
    return "#" + joined


def shorten_at_word(text: str, fits: Callable[[str], bool]) -> str:
    """The longest word-boundary prefix of `text` plus "…" that `fits`; `text` itself if it fits.

    Cutting inside a word (or a grapheme) reads as a typo, so only whitespace is a cut point.
    Trailing punctuation before the cut is dropped ("Werften, …" reads badly). Binary search:
    `fits` usually renders a template, and a longer prefix never makes a post shorter.
    """
    if fits(text):
        return text
    cuts = sorted({m.start() for m in regex.finditer(r"\s+", text) if m.start() > 0})
    candidates: list[str] = []
    for cut in cuts:
        stem = text[:cut].rstrip().rstrip(".,;:!?–—-(„“”\"'/").rstrip()
        if stem and (not candidates or candidates[-1] != stem + ELLIPSIS):
            candidates.append(stem + ELLIPSIS)
    best = ""
    lo, hi = 0, len(candidates) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(candidates[mid]):
            best, lo = candidates[mid], mid + 1
        else:
            hi = mid - 1
    return best


@dataclass(frozen=True)
class NetworkRule:
    """What `render_post` needs to know about a network: its counter and its limit."""

    name: str
    limit: int | None  #: the network's published limit; None where there is none (webhooks)
    length: Callable[[str], int]
    fits: Callable[[str], bool]


RULES: Mapping[str, NetworkRule] = {
    "mastodon": NetworkRule(
        "mastodon", MASTODON_LIMIT, mastodon_length, lambda t: mastodon_length(t) <= MASTODON_LIMIT
    ),
    "bluesky": NetworkRule("bluesky", BLUESKY_LIMIT, bluesky_length, bluesky_fits),
    "linkedin": NetworkRule(
        "linkedin", LINKEDIN_LIMIT, linkedin_length, lambda t: linkedin_length(t) <= LINKEDIN_LIMIT
    ),
    "x": NetworkRule("x", X_LIMIT, x_length, lambda t: x_length(t) <= X_LIMIT),
    "webhook": NetworkRule("webhook", None, len, lambda t: len(t) <= WEBHOOK_SOFT_LIMIT),
}
"""Per network name (the `Channel` value, plus "x", which has no channel yet)."""
