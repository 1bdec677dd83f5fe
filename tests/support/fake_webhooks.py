"""Fake chat webhooks on one server: Slack, Discord, Teams Workflows, a Matrix room, generic.

Each answers like its provider: Slack's plain-text codes (200 "ok", 404 `no_service`, 410
`channel_is_archived`, 400 `invalid_payload`); Discord's message object for `?wait=true` (204
without), `X-RateLimit-*` headers and JSON errors; Teams' 202 with an empty body (this fake
also checks the Adaptive Card shape, which a real flow only fails on later, in its run);
Matrix's txnId dedupe per (token, room, txnId) — a token stands for a device, which is what
Synapse dedupes by — its `{"errcode", "error"}` bodies, and the reads a send makes first:
`GET /account/whoami` and `GET /rooms/{room}/messages` (`dir`, `limit`, `filter` with `types`
and `senders`), answered with Synapse 1.163's shapes; the generic endpoint answers 204. Use the
`*_url` properties (with `kind+` where the host would not say the kind) and the
`*_rate_limited` helpers with `fail_next` (`MATRIX_SEND`: only the send, not the reads).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any
from urllib.parse import quote, unquote

from tests.support.httpserver import FakeHTTPServer, Request, Response

SLACK_PATH = "/services/T0CW2024/B0CW2024/slackSecretToken0123456789"
DISCORD_ID, DISCORD_TOKEN = "1234567890123456789", "discordSecretToken-abcdefghijklmnopqrstuvwxyz"
TEAMS_PATH = "/workflows/7c2e0b1f9a6d4e3c8b5a/triggers/manual/paths/invoke"
TEAMS_SIG = "teamsSecretSig0123456789"
MATRIX_ROOM, MATRIX_TOKEN = "!clusterwoche:example.org", "syt_matrixSecretToken_0123456789"
GENERIC_PATH = "/hooks/genericSecret0123456789"
#: the path prefix of the Matrix send (`PUT …/send/m.room.message/<txnId>`), for `fail_next`
MATRIX_SEND = f"/_matrix/client/v3/rooms/{quote(MATRIX_ROOM, safe='')}/send/"


def discord_rate_limited(retry_after: float, *, header: bool = True) -> Response:
    headers = {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": "abcd1234",
        "X-RateLimit-Scope": "shared",
    }
    if header:
        headers["Retry-After"] = str(math.ceil(retry_after))
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    return Response(429, json=body, headers=headers)


def matrix_rate_limited(retry_after_ms: int, *, header: int | None = None) -> Response:
    body = {
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "Too Many Requests",
        "retry_after_ms": retry_after_ms,
    }
    headers = {} if header is None else {"Retry-After": str(header)}
    return Response(429, json=body, headers=headers)


def slack_error(status: int, code: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status, body=code.encode(), headers={"Content-Type": "text/plain", **(headers or {})}
    )


class FakeWebhooks(FakeHTTPServer):
    def __init__(self) -> None:
        super().__init__()
        self.slack: list[dict[str, Any]] = []
        self.discord: list[dict[str, Any]] = []
        self.teams: list[dict[str, Any]] = []
        self.matrix: list[dict[str, Any]] = []  #: events in the room, in order
        self.generic: list[dict[str, Any]] = []
        self.slack_archived = False
        self.matrix_members = {MATRIX_TOKEN: "@presse:example.org"}
        self._txns: dict[tuple[str, str, str], str] = {}
        self._snowflake = 1_230_000_000_000_000_000

    # URLs as an operator would put them into DISPATCHER_WEBHOOK_URLS
    @property
    def slack_url(self) -> str:
        return f"slack+{self.url}{SLACK_PATH}"

    @property
    def discord_url(self) -> str:
        return f"discord+{self.url}/api/webhooks/{DISCORD_ID}/{DISCORD_TOKEN}"

    @property
    def teams_url(self) -> str:
        query = f"api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={TEAMS_SIG}"
        return f"teams+{self.url}{TEAMS_PATH}?{query}"

    @property
    def matrix_url(self) -> str:  # detected from the path, no prefix needed
        return f"{self.url}/_matrix/client/v3/rooms/{MATRIX_ROOM}?access_token={MATRIX_TOKEN}"

    @property
    def generic_url(self) -> str:
        return f"{self.url}{GENERIC_PATH}"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            for log in (self.slack, self.discord, self.teams, self.matrix, self.generic):
                log.clear()
            self._txns.clear()
            self.slack_archived = False

    def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/services/"):
            return self._slack(request)
        if path.startswith("/api/webhooks/"):
            return self._discord(request)
        if path.startswith("/workflows/"):
            return self._teams(request)
        if path.startswith(("/_matrix/client/v3/rooms/", "/_matrix/client/v3/account/")):
            return self._matrix(request)
        if path == GENERIC_PATH and request.method == "POST":
            self.generic.append(request.json())
            return Response(204)
        return Response(404, body=b"Not Found")

    def _slack(self, request: Request) -> Response:
        if request.path != SLACK_PATH:
            return slack_error(404, "no_service")
        if self.slack_archived:
            return slack_error(410, "channel_is_archived")
        try:
            body = json.loads(request.body)
        except ValueError:
            return slack_error(400, "invalid_payload")
        if not isinstance(body, dict) or not body.get("text"):
            return slack_error(400, "no_text")
        self.slack.append(body)
        return Response(200, body=b"ok", headers={"Content-Type": "text/html"})

    def _discord(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")  # api webhooks <id> <token>
        if len(parts) != 4 or parts[2] != DISCORD_ID:
            return Response(404, json={"message": "Unknown Webhook", "code": 10015})
        if parts[3] != DISCORD_TOKEN:
            return Response(401, json={"message": "Invalid Webhook Token", "code": 50027})
        body = request.json()
        content = body.get("content", "") if isinstance(body, dict) else ""
        if len(content) > 2000:
            error = {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
            return Response(
                400,
                json={
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {"content": {"_errors": [error]}},
                },
            )
        self._snowflake += 1
        message = {
            "id": str(self._snowflake),
            "type": 0,
            "content": content,
            "channel_id": "998877665544332211",
            "webhook_id": DISCORD_ID,
        }
        self.discord.append(body)
        limits = {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "4",
            "X-RateLimit-Reset-After": "2.000",
        }
        if request.query.get("wait") == ["true"]:
            return Response(200, json=message, headers=limits)
        return Response(204, headers=limits)

    def _teams(self, request: Request) -> Response:
        if request.path != TEAMS_PATH or request.query.get("sig") != [TEAMS_SIG]:
            error = {
                "code": "DirectApiInvalidAuthorizationSignature",
                "message": "The provided signature is not valid.",
            }
            return Response(401, json={"error": error})
        body = request.json()
        try:
            attachment = body["attachments"][0]
            ok = (
                body["type"] == "message"
                and attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
                and attachment["content"]["type"] == "AdaptiveCard"
            )
        except (KeyError, IndexError, TypeError):
            ok = False
        if not ok:
            error = {
                "code": "InvalidRequestContent",
                "message": "The request content is not an Adaptive Card message.",
            }
            return Response(400, json={"error": error})
        self.teams.append(body)
        return Response(202)

    def _matrix(self, request: Request) -> Response:
        # /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}, each segment %-encoded;
        # /_matrix/client/v3/rooms/{roomId}/messages; /_matrix/client/v3/account/whoami
        parts = [unquote(p) for p in request.path.split("/")[5:]]
        send = request.method == "PUT" and len(parts) == 4 and parts[1] == "send"
        read = request.method == "GET" and len(parts) == 2 and parts[1] == "messages"
        whoami = request.method == "GET" and request.path == "/_matrix/client/v3/account/whoami"
        if not (send or read or whoami):
            return Response(
                404, json={"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}
            )
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return Response(
                401, json={"errcode": "M_MISSING_TOKEN", "error": "Missing access token."}
            )
        token = auth.removeprefix("Bearer ")
        user = self.matrix_members.get(token)
        if user is None:
            return Response(
                401,
                json={
                    "errcode": "M_UNKNOWN_TOKEN",
                    "error": "Invalid access token passed.",
                    "soft_logout": False,
                },
            )
        if whoami:
            device = f"DEVICE{list(self.matrix_members).index(token)}"
            return Response(200, json={"user_id": user, "is_guest": False, "device_id": device})
        room = parts[0]
        if room != MATRIX_ROOM:
            error = f"User {user} not in room {room}"
            if read:  # Synapse's check for reading history adds this
                error += ", and room previews are disabled"
            return Response(403, json={"errcode": "M_FORBIDDEN", "error": error})
        if read:
            return self._matrix_messages(request, token)
        _, _, event_type, txn = parts
        seen = self._txns.get((token, room, txn))
        if seen is None:
            seen = f"$event{len(self.matrix) + 1}:example.org"
            self._txns[(token, room, txn)] = seen
            self.matrix.append(
                {
                    "event_id": seen,
                    "type": event_type,
                    "content": request.json(),
                    "sender": user,
                    "room_id": room,
                    "origin_server_ts": int(time.time() * 1000),
                    "unsigned": {"membership": "join"},
                    "user_id": user,
                    "token": token,  # not in Synapse's answer: its transaction_id is per device
                    "txn": txn,
                }
            )
        return Response(200, json={"event_id": seen})

    def _matrix_messages(self, request: Request, token: str) -> Response:
        """`GET /rooms/{room}/messages` without `from`: the latest events (`dir=b`, newest
        first) or the earliest (`dir=f`), `limit` of them (Synapse: default 10, at most 1000)
        after the `filter`'s `types` and `senders`."""
        query = {k: v[0] for k, v in request.query.items()}
        wanted = json.loads(query.get("filter", "{}"))
        events = [
            e
            for e in self.matrix
            if e["type"] in wanted.get("types", [e["type"]])
            and e["sender"] in wanted.get("senders", [e["sender"]])
        ]
        if query.get("dir") == "b":
            events.reverse()
        now = int(time.time() * 1000)
        chunk = []
        for event in events[: min(int(query.get("limit", "10")), 1000)]:
            shown = {k: v for k, v in event.items() if k not in ("token", "txn")}
            unsigned = {**event["unsigned"], "age": now - event["origin_server_ts"]}
            if event["token"] == token:  # Synapse shows the txnId to the sending device only
                unsigned["transaction_id"] = event["txn"]
            chunk.append({**shown, "age": unsigned["age"], "unsigned": unsigned})
        return Response(200, json={"chunk": chunk, "start": "t9-16_0_0", "end": "t9-15_0_0"})
