"""Chat webhooks: Slack, Discord, Teams (Workflows), Matrix rooms and generic JSON endpoints.

`DISPATCHER_WEBHOOK_URLS` is a comma-separated list. Each URL is a secret (its path or query
holds the token), so `describe_request`, errors and `repr` show it with its secret parts as
`***`, and the ledger names a target by what it *is*, never by its token (`target_name`; see
docs/architecture.md, "Social targets"): renewing a token or reordering the list keeps the
name. An entry may be named explicitly as `NAME=URL` (`NAME=kind+URL`); two entries that would
get the same name must be.

The kind comes from the URL, or is given as `kind+https://…`:
- slack: `https://hooks.slack.com/services/T…/B…/…` → 200 "ok"; errors are plain-text codes
  (`no_service` 404, `invalid_token` 403, `channel_is_archived` 410, …).
- discord: `https://discord.com/api/webhooks/<id>/<token>`, sent with `?wait=true` so the
  answer is the message (its id is kept); 429 → `Retry-After`, else the body's `retry_after`.
- teams: a Workflows (Power Automate) trigger URL on `*.logic.azure.com`,
  `api.powerautomate.com` or `*.powerplatform.com` (also legacy `*.webhook.office.com`):
  an Adaptive Card message, answered 202 without an id.
- matrix: `https://<homeserver>/_matrix/client/v3/rooms/<room id>?access_token=<token>`
  (the room *ID*, `!…:server`, not an alias). The token is sent as `Authorization: Bearer`,
  never in the URL; the event is `PUT …/send/m.room.message/<txnId>` with the delivery key as
  txnId, which the homeserver dedupes: Matrix is the only idempotent kind here. The homeserver
  dedupes per *device*, so the key also goes into the event's content (`MATRIX_KEY_FIELD`) and
  every send first looks for it among the bot's latest messages in the room (`GET …/messages`):
  found, its event is the receipt and nothing is sent (docs/architecture.md, "Matrix: look in
  the room before sending").
- generic: `POST {"text","title","url","tags"}`, any 2xx is success.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import requests

from dispatcher.channels import http
from dispatcher.channels.base import ChannelError, ErrorKind, Post, Receipt, readable_key

#: the settings this channel needs (DISPATCHER_<NAME>); without them it writes to the outbox
CREDENTIALS = ("webhook_urls",)

KIND = "webhook"
CREDENTIAL = "DISPATCHER_WEBHOOK_URLS"
DISCORD_LIMIT = 2000  #: characters of `content`
#: The delivery key in the content of our Matrix events. The spec allows extra, namespaced keys
#: in `m.room.message` content; clients ignore them, so the reader sees the same message.
MATRIX_KEY_FIELD = "de.clusterplattform.dispatcher.key"
#: How many of the bot's own latest messages in the room a send looks through for its key: the
#: key holds the day, a post is daily, and a doubtful retry comes within hours (or days, after
#: `dispatcher retry`): 50 is weeks of posts even with several campaigns in one room.
MATRIX_LOOKBACK = 50

Kind = Literal["slack", "discord", "teams", "matrix", "generic"]
KINDS: tuple[Kind, ...] = get_args(Kind)

_EXPLICIT = re.compile(r"(?P<kind>[A-Za-z]+)\+(?P<url>.+)", re.DOTALL)
_DISCORD_PATH = re.compile(r"(?P<base>/api(?:/v\d+)?/webhooks/\d+)/(?P<token>[^/?#]+)/?")
_MATRIX_PATH = re.compile(r"(?P<base>.*/_matrix/client/(?:v3|r0))/rooms/(?P<room>[^/]+)/?")
_NAMED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})=(?P<rest>.+)", re.DOTALL)
_SLACK_IDS = re.compile(r"/services/(?P<team>T[A-Z0-9]+)/(?P<hook>B[A-Z0-9]+)/[^/]+/?")
_TEAMS_WORKFLOW = re.compile(r"/workflows/(?P<id>[0-9A-Za-z-]+)/")


@dataclass(frozen=True)
class WebhookTarget:
    """One webhook. `url` holds the secret and never appears in `repr`."""

    kind: Kind
    url: str = field(repr=False)
    recipient: str  #: the ledger's name for it (`target_name`), never a secret

    @classmethod
    def create(cls, kind: Kind, url: str, name: str | None = None) -> WebhookTarget:
        return cls(kind, url, target_name(kind, url, name))

    @property
    def former_names(self) -> tuple[str, ...]:
        """The name earlier versions gave this target (a hash of the whole URL, token
        included): the ledger's rows under it are renamed to `recipient` at start."""
        digest = hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:12]
        return (f"webhook:{self.kind}:{digest}",)

    @property
    def shown_url(self) -> str:
        """The URL with its secret parts replaced by `***`."""
        return _redact(self.kind, self.url)


