"""What ops are told of: the open conditions, derived from the ledger and from what this
process itself saw, each worded as one alert (`Condition`), and how each one clears.

Its own module because *what* is wrong and *how to say it* changes for other reasons than
*how and when* messages go out (`alerts.py`, the job) and *where* they go
(`alert_destinations.py`): a new condition or a better hint touches only this file. Every
process derives the same keys from the same ledger, which is what lets the ledger's `alerts`
table (`ledger/alerts.py`) settle who sends (docs/operations.md, "Alerts"):

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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from dispatcher.campaign.model import item_from_json
from dispatcher.channels import links
from dispatcher.delivery import leader
from dispatcher.ledger import alerts as ledger
from dispatcher.ledger import outages
from dispatcher.ledger import targets as ledger_targets
from dispatcher.ledger.tables import DeliveryState, DispatchState

#: A condition older than this when first seen is history, not news: a process started on an
#: old ledger does not page ops for last month's failures (`status` shows them).
LOOKBACK = dt.timedelta(days=3)
#: how long a lost scheduler lock stays an open condition (then it resolves once a process
#: holds the lock again)
LEADER_EVENT_LIFE = dt.timedelta(minutes=5)
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


# --- what one process sees -------------------------------------------------------------------


@dataclass
class _LeaderEvent:
    at: dt.datetime
    condition: Condition


@dataclass
class _FileState:
    """The campaign file as this process sees it: invalid since when, and which version."""

    since: dt.datetime | None = None
    key: str | None = None


class Observer:
    """The conditions as one `run` process sees them: the ledger's, which every process sees
    alike, and its own (its campaign file's problems, its lost scheduler lock), which only it
    judges. Thread-safe for `leader_lost` (the service's leader job) beside `observe` (the
    alert job)."""

    def __init__(
        self,
        *,
        after: dt.timedelta,
        campaign_id: str,
        campaign_file: str,
        process: str,
        problems: Callable[[], list[str]] = list,
        is_leader: Callable[[], bool] = lambda: False,
    ) -> None:
        self.after = after
        self.campaign_id = campaign_id
        self.campaign_file = campaign_file
        self.process = process
        self.problems = problems
        self.is_leader = is_leader
        self._leader_events: dict[str, _LeaderEvent] = {}  #: written by the leader job
        self._events_lock = threading.Lock()
        self._file = _FileState()

    def leader_lost(self, at: dt.datetime) -> None:
        """This process lost the scheduler lock: an event, recorded as a condition that
        lives `LEADER_EVENT_LIFE`."""
        key = f"leader-lost:{self.campaign_id}:{self.process}:{at.isoformat()}"
        condition = Condition(
            key,
            Kind.LEADER_LOST,
            f"scheduler lock lost: {self.process}",
            (
                f"at {when(at)} this process lost the scheduler lock of campaign "
                f"{self.campaign_id} (its database session broke): it sends on, but no longer "
                "creates dispatches.",
                "Another `dispatcher run` takes the lock within seconds, if one runs; "
                "otherwise this one takes it again once the database answers.",
                "check: the database's availability and the logs (event leader_lost)",
            ),
        )
        with self._events_lock:
            self._leader_events[key] = _LeaderEvent(at, condition)

    def forget(self, key: str) -> None:
        """The alert `key` is resolved in the ledger: an event of that key is over."""
        with self._events_lock:
            self._leader_events.pop(key, None)

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
            candidates.append(_dispatch_condition(dispatch))
        unknown = ledger.unknown_posts(connection, since=since)
        candidates += [_unknown_condition(post) for post in unknown]
        down = outages.outages(connection)
        for _channel, outage in sorted(down.items()):
            if credential_refused(outage.error):
                candidates.append(_credential_outage(outage))
            elif outage.since <= now - self.after:
                candidates.append(_outage_condition(outage))
        latest = ledger.latest_post_outcomes(connection)
        alerted_targets = {_target_of(key) for key in open_keys if key.startswith(_TARGET)}
        for target, post in sorted(latest.items()):
            refused = post.state == DeliveryState.FAILED and credential_refused(post.error)
            if refused and post.updated_at >= since and target not in alerted_targets:
                candidates.append(_credential_target(post))
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
        version = digest("\n".join(problems))
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
                    f"since {when(state.since)} the file has problems; the last good version "
                    "stays in force (sending goes on with it, edits do not).",
                    "problems:",
                    *shown,
                    "check: dispatcher validate",
                ),
            )
        ]


# --- conditions, one by one ------------------------------------------------------------------


def _dispatch_condition(dispatch: ledger.ProblemDispatch) -> Condition:
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


def _unknown_condition(post: ledger.PostRow) -> Condition:
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


def _credential_outage(outage: outages.Outage) -> Condition:
    return Condition(
        f"{_CHANNEL}{outage.channel}:{outage.since.isoformat()}",
        Kind.CREDENTIAL,
        f"credential refused: channel {outage.channel}",
        (
            f"since {when(outage.since)} channel {outage.channel} refuses our credential "
            f"({outage.failures} tries); its deliveries wait in the queue, no attempt used.",
            f"error: {_short(outage.error)}",
            f"next try: {when(outage.retry_at)}; after renewing the setting named above "
            "the next try sends them",
        ),
    )


def _credential_target(post: ledger.PostRow) -> Condition:
    # Keyed by the target, not the delivery's name: its posts in two languages share it.
    target = ledger_targets.target_of(post.recipient)
    return Condition(
        f"{_TARGET}{target}:{post.id}",
        Kind.CREDENTIAL,
        f"credential refused: {target}",
        (
            f"dispatch {post.dispatch_id} ({post.campaign_id}): {post.day} {post.channel} "
            f"{post.item_id} to {post.recipient} failed: the credential was refused.",
            f"error: {_short(post.error)}",
            "after renewing the setting named above: "
            f"dispatcher retry --dispatch {post.dispatch_id}",
        ),
    )


def _outage_condition(outage: outages.Outage) -> Condition:
    return Condition(
        f"outage:{outage.channel}:{outage.since.isoformat()}",
        Kind.OUTAGE,
        f"channel {outage.channel} unavailable since {when(outage.since)}",
        (
            f"channel {outage.channel} has refused every try since {when(outage.since)} "
            f"({outage.failures} tries); its deliveries wait in the queue, no attempt used.",
            f"error: {_short(outage.error)}",
            f"next try: {when(outage.retry_at)} (backing off, at most every 10 min)",
            "check: dispatcher status",
        ),
    )


# --- keys and wording ------------------------------------------------------------------------

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
    recipient = ledger_targets.target_of(recipient)  # a further language's: `<target>#en`
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


def digest(text: str) -> str:
    """A short name for a text that every process derives alike: the campaign file version
    in a key, the digest message's key, an address in a Message-ID."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _short(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= DETAIL_LIMIT else line[: DETAIL_LIMIT - 1] + "…"


def when(at: dt.datetime) -> str:
    """An instant as the alerts write it: to the minute, in UTC."""
    return f"{at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def duration(span: dt.timedelta) -> str:
    """How long an alert was open, in minutes and hours."""
    minutes = max(int(span.total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
