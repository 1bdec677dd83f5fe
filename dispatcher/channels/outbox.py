"""The email channel without a mail server: one `.eml` file per delivery.

A fresh checkout and the tests have no SMTP relay, yet the whole pipeline must
run and its output must be inspectable (open the file in a mail client). The
file name comes from the delivery key, so a retried or re-run delivery rewrites
the same file instead of adding a second one: this channel is idempotent.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from dispatcher.channels.base import ChannelError, Envelope, Receipt

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


def file_name(key: str) -> str:
    """A portable file name that is unique per key.

    Keys may hold `/`, `:` or non-ASCII characters. Replacing those could make two
    keys collide, so a changed or shortened key gets a hash of the original key.
    """
    stem = _UNSAFE.sub("_", key).strip("._") or "message"
    if stem != key or len(stem) > _MAX_STEM:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        stem = f"{stem[:_MAX_STEM]}-{digest}"
    return f"{stem}.eml"


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