def parse_webhook_urls(text: str) -> list[WebhookTarget]:
    """The targets in a comma-separated list; a `ValueError` never quotes a URL's secrets."""
    targets: list[WebhookTarget] = []
    for number, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        target = _parse_one(entry, number)
        if any(t.url == target.url for t in targets):
            raise ValueError(f"{CREDENTIAL} entry {number} repeats an earlier one ({target.kind})")
        for earlier, other in enumerate(targets, start=1):
            if other.recipient == target.recipient:
                raise ValueError(
                    f"{CREDENTIAL} entries {earlier} and {number} are both {target.recipient}; "
                    "name each of them: NAME=URL (a name of letters, digits, '.', '_', '-')"
                )
        targets.append(target)
    return targets


def target_name(kind: Kind, url: str, name: str | None = None) -> str:
    """What the target *is*, without any secret: `webhook:<kind>:<name>` for an entry named
    `NAME=URL`, else Matrix `host/room ID`, Slack `team/webhook ID`, Discord the webhook's
    id, Teams the workflow's id, otherwise the host (docs/architecture.md, "Social targets")."""
    if name:
        return f"{KIND}:{kind}:{name}"
    parts = urlsplit(url)
    host = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    if kind == "matrix" and (matrix := _MATRIX_PATH.fullmatch(parts.path)):
        return f"{KIND}:matrix:{host}/{unquote(matrix['room'])}"
    if kind == "slack" and (slack := _SLACK_IDS.fullmatch(parts.path)):
        return f"{KIND}:slack:{slack['team']}/{slack['hook']}"
    if kind == "discord" and (discord := _DISCORD_PATH.fullmatch(parts.path)):
        return f"{KIND}:discord:{discord['base'].rsplit('/', 1)[1]}"
    if kind == "teams" and (teams := _TEAMS_WORKFLOW.search(parts.path)):
        return f"{KIND}:teams:{teams['id']}"
    return f"{KIND}:{kind}:{host}"


