"""Alerts where people look: ops are told once when something goes wrong, and once when
it cleared — by email and in their chat — instead of only in logs, `status` and `/metrics`.

State, not events: a job of `run` (`Monitor.run_once`, every `interval(POLL_SECONDS)`)
computes the *open conditions* from the ledger and from what the process itself saw, and the
ledger's `alerts` table (`ledger/alerts.py`) lets exactly one process send each message,
however many run (docs/operations.md, "Alerts"):

- a dispatch `failed`, `partial` or `missed` (`dispatch:ID`): cleared when it is `done` or
  `cancelled` (a retry in between keeps it open);
- a social delivery `unknown` (`unknown:ID`): cleared when it is sent, failed, skipped or
  cancelled;
- a credential refused: a channel's outage that says so (`credential:channel:CH:SINCE`), or a
  target whose latest post failed so (`credential:target:NAME:ID`): cleared when the outage
  ends, or a post to the target goes out;
- a channel backing off longer than `DISPATCHER_ALERT_AFTER_MINUTES` (`outage:CH:SINCE`):
  cleared when the outage ends;
- the campaign file invalid that long, as this process sees it (`campaign-file:PATH:HASH`):
  cleared when the file is valid, or another version;
- the scheduler lock lost by this process (`leader-lost:CAMPAIGN:HOST:PID:AT`): cleared
  `LEADER_EVENT_LIFE` later, once a process holds the lock.

Messages go to `DISPATCHER_ALERT_EMAILS` (through the email channel: the relay, or the outbox
without one) and `DISPATCHER_ALERT_WEBHOOK_URLS` (the webhook channel's own targets and
requests). Every text passes `Redactor` (no configured secret ever leaves), at most
`RATE_LIMIT` messages go out per `RATE_WINDOW` and process (the rest as one "… and K more"),
and a destination that fails is logged (`alert_failed`) and tried again at the next run, at
most `MAX_ATTEMPTS` times. The job runs in a thread of its own, so sending never waits for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from dispatcher.campaign.model import item_from_json
from dispatcher.channels import links, webhook
from dispatcher.channels.base import ChannelError, EmailChannel, Envelope, Post
from dispatcher.channels.outbox import Outbox
from dispatcher.channels.smtp import SmtpChannel, helo_name, parse_smtp_url
from dispatcher.clock import Clock
from dispatcher.delivery import leader
from dispatcher.ledger import alerts as ledger
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import outages
from dispatcher.ledger.tables import DeliveryState, DispatchState
from dispatcher.mail import mime
from dispatcher.mail.addresses import wire_form
from dispatcher.mail.dkim import address_domain
from dispatcher.settings import Settings

log = logging.getLogger("dispatcher")

SUBJECT_PREFIX = "[dispatcher] "
SETTING_WEBHOOKS = "DISPATCHER_ALERT_WEBHOOK_URLS"
MIN_INTERVAL_SECONDS = 30.0  #: the job runs every POLL_SECONDS, but not more often than this
#: the instant the job's runs are counted from: every process runs it at the same moments, so
#: they meet the same conditions at once — the race the ledger settles (one message each)
ALIGNED_START = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
RATE_LIMIT = 10  #: alert messages per RATE_WINDOW and process; beyond: one "… and K more"
RATE_WINDOW = 600.0  #: seconds
MAX_ATTEMPTS = 3  #: deliveries of one message to one destination, one per run of the job
#: A condition older than this when first seen is history, not news: a process started on an
#: old ledger does not page ops for last month's failures (`status` shows them).
LOOKBACK = dt.timedelta(days=3)
#: how long a lost scheduler lock stays an open condition (then it resolves once a process
#: holds the lock again)
LEADER_EVENT_LIFE = dt.timedelta(minutes=5)
#: alert mail waits this long for the relay per command (the newsletter waits RFC 5321's
#: five minutes; an alert does not, it is tried again at the next run)
SMTP_TIMEOUT = 30.0
SMTP_DATA_TIMEOUT = 60.0
TEXT_LIMIT = 1900  #: characters of a chat message (Discord takes 2000)
DETAIL_LIMIT = 300  #: characters of one quoted error or problem
PROBLEMS_SHOWN = 10  #: campaign file problems quoted in the alert

PROBLEM_STATES = (DispatchState.FAILED, DispatchState.PARTIAL, DispatchState.MISSED)
#: a dispatch in these states has cleared its alert; any other keeps it open (a retry runs)
SETTLED_DISPATCH = (DispatchState.DONE, DispatchState.CANCELLED)
SETTLED_POST = (
    DeliveryState.SENT,
    DeliveryState.FAILED,
    DeliveryState.SKIPPED,
    DeliveryState.CANCELLED,
)


class Kind(StrEnum):
    DISPATCH = "dispatch"
    UNKNOWN_POST = "unknown_post"
    CREDENTIAL = "credential"
    OUTAGE = "outage"
    CAMPAIGN_FILE = "campaign_file"
    LEADER_LOST = "leader_lost"


@dataclass(frozen=True)
class Condition:
    """Something ops should know, as one alert: its key is the ledger's dedup key."""

    key: str
    kind: Kind
    summary: str  #: one line: the subject after "[dispatcher] "
    details: tuple[str, ...] = ()  #: the body's lines: facts, the link, the command
    link: str | None = None  #: the most useful URL (the post to check, the reportage)


