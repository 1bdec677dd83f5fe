"""Assemble a pipeline `Context` from settings: the one place that wires I/O together."""

from __future__ import annotations

import datetime as dt
import functools

import sqlalchemy as sa

from dispatcher.campaign.model import Campaign
from dispatcher.clock import Clock
from dispatcher.content import rendering
from dispatcher.delivery import sending, targets, wiring
from dispatcher.ledger import engine as ledger_engine
from dispatcher.mail import compose as emails
from dispatcher.mail import dkim
from dispatcher.settings import Settings


def open_ledger(settings: Settings) -> sa.Engine:
    """The ledger's engine, migrated to the current schema (applied on every start), its
    social deliveries under their targets' current names (docs/architecture.md)."""
    engine = ledger_engine.open_ledger(settings.database_url, timeout=settings.db_timeout_seconds)
    targets.adopt_former_names(engine, settings)
    return engine


def _signer(settings: Settings) -> sending.Signer | None:
    signer = dkim.load_signer(settings)
    return None if signer is None else signer.sign


def build_context(
    settings: Settings,
    campaign: Campaign,
    *,
    engine: sa.Engine,
    clock: Clock,
    force: bool = False,
) -> sending.Context:
    return sending.Context(
        engine=engine,
        campaign=campaign,
        env=rendering.create_environment(settings.templates_dir),
        sender=emails.Sender(
            settings.mail_from, settings.public_url, settings.secret_key.get_secret_value()
        ),
        imprint=settings.imprint,
        email_channel=wiring.email_channel(settings),
        clock=clock,
        social_targets=functools.partial(wiring.social_targets, settings),
        signer=_signer(settings),
        return_path=settings.return_path,
        config=sending.PipelineConfig(
            connections=settings.smtp_connections,
            claim_batch=settings.claim_batch,
            lease=dt.timedelta(seconds=settings.lease_seconds),
            clock_jump_limit=dt.timedelta(hours=settings.clock_jump_hours),
            clock_jump_confirmed=force,
        ),
    )
