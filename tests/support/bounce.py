"""The web app with the bounce webhook switched on, for tests that post to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

from dispatcher.campaign.loading import load_campaign
from dispatcher.delivery import wiring
from dispatcher.settings import Settings
from dispatcher.web import bounce as bounce_routes
from dispatcher.web.app import create_app
from dispatcher.web.server import BackgroundServer
from dispatcher.web.state import WebState
from tests.support.database import Database
from tests.support.smtpd import SmtpServer
from tests.support.webapp import ManualClock, web_settings

TOKEN = "bounce-token-0123456789abcdefghijklmnop"


class BounceSettings(Settings):
    """The settings with the bounce webhook's fields, whether or not `Settings` has them yet."""

    bounce_webhook_token: SecretStr | None = None
    soft_bounce_limit: int = Field(3, ge=1)
    return_path: str | None = None


def bounce_settings(
    database: Database, smtp: SmtpServer, directory: Path, **extra: Any
) -> BounceSettings:
    """The web app's test settings plus `extra` (e.g. `bounce_webhook_token=TOKEN`)."""
    values = web_settings(database, smtp, directory).model_dump()
    values.update(extra)
    return BounceSettings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def serve(state: WebState) -> Iterator[str]:
    """`create_app(state)`, plus the bounce route if `create_app` does not list it yet."""
    app = create_app(state)
    if not any(getattr(route, "path", None) == bounce_routes.PATH for route in app.routes):
        app.router.routes.extend(bounce_routes.routes(state))
    server = BackgroundServer(app, "127.0.0.1", 0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def make_state(settings: Settings, database: Database, clock: ManualClock) -> WebState:
    """A `WebState` over `database` with the campaign file `settings` names."""
    campaign = load_campaign(settings.campaign_file)
    return WebState(
        settings=settings,
        engine=database.engine,
        campaign=lambda: campaign,
        email_channel=lambda: wiring.email_channel(settings),
        clock=clock,
    )