def interval(poll_seconds: float) -> float:
    """Seconds between runs of the job: `DISPATCHER_POLL_SECONDS`, at least 30."""
    return max(poll_seconds, MIN_INTERVAL_SECONDS)


# --- a credential refused --------------------------------------------------------------------

#: How the channels say that a credential was refused (docs/architecture.md, "Errors name the
#: cause"): `http.error_for` writes "HTTP 401" (and "the credential was refused"), the networks
#: their own reading of a refused token (Mastodon 422, Bluesky's stale session, Slack's
#: `invalid_token`, which is a 403), SMTP a failed login (535, 530). A 403 for a missing
#: permission is not a refusal: the account works, it may not do this.
_REFUSED = re.compile(
    r"\bHTTP 401\b|the credential was refused|access token was refused"
    r"|refused the session even after a fresh login|\binvalid_token\b"
    r"|SMTP login as .* failed|refused AUTH|check credentials and TLS in"
)


def credential_refused(error: str | None) -> bool:
    """Whether a channel's error says its credential was refused."""
    return error is not None and _REFUSED.search(error) is not None


# --- secrets ---------------------------------------------------------------------------------

MIN_SECRET = 6  #: shorter values are not searched for (they would blank ordinary words)


class Redactor:
    """Replaces every configured secret in a text by `***`: the last guard before a message
    leaves (the channels already keep tokens out of their errors; this holds even if one
    slipped through, e.g. into a campaign file problem or a provider's echo)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if len(s) >= MIN_SECRET}
        self._secrets = sorted(found, key=len, reverse=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        secrets: list[str] = []
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            if isinstance(value, SecretStr) and name != "smtp_url":
                secrets.append(value.get_secret_value())
        for urls in (settings.webhook_urls, settings.alert_webhook_urls):
            if urls is not None:
                secrets += _url_secrets(urls.get_secret_value())
        if settings.smtp_url is not None:
            # Its password is the secret: the relay's address is in every SMTP error.
            url = settings.smtp_url.get_secret_value()
            parts = _url_parts(url)
            secrets += [url, *parts] if parts else []
        try:
            password = make_url(settings.database_url).password
        except sa.exc.ArgumentError:
            password = None
        secrets += [str(password)] if password else []
        return cls(secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _url_secrets(text: str) -> list[str]:
    """Each comma-separated URL and the parts of it that may be a secret alone (a password,
    query values, a path or a path segment long enough to be a token) — but not what a webhook
    target's name shows (a Discord webhook id, a Teams workflow id, a Matrix room)."""
    found = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        found.append(entry)
        try:
            [target] = webhook.parse_webhook_urls(entry)
        except ValueError:  # not a webhook entry (the SMTP URL), or a malformed one
            found += _url_parts(entry)
            continue
        found.append(target.url)
        found += [part for part in _url_parts(target.url) if part not in target.recipient]
    return found


