"""The four social networks' local servers together, and the settings that point at them.

For tests that send through every network at once (tests/integration/test_social_*.py):
each server speaks its API with real status codes (tests/support/fake_*.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from tests.support import fake_bluesky
from tests.support.fake_bluesky import FakeBluesky
from tests.support.fake_linkedin import FakeLinkedIn
from tests.support.fake_mastodon import FakeMastodon
from tests.support.fake_webhooks import FakeWebhooks

#: The campaign's time zone in April 2019 (CEST), for instants written as local times.
BERLIN = dt.timezone(dt.timedelta(hours=2))


@dataclass
class Networks:
    mastodon: FakeMastodon
    bluesky: FakeBluesky
    linkedin: FakeLinkedIn
    webhooks: FakeWebhooks


@contextmanager
def running_networks() -> Iterator[Networks]:
    with (
        FakeMastodon() as mastodon,
        FakeBluesky() as bluesky,
        FakeLinkedIn() as linkedin,
        FakeWebhooks() as webhooks,
    ):
        yield Networks(mastodon, bluesky, linkedin, webhooks)


def network_settings(networks: Networks, webhook_urls: list[str] | None = None) -> dict[str, Any]:
    """`Settings` fields with every network's URL and credentials (by default the Slack
    webhook alone)."""
    webhooks = webhook_urls or [networks.webhooks.slack_url]
    return {
        "mastodon_base_url": networks.mastodon.url,
        "mastodon_access_token": SecretStr(networks.mastodon.token),
        "bluesky_pds_url": networks.bluesky.url,
        "bluesky_handle": fake_bluesky.HANDLE,
        "bluesky_app_password": SecretStr(fake_bluesky.PASSWORD),
        "linkedin_access_token": SecretStr(networks.linkedin.token),
        "linkedin_author_urn": networks.linkedin.author,
        "linkedin_api_url": networks.linkedin.url,
        "webhook_urls": SecretStr(",".join(webhooks)),
    }


def local(day: dt.date, hour: int, minute: int, second: int = 5) -> dt.datetime:
    """`day` at hour:minute:second in Berlin (summer time, as the sample week)."""
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=BERLIN)
