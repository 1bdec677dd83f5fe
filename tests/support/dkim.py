"""Sample newsletters and DKIM signers for tests that sign or judge real messages."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import dkim as dkimpy  # type: ignore[import-untyped]  # dkimpy ships no type information

from dispatcher.campaign import calendar, planning
from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Channel
from dispatcher.cli.preview import PREVIEW_ADDRESS, PREVIEW_NAME, preview_day
from dispatcher.content import rendering
from dispatcher.mail import compose as emails
from dispatcher.mail import dkim

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "news.example.org"
SELECTOR = "cw202504"
MAIL_FROM = f"2. Clusterwoche Deutschland <newsletter@{DOMAIN}>"


def sample_message(item_index: int = 0, *, date: dt.datetime | None = None) -> EmailMessage:
    """One subscriber's newsletter for a sample item, built the way `preview` builds it.

    `date`: the Date header (default: the item's planned send time in 2019).
    """
    campaign = load_campaign(ROOT / "config" / "campaign.yaml")
    item = campaign.items[item_index]
    plan = planning.plan(campaign, now=dt.datetime(2019, 4, 1, tzinfo=dt.UTC))
    day = preview_day(campaign, plan, item)
    by_id = {i.id: i for i in campaign.items}
    published = [(d, by_id[i]) for d, i in plan.published_before(day) if i in by_id]
    sender = emails.Sender(MAIL_FROM, f"https://{DOMAIN}", "k" * 48)
    shared = rendering.render_email(
        rendering.create_environment(ROOT / "templates"),
        campaign,
        item,
        day=day,
        published=published,
        imprint="Clusterplattform Deutschland\nMusterstraße 1, 10115 Berlin",
        public_url=sender.public_url,
    )
    prefix, suffix = emails.message_id_parts(campaign.id, day, "email", sender.domain)
    return emails.compose(
        shared,
        campaign,
        sender,
        to_address=PREVIEW_ADDRESS,
        to_name=PREVIEW_NAME,
        unsubscribe=emails.unsubscribe_url(sender, subscriber_id=7, campaign_id=campaign.id),
        message_id=f"{prefix}7{suffix}",
        date=date or calendar.local_send_time(day, campaign.send[Channel.EMAIL], campaign.zone),
    )


def signer_for(path: Path) -> dkim.DkimSigner:
    key, algorithm = dkim.parse_private_key(path.read_bytes())
    return dkim.DkimSigner(DOMAIN, SELECTOR, key, algorithm)


def sign_with_dkimpy(signer: dkim.DkimSigner, data: bytes, *, timestamp: int) -> bytes:
    """`signer.sign` as it was done before the OpenSSL path: dkimpy's `dkim.sign` alone
    (pure-Python RSA), with the same key, header list and t= — the reference the tests
    compare `DkimSigner.sign` with, byte for byte."""
    present = {name.lower() for name, _ in dkimpy.rfc822_parse(data)[0]}
    include = [name for name in dkim.SIGNED_HEADERS if name in present]
    with mock.patch.object(dkimpy, "time", SimpleNamespace(time=lambda: timestamp)):
        header: bytes = dkimpy.sign(
            data,
            signer.selector.encode("ascii"),
            signer.domain.encode("ascii"),
            signer.private_key,
            canonicalize=dkim.CANONICALIZE,
            signature_algorithm=signer.algorithm.encode("ascii"),
            include_headers=include,
        )
    return header + data
