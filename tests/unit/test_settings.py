"""Settings: defaults that run out of the box, and production refusing them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dispatcher import settings as settings_module
from dispatcher.campaign.model import Channel
from dispatcher.delivery import wiring
from dispatcher.settings import DEV_SECRET_KEY, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts from no DISPATCHER_* variables and no .env in the working directory."""
    for name in list(__import__("os").environ):
        if name.startswith("DISPATCHER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "no-secrets")


def test_defaults_follow_the_design() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///var/dispatcher.sqlite3"
    assert s.campaign_file == Path("config/campaign.yaml")
    assert s.templates_dir == Path("templates")
    assert s.smtp_url is None
    assert (s.smtp_connections, s.send_rate) == (4, 0)
    assert s.outbox_dir == Path("var/outbox")
    assert s.mail_from == "Clusterplattform <newsletter@localhost>"
    assert s.public_url == "http://127.0.0.1:8080"
    assert s.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert (s.env, s.http_host, s.http_port) == ("development", "127.0.0.1", 8080)
    assert s.bluesky_pds_url == "https://bsky.social"
    assert s.log_format is None
    assert wiring.production_problems(s, list(Channel)) == []


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISPATCHER_SMTP_CONNECTIONS=8\nDISPATCHER_HTTP_PORT=9000\n")
    monkeypatch.setenv("DISPATCHER_HTTP_PORT", "9100")  # the environment wins over .env
    s = load_settings()
    assert (s.smtp_connections, s.http_port) == (8, 9100)


def test_secrets_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "DISPATCHER_SECRET_KEY").write_text("k" * 40)
    (secrets / "DISPATCHER_MASTODON_ACCESS_TOKEN").write_text("token-from-a-file")
    monkeypatch.setattr(settings_module, "SECRETS_DIR", secrets)
    s = load_settings()
    assert s.secret_key.get_secret_value() == "k" * 40
    assert s.mastodon_access_token is not None
    assert s.mastodon_access_token.get_secret_value() == "token-from-a-file"
    assert "token-from-a-file" not in repr(s)


def test_production_refuses_dev_defaults_one_message_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_ENV", "production")
    monkeypatch.setenv("DISPATCHER_MASTODON_BASE_URL", "https://social.example")
    problems = wiring.production_problems(load_settings(), [Channel.EMAIL, Channel.MASTODON])
    assert len(problems) == 3
    assert problems[0].startswith("DISPATCHER_SECRET_KEY is the development key")
    assert "channel email" in problems[1] and "DISPATCHER_SMTP_URL" in problems[1]
    assert "channel mastodon" in problems[2] and "DISPATCHER_MASTODON_ACCESS_TOKEN" in problems[2]


def test_production_with_everything_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_ENV", "production")
    monkeypatch.setenv("DISPATCHER_SECRET_KEY", "x" * 48)
    monkeypatch.setenv("DISPATCHER_SMTP_URL", "smtp://user:pw@mail.example:587?starttls=true")
    monkeypatch.setenv("DISPATCHER_WEBHOOK_URLS", "https://hooks.slack.com/services/T/B/X")
    assert wiring.production_problems(load_settings(), [Channel.EMAIL, Channel.WEBHOOK]) == []


def test_bad_value_names_the_variable_but_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHER_SMTP_CONNECTIONS", "many-secret-value")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "DISPATCHER_SMTP_CONNECTIONS" in str(caught.value)
    assert "many-secret-value" not in str(caught.value)


# --- DISPATCHER_WORKERS: the CPUs the process may use ---------------------------------------


def cgroup_tree(root: Path, quotas: dict[str, str]) -> Path:
    """A cgroup v2 tree under `root` with `cpu.max` files; returns the /proc/self/cgroup file
    that places the process in `system.slice/dispatcher.service`."""
    for directory, value in quotas.items():
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory / "cpu.max").write_text(value + "\n")
    (root / "system.slice/dispatcher.service").mkdir(parents=True, exist_ok=True)
    own = root / "self-cgroup"
    own.write_text("0::/system.slice/dispatcher.service\n")
    return own


@pytest.mark.parametrize(
    ("affinity", "quotas", "expected"),
    [
        (4, {}, 4),  # no cpu.max anywhere: the affinity mask
        (4, {"": "max 100000", "system.slice/dispatcher.service": "max 100000"}, 4),
        (4, {"system.slice/dispatcher.service": "200000 100000"}, 2),  # docker --cpus 2
        (4, {"system.slice/dispatcher.service": "150000 100000"}, 2),  # 1.5 CPUs: rounded up
        (4, {"system.slice": "100000 100000", "system.slice/dispatcher.service": "max 1"}, 1),
        (4, {"system.slice/dispatcher.service": "20000 100000"}, 1),  # at least 1
        (2, {"system.slice/dispatcher.service": "800000 100000"}, 2),  # taskset -c 0,1
        (64, {}, 32),  # no more than DISPATCHER_WORKERS allows
    ],
)
def test_workers_default_to_the_cpus_the_process_may_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, affinity: int, quotas: dict[str, str],
    expected: int,
) -> None:  # fmt: skip
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)))
    own = cgroup_tree(tmp_path / "cgroup", quotas)
    assert settings_module.available_cpus(tmp_path / "cgroup", own) == expected


def test_workers_without_cgroup_v2_follow_the_affinity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    v1 = tmp_path / "self-cgroup"
    v1.write_text("4:memory:/x\n1:cpu:/\n")  # a cgroup v1 host: no "0::" line
    assert settings_module.available_cpus(tmp_path, v1) == 3
    assert settings_module.available_cpus(tmp_path, tmp_path / "missing") == 3


def test_workers_default_here_and_one_stays_possible(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().workers == settings_module.available_cpus() >= 1
    monkeypatch.setenv("DISPATCHER_WORKERS", "1")
    assert load_settings().workers == 1
