"""The deployment files keep their promises: Compose, Dockerfile, systemd unit, env example.

Structural checks that need no Docker engine: what an operator relies on when the service is
stopped (the grace period outlasts the drain), restarted (policy, health), configured (every
setting documented) and scaled (a second replica on PostgreSQL). Where a Docker Compose v2 CLI
is installed, `docker compose config` also validates the file against the Compose spec.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher import settings as settings_module
from dispatcher.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNIT = ROOT / "deploy" / "dispatcher.service"
ENV_EXAMPLE = ROOT / "config" / "dispatcher.env.example"
DISPATCHERS = ("dispatcher", "dispatcher-2")


def default_shutdown_seconds() -> float:
    return float(Settings.model_fields["shutdown_seconds"].default)


def default_http_port() -> int:
    return int(Settings.model_fields["http_port"].default)


def seconds(duration: str | int | float, *, unit: str = "s") -> float:
    """`40s`, `1m30s`, `2min`, `1.5s` (Compose and systemd durations); a bare number is `unit`."""
    if isinstance(duration, int | float):
        duration = f"{duration}{unit}"
    text = duration.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        text += unit
    factors = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|us|min|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), duration
    return sum(float(number) * factors[name] for number, name in parts)


# --- docker-compose.yml --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return services[name]


def test_compose_has_the_stack_under_one_project_name(compose: dict[str, Any]) -> None:
    assert compose["name"] == "clusterwoche"
    assert {"dispatcher", "postgres", "mailpit"} <= set(compose["services"])


def test_dispatcher_waits_for_a_healthy_postgres_and_restarts(compose: dict[str, Any]) -> None:
    for name in DISPATCHERS:
        dispatcher = service(compose, name)
        assert dispatcher["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert dispatcher["restart"] in {"unless-stopped", "always", "on-failure"}
        assert "build" in dispatcher
        # The image's HEALTHCHECK applies unless the service turns it off.
        assert not dispatcher.get("healthcheck", {}).get("disable", False)


def test_dispatcher_uses_postgres_and_mailpit_and_the_env_file(compose: dict[str, Any]) -> None:
    for name in DISPATCHERS:
        dispatcher = service(compose, name)
        env = dispatcher["environment"]
        assert env["DISPATCHER_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["DISPATCHER_DATABASE_URL"]
        assert env["DISPATCHER_SMTP_URL"] == "smtp://mailpit:1025"
        # Listening on the container's loopback only would make the published port dead.
        assert env.get("DISPATCHER_HTTP_HOST", "0.0.0.0") == "0.0.0.0"
        env_files = [
            entry if isinstance(entry, str) else entry["path"] for entry in dispatcher["env_file"]
        ]
        assert env_files == ["config/dispatcher.env"]


def test_dispatcher_mounts_config_and_templates_read_only(compose: dict[str, Any]) -> None:
    volumes = service(compose, "dispatcher")["volumes"]
    assert "./config:/app/config:ro" in volumes
    assert "./templates:/app/templates:ro" in volumes
    named = [v.split(":")[0] for v in volumes if not v.startswith((".", "/"))]
    assert named and set(named) <= set(compose["volumes"])


def test_stop_grace_period_outlasts_the_graceful_drain(compose: dict[str, Any]) -> None:
    for name in DISPATCHERS:
        dispatcher = service(compose, name)
        assert dispatcher.get("stop_signal", "SIGTERM") == "SIGTERM"
        # Compose's default is 10 s: without this, a drain of 30 s ends in SIGKILL mid-send.
        assert seconds(dispatcher["stop_grace_period"]) > default_shutdown_seconds()


def test_postgres_is_current_persistent_and_checked_with_pg_isready(
    compose: dict[str, Any],
) -> None:
    postgres = service(compose, "postgres")
    image, _, tag = postgres["image"].partition(":")
    assert image == "postgres" and int(tag.split(".")[0].split("-")[0]) >= 16
    test = postgres["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))
    data = [v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data")]
    assert len(data) == 1
    volume = data[0].split(":")[0]
    assert not volume.startswith((".", "/")), "a named volume, not a bind mount"
    assert volume in compose["volumes"]
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(postgres["environment"])


def test_mailpit_publishes_its_web_ui(compose: dict[str, Any]) -> None:
    mailpit = service(compose, "mailpit")
    assert mailpit["image"].startswith("axllent/mailpit")
    assert "8025:8025" in mailpit["ports"]
    assert not any(str(port).startswith("1025:") for port in mailpit["ports"])


def test_scale_profile_adds_a_second_replica_of_the_same_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    scaled = [name for name, svc in services.items() if "scale" in svc.get("profiles", [])]
    assert scaled == ["dispatcher-2"]
    first, second = service(compose, "dispatcher"), service(compose, "dispatcher-2")
    assert "profiles" not in first, "the first dispatcher must start without a profile"
    for key in ("build", "env_file", "environment", "depends_on", "volumes", "stop_grace_period"):
        assert second[key] == first[key], key
    host_ports = [str(p).rsplit(":", 1)[0] for svc in (first, second) for p in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "the two replicas share no host port"


def docker_compose_v2() -> str | None:
    """Why `docker compose config` cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker client installed"
    try:
        version = subprocess.run(
            ["docker", "compose", "version", "--short"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"docker compose version failed: {error}"
    if version.returncode != 0:
        return "the docker client has no compose plugin (Docker Compose v2)"
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    reason = docker_compose_v2()
    if reason is not None:
        pytest.skip(f"docker compose config not run: {reason}")
    # A copy, so the check neither needs nor reads an operator's real config/dispatcher.env.
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "templates").mkdir()
    (tmp_path / "config").mkdir()
    shutil.copy(ENV_EXAMPLE, tmp_path / "config" / "dispatcher.env")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "POSTGRES_"))}
    for profile_args in ([], ["--profile", "scale"]):
        result = subprocess.run(
            ["docker", "compose", *profile_args, "-f", "docker-compose.yml", "config", "-q"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr


# --- Dockerfile and .dockerignore -------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, f"instruction before FROM: {line}"
        stages[-1].append((keyword.upper(), " ".join(arguments.split())))
    return stages


def instructions(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for name, arguments in stage if name == keyword]


def test_dockerfile_builds_in_one_stage_and_runs_slim_python_in_another() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    for stage in stages:
        assert instructions(stage, "FROM")[0].startswith("python:3.11-slim-bookworm")
    builder, runtime = stages[0], stages[-1]
    assert any("pip wheel" in run for run in instructions(builder, "RUN"))
    installs = " ".join(instructions(runtime, "RUN"))
    assert "pip install" in installs and "--no-index" in installs
    assert "[test]" not in installs and "gcc" not in installs and "build-essential" not in installs


def test_dockerfile_runs_dispatcher_as_a_non_root_user() -> None:
    runtime = dockerfile_stages()[-1]
    users = instructions(runtime, "USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert "--uid 10001" in " ".join(instructions(runtime, "RUN"))
    assert instructions(runtime, "WORKDIR") == ["/app"]
    assert json.loads(instructions(runtime, "ENTRYPOINT")[-1]) == ["dispatcher"]
    assert json.loads(instructions(runtime, "CMD")[-1]) == ["run"]
    assert instructions(runtime, "STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_listens_on_all_interfaces_logs_json_and_checks_healthz() -> None:
    runtime = dockerfile_stages()[-1]
    env = " ".join(instructions(runtime, "ENV"))
    for setting in (
        "PYTHONUNBUFFERED=1",
        "DISPATCHER_HTTP_HOST=0.0.0.0",
        "DISPATCHER_LOG_FORMAT=json",
    ):
        assert setting in env
    assert instructions(runtime, "EXPOSE") == [str(default_http_port())]
    healthcheck = instructions(runtime, "HEALTHCHECK")
    assert len(healthcheck) == 1
    assert "/healthz" in healthcheck[0] and "urllib" in healthcheck[0]
    assert "curl" not in healthcheck[0], "the slim image has no curl"
    copied = " ".join(instructions(runtime, "COPY"))
    assert "templates" in copied and "config" in copied


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "var", ".cache", "tests", ".env", "config/*.env"} <= patterns
    assert not {"dispatcher", "templates", "config", "pyproject.toml", "README.md"} & patterns


# --- deploy/dispatcher.service ---------------------------------------------------------------


def unit_file() -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (a systemd key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_restarts_on_failure_and_reads_the_env_file() -> None:
    service_section = unit_file()["Service"]
    assert service_section["Restart"] == ["on-failure"]
    assert service_section["EnvironmentFile"] == ["/etc/dispatcher/dispatcher.env"]
    assert service_section["User"] == ["dispatcher"]
    assert service_section["WorkingDirectory"] == ["/opt/dispatcher"]
    assert service_section["ExecStart"] == ["/opt/dispatcher/.venv/bin/dispatcher run"]
    assert service_section["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit_file()["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_stop_timeout_outlasts_the_graceful_drain() -> None:
    service_section = unit_file()["Service"]
    assert service_section.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"]
    timeout = seconds(service_section["TimeoutStopSec"][-1])
    assert timeout > default_shutdown_seconds()


def test_systemd_unit_is_hardened_but_can_write_its_var_directory() -> None:
    service_section = unit_file()["Service"]
    assert service_section["NoNewPrivileges"] == ["yes"]
    assert service_section["ProtectSystem"] == ["strict"]
    assert service_section["ReadWritePaths"] == ["/opt/dispatcher/var"]
    assert service_section["PrivateTmp"] == ["yes"]
    assert service_section["ProtectHome"] == ["yes"]


# --- config/dispatcher.env.example ----------------------------------------------------------


def example_lines() -> tuple[dict[str, str], set[str]]:
    """(variables set, with their values; variables only shown in a comment)."""
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.fullmatch(r"(DISPATCHER_[A-Z0-9_]+)=(.*)", line):
            assert match[1] not in active, f"{match[1]} is set twice"
            active[match[1]] = match[2]
        elif match := re.fullmatch(r"#\s*(DISPATCHER_[A-Z0-9_]+)=.*", line):
            commented.add(match[1])
    return active, commented


def setting_names() -> set[str]:
    return {f"DISPATCHER_{name.upper()}" for name in Settings.model_fields}


def test_env_example_lists_every_setting() -> None:
    active, commented = example_lines()
    missing = setting_names() - set(active) - commented
    assert not missing, f"config/dispatcher.env.example lacks {sorted(missing)}"


def test_env_example_lists_no_unknown_variable() -> None:
    active, commented = example_lines()
    unknown = (set(active) | commented) - setting_names()
    assert not unknown, f"not settings (typo?): {sorted(unknown)}"


def test_env_example_does_not_pin_what_the_image_sets() -> None:
    # env_file wins over the image's ENV: setting these would make the container listen on its
    # own loopback only, or log text.
    active, _ = example_lines()
    assert "DISPATCHER_HTTP_HOST" not in active
    assert "DISPATCHER_LOG_FORMAT" not in active


def test_env_example_loads_and_production_demands_a_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("DISPATCHER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "no-secrets")
    active, _ = example_lines()
    for name, value in active.items():
        monkeypatch.setenv(name, value)
    loaded = settings_module.load_settings()  # every value set in the example is valid
    assert loaded.env == "production"
    assert loaded.shutdown_seconds == default_shutdown_seconds()
    # Copied unedited, the example refuses to start in production, naming the variable.
    problems = loaded.production_problems()
    assert any("DISPATCHER_SECRET_KEY" in problem for problem in problems)
    monkeypatch.setenv("DISPATCHER_SECRET_KEY", "x" * 48)
    assert settings_module.load_settings().production_problems() == []
