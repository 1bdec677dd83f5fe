"""Channels without an endpoint: one file per delivery (`.eml` for email, `.json` for posts).

A fresh checkout and the tests have no SMTP relay, yet the whole pipeline must
run and its output must be inspectable (open the file in a mail client). The
file name comes from the delivery key, so a retried or re-run delivery rewrites
the same file instead of adding a second one: this channel is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dispatcher.channels.base import ChannelError, Envelope, Post, Receipt

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


def file_name(key: str, suffix: str = ".eml") -> str:
    """A portable file name that is unique per key.

    Keys may hold `/`, `:` or non-ASCII characters. Replacing those could make two
    keys collide, so a changed or shortened key gets a hash of the original key.
    """
    stem = _UNSAFE.sub("_", key).strip("._") or "message"
    if stem != key or len(stem) > _MAX_STEM:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        stem = f"{stem[:_MAX_STEM]}-{digest}"
    return f"{stem}{suffix}"


class Outbox:
    """Writes each message to `<directory>/<key>.eml`; safe to call from many threads."""

    kind: str = "email"
    idempotent: bool = True

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def send(self, envelope: Envelope, *, key: str) -> Receipt:
        path = self.directory / file_name(key)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, envelope.data)
        except OSError as error:
            # A full disk or a wrong permission can be fixed; the next run retries.
            raise ChannelError(f"outbox: cannot write {path}: {error}") from error
        return Receipt(
            provider_id=str(path),
            details={"mail_from": envelope.mail_from, "rcpt_to": envelope.rcpt_to},
        )

    def close(self) -> None:
        """Nothing is held open between messages."""


class PostOutbox:
    """A social channel in development without credentials: writes the exact request.

    `describe(post, key)` is the channel module's own `describe_request`, so the
    file shows method, URL, headers (without secrets) and the JSON body that the
    real channel would send.
    """

    idempotent: bool = True

    def __init__(
        self, kind: str, directory: Path, describe: Callable[[Post, str], dict[str, Any]]
    ) -> None:
        self.kind = kind
        self.directory = Path(directory) / kind
        self._describe = describe

    def send(self, post: Post, *, key: str) -> Receipt:
        path = self.directory / file_name(key, ".json")
        request = self._describe(post, key)
        data = json.dumps(request, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, data)
        except OSError as error:
            raise ChannelError(f"outbox: cannot write {path}: {error}") from error
        return Receipt(provider_id=str(path))

    def close(self) -> None:
        """Nothing is held open between posts."""


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers (and a crash) see either the old file or the complete new one, never half."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
