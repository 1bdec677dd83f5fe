"""Logging for ops: JSON lines when not on a terminal, readable text on one.

Every record may carry `extra={"event": ..., "dispatch": ..., "channel": ...}`;
those fields become JSON keys, so log pipelines can filter on them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Literal

FIELDS = ("event", "dispatch", "channel", "item", "day", "counts", "error", "delivery")
logger = logging.getLogger("dispatcher")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(log_format: Literal["text", "json"] | None, level: int = logging.INFO) -> None:
    """Send the dispatcher's logs to stdout in the chosen (or detected) format."""
    fmt = log_format or ("text" if sys.stdout.isatty() else "json")
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
