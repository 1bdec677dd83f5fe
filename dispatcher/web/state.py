"""What the HTTP app needs from the process that serves it (`run` or `web`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jinja2
import sqlalchemy as sa

from dispatcher.campaign.model import Campaign
from dispatcher.channels.base import EmailChannel
from dispatcher.clock import Clock, utc_now
from dispatcher.content.rendering import create_environment
from dispatcher.settings import Settings
from dispatcher.web.background import Background


@dataclass
class WebState:
    """What the app needs from the process that serves it."""

    settings: Settings
    engine: sa.Engine
    campaign: Callable[[], Campaign]  #: the campaign in force (the service reloads it)
    email_channel: Callable[[], EmailChannel]  #: for confirmation emails (SMTP or outbox)
    #: False makes /readyz answer 503; None: no scheduler in this process (`dispatcher web`)
    scheduler_alive: Callable[[], bool] | None = None
    reload_errors: Callable[[], int] = lambda: 0  #: rejected campaign reloads so far
    #: the campaign file's problems as it is now (`file:line:col: path: message`), empty when
    #: the campaign in force is the file; else the last good version is in force
    #: (`dispatcher.campaign.source`). The desk shows them first on every page.
    campaign_problems: Callable[[], list[str]] = lambda: []
    #: why the process is not alive (a hung send lane), or None: /healthz answers 503 then
    liveness: Callable[[], str | None] = lambda: None
    #: after the desk wrote the campaign file: load it now (`run`: the service's reload,
    #: `web`: the source's check), so the next page shows the change
    campaign_changed: Callable[[], object] = lambda: None
    clock: Clock = utc_now
    templates: jinja2.Environment = field(init=False)
    #: sign-up work done after the answer (see `dispatcher.web.background`)
    background: Background = field(init=False)

    def __post_init__(self) -> None:
        self.templates = create_environment(self.settings.templates_dir)
        self.background = Background("subscriptions")
