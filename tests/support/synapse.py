"""A real Matrix homeserver (Synapse, SQLite, plain HTTP on loopback) as a pytest fixture.

A fake Matrix server can only answer what its author believed; Synapse has the real txnId
deduplication (per device), the real rate limiter (`rc_message`: 0.2/s, burst 10, answered
`429 M_LIMIT_EXCEEDED` with `Retry-After` and `retry_after_ms`) and the real membership
checks (`403 M_FORBIDDEN … not in room`). `scripts/synapse-setup` installs it once into its
own virtualenv and prints that path; `.ci/run` exports it as DISPATCHER_TEST_SYNAPSE.

Start-up takes ~2 s, so one server serves the whole session: each test registers its own
users and creates its own rooms (`SynapseServer.register`, `.create_room`). Login and
registration limits are raised for tests; `rc_message` stays at Synapse's default, and
users that are not about rate limits are exempted with the admin API
(`register(..., rate_limited=False)`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests

from tests.support.ports import free_port

START_TIMEOUT = 60.0  #: seconds until /_matrix/client/versions answers; ~2 s normally
UNLIMITED = {"per_second": 1000, "burst_count": 1000}


@dataclass(frozen=True)
class MatrixUser:
    user_id: str  #: `@name:localhost`
    name: str
    password: str
    access_token: str
    device_id: str


class SynapseServer:
    """A running Synapse; the client-server API at `url`."""

    def __init__(self, url: str, shared_secret: str, log_file: Path) -> None:
        self.url = url
        self.shared_secret = shared_secret
        self.log_file = log_file
        self.http = requests.Session()
        self._names = itertools.count(1)
        self.admin = self.register("admin", admin=True, rate_limited=False)

    # Users --------------------------------------------------------------------------------

    def register(
        self, prefix: str, *, admin: bool = False, rate_limited: bool = True
    ) -> MatrixUser:
        """A new user `prefix-N` through the shared-secret admin API (what
        `register_new_matrix_user` does); `rate_limited=False` exempts it from `rc_message`."""
        name = f"{prefix}-{next(self._names)}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        nonce = self._ok(self.http.get(endpoint, timeout=10))["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    name.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        body = {
            "nonce": nonce,
            "username": name,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        answer = self._ok(self.http.post(endpoint, json=body, timeout=30))
        user = MatrixUser(
            answer["user_id"], name, password, answer["access_token"], answer["device_id"]
        )
        if not rate_limited:
            self.exempt_from_rate_limits(
                user.user_id, token=None if not admin else user.access_token
            )
        return user

    def login(self, user: MatrixUser, *, device_id: str | None = None) -> MatrixUser:
        """A fresh access token: a new device, or `device_id`'s (the same device keeps its
        txnId history: Synapse dedupes per device, not per token)."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.name},
            "password": user.password,
        }
        if device_id is not None:
            body["device_id"] = device_id
        answer = self._ok(
            self.http.post(f"{self.url}/_matrix/client/v3/login", json=body, timeout=30)
        )
        return MatrixUser(
            user.user_id, user.name, user.password, answer["access_token"], answer["device_id"]
        )

    def logout(self, user: MatrixUser) -> None:
        """Revokes `user.access_token` (and deletes its device), as after a leak."""
        self._ok(self._client("POST", "/logout", user, json={}))

    def exempt_from_rate_limits(self, user_id: str, *, token: str | None = None) -> None:
        path = f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit"
        headers = {"Authorization": f"Bearer {token or self.admin.access_token}"}
        body = {"messages_per_second": 0, "burst_count": 0}  # 0: no limit at all
        self._ok(self.http.post(self.url + path, json=body, headers=headers, timeout=30))

    def restore_rate_limits(self, user: MatrixUser) -> None:
        """Back to the server's `rc_message` (joins count against it too: a bot is set up
        exempt, then limited like any account)."""
        path = f"/_synapse/admin/v1/users/{quote(user.user_id)}/override_ratelimit"
        headers = {"Authorization": f"Bearer {self.admin.access_token}"}
        self._ok(self.http.delete(self.url + path, headers=headers, timeout=30))

    # Rooms --------------------------------------------------------------------------------

    def create_room(self, *, invite: tuple[MatrixUser, ...] = (), join: bool = True) -> str:
        """A private room owned by the admin; `invite` users are invited and (`join`) join."""
        body = {"preset": "private_chat", "invite": [u.user_id for u in invite]}
        room: str = self._ok(self._client("POST", "/createRoom", self.admin, json=body))["room_id"]
        if join:
            for user in invite:
                self.join(user, room)
        return room

    def invite(self, user: MatrixUser, room: str) -> None:
        """The admin (the room's creator) invites `user`."""
        path = f"/rooms/{quote(room, safe='')}/invite"
        self._ok(self._client("POST", path, self.admin, json={"user_id": user.user_id}))

    def join(self, user: MatrixUser, room: str) -> None:
        self._ok(self._client("POST", f"/join/{quote(room, safe='')}", user, json={}))

    def send(self, user: MatrixUser, room: str, txn_id: str, content: dict[str, Any]) -> str:
        """`user` posts an `m.room.message` with that txnId; its event id."""
        path = f"/rooms/{quote(room, safe='')}/send/m.room.message/{quote(txn_id, safe='')}"
        event_id: str = self._ok(self._client("PUT", path, user, json=content))["event_id"]
        return event_id

    def messages(self, room: str) -> list[dict[str, Any]]:
        """Every `m.room.message` event in the room, oldest first (read as the admin)."""
        events: list[dict[str, Any]] = []
        params = {"dir": "f", "limit": "100"}
        while True:
            path = f"/rooms/{quote(room, safe='')}/messages?{urlencode(params)}"
            page = self._ok(self._client("GET", path, self.admin))
            events += [e for e in page["chunk"] if e["type"] == "m.room.message"]
            if not page.get("chunk") or "end" not in page:
                return events
            params["from"] = page["end"]

    def webhook_url(self, room: str, user: MatrixUser, *, base: str | None = None) -> str:
        """The Matrix entry for DISPATCHER_WEBHOOK_URLS (`base`: e.g. a proxy in front)."""
        query = urlencode({"access_token": user.access_token})
        return f"{base or self.url}/_matrix/client/v3/rooms/{quote(room, safe='')}?{query}"

    # Plumbing -----------------------------------------------------------------------------

    def _client(self, method: str, path: str, user: MatrixUser, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {user.access_token}"}
        url = f"{self.url}/_matrix/client/v3{path}"
        return self.http.request(method, url, headers=headers, timeout=30, **kwargs)

    @staticmethod
    def _ok(answer: requests.Response) -> Any:
        if answer.status_code != 200:
            raise AssertionError(
                f"Synapse: {answer.request.method} {answer.url}: "
                f"HTTP {answer.status_code} {answer.text[:500]}"
            )
        return answer.json()


def write_config(directory: Path, port: int, **overrides: Any) -> tuple[Path, str]:
    """homeserver.yaml (as JSON, which is YAML) for a test server; its shared secret."""
    shared_secret = secrets.token_urlsafe(24)
    seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    key_file = directory / "localhost.signing.key"
    key_file.write_text(f"ed25519 a_{secrets.token_hex(2)} {seed}\n", encoding="ascii")
    config: dict[str, Any] = {
        "server_name": "localhost",
        "pid_file": str(directory / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "media_store_path": str(directory / "media_store"),
        "signing_key_path": str(key_file),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_urlsafe(24),
        "form_secret": secrets.token_urlsafe(24),
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": False},
        "enable_metrics": False,
        # Tests register, log in and join a lot; rc_message stays at the default (0.2/s,
        # burst 10) for the rate-limit test.
        "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
        "rc_registration": UNLIMITED,
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
        "rc_joins_per_room": UNLIMITED,
        "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED, "per_issuer": UNLIMITED},
    }
    config.update(overrides)
    path = directory / "homeserver.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path, shared_secret


def start_synapse(venv: Path, directory: Path, **overrides: Any) -> Iterator[SynapseServer]:
    """Synapse in `directory` until the generator is closed; `overrides`: config keys."""
    python = venv / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"DISPATCHER_TEST_SYNAPSE={venv} has no bin/python; run scripts/synapse-setup")
    port = free_port()
    config, shared_secret = write_config(directory, port, **overrides)
    log_file = directory / "synapse.log"
    url = f"http://127.0.0.1:{port}"
    # Output to a file, not a pipe: nobody reads it while the server runs.
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "--config-path", str(config)],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_up(process, url, log_file)
        server = SynapseServer(url, shared_secret, log_file)
        try:
            yield server
        finally:
            server.http.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log_file: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{url}/_matrix/client/versions", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    if process.poll() is None:
        process.kill()
        process.wait()
    tail = log_file.read_text(errors="replace")[-3000:]
    pytest.fail(
        f"Synapse did not start within {START_TIMEOUT:g} s (exit {process.poll()}):\n{tail}"
    )


def synapse_venv() -> Path:
    """DISPATCHER_TEST_SYNAPSE, or a skip with the reason (CI always sets it)."""
    venv = os.environ.get("DISPATCHER_TEST_SYNAPSE")
    if not venv:
        pytest.skip(
            "real Matrix homeserver tests need DISPATCHER_TEST_SYNAPSE "
            "(set by .ci/run after scripts/synapse-setup)"
        )
    return Path(venv)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """One Synapse for the session, default `rc_message`; tests use their own users/rooms."""
    venv = synapse_venv()
    yield from start_synapse(venv, tmp_path_factory.mktemp("synapse"))
