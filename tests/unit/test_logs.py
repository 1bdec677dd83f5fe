"""The log format ops parse: one JSON object per line, whichever library logged it."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import Iterator

import pytest

from dispatcher import logs


@pytest.fixture
def configured() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.captureWarnings(False)


def test_every_library_logger_writes_json_lines(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("json")
    logging.getLogger("dispatcher").info("started", extra={"event": "service_started"})
    logging.getLogger("apscheduler.executors.default").error("job raised\nan exception")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("alembic.runtime.migration").warning("a migration warning")
    logging.getLogger("asyncio").error("Task exception was never retrieved")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("something is deprecated", DeprecationWarning, stacklevel=1)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger().exception("unexpected")
    logging.getLogger("apscheduler.scheduler").info("Added job (below WARNING: not shown)")

    out = capsys.readouterr()
    entries = [json.loads(line) for line in out.out.splitlines()]
    assert out.err == ""
    assert [(e["logger"], e["level"]) for e in entries] == [
        ("dispatcher", "info"),
        ("apscheduler.executors.default", "error"),
        ("uvicorn.error", "warning"),
        ("alembic.runtime.migration", "warning"),
        ("asyncio", "error"),
        ("py.warnings", "warning"),
        ("root", "error"),
    ]
    assert entries[0]["event"] == "service_started"
    assert "DeprecationWarning: something is deprecated" in entries[5]["message"]
    assert "RuntimeError: boom" in entries[6]["exception"]


def test_an_asyncio_task_error_is_a_json_line(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("json")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_exception_handler({"message": "Task exception was never retrieved"})
        await asyncio.sleep(0)

    asyncio.run(main())
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entry["logger"] == "asyncio"
    assert entry["message"] == "Task exception was never retrieved"
