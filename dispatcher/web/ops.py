"""Health, readiness and metrics for monitoring (docs/operations.md).

* `GET /healthz` — liveness: the process answers and no send lane is hung (the
  service's watchdog); touches nothing else, not even the database.
* `GET /readyz` — readiness: the ledger answers `SELECT 1` within `READY_TIMEOUT`
  seconds and the scheduler runs (`absent` under `dispatcher web`, which has none); JSON
  with the next send per channel, and the pauses in force (`dispatcher pause`) — a pause is
  intended, so it leaves the answer 200. 503 otherwise.
* `GET /metrics` — Prometheus text format (see `dispatcher.delivery.metrics`), rendered at most
  once per `DISPATCHER_METRICS_CACHE_SECONDS` (5; 0: every scrape); with
  `DISPATCHER_METRICS_TOKEN` set it needs `Authorization: Bearer <token>` (401 otherwise).
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import anyio
import anyio.to_thread
import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from dispatcher.campaign.model import Channel
from dispatcher.delivery import controls, metrics, schedule
from dispatcher.ledger import stats
from dispatcher.ledger.engine import reader
from dispatcher.web.bounce import bearer_token, token_matches
from dispatcher.web.state import WebState

READY_TIMEOUT = 3.0  #: seconds /readyz waits for the database before answering 503
_NO_STORE = {"Cache-Control": "no-store"}


class _Probe:
    """The database check, run in a worker thread. At most one runs at a time: while a
    check hangs on a dead network, further probes answer 503 at once instead of piling up
    threads that wait on the same TCP timeout."""

    def __init__(self, state: WebState) -> None:
        self._state = state
        self._busy = threading.Lock()

    def start(self) -> bool:
        return self._busy.acquire(blocking=False)

    def run(self) -> tuple[dict[Channel, dt.datetime | None], list[controls.Pause]]:
        """Must follow a successful `start()`; releases it when done."""
        try:
            with reader(self._state.engine).connect() as connection:
                stats.ping(connection)
                campaign = self._state.campaign()
                plan = schedule.ledger_plan(connection, campaign, self._state.clock())
                held = controls.pauses(connection)
            return schedule.next_sends(plan, campaign), held
        finally:
            self._busy.release()


def describe_error(error: BaseException, url: sa.URL) -> str:
    """One line about why the database did not answer — never with its password."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    text = f"{type(cause).__name__}: {lines[0] if lines else 'no details'}"
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def routes(state: WebState) -> list[Route]:
    ledger = metrics.LedgerCollector(
        state.engine,
        state.campaign,
        state.clock,
        cache_seconds=state.settings.metrics_cache_seconds,
    )
    registry = metrics.build_registry(ledger)
    probe = _Probe(state)
    # The whole page is kept for the cache period: a scrape in between costs the process
    # a few hundred microseconds, not a rendering of every collector. Concurrent scrapes
    # queue on the lock rather than each holding a worker thread; all but the first then
    # find the page fresh.
    scraping = anyio.Lock()
    page: list[tuple[float, bytes]] = []  # [(monotonic time rendered, body)], at most one

    def fresh_page() -> bytes | None:
        if page and time.monotonic() - page[0][0] < state.settings.metrics_cache_seconds:
            return page[0][1]
        return None

    async def healthz(request: Request) -> Response:
        problem = state.liveness()
        if problem is not None:
            return PlainTextResponse(f"unhealthy: {problem}", status_code=503, headers=_NO_STORE)
        return PlainTextResponse("ok", headers=_NO_STORE)

    async def readyz(request: Request) -> Response:
        # `dispatcher web` serves without a scheduler: readiness is then the database alone.
        scheduler = (
            "absent"
            if state.scheduler_alive is None
            else "running"
            if state.scheduler_alive()
            else "stopped"
        )
        body: dict[str, object] = {}
        if not probe.start():
            database = "unavailable: the previous check is still waiting for the database"
        else:
            try:
                with anyio.fail_after(READY_TIMEOUT):
                    upcoming, held = await anyio.to_thread.run_sync(
                        probe.run, abandon_on_cancel=True
                    )
            except TimeoutError:
                database = f"unavailable: no answer within {READY_TIMEOUT:g} s"
            except (sa.exc.SQLAlchemyError, OSError) as error:
                database = "unavailable: " + describe_error(error, state.engine.url)
            else:
                database = "ok"
                body["next_send"] = {
                    str(channel): None if at is None else at.isoformat()
                    for channel, at in upcoming.items()
                }
                if held:  # only while something is paused: the usual answer stays as it was
                    body["paused"] = {
                        "all" if pause.channel is None else str(pause.channel): {
                            "since": pause.paused_at.isoformat(),
                            "by": pause.by,
                        }
                        for pause in held
                    }
        ready = database == "ok" and scheduler != "stopped"
        body = {
            "status": "ok" if ready else "unavailable",
            "database": database,
            "scheduler": scheduler,
            **body,
        }
        return JSONResponse(body, status_code=200 if ready else 503, headers=_NO_STORE)

    async def metrics_page(request: Request) -> Response:
        token = state.settings.metrics_token
        expected = token.get_secret_value() if token is not None else ""
        if expected and not token_matches(
            bearer_token(request.headers.get("authorization")), expected
        ):
            return PlainTextResponse(
                "missing or wrong bearer token (DISPATCHER_METRICS_TOKEN)",
                401,
                headers={**_NO_STORE, "WWW-Authenticate": 'Bearer realm="dispatcher-metrics"'},
            )
        body = fresh_page()
        if body is None:
            async with scraping:
                body = fresh_page()
                if body is None:
                    body = await anyio.to_thread.run_sync(generate_latest, registry)
                    page[:] = [(time.monotonic(), body)]
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=_NO_STORE)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
    ]
