"""The deployment files give `run` the descriptors its HTTP guard assumes, and say why a proxy."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]


def test_the_systemd_unit_raises_the_descriptor_limit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((ROOT / "deploy" / "dispatcher.service").read_text(encoding="utf-8"))
    assert int(unit["Service"]["LimitNOFILE"]) >= 16384


def test_compose_raises_the_descriptor_limit_of_every_dispatcher() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name in ("dispatcher", "dispatcher-2"):
        nofile = compose["services"][name]["ulimits"]["nofile"]
        assert nofile["soft"] >= 16384 and nofile["hard"] >= nofile["soft"], name


def test_the_deploy_guide_explains_the_reverse_proxy() -> None:
    guide = (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")
    assert "## Behind a reverse proxy in production, and why" in guide
    for point in ("TLS", "FORWARDED_ALLOW_IPS", "DISPATCHER_HTTP_HEADER_TIMEOUT", "/metrics"):
        assert point in guide, point