def _parse_one(entry: str, number: int) -> WebhookTarget:
    where = f"{CREDENTIAL} entry {number}"
    name: str | None = None
    if named := _NAMED.fullmatch(entry):
        name, entry = named["name"], named["rest"].strip()
    explicit = _EXPLICIT.fullmatch(entry)
    kind: str | None = None
    url = entry
    if explicit and not entry.lower().startswith(("http://", "https://")):
        kind, url = explicit["kind"].lower(), explicit["url"].strip()
        if kind not in KINDS:
            raise ValueError(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValueError(f"{where}: not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{where}: needs an http(s) URL with a host")
    detected = kind or _detect(host, parts.path)
    if detected == "discord" and not _DISCORD_PATH.fullmatch(parts.path):
        raise ValueError(f"{where} ({host}): a Discord URL is /api/webhooks/<id>/<token>")
    if detected == "matrix":
        match = _MATRIX_PATH.fullmatch(parts.path)
        if not match or not unquote(match["room"]).startswith("!"):
            raise ValueError(f"{where} ({host}): use …/_matrix/client/v3/rooms/<room ID, !…>")
        if not dict(parse_qsl(parts.query)).get("access_token"):
            raise ValueError(f"{where} ({host}): a Matrix URL needs ?access_token=…")
    return WebhookTarget.create(cast(Kind, detected), url, name)


def _detect(host: str, path: str) -> Kind:
    if host == "hooks.slack.com":
        return "slack"
    discord_hosts = ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
    if host in discord_hosts and "/webhooks/" in path:
        return "discord"
    teams_host = (
        host.endswith((".logic.azure.com", ".powerplatform.com", ".webhook.office.com"))
        or host == "api.powerautomate.com"
    )
    if teams_host:
        return "teams"
    if "/_matrix/client/" in path:
        return "matrix"
    return "generic"


def _redact(kind: str, url: str) -> str:
    """Slack/Discord: the path's token part; Teams/generic: every query value but the
    api-version (and the generic path); Matrix: the access_token. Userinfo is dropped."""
    parts = urlsplit(url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    path = parts.path
    if kind == "slack":
        first = path.strip("/").split("/", 1)[0]
        path = f"/{first}/***" if first else "/***"
    elif kind == "discord" and (match := _DISCORD_PATH.fullmatch(path)):
        path = f"{match['base']}/***"
    elif kind == "generic":
        path = "/***" if path.strip("/") else path
    pairs = [(k, "***" if _secret_param(kind, k) else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit((parts.scheme, netloc, path, urlencode(pairs, safe="*/"), ""))


def _secret_param(kind: str, name: str) -> bool:
    if kind == "matrix":
        return name == "access_token"
    return kind != "discord" and name.lower() != "api-version"


def delivery_key(*, campaign_id: str, day: dt.date, send_at: dt.datetime, recipient: str) -> str:
    """Stable per delivery (every retry the same): Matrix uses it as the txnId.

    `send_at` is left out on purpose: a rescheduled delivery is still the same message, and a
    Matrix homeserver must recognise its retry. ASCII `[A-Za-z0-9._~-]`, safe in a URL path.
    """
    del send_at
    return readable_key(campaign_id, day, recipient, max_length=120)


def describe_request(post: Post, *, key: str, target: WebhookTarget) -> dict[str, Any]:
    """Method, URL (secrets as `***`), headers and JSON body: exactly what is sent."""
    method, url, headers, body = _request(post, key=key, target=target)
    if target.kind == "matrix":
        headers = {**headers, "Authorization": "Bearer ***"}
    return {"method": method, "url": _redact(target.kind, url), "headers": headers, "json": body}


def _request(
    post: Post, *, key: str, target: WebhookTarget
) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    """The real request (URL with its secrets; Matrix: without the token, see `_matrix_token`)."""
    headers = {"Content-Type": "application/json"}
    parts = urlsplit(target.url)
    if target.kind == "slack":
        return "POST", target.url, headers, {"text": _slack_text(post)}
    if target.kind == "discord":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "wait"] + [("wait", "true")]
        url = urlunsplit(parts._replace(query=urlencode(query), fragment=""))
        body = {"content": post.text, "allowed_mentions": {"parse": []}}
        return "POST", url, headers, body
    if target.kind == "teams":
        return "POST", target.url, headers, _teams_card(post)
    if target.kind == "matrix":
        match = _MATRIX_PATH.fullmatch(parts.path)
        assert match is not None  # checked by parse_webhook_urls
        room = quote(unquote(match["room"]), safe="")
        path = f"{match['base']}/rooms/{room}/send/m.room.message/{quote(key, safe='')}"
        url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        return "PUT", url, headers, {**_matrix_message(post), MATRIX_KEY_FIELD: key}
    body = {"text": post.text, "title": post.title, "url": post.link, "tags": list(post.hashtags)}
    return "POST", target.url, headers, body


def _slack_text(post: Post) -> str:
    """mrkdwn: `&<>` escaped as Slack requires, the reportage link as an explicit `<link>`."""
    escaped, bare = html.escape(post.text, quote=False), html.escape(post.link, quote=False)
    return escaped.replace(bare, f"<{bare}>") if bare in escaped else f"{escaped}\n<{bare}>"


def _teams_card(post: Post) -> dict[str, Any]:
    card = {
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": post.title, "weight": "Bolder", "wrap": True},
            {"type": "TextBlock", "text": post.text, "wrap": True},
        ],
        "actions": [{"type": "Action.OpenUrl", "title": "Zur Reportage", "url": post.link}],
    }
    adaptive = "application/vnd.microsoft.card.adaptive"
    return {"type": "message", "attachments": [{"contentType": adaptive, "content": card}]}


def _matrix_message(post: Post) -> dict[str, Any]:
    link = html.escape(post.link)
    anchor = f'<a href="{link}">{link}</a>'
    formatted = html.escape(post.text, quote=False).replace(
        html.escape(post.link, quote=False), anchor
    )
    if anchor not in formatted:
        formatted += f"\n{anchor}"
    return {
        "msgtype": "m.text",
        "body": post.text,
        "format": "org.matrix.custom.html",
        "formatted_body": formatted.replace("\n", "<br>"),
    }


class WebhookChannel:
    """Posts to one webhook target; one HTTP session per channel."""

    kind = KIND

    def __init__(self, target: WebhookTarget, *, clock: http.Clock = http.utc_now) -> None:
        self.target = target
        self.idempotent: bool = target.kind == "matrix"  # PUT with a stable txnId
        self._clock = clock
        self._session = http.new_session()
        self._matrix_user: str | None = None  #: the token's user (`whoami`), asked once

    def __repr__(self) -> str:
        return f"WebhookChannel({self.target!r})"

    def send(self, post: Post, *, key: str) -> Receipt:
        target = self.target
        if target.kind == "discord" and len(post.text) > DISCORD_LIMIT:
            raise ChannelError(
                f"{self._name}: {len(post.text)} characters, Discord takes {DISCORD_LIMIT}",
                kind=ErrorKind.PERMANENT,
            )
        method, url, headers, body = _request(post, key=key, target=target)
        if target.kind == "matrix":
            headers = {**headers, "Authorization": f"Bearer {_matrix_token(target.url)}"}
            if (found := self._matrix_find(key, headers)) is not None:
                return found
        try:
            response = http.send(
                self._session,
                method,
                url,
                network=self._name,
                timeout=(http.CONNECT_TIMEOUT, http.READ_TIMEOUT),
                headers=headers,
                json=body,
            )
        except ChannelError as error:
            error.message = _scrub(error.message, target)
            error.args = (error.message,)
            raise
        if 200 <= response.status_code < 300:
            return self._receipt(response, key=key)
        raise self._error(response)

    def close(self) -> None:
        self._session.close()

    @property
    def _name(self) -> str:
        return f"{KIND} {self.target.recipient}"

    def _matrix_find(self, key: str, headers: dict[str, str]) -> Receipt | None:
        """Our event carrying `key` among the bot's latest messages in the room, or None.

        Synapse recognises a txnId per device only: after a login on a new device (the routine
        answer to a leaked token) the retry of a post whose answer was lost would post it again
        (docs/architecture.md, "Matrix: look in the room before sending"). A lookup that fails
        is never followed by a blind send: it raises, `temporary` where the PUT would have been
        `ambiguous`. Only the homeserver's own 403 on reading the room lets the send go ahead:
        a bot that may not read the room is no member, so it cannot have posted there (nor
        post now), and the send's answer then names the cause.
        """
        parts = urlsplit(self.target.url)
        match = _MATRIX_PATH.fullmatch(parts.path)
        assert match is not None  # checked by parse_webhook_urls
        base = urlunsplit((parts.scheme, parts.netloc, match["base"], "", ""))
        room = unquote(match["room"])
        user = self._matrix_user
        if user is None:
            whoami = self._matrix_get(f"{base}/account/whoami", headers)
            if whoami is None or not str(whoami.get("user_id", "")).startswith("@"):
                raise self._lookup_failed(
                    ChannelError(f"{self._name}: whoami named no user", kind=ErrorKind.TEMPORARY)
                )
            user = self._matrix_user = str(whoami["user_id"])
        wanted = {"types": ["m.room.message"], "senders": [user]}
        page = self._matrix_get(
            f"{base}/rooms/{quote(room, safe='')}/messages",
            headers,
            params={
                "dir": "b",
                "limit": str(MATRIX_LOOKBACK),
                "filter": json.dumps(wanted, separators=(",", ":")),
            },
            may_refuse=True,
        )
        if page is None:  # the homeserver's 403: not a member, the send will say so
            return None
        chunk = page.get("chunk")
        if not isinstance(chunk, list):
            raise self._lookup_failed(
                ChannelError(f"{self._name}: messages without a chunk", kind=ErrorKind.TEMPORARY)
            )
        for event in chunk:
            if not isinstance(event, dict) or event.get("sender") != user:
                continue
            content, event_id = event.get("content"), event.get("event_id")
            if isinstance(content, dict) and content.get(MATRIX_KEY_FIELD) == key and event_id:
                details = {"kind": "matrix", "status": "200", "txn_id": key, "room": room}
                return Receipt(str(event_id), {**details, "found": "in the room"})
        return None

    def _matrix_get(
        self,
        url: str,
        headers: dict[str, str],
        *,
        params: dict[str, str] | None = None,
        may_refuse: bool = False,
    ) -> dict[str, Any] | None:
        """A GET of the lookup: its JSON object, None for the homeserver's own 403 where
        `may_refuse`, else a `ChannelError` (a refused token names its cause as a send would)."""
        headers = {k: v for k, v in headers.items() if k != "Content-Type"}
        try:
            response = http.send(
                self._session,
                "GET",
                url,
                network=self._name,
                timeout=(http.CONNECT_TIMEOUT, http.READ_TIMEOUT),
                headers=headers,
                params=params,
            )
        except ChannelError as error:
            error.message = _scrub(error.message, self.target)
            raise self._lookup_failed(error) from None
        body = _json(response)
        if 200 <= response.status_code < 300 and body:
            return body
        if 200 <= response.status_code < 300:
            raise self._lookup_failed(
                ChannelError(
                    f"{self._name}: HTTP {response.status_code} without a JSON object",
                    kind=ErrorKind.TEMPORARY,
                )
            )
        if may_refuse and response.status_code == 403 and body.get("errcode"):
            return None
        raise self._lookup_failed(self._error(response))

    def _lookup_failed(self, error: ChannelError) -> ChannelError:
        """A failed lookup sent nothing: what would be `ambiguous` for the PUT (5xx, a reset
        connection) is `temporary` here, and the message says that nothing was sent."""
        if error.permanent:  # a refused token, a wrong room: the cause speaks for itself
            return error
        kind = ErrorKind.TEMPORARY if error.ambiguous else error.kind
        message = (
            f"{error.message}; looking for the post in the room before sending failed, "
            "so it was not sent (a blind resend could post it twice)"
        )
        return ChannelError(message, kind=kind, retry_after=error.retry_after)

    def _receipt(self, response: requests.Response, *, key: str) -> Receipt:
        details = {"kind": self.target.kind, "status": str(response.status_code)}
        body = _json(response)
        if self.target.kind == "matrix":
            match = _MATRIX_PATH.fullmatch(urlsplit(self.target.url).path)
            room = unquote(match["room"]) if match else ""
            return Receipt(str(body.get("event_id", "")), {**details, "txn_id": key, "room": room})
        if self.target.kind in ("discord", "generic") and body.get("id"):
            if body.get("channel_id"):
                details["channel_id"] = str(body["channel_id"])
            return Receipt(str(body["id"]), details)
        # Slack and Teams answer without an id ("ok" / 202); Teams only *accepted* the card,
        # the flow posts it later and a failing flow run is not visible here.
        return Receipt("", details)

    def _error(self, response: requests.Response) -> ChannelError:
        kind, status = self.target.kind, response.status_code
        body = _json(response)
        if kind == "slack":
            detail = response.text.strip()[:300] or response.reason or ""
        elif kind == "matrix":
            detail = " ".join(str(body[k]) for k in ("errcode", "error") if body.get(k))
        elif kind == "teams":
            inner = body.get("error")
            detail = str(inner.get("message") or inner) if isinstance(inner, dict) else ""
        else:
            detail = http.json_detail(response, "message", "error")
        detail = _scrub(detail or response.reason or "", self.target)
        code = response.text.strip() if kind == "slack" else str(body.get("errcode") or "")
        if kind == "discord":
            code = str(body.get("code") or "")
        elif kind == "teams" and isinstance(body.get("error"), dict):
            code = str(body["error"].get("code") or "")
        cause = _cause(kind, status, code, str(body.get("error") or ""), body)
        return http.error_for(
            response,
            network=self._name,
            credential=CREDENTIAL,
            detail=detail,
            retry_after=self._retry_after(response, body) if status in (429, 503) else None,
            cause=None if cause is None else _scrub(cause, self.target),
            # One target among several in its dispatch: a refusal fails this delivery only
            # instead of holding up the others (docs/architecture.md, "Errors name the cause").
            refused=ErrorKind.PERMANENT,
        )

    def _retry_after(self, response: requests.Response, body: dict[str, Any]) -> float | None:
        """`Retry-After` first (Matrix spec ≥ 1.10, Discord's reliable unit), then the body."""
        wait = http.retry_after_header(response, now=self._clock())
        if wait is None:
            wait = _float(response.headers.get("Retry-After"))
        if wait is None and self.target.kind == "discord":
            wait = _float(body.get("retry_after"))
        if wait is None and self.target.kind == "matrix":
            millis = _float(body.get("retry_after_ms"))
            wait = None if millis is None else millis / 1000
        return wait


def _matrix_token(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query)).get("access_token", "")


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _float(value: object) -> float | None:
    try:
        number = float(str(value))
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _scrub(message: str, target: WebhookTarget) -> str:
    """Remove the URL's secrets from a message (requests puts the URL path in its errors)."""
    parts = urlsplit(target.url)
    secrets = [
        v for k, v in parse_qsl(parts.query) if _secret_param(target.kind, k) and len(v) >= 6
    ]
    if target.kind != "matrix":  # a room ID is no secret; every other path may hold one
        # …but the ids the target's name shows (Discord webhook id, Teams workflow id) are not
        secrets += [s for s in parts.path.split("/") if len(s) >= 16 and s not in target.recipient]
        secrets += [parts.path] if parts.path.strip("/") else []
    secrets += [parts.query] if parts.query else []
    for secret in sorted(set(secrets), key=len, reverse=True):
        message = message.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return message


_REPLACE = f"replace it in {CREDENTIAL}"
#: Slack's incoming-webhook error codes (api.slack.com/messaging/webhooks, "Handling errors"),
#: plain text in the body, and what to do about each.
_SLACK = {
    "invalid_token": "Slack no longer accepts this webhook (revoked, or its app was removed): "
    f"create a new incoming webhook and {_REPLACE}",
    "no_service": f"the webhook was disabled or removed: create a new one and {_REPLACE}",
    "no_team": f"the Slack workspace no longer exists: {_REPLACE}",
    "team_disabled": f"the Slack workspace is disabled: {_REPLACE}",
    "channel_not_found": f"the webhook's channel was deleted: create a webhook for another "
    f"channel and {_REPLACE}",
    "channel_is_archived": "the webhook's channel is archived: unarchive it, or create a "
    f"webhook for another channel and {_REPLACE}",
    "is_archived": "the channel is archived: unarchive it, or create a webhook for another "
    f"channel and {_REPLACE}",
    "action_prohibited": "a workspace admin restricted posting to this channel: ask them to "
    "allow the app there",
    "posting_to_general_channel_denied": "only admins may post to #general: create a webhook "
    f"for another channel and {_REPLACE}",
    "not_in_channel": "the app is not a member of the channel: add it (/invite @app) there",
}
#: Discord's JSON error codes (discord.com/developers/docs/topics/opcodes-and-status-codes).
_DISCORD = {
    "50027": "Discord does not accept the webhook's token (it was reset, or the webhook "
    f"recreated): copy the webhook URL again and {_REPLACE}",
    "10015": f"the webhook was deleted: create a new one and {_REPLACE}",
    "10003": f"the webhook's channel was deleted: create a webhook in another channel and {_REPLACE}",
    "50013": "the webhook may not post in its channel any more: check the channel's "
    "permissions for webhooks",
}


def _cause(kind: str, status: int, code: str, error: str, body: dict[str, Any]) -> str | None:
    """What a provider's documented error code means and what to do, or None (the status
    alone then speaks: 401 renew, 403 permissions)."""
    if kind == "slack":
        return _SLACK.get(code)
    if kind == "discord":
        return _DISCORD.get(code)
    if kind == "matrix":
        return _matrix_cause(status, code, error, body)
    if kind == "teams" and status == 401:
        return (
            "the workflow URL's signature (sig) is not valid: copy the URL again from the "
            f"workflow's trigger and {_REPLACE}"
        )
    if kind == "teams" and status == 404:
        return f"the workflow was deleted or turned off: turn it on, or {_REPLACE}"
    if status == 404:
        return f"nothing answers at this URL: check it in {CREDENTIAL}"
    return None


_NOT_IN_ROOM = re.compile(r"User (?P<user>@\S+) not in room (?P<room>![^\s(]+)")


def _matrix_cause(status: int, errcode: str, error: str, body: dict[str, Any]) -> str | None:
    """The Matrix `errcode`s of `PUT /rooms/{room}/send` (client-server spec §Standard error
    response; Synapse synapse/api/errors.py, event_auth.py, handlers/message.py)."""
    token = f"the access_token of the URL in {CREDENTIAL}"
    if errcode == "M_UNKNOWN_TOKEN":
        if body.get("soft_logout") is True:
            return f"the bot's access token expired: log the bot in again and renew {token}"
        return (
            "the homeserver does not know the access token (logged out or revoked): log the bot "
            f"in again and renew {token}"
        )
    if errcode == "M_MISSING_TOKEN":
        return f"no access token reached the homeserver: check {token} (and any proxy in between)"
    if errcode == "M_USER_LOCKED":
        return "the bot's account is locked by the homeserver's admins: ask them to unlock it"
    if errcode == "M_USER_DEACTIVATED":
        return (
            "the bot's account is deactivated: create a new account, invite it to the room and "
            f"put its token into {CREDENTIAL}"
        )
    if errcode == "M_USER_SUSPENDED":
        return "the bot's account is suspended by the homeserver's admins: ask them to lift it"
    if status == 403 and (match := _NOT_IN_ROOM.search(error)):
        return (
            f"the bot {match['user']} is not a member of room {match['room']}: invite it to the "
            "room and let it join (POST /_matrix/client/v3/join/<room ID>), then "
            "`dispatcher retry`"
        )
    if (status == 403 and "not in room" in error) or errcode.endswith("NOT_JOINED"):
        return (
            "the bot is not a member of the room: invite it to the room and let it join, then "
            "`dispatcher retry`"
        )
    if status == 403 and error == "Unknown room":
        return f"the homeserver knows no room with this ID: check the room ID (!…) in {CREDENTIAL}"
    if errcode.endswith("INSUFFICIENT_POWER") or "don't have permission to post" in error:
        return (
            "the bot's power level in the room is too low to send messages: raise it in the "
            "room's settings (Roles & Permissions)"
        )
    if errcode == "M_NOT_FOUND":
        return f"the homeserver found no such room: check the room ID (!…) in {CREDENTIAL}"
    if errcode == "M_UNRECOGNIZED":
        return (
            "the server does not know this Matrix endpoint: check the homeserver and "
            f"/_matrix/client/v3/rooms/<room ID> in {CREDENTIAL}"
        )
    return None
