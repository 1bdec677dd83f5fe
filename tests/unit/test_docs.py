"""The docs say what the code does: every setting, its default, and the figures they quote.

The pages in `docs/` are where operators and the next engineer look things up, so a setting
that is missing there, a default that changed in the code only, or a batch size quoted from an
old version is a bug a reader would act on. Each test names the page and the line to fix.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from pydantic import SecretStr

from dispatcher.campaign import yamlsource
from dispatcher.channels.smtp import SmtpTarget
from dispatcher.delivery import retrying, sending, service
from dispatcher.ledger import engine, subscribers
from dispatcher.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
SETTINGS_DOC = DOCS / "settings.md"
README_LIMIT = 10_000  #: bytes: the README is the pitch, the two commands, a tour and links

#: Defaults too long or too secret for a table cell, described in words instead.
DESCRIBED_DEFAULTS = {
    "secret_key": "a development key",
    "imprint": "a sample Impressum",
    "consent_text": "a German consent sentence",
    "consent_texts": "an English consent sentence",
    "workers": "the CPUs available to the process",
}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


# --- docs/settings.md against the Settings class ----------------------------------------------


def settings_rows() -> list[tuple[str, str]]:
    """(variable, default cell) of every row of the settings table, in order."""
    rows = []
    for line in read(SETTINGS_DOC).splitlines():
        if match := re.match(r"\|\s*`(DISPATCHER_[A-Z0-9_]+)`\s*\|([^|]*)\|", line):
            rows.append((match[1], match[2].strip()))
    return rows


def variable(field: str) -> str:
    return f"DISPATCHER_{field.upper()}"


def setting_names() -> set[str]:
    return {variable(name) for name in Settings.model_fields}


def test_settings_doc_has_a_row_for_every_setting() -> None:
    documented = [name for name, _ in settings_rows()]
    missing = setting_names() - set(documented)
    assert not missing, f"docs/settings.md lacks a row for {sorted(missing)}"
    twice = sorted({name for name in documented if documented.count(name) > 1})
    assert not twice, f"docs/settings.md has more than one row for {twice}"


def test_settings_doc_documents_no_unknown_setting() -> None:
    unknown = {name for name, _ in settings_rows()} - setting_names()
    assert not unknown, f"docs/settings.md documents what is no setting (typo?): {sorted(unknown)}"


def first_literal(cell: str) -> str | None:
    match = re.match(r"`([^`]*)`", cell)
    return match[1] if match else None


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_documented_default_equals_the_code(field: str) -> None:
    default = Settings.model_fields[field].default
    cell = dict(settings_rows()).get(variable(field))
    if cell is None:
        pytest.fail(f"docs/settings.md lacks {variable(field)}")
    where = f"docs/settings.md, {variable(field)}: default cell {cell!r}"
    if field in DESCRIBED_DEFAULTS:
        assert cell.startswith(DESCRIBED_DEFAULTS[field]), where
    elif default is None:
        assert cell.startswith("unset"), f"{where}; the code has no default"
    elif isinstance(default, SecretStr):
        pytest.fail(f"{variable(field)} has a secret default; describe it in DESCRIBED_DEFAULTS")
    elif default == "":
        assert cell.startswith("empty"), f"{where}; the code's default is empty"
    else:
        literal = first_literal(cell)
        assert literal is not None, f"{where} does not start with the default in backticks"
        if isinstance(default, bool):
            assert literal == str(default).lower(), f"{where}; the code says {default}"
        elif isinstance(default, int | float):
            assert float(literal) == float(default), f"{where}; the code says {default}"
        else:
            assert literal == str(default), f"{where}; the code says {default}"


# --- figures quoted in the docs against the constants they describe ---------------------------


def minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"


def figures() -> list[tuple[str, str]]:
    """(page, exact phrase) for each figure the docs quote from a constant of the code."""
    backoffs = ", ".join(
        f"{retrying.backoff(n).total_seconds() / 60:g}" for n in range(1, retrying.MAX_ATTEMPTS)
    )
    smtp = SmtpTarget("relay.invalid", 25, "plain")
    return [
        ("delivery.md", f"inserted in batches of {sending.FANOUT_BATCH:,} in id"),
        ("performance.md", f"`INSERT … SELECT` in batches of {sending.FANOUT_BATCH:,}"),
        ("delivery.md", f"(`DISPATCHER_CLAIM_BATCH`, default {sending.CLAIM_BATCH})"),
        ("operations.md", f"(`DISPATCHER_CLAIM_BATCH`, {sending.CLAIM_BATCH})"),
        ("delivery.md", f"(`DISPATCHER_LEASE_SECONDS`, default {sending.LEASE.seconds})"),
        ("operations.md", f"(`DISPATCHER_LEASE_SECONDS`, {sending.LEASE.seconds})"),
        ("delivery.md", f"({backoffs} min; failed after {retrying.MAX_ATTEMPTS}\nattempts)"),
        ("delivery.md", f"(checked every\n{service.RELOAD_CHECK_SECONDS:g} s)"),
        ("delivery.md", f"within {service.SHUTDOWN_GRACE_SECONDS:g} s more in any case"),
        ("settings.md", f"the process exits {service.SHUTDOWN_GRACE_SECONDS:g} s later"),
        ("settings.md", f"for this plus {engine.ANSWER_MARGIN_SECONDS:g} s is abandoned"),
        (
            "delivery.md",
            f"({minutes(smtp.timeout)} per command, {minutes(smtp.data_timeout)} for the\nreply",
        ),
        (
            "campaign.md",
            f"at most {yamlsource.MAX_CHARACTERS:,} characters and {yamlsource.MAX_VALUES:,}"
            " values",
        ),
    ]


@pytest.mark.parametrize(("page", "phrase"), figures())
def test_figure_in_the_docs_matches_the_code(page: str, phrase: str) -> None:
    text = read(DOCS / page)
    # Line breaks in the docs fall where they fall: compare with whitespace normalised.
    assert " ".join(phrase.split()) in " ".join(text.split()), (
        f"docs/{page} should say {' '.join(phrase.split())!r} (the code's figure)"
    )


def test_settings_defaults_and_pipeline_figures_are_one_number() -> None:
    # The docs quote one figure for each; two differing defaults would make one of them wrong.
    fields = Settings.model_fields
    assert fields["claim_batch"].default == sending.CLAIM_BATCH
    assert fields["lease_seconds"].default == sending.LEASE.total_seconds()
    assert fields["db_timeout_seconds"].default == engine.DB_TIMEOUT_SECONDS
    # operations.md: "a confirmation email at most once an hour per address".
    assert subscribers.CONFIRMATION_INTERVAL.total_seconds() == 3600
    assert "at most once an hour per address" in read(DOCS / "operations.md")


def test_every_variable_named_in_the_docs_is_a_setting() -> None:
    known = setting_names()
    for page in pages():
        for name in set(re.findall(r"DISPATCHER_[A-Z0-9_]*[A-Z0-9]", read(page))):
            if name.startswith("DISPATCHER_TEST_"):
                continue  # the test suite's own switches, documented in the README
            assert name in known, f"{page.relative_to(ROOT)} names {name}, which is no setting"


# --- the README and the links between the pages -----------------------------------------------


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size:,} bytes; move detail into docs/"


def test_readme_links_every_docs_page() -> None:
    text = read(README)
    for page in sorted(DOCS.glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README.md has no link to docs/{page.name}"


def test_readme_commands_are_the_scripts_that_exist() -> None:
    text = read(README)
    for script in ("scripts/demo", "scripts/test"):
        assert f"\n{script} " in text, f"README.md should show {script}"
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, f"{script} is not executable"


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in {"L", "N"})
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", read(path), flags=re.DOTALL)
    return {anchor(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_relative_links_lead_to_a_file_and_a_heading() -> None:
    for page in pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", read(page)):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            file_part, _, fragment = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(ROOT)} links {target}"
            assert linked.exists(), f"{where}: no such file"
            if fragment and linked.suffix == ".md":
                assert fragment in anchors(linked), f"{where}: no such heading"


def test_deployment_figures_match_the_deployment_files() -> None:
    operations = " ".join(read(DOCS / "operations.md").split())
    compose = read(ROOT / "docker-compose.yml")
    unit = read(ROOT / "deploy" / "dispatcher.service")
    dockerfile = read(ROOT / "Dockerfile")
    grace = re.search(r"stop_grace_period:\s*(\d+)s", compose)
    assert grace and f"`stop_grace_period: {grace[1]}s`" in operations
    stop = re.search(r"^TimeoutStopSec=(\d+)$", unit, flags=re.MULTILINE)
    assert stop and f"`TimeoutStopSec={stop[1]}`" in operations
    restart = re.search(r"^RestartSec=(\d+)$", unit, flags=re.MULTILINE)
    assert restart and f"restarts on failure after {restart[1]} s" in operations
    interval = re.search(r"HEALTHCHECK --interval=(\d+)s", dockerfile)
    assert interval and f"asks `/healthz` every {interval[1]} s" in operations
    postgres = re.search(r"image:\s*postgres:(\d+)", compose)
    assert postgres and f"PostgreSQL {postgres[1]} keeps its data" in operations


def test_metric_names_in_the_docs_are_the_ones_exported() -> None:
    source = read(ROOT / "dispatcher" / "delivery" / "metrics.py")
    exported = set(re.findall(r"\"(dispatcher_[a-z_]+)\"", source))
    # prometheus_client adds `_total` to a counter's name on the wire.
    on_the_wire = exported | {f"{name}_total" for name in exported}
    documented = set(re.findall(r"`(dispatcher_[a-z_]+)", read(DOCS / "operations.md")))
    assert documented, "docs/operations.md lists no metric"
    assert documented <= on_the_wire, f"not exported: {sorted(documented - on_the_wire)}"
    undocumented = {n for n in exported if n not in documented and f"{n}_total" not in documented}
    assert not undocumented, f"docs/operations.md does not list {sorted(undocumented)}"
