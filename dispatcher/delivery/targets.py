"""Social targets between the settings and the ledger: former names, stranded deliveries.

A target's name is what it *is* (docs/architecture.md, "Social targets"). At every start the
rows under a name an earlier version gave a configured target are renamed to its current
name (`adopt_former_names`); deliveries whose target is configured no more are `stranded`,
reported by `validate` and `status` with the command that moves them to a replacement.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

import sqlalchemy as sa

from dispatcher.channels.base import SocialTarget
from dispatcher.delivery import wiring
from dispatcher.ledger import targets as ledger_targets
from dispatcher.ledger.tables import DeliveryState
from dispatcher.settings import Settings

log = logging.getLogger("dispatcher")


def configured(settings: Settings) -> dict[str, list[SocialTarget]]:
    """Each social channel's targets as the settings name them; a channel whose settings do
    not parse (`validate` says why) is left out."""
    found: dict[str, list[SocialTarget]] = {}
    for channel in wiring.SOCIAL_REGISTRY:
        try:
            found[channel] = wiring.social_targets(settings, channel)
        except ValueError:
            continue
    return found


def adopt_former_names(engine: sa.Engine, settings: Settings) -> int:
    """Rename deliveries from each configured target's former names to its current one."""
    now = dt.datetime.now(dt.UTC)
    renamed = 0
    with engine.begin() as connection:
        for channel, targets in configured(settings).items():
            renames = {former: t.recipient for t in targets for former in t.former}
            if renames:
                renamed += ledger_targets.rename(connection, channel, renames, now=now)
    if renamed:
        log.info(
            "%d social deliveries renamed to their target's current name",
            renamed,
            extra={"event": "targets_renamed", "count": renamed},
        )
    return renamed


def stranded_problems(connection: sa.Connection, campaign_id: str, settings: Settings) -> list[str]:
    """One line per target name with deliveries not posted that no configured target has,
    saying what to do."""
    targets = configured(settings)
    names = {channel: [t.recipient for t in found] for channel, found in targets.items()}
    grouped: dict[tuple[str, str], list[ledger_targets.Stranded]] = defaultdict(list)
    for row in ledger_targets.stranded(connection, campaign_id, names):
        grouped[(row.channel, row.target)].append(row)
    lines = []
    for (channel, name), rows in grouped.items():
        days = ", ".join(
            f"dispatch {r.dispatch_id} {r.day}{f' {r.lang} post' if r.lang else ''} {r.state}"
            for r in rows[:5]
        )
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        now_configured = ", ".join(names.get(channel, [])) or "none"
        force = " --force" if any(r.state == DeliveryState.UNKNOWN for r in rows) else ""
        lines.append(
            f"target {name} is not configured: {len(rows)} {channel} post(s) not sent to it "
            f"({days}{more}); configured {channel} targets: {now_configured}. If it was "
            f"replaced, run `dispatcher retry --target NEW --from {name}{force}`; if it was "
            "removed on purpose, leave them"
        )
    return lines
