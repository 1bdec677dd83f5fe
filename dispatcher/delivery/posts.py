"""A social post as a kind of dispatch: one delivery per target (Mastodon account, Bluesky
repo, LinkedIn author, chat webhook), the post rendered once, each target opened once.
"""

from __future__ import annotations

import datetime as dt
import time

from dispatcher.campaign.model import Channel, Item, item_from_json
from dispatcher.channels import links
from dispatcher.channels.base import ChannelError, Post, SocialChannel
from dispatcher.clock import utc_now
from dispatcher.content import rendering
from dispatcher.delivery import metrics
from dispatcher.delivery.sending import ChannelDown, Context, outcome_of_error
from dispatcher.ledger import store
from dispatcher.ledger.tables import DeliveryState


class PostDispatch:
    """`DispatchSender` for the social channels: one post per target, one at a time."""

    workers = 1

    def __init__(self, ctx: Context, dispatch: store.DispatchRow) -> None:
        self.ctx, self.dispatch = ctx, dispatch
        self.post = render_post(ctx, dispatch)
        self.opened: dict[str, SocialChannel] = {
            # The real clock, not the dispatch's: a channel only reads provider waits with it,
            # which are wall-clock time even in an `--at` rehearsal (docs/architecture.md).
            target.recipient: target.open(utc_now)
            for target in ctx.social_targets(dispatch.channel)
        }
        expire_unsafe_claims(ctx, dispatch, self.opened)

    def fan_out_step(self) -> bool:
        fan_out_targets(self.ctx, self.dispatch)
        return False

    def send(self, delivery: store.ClaimedDelivery) -> store.Outcome | ChannelDown:
        return send_post(self.ctx, self.post, self.opened, delivery)

    def close(self) -> None:
        for channel in self.opened.values():
            channel.close()


def fan_out_targets(ctx: Context, dispatch: store.DispatchRow) -> None:
    """One row per target, its retry-safe key stored before any request is made."""
    if dispatch.fanout_done:
        return
    rows = [
        (
            target.recipient,
            target.key(
                campaign_id=dispatch.campaign_id,
                day=dispatch.day,
                send_at=dispatch.send_at,
                recipient=target.recipient,
            ),
        )
        for target in ctx.social_targets(dispatch.channel)
    ]
    with ctx.engine.begin() as connection:
        store.fan_out_targets(connection, dispatch, rows, now=ctx.clock())


def render_post(ctx: Context, dispatch: store.DispatchRow) -> Post:
    """The post exactly as `preview` shows it, with the dispatch's fixed creation time."""
    item = item_from_json(dispatch.content)
    rendered = rendering.render_post(
        ctx.env, Channel(dispatch.channel), ctx.campaign, item, day=dispatch.day
    )
    return post_of(rendered, item, created_at=dispatch.send_at)


def post_of(rendered: rendering.RenderedPost, item: Item, *, created_at: dt.datetime) -> Post:
    """What a social channel is given for `item`: the fitted text plus the card's parts
    (title, unshortened teaser, image and alt text). The desk's post cards show this."""
    return Post(
        network=rendered.channel,
        text=rendered.text,
        link=item.url,
        title=item.title,
        description=item.teaser,
        hashtags=rendered.hashtags,
        image_url=item.image,
        image_alt=item.image_alt,
        created_at=created_at,
    )


def send_post(
    ctx: Context, post: Post, opened: dict[str, SocialChannel], delivery: store.ClaimedDelivery
) -> store.Outcome | ChannelDown:
    channel = opened.get(delivery.recipient)
    if channel is None:
        return store.Outcome(
            delivery.id,
            DeliveryState.FAILED,
            error=f"target {delivery.recipient} is not configured (any more); if it was "
            f"replaced, `dispatcher retry --target NEW --from {delivery.recipient}` moves "
            "this post to the new one",
        )
    started = time.monotonic()
    try:
        receipt = channel.send(post, key=delivery.key)
    except ChannelError as error:
        return outcome_of_error(ctx, delivery, error, idempotent=channel.idempotent)
    finally:
        metrics.observe_send(post.network, time.monotonic() - started)
    url = links.post_url(post.network, receipt.provider_id, receipt.details, delivery.recipient)
    return store.Outcome(
        delivery.id, DeliveryState.SENT, provider_id=receipt.provider_id, provider_url=url
    )


def expire_unsafe_claims(
    ctx: Context, dispatch: store.DispatchRow, opened: dict[str, SocialChannel]
) -> None:
    """A claim whose worker died mid-post on a channel without idempotency may have
    posted: it becomes `unknown` instead of being posted again (`retry --force` is
    the operator's explicit choice)."""
    unsafe = [name for name, channel in opened.items() if not channel.idempotent]
    if unsafe:
        with ctx.engine.begin() as connection:
            store.expire_to_unknown(connection, dispatch.id, recipients=unsafe, now=ctx.clock())
