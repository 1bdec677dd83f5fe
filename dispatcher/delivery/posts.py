"""A social post as a kind of dispatch: one delivery per target (Mastodon account, Bluesky
repo, LinkedIn author, chat webhook) and language, each language's post rendered once, each
target opened once.

A network posts in the languages `send: {mastodon: {lang: [de, en]}}` gives it (default: the
campaign's); two languages on one account are two posts, two deliveries with their own keys.
The first language's delivery has the target's own name, a further one `<target>#<lang>`
(`ledger/targets.recipient_name`), so one-language campaigns keep their names and keys. A
language the day's item has no version in gets a `skipped` row saying why (`post_editions`):
under fallback `skip`, and under `default` when the default text is already one of this
network's posts that day — the same text twice on one account would be a duplicate.
"""

from __future__ import annotations

import datetime as dt
import time

import jinja2

from dispatcher.campaign.model import Campaign, Channel, Item, item_from_json
from dispatcher.channels import links
from dispatcher.channels.base import ChannelError, Post, SocialChannel
from dispatcher.clock import utc_now
from dispatcher.content import rendering
from dispatcher.delivery import metrics
from dispatcher.delivery.sending import ChannelDown, Context, outcome_of_error
from dispatcher.ledger import store
from dispatcher.ledger import targets as ledger_targets
from dispatcher.ledger.tables import DeliveryState


class PostDispatch:
    """`DispatchSender` for the social channels: one post per target and language, one at a
    time."""

    workers = 1

    def __init__(self, ctx: Context, dispatch: store.DispatchRow) -> None:
        self.ctx, self.dispatch = ctx, dispatch
        #: each language's post, rendered when its first delivery comes (a language the
        #: campaign no longer lists still has its rows, written in it at fan-out)
        self.posts: dict[str | None, Post | str] = {}
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

    def post(self, lang: str | None) -> Post | str:
        """The post in `lang`, or why there is none (a `ValueError` of the rendering)."""
        if lang not in self.posts:
            try:
                self.posts[lang] = render_post(self.ctx, self.dispatch, lang)
            except ValueError as error:
                self.posts[lang] = str(error)
        return self.posts[lang]

    def send(self, delivery: store.ClaimedDelivery) -> store.Outcome | ChannelDown:
        post = self.post(delivery.lang)
        if isinstance(post, str):
            return store.Outcome(delivery.id, DeliveryState.FAILED, error=post)
        return send_post(self.ctx, post, self.opened, delivery)

    def close(self) -> None:
        for channel in self.opened.values():
            channel.close()


def fan_out_targets(ctx: Context, dispatch: store.DispatchRow) -> None:
    """One row per target and language, its retry-safe key stored before any request is
    made; the first language's row under the target's name and key as they always were."""
    if dispatch.fanout_done:
        return
    editions = ctx.campaign.post_editions(
        Channel(dispatch.channel), item_from_json(dispatch.content)
    )
    rows = []
    for target in ctx.social_targets(dispatch.channel):
        for index, edition in enumerate(editions):
            recipient = ledger_targets.recipient_name(
                target.recipient, None if index == 0 else edition.lang
            )
            key = target.key(
                campaign_id=dispatch.campaign_id,
                day=dispatch.day,
                # Bluesky's record key is a TID of this instant (plus a clock id from the
                # recipient, which two languages may share by chance): one microsecond apart
                # per language keeps their keys apart. The other networks' keys come from
                # the recipient alone, which differs already.
                send_at=dispatch.send_at + dt.timedelta(microseconds=index),
                recipient=recipient,
            )
            rows.append(store.TargetDelivery(recipient, key, edition.lang, edition.skipped))
    with ctx.engine.begin() as connection:
        store.fan_out_targets(connection, dispatch, rows, now=ctx.clock())


def render_post(ctx: Context, dispatch: store.DispatchRow, lang: str | None = None) -> Post:
    """The dispatch's post in `lang` (default: the campaign's) exactly as `preview` shows it,
    with the dispatch's fixed creation time. `ValueError` when the item has no `lang` version
    and the fallback is skip."""
    return edition_post(
        ctx.env,
        ctx.campaign,
        dispatch.channel,
        item_from_json(dispatch.content),
        day=dispatch.day,
        lang=lang,
        created_at=dispatch.send_at,
    )[1]


def edition_post(
    env: jinja2.Environment,
    campaign: Campaign,
    channel: Channel | str,
    item: Item,
    *,
    day: dt.date,
    lang: str | None,
    created_at: dt.datetime,
) -> tuple[rendering.RenderedPost, Post]:
    """`item` (as stored) rendered for `channel` in `lang`, and the `Post` a channel is given
    for it, declared in the language its text is written in (the default one's under fallback
    `default`). `ValueError` as `rendering.render_post`."""
    rendered = rendering.render_post(env, Channel(channel), campaign, item, day=day, lang=lang)
    edition = campaign.edition(item, rendered.lang)
    assert edition is not None  # `rendered.lang` is a language the item is shown in
    return rendered, post_of(rendered, edition, created_at=created_at)


def post_of(rendered: rendering.RenderedPost, item: Item, *, created_at: dt.datetime) -> Post:
    """What a social channel is given for `item` (the edition `rendered` shows: the stored
    item in `rendered.lang`): the fitted text plus the card's parts (title, unshortened
    teaser, image and alt text), declared in the text's language. The desk's post cards show
    this."""
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
        lang=rendered.lang,
    )


def send_post(
    ctx: Context, post: Post, opened: dict[str, SocialChannel], delivery: store.ClaimedDelivery
) -> store.Outcome | ChannelDown:
    target = ledger_targets.target_of(delivery.recipient)
    channel = opened.get(target)
    if channel is None:
        return store.Outcome(
            delivery.id,
            DeliveryState.FAILED,
            error=f"target {target} is not configured (any more); if it was "
            f"replaced, `dispatcher retry --target NEW --from {target}` moves "
            "this post to the new one",
        )
    started = time.monotonic()
    try:
        receipt = channel.send(post, key=delivery.key)
    except ChannelError as error:
        return outcome_of_error(ctx, delivery, error, idempotent=channel.idempotent)
    finally:
        metrics.observe_send(post.network, time.monotonic() - started)
    url = links.post_url(post.network, receipt.provider_id, receipt.details, target)
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
        # Every language's delivery of such a target: further ones are `<target>#<lang>`.
        names = [
            ledger_targets.recipient_name(name, lang)
            for name in unsafe
            for lang in (None, *ctx.campaign.locales)
        ]
        with ctx.engine.begin() as connection:
            store.expire_to_unknown(connection, dispatch.id, recipients=names, now=ctx.clock())
