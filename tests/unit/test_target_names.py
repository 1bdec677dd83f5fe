"""A social target's ledger name is what it is: the same after a token is renewed, never a secret.

And the link `status` shows for a post, built from what each network answered.
"""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from dispatcher.channels.links import post_url
from dispatcher.channels.webhook import parse_webhook_urls
from dispatcher.delivery import wiring
from dispatcher.settings import Settings

MATRIX = "https://matrix.example.org/_matrix/client/v3/rooms/!news:example.org?access_token="
SLACK = "https://hooks.slack.com/services/T024BE7LD/B08ABCDEF12/"
DISCORD = "https://discord.com/api/webhooks/1187654321098765432/"
TEAMS = (
    "https://prod-23.westeurope.logic.azure.com:443/workflows/0a1b2c3d4e5f46a7b8c9d0e1f2a3b4c5"
    "/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig="
)


def names(text: str) -> list[str]:
    return [target.recipient for target in parse_webhook_urls(text)]


def test_a_renewed_token_keeps_every_webhook_name_and_no_name_holds_a_secret() -> None:
    def urls(secret: str) -> str:
        return ",".join(
            f"{base}{secret}{n}" for n, base in enumerate((MATRIX, SLACK, DISCORD, TEAMS))
        )

    old, new = names(urls("oldSecret0123456789")), names(urls("newSecret9876543210"))
    assert (
        old
        == new
        == [
            "webhook:matrix:matrix.example.org/!news:example.org",
            "webhook:slack:T024BE7LD/B08ABCDEF12",
            "webhook:discord:1187654321098765432",
            "webhook:teams:0a1b2c3d4e5f46a7b8c9d0e1f2a3b4c5",
        ]
    )
    assert not any("Secret" in name for name in old)
    # The former name (a hash of the whole URL) changes with the token: only the new one lasts.
    before, after = parse_webhook_urls(urls("a")), parse_webhook_urls(urls("b"))
    assert [t.former_names for t in before] != [t.former_names for t in after]


def test_reordering_and_encoding_keep_the_names() -> None:
    encoded = MATRIX.replace("!news:example.org", "%21news%3Aexample.org") + "tok1"
    first = names(f"{MATRIX}tok1,{SLACK}s3cr3t")
    assert names(f"{SLACK}s3cr3t,{encoded}") == first[::-1]


def test_hosts_alone_must_be_told_apart_by_an_explicit_name() -> None:
    with pytest.raises(
        ValueError, match=re.escape("entries 1 and 2 are both webhook:generic:chat.example")
    ):
        parse_webhook_urls("https://chat.example/hooks/aaaa,https://chat.example/hooks/bbbb")
    assert names("team=https://chat.example/hooks/aaaa,press=generic+https://chat.example/b") == [
        "webhook:generic:team",
        "webhook:generic:press",
    ]
    # A named Slack hook keeps its name when Slack issues a new webhook (new B id, new secret).
    assert names(f"news={SLACK}one") == names("news=https://hooks.slack.com/services/T1/B2/x")


def test_the_networks_are_named_by_host_handle_and_author() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        mastodon_base_url="https://social.example.org/",
        mastodon_access_token=SecretStr("t"),
        bluesky_handle="@Presse.Example.org",
        bluesky_app_password=SecretStr("p"),
        linkedin_access_token=SecretStr("t"),
        linkedin_author_urn="urn:li:organization:2414183",
    )
    found = {c: [t.recipient for t in wiring.social_targets(settings, c)] for c in ("mastodon",
             "bluesky", "linkedin", "webhook")}  # fmt: skip
    assert found == {
        "mastodon": ["mastodon:social.example.org"],
        "bluesky": ["bluesky:presse.example.org"],
        "linkedin": ["linkedin:urn:li:organization:2414183"],
        "webhook": ["webhook:outbox"],
    }
    assert wiring.social_targets(settings, "mastodon")[0].former == ("mastodon",)


def test_links_to_posts() -> None:
    did = "did:plc:z72i7hdynmk6r22z27h6tvur"
    assert (
        post_url("bluesky", f"at://{did}/app.bsky.feed.post/3l6oveex3ii2l")
        == f"https://bsky.app/profile/{did}/post/3l6oveex3ii2l"
    )
    assert (
        post_url("linkedin", "urn:li:share:7234567890123456789")
        == "https://www.linkedin.com/feed/update/urn:li:share:7234567890123456789"
    )
    event = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"
    matrix = (
        "https://matrix.to/#/!news%3Aexample.org/%24Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"
    )
    assert post_url("webhook", event, {"room": "!news:example.org"}) == matrix
    target = "webhook:matrix:matrix.example.org/!news:example.org"
    assert post_url("webhook", event, recipient=target) == matrix  # rows from before 0007
    url = "https://social.example.org/@presse/113012345678901234"
    assert post_url("mastodon", "113012345678901234", {"url": url}) == url
    assert post_url("webhook", "", {"kind": "slack"}) is None  # Slack answers "ok"
    assert post_url("bluesky", "var/outbox/bluesky/3g7krpgtys2sx.json") is None
