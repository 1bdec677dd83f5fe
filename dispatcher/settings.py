"""Ops configuration: `DISPATCHER_*` environment variables, `.env`, `/run/secrets`.

The defaults make a fresh checkout run with no setup (SQLite, local outbox,
a development signing key). `ENV=production` turns each of those conveniences
into a startup error with one clear message, because in production a dev key
forges unsubscribe links and a channel without credentials silently posts nowhere.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-only-secret-key-do-not-use-in-production"
SECRETS_DIR = Path("/run/secrets")
DEFAULT_IMPRINT = (
    "Clusterplattform Deutschland (Beispielimpressum)\n"
    "Musterstraße 1, 10115 Berlin\n"
    "E-Mail: redaktion@example.org"
)


MAX_WORKERS = 32  #: the most sender processes per `tick` (`DISPATCHER_WORKERS`)
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: the shape of an ops address in `DISPATCHER_ALERT_EMAILS` (the relay judges the rest)
_ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+")


def available_cpus(
    cgroup_root: Path = CGROUP_ROOT, own_cgroup: Path = Path("/proc/self/cgroup")
) -> int:
    """The CPUs this process may use: its affinity mask (`taskset`, cpusets), capped by a
    cgroup v2 CPU quota (`cpu.max` of its cgroup or any parent, as Docker's `--cpus` and
    systemd's `CPUQuota=` set it; a fractional quota rounded up), 1 to `MAX_WORKERS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root, own_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, min(cpus, MAX_WORKERS))


def _cgroup_cpu_quota(cgroup_root: Path, own_cgroup: Path) -> float | None:
    """The smallest `cpu.max` quota (in CPUs) from the process's cgroup up to the root."""
    try:
        lines = own_cgroup.read_text().splitlines()
    except OSError:
        return None
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:  # no cgroup v2 hierarchy
        return None
    directory = cgroup_root / path.strip().lstrip("/")
    quotas = []
    for level in [directory, *directory.parents]:
        try:
            quota, period = (level / "cpu.max").read_text().split()[:2]
            if quota != "max" and float(period) > 0:
                quotas.append(float(quota) / float(period))
        except (OSError, ValueError):
            pass
        if level == cgroup_root:
            break
    return min(quotas) if quotas else None


class Settings(BaseSettings):
    """Every variable of docs/settings.md, with its default. Credentials are `SecretStr`."""

    model_config = SettingsConfigDict(
        env_prefix="DISPATCHER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///var/dispatcher.sqlite3"
    campaign_file: Path = Path("config/campaign.yaml")
    templates_dir: Path = Path("templates")
    smtp_url: SecretStr | None = None
    smtp_connections: int = Field(4, ge=1, le=64)
    smtp_helo: str | None = None  #: the EHLO name; unset: the machine's FQDN, else From's domain
    send_rate: float = Field(0, ge=0)
    outbox_dir: Path = Path("var/outbox")
    mail_from: str = "Clusterplattform <newsletter@localhost>"
    public_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)  #: 0: any free port (tests)
    imprint: str = DEFAULT_IMPRINT
    mastodon_base_url: str | None = None
    mastodon_access_token: SecretStr | None = None
    bluesky_pds_url: str = "https://bsky.social"
    bluesky_handle: str | None = None
    bluesky_app_password: SecretStr | None = None
    linkedin_access_token: SecretStr | None = None
    linkedin_author_urn: str | None = None
    linkedin_version: str | None = None
    linkedin_api_url: str = "https://api.linkedin.com"  #: only changed for a staging proxy or tests
    webhook_urls: SecretStr | None = None  #: webhook URLs embed their own secret tokens
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key_file: Path | None = None
    log_format: Literal["text", "json"] | None = None  #: None: text on a terminal, else json
    confirm_ttl_hours: int = Field(48, ge=1)  #: how long a double opt-in link stays valid
    subscribe_per_minute: int = Field(10, ge=1)  #: POST /subscribe per client address and minute
    consent_ip: Literal["truncate", "full", "none"] = "truncate"  #: IPv4 /24, IPv6 /48
    consent_text: str = (
        "Ja, ich möchte den Newsletter der Clusterwoche per E-Mail erhalten. Die Einwilligung "
        "kann ich jederzeit widerrufen, z. B. über den Abmeldelink in jeder E-Mail."
    )
    #: the consent sentence in the campaign's other languages (JSON: {"en": "…"}): a reader
    #: agrees to what they can read, and that text is what the ledger stores
    consent_texts: dict[str, str] = Field(
        default_factory=lambda: {
            "en": "Yes, I would like to receive the Cluster Week newsletter by email. I can "
            "withdraw my consent at any time, e.g. via the unsubscribe link in every email."
        }
    )

    def consent_text_for(self, lang: str | None) -> str:
        """The consent sentence a reader of `lang` is shown (the default one otherwise)."""
        return (self.consent_texts.get(lang) if lang else None) or self.consent_text

    #: sender processes per `tick` (one core each); default: the CPUs available to the process
    workers: int = Field(default_factory=available_cpus, ge=1, le=MAX_WORKERS)
    claim_batch: int = Field(100, ge=1, le=10_000)  #: deliveries per claim: the crash-repeat bound
    lease_seconds: float = Field(300, gt=0)  #: a claim not finished by then is taken over
    poll_seconds: float = Field(30, gt=0)  #: how often `run` looks for retries and catch-up
    shutdown_seconds: float = Field(30, gt=0)  #: the longest a graceful stop may take
    #: PostgreSQL: statement/lock timeout; no answer within this (+5 s) abandons the connection
    db_timeout_seconds: float = Field(30, gt=0, le=3600)
    #: a send lane without progress (message, lease renewal, ledger write) this long is hung
    hang_seconds: float = Field(600, gt=0)
    #: a tick further ahead of the last one refuses; 26 h leaves a daily `tick` room for jitter
    clock_jump_hours: float = Field(26, gt=0)
    bounce_webhook_token: SecretStr | None = None  #: unset: POST /webhooks/bounce answers 404
    soft_bounce_limit: int = Field(3, ge=1)  #: consecutive soft bounces that suppress an address
    return_path: str | None = None  #: envelope sender (MAIL FROM) for bounces; default: MAIL_FROM
    http_max_connections: int = Field(0, ge=0)  #: open HTTP connections; 0: fd limit / 4
    http_header_timeout: float = Field(10, gt=0)  #: seconds a client has to send request headers
    metrics_cache_seconds: float = Field(5, ge=0)  #: /metrics reads the ledger at most this often
    metrics_token: SecretStr | None = None  #: set: /metrics needs `Authorization: Bearer <it>`
    form_origins: str = ""  #: other sites whose pages may POST /subscribe, comma-separated
    #: the desk: a request header naming the signed-in editor, set by a trusted reverse proxy
    desk_trusted_header: str | None = None
    desk_session_hours: float = Field(12, gt=0, le=24 * 30)  #: a desk session ends this much later
    desk_sign_in_per_hour: int = Field(5, ge=1)  #: sign-in links per address and hour
    #: a desk change to a send less than this many minutes ahead needs an explicit confirmation
    desk_freeze_minutes: float = Field(10, ge=0)
    #: ops addresses told of alerts (docs/operations.md, "Alerts"), comma-separated; empty: none
    alert_emails: str = ""
    #: chat webhooks told of alerts, written as DISPATCHER_WEBHOOK_URLS (they embed secrets)
    alert_webhook_urls: SecretStr | None = None
    #: a channel backing off, or the campaign file invalid, this long is alerted
    alert_after_minutes: float = Field(15, gt=0)

    @field_validator("alert_emails")
    @classmethod
    def _alert_addresses(cls, value: str) -> str:
        """One address per entry; the message names the entry, not the value."""
        for number, entry in enumerate(value.split(","), start=1):
            address = entry.strip()
            if address and not _ADDRESS.fullmatch(address):
                raise ValueError(f"entry {number} is not an email address (name@domain)")
        return value

    @property
    def alert_addresses(self) -> tuple[str, ...]:
        """`alert_emails` as a list, without empty entries and repeats."""
        entries = (entry.strip() for entry in self.alert_emails.split(","))
        return tuple(dict.fromkeys(entry for entry in entries if entry))

    def production_problems(self) -> list[str]:
        """The development defaults of the settings themselves that production must not run
        with (the channels' credentials: `wiring.production_problems`)."""
        if self.env != "production":
            return []
        problems = []
        if self.secret_key.get_secret_value() == DEV_SECRET_KEY:
            problems.append(
                "DISPATCHER_SECRET_KEY is the development key; set a long random value "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        elif len(self.secret_key.get_secret_value()) < 32:
            problems.append("DISPATCHER_SECRET_KEY is shorter than 32 characters; use a longer one")
        return problems


class SettingsError(Exception):
    """The environment holds a value that cannot be used; the message names the variable."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings; `/run/secrets` is used when it exists (Docker/Kubernetes secrets)."""
    secrets = {"_secrets_dir": SECRETS_DIR} if SECRETS_DIR.is_dir() else {}
    try:
        return Settings(**secrets, **overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = []
        for detail in error.errors():
            name = "DISPATCHER_" + "_".join(str(p) for p in detail["loc"]).upper()
            # Never echo the input: it may be a secret.
            lines.append(f"settings: {name}: {detail['msg']}")
        raise SettingsError("\n".join(lines)) from None
