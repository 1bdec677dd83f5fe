"""Settings: defaults that run out of the box, and production refusing them."""

from __future__ import annotations

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
