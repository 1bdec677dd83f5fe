"""Channels deliver one rendered message each; `base` holds the interface they share.

One module per network (`smtp`, `mastodon`, `bluesky`, `linkedin`, `webhook`), each
declaring the settings it needs in `CREDENTIALS`. `NETWORKS` is the registry: adding a
network is its module, one entry here, and one factory in `dispatcher.delivery.wiring`.
"""

from __future__ import annotations

from dispatcher.campaign.model import Channel
from dispatcher.channels import bluesky, linkedin, mastodon, smtp, webhook

#: channel -> the settings (field names, `DISPATCHER_<NAME>`) it needs to reach its provider
NETWORKS: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: smtp.CREDENTIALS,
    Channel.MASTODON: mastodon.CREDENTIALS,
    Channel.BLUESKY: bluesky.CREDENTIALS,
    Channel.LINKEDIN: linkedin.CREDENTIALS,
    Channel.WEBHOOK: webhook.CREDENTIALS,
}