def _url_parts(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [unquote(password), password] if password else []
    found += [value for name, value in parse_qsl(parts.query) if name != "api-version"]
    found += [unquote(s) for s in parts.path.split("/") if len(s) >= 16]
    found += [parts.path] if len(parts.path.strip("/")) >= 16 else []
    return found


# --- messages and where they go --------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One alert message, the same for every destination."""

    key: str  #: unique per message; the channels' key (Matrix txnId, outbox file name)
    subject: str  #: with `SUBJECT_PREFIX`
    body: str
    link: str  #: for the chat kinds that show a link (Teams' button, generic `url`)


class Destination(Protocol):
    """Where alert messages go: one ops address, or one chat webhook."""

    name: str  #: for logs and the ledger; never a secret

    def deliver(self, message: Message, *, now: dt.datetime) -> None:
        """Deliver or raise (`ChannelError`, or anything a channel lets through)."""
        ...

    def close(self) -> None: ...


class EmailDestination:
    """A plain-text mail to one ops address, through the email channel."""

    def __init__(
        self, channel: EmailChannel, address: str, *, mail_from: str, envelope_from: str
    ) -> None:
        self.name = f"email:{address}"
        self.address = address
        self._channel = channel
        self._mail_from = mail_from
        self._envelope_from = envelope_from

    def deliver(self, message: Message, *, now: dt.datetime) -> None:
        to = mime.recipient(None, self.address)
        international = not wire_form(self.address).isascii()
        policy = mime.UTF8_POLICY if international else mime.POLICY
        # Unfolded up to RFC 5322's 998: the stdlib folds a long subject starting with "["
        # onto a line of its own, which readers then show with a leading space.
        mail = EmailMessage(policy=policy.clone(max_line_length=998))
        mail["From"] = mime.one_address(self._mail_from)
        mail["To"] = to
        mail["Subject"] = mime.one_line(message.subject)
        mail["Date"] = format_datetime(now)
        domain = address_domain(self._mail_from) or "localhost"
        mail["Message-ID"] = f"<{message.key}.{_digest(self.address)}@{domain}>"
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to an alert
        mail.set_content(message.body, subtype="plain", charset="utf-8")
        envelope = Envelope(self._envelope_from, self.address, mail.as_bytes())
        self._channel.send(envelope, key=f"{message.key}.{_digest(self.address)}")

    def close(self) -> None:
        self._channel.close()


class WebhookDestination:
    """A chat message through `channels/webhook.py` (Slack, Teams, Matrix, Discord,
    generic): its request building, secrets handling and error reading, not a second client."""

    def __init__(self, target: webhook.WebhookTarget) -> None:
        self.name = target.recipient
        self._channel = webhook.WebhookChannel(target)

    def deliver(self, message: Message, *, now: dt.datetime) -> None:
        text = f"{message.subject}\n\n{message.body}"
        if len(text) > TEXT_LIMIT:
            text = text[: TEXT_LIMIT - 1] + "…"
        post = Post(
            network="webhook",
            text=text,
            link=message.link,
            title=message.subject,
            description=message.body[:DETAIL_LIMIT],
            hashtags=(),
            image_url=None,
            image_alt=None,
            created_at=now,
        )
        self._channel.send(post, key=message.key)

    def close(self) -> None:
        """The HTTP session stays: connections are kept alive between runs."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _alert_email_channel(settings: Settings) -> EmailChannel:
    """The relay of `DISPATCHER_SMTP_URL` with short timeouts (an alert is tried again at the
    next run rather than holding the job for RFC 5321's minutes), or the outbox."""
    if settings.smtp_url is None:
        return Outbox(settings.outbox_dir)
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    target = dataclasses.replace(
        target,
        timeout=min(target.timeout, SMTP_TIMEOUT),
        data_timeout=min(target.data_timeout, SMTP_DATA_TIMEOUT),
    )
    helo = helo_name(settings.smtp_helo, address_domain(settings.mail_from))
    return SmtpChannel(target, helo=helo)


def destinations_for(settings: Settings) -> list[Destination]:
    """Every configured destination. Raises `ValueError` naming the setting (never a URL)."""
    found: list[Destination] = []
    if settings.alert_addresses:
        channel = _alert_email_channel(settings)
        envelope_from = settings.return_path or parseaddr(settings.mail_from)[1]
        found += [
            EmailDestination(
                channel, address, mail_from=settings.mail_from, envelope_from=envelope_from
            )
            for address in settings.alert_addresses
        ]
    if settings.alert_webhook_urls is not None:
        try:
            targets = webhook.parse_webhook_urls(settings.alert_webhook_urls.get_secret_value())
        except ValueError as error:
            raise ValueError(str(error).replace(webhook.CREDENTIAL, SETTING_WEBHOOKS)) from None
        found += [WebhookDestination(target) for target in targets]
    return found


# --- the rate limit --------------------------------------------------------------------------


class RateLimit:
    """At most `limit` messages in any `window` seconds (a sliding window, per process)."""

    def __init__(
        self, limit: int, window: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window = limit, window
        self._monotonic = monotonic
        self._sent: deque[float] = deque()

    def available(self) -> int:
        now = self._monotonic()
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        return max(self.limit - len(self._sent), 0)

    def spend(self, count: int = 1) -> None:
        now = self._monotonic()
        self._sent.extend([now] * count)


# --- the monitor -----------------------------------------------------------------------------


@dataclass
class _Outgoing:
    """One message on its way: the alerts it tells of and the destinations it has not
    reached yet."""

    message: Message
    parts: tuple[tuple[int, ledger.Phase], ...]  #: (alert id, phase) it reports
    unsent: list[Destination]
    attempts: int = 0


@dataclass
class _LeaderEvent:
    at: dt.datetime
    condition: Condition


@dataclass
class _FileState:
    """The campaign file as this process sees it: invalid since when, and which version."""

    since: dt.datetime | None = None
    key: str | None = None


class Monitor:
    """The alert job of one `run` process: built once (the destinations are opened once),
    then `run_once` per interval. Thread-safe: one run at a time."""

    def __init__(
        self,
        engine: sa.Engine,
        destinations: Sequence[Destination],
        *,
        clock: Clock,
        redact: Callable[[str], str],
        after: dt.timedelta,
        public_url: str,
        campaign_id: str,
        campaign_file: Path,
        problems: Callable[[], list[str]] = list,
        is_leader: Callable[[], bool] = lambda: False,
        process: str | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.engine = engine
        self.destinations = list(destinations)
        self.clock = clock
        self.redact = redact
        self.after = after
        self.public_url = public_url
        self.campaign_id = campaign_id
        self.campaign_file = str(campaign_file)
        self.problems = problems
        self.is_leader = is_leader
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self.rate = rate_limit or RateLimit(RATE_LIMIT, RATE_WINDOW)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._outgoing: list[_Outgoing] = []  #: retries of messages some destination lacks
        self._held: list[tuple[tuple[int, ledger.Phase], Message]] = []  #: over the limit
        self._leader_events: dict[str, _LeaderEvent] = {}  #: written by the leader job
        self._events_lock = threading.Lock()
        self._file = _FileState()

    # --- what the service tells it ----------------------------------------------------------

    def leader_lost(self, at: dt.datetime | None = None) -> None:
        """This process lost the scheduler lock (`service.check_leader`): an event, recorded
        as a condition that lives `LEADER_EVENT_LIFE`."""
        at = at or self.clock()
        key = f"leader-lost:{self.campaign_id}:{self.process}:{at.isoformat()}"
        condition = Condition(
            key,
            Kind.LEADER_LOST,
            f"scheduler lock lost: {self.process}",
            (
                f"at {_when(at)} this process lost the scheduler lock of campaign "
                f"{self.campaign_id} (its database session broke): it sends on, but no longer "
                "creates dispatches.",
                "Another `dispatcher run` takes the lock within seconds, if one runs; "
                "otherwise this one takes it again once the database answers.",
                "check: the database's availability and the logs (event leader_lost)",
            ),
        )
        with self._events_lock:
            self._leader_events[key] = _LeaderEvent(at, condition)

    def start_run(self) -> bool:
        """The scheduler's job: one run in a thread of its own, so that neither the
        scheduler's other jobs nor the process's exit ever wait for a relay or a webhook;
        False when the previous run is still going."""
        if self.stop.is_set() or not self._lock.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                self._run()
            finally:
                self._lock.release()

        threading.Thread(target=run, name="alerts", daemon=True).start()
        return True

    def run_once(self) -> None:
        """One look at the conditions, then the messages it calls for, in the caller's thread
        (the service uses `start_run`)."""
        with self._lock:
            self._run()

    def close(self) -> None:
        self.stop.set()
        for destination in self.destinations:
            destination.close()

    # --- one run ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            now = self.clock()
            claimed = self._claim(now)
            self._send(claimed, now)
        except Exception:
            log.exception(
                "alert check failed; trying again at the next run", extra={"event": "alert_error"}
            )
        finally:
            for destination in self.destinations:
                try:
                    destination.close()
                except Exception:  # closing an already broken connection
                    log.debug("closing %s failed", destination.name, exc_info=True)

    def _claim(self, now: dt.datetime) -> list[tuple[tuple[int, ledger.Phase], Message]]:
        """Open the new conditions and resolve the cleared ones in the ledger; the messages
        of those this process won."""
        with ledger_engine.reader(self.engine).connect() as connection:
            open_rows = ledger.open_alerts(connection)
            candidates, cleared = self.observe(connection, open_rows, now)
            known = ledger.known_keys(connection, [c.key for c in candidates])
        messages: list[tuple[tuple[int, ledger.Phase], Message]] = []
        for condition in candidates:
            if condition.key in known:
                continue
            with self.engine.begin() as connection:
                row = ledger.open_alert(
                    connection,
                    key=condition.key,
                    kind=condition.kind,
                    summary=self.redact(condition.summary),
                    now=now,
                )
            if row is None:  # another process inserted it since we looked: it sends
                log.info(
                    "alert %r is sent by another process",
                    condition.key,
                    extra={"event": "alert_taken"},
                )
                continue
            messages.append(((row.id, "opened"), self._opened(row, condition)))
        for key, note in cleared.items():
            with self.engine.begin() as connection:
                row = ledger.resolve_alert(connection, key, now=now)
            if row is not None:
                messages.append(((row.id, "resolved"), self._resolved(row, note, now)))
            with self._events_lock:
                self._leader_events.pop(key, None)
        return messages

    # --- the conditions ---------------------------------------------------------------------

    def observe(
        self, connection: sa.Connection, open_rows: Sequence[ledger.AlertRow], now: dt.datetime
    ) -> tuple[list[Condition], dict[str, str]]:
        """The conditions that hold now and may be alerted (recent enough), and the open
        alerts that cleared, each with a note on how."""
        since = now - LOOKBACK
        candidates: list[Condition] = []
        cleared: dict[str, str] = {}
        open_keys = {row.key for row in open_rows}

        alerted = {int(key.split(":")[1]) for key in ledger.keys_starting(connection, "dispatch:")}
        for dispatch in ledger.problem_dispatches(
            connection, states=PROBLEM_STATES, finished_since=since, besides=alerted
        ):
            if _covered_by_posts(dispatch):
                continue
            candidates.append(self._dispatch_condition(dispatch))
        unknown = ledger.unknown_posts(connection, since=since)
        candidates += [self._unknown_condition(post) for post in unknown]
        down = outages.outages(connection)
        for _channel, outage in sorted(down.items()):
            if credential_refused(outage.error):
                candidates.append(self._credential_outage(outage))
            elif outage.since <= now - self.after:
                candidates.append(self._outage_condition(outage))
        latest = ledger.latest_post_outcomes(connection)
        alerted_targets = {_target_of(key) for key in open_keys if key.startswith(_TARGET)}
        for target, post in sorted(latest.items()):
            refused = post.state == DeliveryState.FAILED and credential_refused(post.error)
            if refused and post.updated_at >= since and target not in alerted_targets:
                candidates.append(self._credential_target(post))
        candidates += self._file_conditions(now)
        with self._events_lock:
            events = dict(self._leader_events)
        candidates += [event.condition for event in events.values()]

        dispatch_ids = [int(r.key.split(":")[1]) for r in open_rows if r.kind == Kind.DISPATCH]
        dispatch_states = ledger.dispatch_states(connection, dispatch_ids)
        post_ids = [int(r.key.split(":")[1]) for r in open_rows if r.kind == Kind.UNKNOWN_POST]
        post_states = ledger.delivery_states(connection, post_ids)
        for row in open_rows:
            note = self._cleared(
                row, now, connection, dispatch_states, post_states, down, latest, events
            )
            if note is not None:
                cleared[row.key] = note
        return candidates, cleared

    def _cleared(
        self,
        row: ledger.AlertRow,
        now: dt.datetime,
        connection: sa.Connection,
        dispatch_states: dict[int, str],
        post_states: dict[int, str],
        down: dict[str, outages.Outage],
        latest: dict[str, ledger.PostRow],
        events: dict[str, _LeaderEvent],
    ) -> str | None:
        """How the alert's condition cleared, or None while it holds (or is not this
        process's to judge: another process's campaign file or scheduler lock)."""
        parts = row.key.split(":")
        if row.kind == Kind.DISPATCH:
            state = dispatch_states.get(int(parts[1]))
            if state is None:
                return f"dispatch {parts[1]} is no longer in the ledger"
            return f"dispatch {parts[1]} is {state} now" if state in SETTLED_DISPATCH else None
        if row.kind == Kind.UNKNOWN_POST:
            state = post_states.get(int(parts[1]))
            if state is None:
                return "the delivery is no longer in the ledger"
            return f"the post is {state} now" if state in SETTLED_POST else None
        if row.kind == Kind.OUTAGE or row.key.startswith(_CHANNEL):
            channel, since = _outage_of(row.key)
            outage = down.get(channel)
            if outage is None or outage.since.isoformat() != since:
                return f"channel {channel} works again"
            if row.kind == Kind.CREDENTIAL and not credential_refused(outage.error):
                return f"channel {channel} no longer refuses the credential"
            return None
        if row.kind == Kind.CREDENTIAL:
            post = latest.get(_target_of(row.key))
            if post is None:
                return "the target has no post in the ledger any more"
            if post.state == DeliveryState.SENT:
                return f"a post went out to {post.recipient} ({post.day} {post.item_id})"
            if not credential_refused(post.error):
                return f"the latest post to {post.recipient} failed for another reason"
            return None
        if row.kind == Kind.CAMPAIGN_FILE:
            if not row.key.startswith(f"campaign-file:{self.campaign_file}:"):
                return None
            if self._file.key == row.key:
                return None
            if self._file.key is None:
                return f"{self.campaign_file} is valid again: the file as it is now is in force"
            return f"{self.campaign_file} changed; the new version is invalid too (next alert)"
        if row.kind == Kind.LEADER_LOST:
            if not row.key.startswith(f"leader-lost:{self.campaign_id}:{self.process}:"):
                return None
            event = events.get(row.key)
            if event is None:
                return "the event is over (this process started again since)"
            if now - event.at < LEADER_EVENT_LIFE:
                return None
            if self.is_leader():
                return "this process holds the scheduler lock again"
            # pg_locks shows the locks as they are now, not as of the transaction's snapshot.
            if ledger.advisory_lock_held(connection, leader.lock_key(self.campaign_id)):
                return "another process holds the scheduler lock"
            return None
        return None

    # --- conditions, one by one -------------------------------------------------------------

    def _dispatch_condition(self, dispatch: ledger.ProblemDispatch) -> Condition:
        what = f"{dispatch.day} {dispatch.channel} {dispatch.item_id}"
        counts = ", ".join(f"{n} {state}" for state, n in sorted(dispatch.counts.items()))
        details = [f"dispatch {dispatch.id} ({dispatch.campaign_id}): {what}: {dispatch.state}"]
        details += [f"deliveries: {counts}"] if counts else []
        if dispatch.state == DispatchState.MISSED:
            details.append(
                "missed: its send time and catch-up window passed before it could go out; "
                "a missed day is not sent later (docs/delivery.md)"
            )
        details += [f"error: {_short(error)}" for error in dispatch.errors]
        details += [f"error: {_short(dispatch.error)}"] if dispatch.error else []
        details.append("check: dispatcher status")
        if dispatch.state != DispatchState.MISSED:
            details.append(f"after fixing the cause: dispatcher retry --dispatch {dispatch.id}")
        link = _item_url(dispatch.content)
        details += [f"reportage: {link}"] if link else []
        return Condition(
            f"dispatch:{dispatch.id}",
            Kind.DISPATCH,
            f"dispatch {dispatch.id} {dispatch.state}: {what}",
            tuple(details),
            link,
        )

    def _unknown_condition(self, post: ledger.PostRow) -> Condition:
        found = post.provider_url or links.post_url(
            post.channel, post.provider_id, recipient=post.recipient
        )
        look = found or where_to_look(post.recipient)
        reportage = _item_url(post.content)
        details = [
            f"dispatch {post.dispatch_id} ({post.campaign_id}): {post.day} {post.channel} "
            f"{post.item_id}, target {post.recipient}: unknown after {post.attempts} attempt(s)",
            "The network's answer was lost after the post went out: it may or may not be "
            "there, and a retry could post it twice.",
            f"check: {look}" if look else f"check: the feed of {post.recipient}",
        ]
        details += [f"reportage (the post links to it): {reportage}"] if reportage else []
        details += [f"error: {_short(post.error)}"] if post.error else []
        details += [
            f"not there: dispatcher retry --force --dispatch {post.dispatch_id}",
            "there: nothing to do (the ledger keeps it unknown; this alert stays open)",
        ]
        return Condition(
            f"unknown:{post.id}",
            Kind.UNKNOWN_POST,
            f"post unknown: {post.recipient}, {post.day} {post.item_id}",
            tuple(details),
            found or reportage,
        )

    def _credential_outage(self, outage: outages.Outage) -> Condition:
        return Condition(
            f"{_CHANNEL}{outage.channel}:{outage.since.isoformat()}",
            Kind.CREDENTIAL,
            f"credential refused: channel {outage.channel}",
            (
                f"since {_when(outage.since)} channel {outage.channel} refuses our credential "
                f"({outage.failures} tries); its deliveries wait in the queue, no attempt used.",
                f"error: {_short(outage.error)}",
                f"next try: {_when(outage.retry_at)}; after renewing the setting named above "
                "the next try sends them",
            ),
        )

    def _credential_target(self, post: ledger.PostRow) -> Condition:
        return Condition(
            f"{_TARGET}{post.recipient}:{post.id}",
            Kind.CREDENTIAL,
            f"credential refused: {post.recipient}",
            (
                f"dispatch {post.dispatch_id} ({post.campaign_id}): {post.day} {post.channel} "
                f"{post.item_id} to {post.recipient} failed: the credential was refused.",
                f"error: {_short(post.error)}",
                "after renewing the setting named above: "
                f"dispatcher retry --dispatch {post.dispatch_id}",
            ),
        )

    def _outage_condition(self, outage: outages.Outage) -> Condition:
        return Condition(
            f"outage:{outage.channel}:{outage.since.isoformat()}",
            Kind.OUTAGE,
            f"channel {outage.channel} unavailable since {_when(outage.since)}",
            (
                f"channel {outage.channel} has refused every try since {_when(outage.since)} "
                f"({outage.failures} tries); its deliveries wait in the queue, no attempt used.",
                f"error: {_short(outage.error)}",
                f"next try: {_when(outage.retry_at)} (backing off, at most every 10 min)",
                "check: dispatcher status",
            ),
        )

    def _file_conditions(self, now: dt.datetime) -> list[Condition]:
        """The campaign file's problems as this process sees them (`campaign.source`: an
        invalid file keeps the last good version in force), once invalid for `after`."""
        problems = self.problems()
        state = self._file
        if not problems:
            self._file = _FileState()
            return []
        if state.since is None:
            state.since = now
        # The version is named by its problems (`file:line:col` each): every process derives
        # the same name from the same bytes, without reading the file a second time.
        version = _digest("\n".join(problems))
        state.key = f"campaign-file:{self.campaign_file}:{version}"
        if now - state.since < self.after:
            return []
        shown = [f"  {_short(p)}" for p in problems[:PROBLEMS_SHOWN]]
        if len(problems) > PROBLEMS_SHOWN:
            shown.append(f"  … and {len(problems) - PROBLEMS_SHOWN} more")
        return [
            Condition(
                state.key,
                Kind.CAMPAIGN_FILE,
                f"campaign file invalid: {self.campaign_file}",
                (
                    f"since {_when(state.since)} the file has problems; the last good version "
                    "stays in force (sending goes on with it, edits do not).",
                    "problems:",
                    *shown,
                    "check: dispatcher validate",
                ),
            )
        ]

    # --- the messages -----------------------------------------------------------------------

    def _opened(self, row: ledger.AlertRow, condition: Condition) -> Message:
        lines = [
            *condition.details,
            "",
            f"opened: {_when(row.opened_at)}",
            f"alert: {row.key} (from {self.process})",
        ]
        return Message(
            key=f"dispatcher-alert-{row.id}-{int(row.opened_at.timestamp())}-opened",
            subject=self.redact(SUBJECT_PREFIX + condition.summary),
            body=self.redact("\n".join(lines)),
            link=self.redact(condition.link or self.public_url),
        )

    def _resolved(self, row: ledger.AlertRow, note: str, now: dt.datetime) -> Message:
        lasted = _duration(now - row.opened_at)
        lines = [
            f"resolved: {note}",
            "",
            row.summary,
            f"opened: {_when(row.opened_at)}, resolved: {_when(now)} (after {lasted})",
            f"alert: {row.key} (from {self.process})",
        ]
        return Message(
            key=f"dispatcher-alert-{row.id}-{int(row.opened_at.timestamp())}-resolved",
            subject=self.redact(f"{SUBJECT_PREFIX}resolved: {row.summary}"),
            body=self.redact("\n".join(lines)),
            link=self.public_url,
        )

    def _digest(self, held: Sequence[tuple[tuple[int, ledger.Phase], Message]]) -> Message:
        subjects = [message.subject.removeprefix(SUBJECT_PREFIX) for _, message in held]
        lines = [
            f"… and {len(held)} more alerts: more than {self.rate.limit} in "
            f"{RATE_WINDOW / 60:g} minutes, so they come as one message.",
            "",
            *subjects,
            "",
            "check: dispatcher status",
        ]
        parts = ",".join(f"{alert_id}-{phase}" for (alert_id, phase), _ in held)
        return Message(
            key=f"dispatcher-alert-digest-{_digest(parts)}",
            subject=f"{SUBJECT_PREFIX}… and {len(held)} more",
            body=self.redact("\n".join(lines)),
            link=self.public_url,
        )

    # --- sending ----------------------------------------------------------------------------

    def _send(
        self, claimed: list[tuple[tuple[int, ledger.Phase], Message]], now: dt.datetime
    ) -> None:
        """The new messages within the rate limit (the rest as one digest, or held for the
        next run when none is left), then every message some destination still lacks."""
        resolved = self._resolved_since([part for part, _ in [*self._held, *claimed]])
        waiting = [(part, m) for part, m in [*self._held, *claimed] if part[0] not in resolved]
        self._held = []
        budget = self.rate.available()
        if waiting and budget == 0:
            self._held = waiting
        elif waiting:
            single = waiting if len(waiting) <= budget else waiting[: budget - 1]
            new = [_Outgoing(m, (part,), list(self.destinations)) for part, m in single]
            rest = waiting[len(single) :]
            if rest:
                parts = tuple(part for part, _ in rest)
                new.append(_Outgoing(self._digest(rest), parts, list(self.destinations)))
            self.rate.spend(len(new))
            self._outgoing += new
        resolved = self._resolved_since([p for o in self._outgoing for p in o.parts])
        self._outgoing = [
            o for o in self._outgoing if not (len(o.parts) == 1 and o.parts[0][0] in resolved)
        ]
        for outgoing in list(self._outgoing):
            if self.stop.is_set():
                return
            self._attempt(outgoing, now)
            if not outgoing.unsent or outgoing.attempts >= MAX_ATTEMPTS:
                self._outgoing.remove(outgoing)

    def _resolved_since(self, parts: Iterable[tuple[int, ledger.Phase]]) -> set[int]:
        """The alerts among `parts` whose alert message is not sent yet but which resolved
        meanwhile: their "resolved" message tells the whole story, the alert is dropped."""
        ids = {alert_id for alert_id, phase in parts if phase == "opened"}
        if not ids:
            return set()
        with ledger_engine.reader(self.engine).connect() as connection:
            rows = ledger.alerts_by_id(connection, ids)
        return {i for i in ids if rows.get(i) is None or rows[i].resolved_at is not None}

    def _attempt(self, outgoing: _Outgoing, now: dt.datetime) -> None:
        outgoing.attempts += 1
        failures: list[str] = []
        for destination in list(outgoing.unsent):
            try:
                destination.deliver(outgoing.message, now=now)
            except Exception as error:  # a destination's fault must not stop the others
                reason = self.redact(
                    error.message if isinstance(error, ChannelError) else repr(error)
                )
                failures.append(f"{destination.name}: {reason}")
                final = outgoing.attempts >= MAX_ATTEMPTS
                log.error(
                    "alert %r not delivered to %s (attempt %d of %d%s): %s",
                    outgoing.message.subject,
                    destination.name,
                    outgoing.attempts,
                    MAX_ATTEMPTS,
                    ", given up" if final else ", trying again at the next run",
                    reason,
                    extra={"event": "alert_failed", "error": reason},
                )
                continue
            outgoing.unsent.remove(destination)
            log.info(
                "alert %r sent to %s",
                outgoing.message.subject,
                destination.name,
                extra={"event": "alert_sent"},
            )
        failed = "; ".join(failures) or None
        with self.engine.begin() as connection:
            for alert_id, phase in outgoing.parts:
                ledger.record_attempt(connection, alert_id, phase, now=now, error=failed)


_CHANNEL = "credential:channel:"
_TARGET = "credential:target:"


def _outage_of(key: str) -> tuple[str, str]:
    """(channel, since) of an `outage:` or `credential:channel:` key (since holds colons)."""
    rest = key.removeprefix(_CHANNEL) if key.startswith(_CHANNEL) else key.split(":", 1)[1]
    channel, since = rest.split(":", 1)
    return channel, since


def _target_of(key: str) -> str:
    """The target's name of a `credential:target:NAME:DELIVERY` key (the name holds colons)."""
    return key.removeprefix(_TARGET).rsplit(":", 1)[0]


def _covered_by_posts(dispatch: ledger.ProblemDispatch) -> bool:
    """A social dispatch `partial` only for posts whose outcome is unknown: each of those has
    its own alert with what to check, the dispatch's would say the same again."""
    return (
        dispatch.channel != "email"
        and dispatch.state == DispatchState.PARTIAL
        and not dispatch.counts.get(DeliveryState.FAILED)
    )


def where_to_look(recipient: str) -> str | None:
    """Where ops can see a target's posts, from its name alone (docs/architecture.md,
    "Social targets"), or None where the name gives no address (Slack, Teams, Discord)."""
    kind, _, rest = recipient.partition(":")
    if kind == "mastodon" and rest and rest != "outbox":
        return f"https://{rest}/home"
    if kind == "bluesky" and rest and rest != "outbox":
        return f"https://bsky.app/profile/{rest}"
    if kind == "linkedin" and (page := re.fullmatch(r"urn:li:organization:(\d+)", rest)):
        return f"https://www.linkedin.com/company/{page[1]}/admin/page-posts/published/"
    if kind == "linkedin" and rest.startswith("urn:li:person:"):
        return "https://www.linkedin.com/in/me/recent-activity/all/"
    if recipient.startswith("webhook:matrix:") and "/" in recipient:
        room = recipient.split("/", 1)[1]
        return f"https://matrix.to/#/{room}"
    return None


def _item_url(content: str) -> str | None:
    try:
        return item_from_json(content).url or None
    except (ValueError, KeyError, TypeError):
        return None


def _short(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= DETAIL_LIMIT else line[: DETAIL_LIMIT - 1] + "…"


def _when(at: dt.datetime) -> str:
    return f"{at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _duration(span: dt.timedelta) -> str:
    minutes = max(int(span.total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def monitor_for(
    settings: Settings,
    engine: sa.Engine,
    *,
    clock: Clock,
    campaign_id: str,
    problems: Callable[[], list[str]] = list,
    is_leader: Callable[[], bool] = lambda: False,
) -> Monitor | None:
    """The alert job of a `run` process, or None when no destination is configured.
    Raises `ValueError` naming the setting when one is malformed."""
    destinations = destinations_for(settings)
    if not destinations:
        return None
    return Monitor(
        engine,
        destinations,
        clock=clock,
        redact=Redactor.from_settings(settings),
        after=dt.timedelta(minutes=settings.alert_after_minutes),
        public_url=settings.public_url,
        campaign_id=campaign_id,
        campaign_file=settings.campaign_file,
        problems=problems,
        is_leader=is_leader,
    )
