"""The daily email as a kind of dispatch: one delivery per active subscriber, the shared
part rendered once per dispatch and language, each message from that language's wire template.

A dispatch is still one per day and channel: readers of every language are in it, and each
delivery carries its reader's language from the fan-out on (docs/architecture.md, "Languages").
"""

from __future__ import annotations

import time

from dispatcher.campaign.model import item_from_json
from dispatcher.channels.base import ChannelError, Envelope
from dispatcher.content import rendering
from dispatcher.delivery import metrics
from dispatcher.delivery.sending import ChannelDown, Context, outcome_of_error
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import store
from dispatcher.ledger.tables import DeliveryState, SubscriberState
from dispatcher.mail import compose as emails
from dispatcher.mail import wire


class EmailDispatch:
    """`DispatchSender` for the email channel."""

    def __init__(self, ctx: Context, dispatch: store.DispatchRow) -> None:
        self.ctx, self.dispatch = ctx, dispatch
        self.workers = ctx.config.connections
        self.item = item_from_json(dispatch.content)
        #: one wire template per language the day's item has its own version in; readers
        #: of another language get the default one or nothing (`Campaign.edition_language`)
        self.templates = {
            lang: wire.WireTemplate(
                render_shared(ctx, dispatch, lang), ctx.campaign, ctx.sender,
                send_at=dispatch.send_at,
            )
            for lang in ctx.campaign.languages_of(self.item)
        }  # fmt: skip
        #: a delivery's language -> its template (None: nothing, fallback `skip`), worked
        #: out once per dispatch: the send path looks it up per message
        self.by_language: dict[str | None, wire.WireTemplate | None] = {
            lang: self._template(lang) for lang in (None, *ctx.campaign.locales)
        }

    def _template(self, lang: str | None) -> wire.WireTemplate | None:
        written = self.ctx.campaign.edition_language(self.item, lang)
        return None if written is None else self.templates.get(written)

    def fan_out_step(self) -> bool:
        return fan_out_step(self.ctx, self.dispatch)

    def send(self, delivery: store.ClaimedDelivery) -> store.Outcome | ChannelDown:
        if delivery.lang in self.by_language:
            template = self.by_language[delivery.lang]
        else:  # a language the campaign no longer offers: the default's
            template = self._template(delivery.lang)
        if template is None:
            return store.Outcome(
                delivery.id,
                DeliveryState.SKIPPED,
                error=f"the day's item has no {delivery.lang} version and the campaign's "
                "fallback is skip",
            )
        return send_one(self.ctx, template, delivery)

    def close(self) -> None:
        """The SMTP connections stay with the context's channel (closed by the lane)."""


def fan_out_step(ctx: Context, dispatch: store.DispatchRow) -> bool:
    """One batch of delivery rows; whether more may follow. Interleaved with sending, so
    the first message leaves after the first batch, not after the whole list."""
    if dispatch.fanout_done:
        return False
    prefix, suffix = emails.message_id_parts(
        dispatch.campaign_id, dispatch.day, dispatch.channel, ctx.sender.domain
    )
    campaign = ctx.campaign
    item = item_from_json(dispatch.content)
    languages = store.Languages(
        default=campaign.language,
        written_in={lang: campaign.edition_language(item, lang) for lang in campaign.locales[1:]},
    )
    with ctx.engine.begin() as connection:
        covered = store.fan_out_subscribers(
            connection,
            dispatch,
            limit=ctx.config.fanout_batch,
            key_prefix=prefix,
            key_suffix=suffix,
            now=ctx.clock(),
            languages=languages,
        )
    return covered > 0


def render_shared(
    ctx: Context, dispatch: store.DispatchRow, lang: str | None = None
) -> rendering.RenderedEmail:
    """From the content stored with the dispatch, not the file: the past stays as sent."""
    with ledger_engine.reader(ctx.engine).connect() as connection:
        earlier = store.published_contents(
            connection, dispatch.campaign_id, channel=dispatch.channel, before=dispatch.day
        )
    return rendering.render_email(
        ctx.env,
        ctx.campaign,
        item_from_json(dispatch.content),
        day=dispatch.day,
        published=[(day, item_from_json(content)) for day, content in earlier],
        imprint=ctx.imprint,
        public_url=ctx.sender.public_url,
        lang=lang,
    )


def message_bytes(
    ctx: Context, template: wire.WireTemplate, delivery: store.ClaimedDelivery
) -> bytes:
    """The exact bytes for one subscriber (the same as `emails.compose` builds, see `wire`)."""
    assert delivery.subscriber_id is not None and delivery.email is not None
    unsubscribe = emails.unsubscribe_url(
        ctx.sender, subscriber_id=delivery.subscriber_id, campaign_id=ctx.campaign.id
    )
    data = template.render(
        to_address=delivery.email,
        to_name=delivery.name,
        unsubscribe=unsubscribe,
        message_id=delivery.key,
        date=ctx.clock().astimezone(ctx.campaign.zone),
    )
    return data if ctx.signer is None else ctx.signer(data)


def send_one(
    ctx: Context,
    template: wire.WireTemplate,
    delivery: store.ClaimedDelivery,
) -> store.Outcome | ChannelDown:
    if delivery.subscriber_state != SubscriberState.ACTIVE or delivery.email is None:
        return store.Outcome(
            delivery.id, DeliveryState.SKIPPED, error="not subscribed at send time"
        )
    data = message_bytes(ctx, template, delivery)
    envelope = Envelope(ctx.return_path or ctx.sender.address, delivery.email, data)
    started = time.monotonic()
    try:
        receipt = ctx.email_channel.send(envelope, key=delivery.key)
    except ChannelError as error:
        # A stable Message-ID makes a repeated email recognisable as the same message,
        # so an ambiguous outcome is retried rather than left unknown.
        return outcome_of_error(ctx, delivery, error, idempotent=True)
    finally:
        metrics.observe_send("email", time.monotonic() - started)
    return store.Outcome(delivery.id, DeliveryState.SENT, provider_id=receipt.provider_id)
