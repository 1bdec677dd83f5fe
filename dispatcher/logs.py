"""Logging for ops: JSON lines when not on a terminal, readable text on one.

Every record may carry `extra={"event": ..., "dispatch": ..., "channel": ...}`;
those fields become JSON keys, so log pipelines can filter on them.

The handler sits on the root logger, so the libraries' own loggers (APScheduler,
asyncio, uvicorn, alembic, and `warnings` through `py.warnings`) come out in the
same format: one JSON object per line, never a plain-text line in between.
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
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(log_format: Literal["text", "json"] | None, level: int = logging.INFO) -> None:
    """Send every log record to stdout in the chosen (or detected) format.

    The dispatcher logs at `level`; libraries only from WARNING on (APScheduler would
    otherwise log every job run).
    """
    fmt = log_format or ("text" if sys.stdout.isatty() else "json")
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logger.handlers.clear()
    logger.setLevel(level)
    logger.propagate = True
    # Loggers that libraries configured for themselves (uvicorn's default config gives its
    # loggers plain-text handlers) would bypass the root handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "alembic"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    logging.captureWarnings(True)
