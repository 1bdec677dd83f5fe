"""`dispatcher subscribers …` with readers' languages, as an operator runs it: `add --lang`,
the CSV `lang` column, export and list (docs/commands.md, "`subscribers`: languages")."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.database import Database


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'ledger.sqlite3'}"


def campaign_file(directory: Path, locales: str) -> Path:
    path = directory / f"campaign-{locales.replace(', ', '-')}.yaml"
    path.write_text(
        "campaign:\n  id: test-week\n  name: Testwoche\n  timezone: Europe/Berlin\n"
        "  start: 2019-04-02\n  end: 2019-04-11\n  weekdays: [mon, tue, wed, thu, fri]\n"
        f"  holidays: DE\n  locales: [{locales}]\n"
        'send:\n  email: "08:00"\n'
        "items:\n  - id: erstes\n    title: Erstes\n    teaser: Kurz.\n"
        "    url: https://example.org/erstes\n    initiative: Cluster A\n    region: Bayern\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def bilingual(tmp_path: Path) -> Path:
    """A campaign offered in German (the default) and English."""
    return campaign_file(tmp_path, "de, en")


@pytest.fixture
def german_only(tmp_path: Path) -> Path:
    return campaign_file(tmp_path, "de")


def run(url: str, campaign: Path, *args: str) -> subprocess.CompletedProcess[str]:
    settings = {"DISPATCHER_DATABASE_URL": url, "DISPATCHER_CAMPAIGN_FILE": str(campaign)}
    return processes.run(settings, "subscribers", *args)


def exported(url: str, campaign: Path) -> dict[str, dict[str, str]]:
    result = run(url, campaign, "export")
    assert result.returncode == 0, result.stderr
    return {row["email"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def test_add_with_a_language_the_campaign_offers(ledger_url: str, bilingual: Path) -> None:
    added = run(ledger_url, bilingual, "add", "anna@example.org", "--lang", "EN")
    assert (added.returncode, added.stdout) == (0, "added anna@example.org (active, en)\n"), (
        added.stderr
    )
    plain = run(ledger_url, bilingual, "add", "bernd@example.org")
    assert plain.stdout == "added bernd@example.org (active)\n"
    rows = exported(ledger_url, bilingual)
    assert (rows["anna@example.org"]["lang"], rows["bernd@example.org"]["lang"]) == ("en", "")


def test_add_again_with_another_language_changes_it(ledger_url: str, bilingual: Path) -> None:
    run(ledger_url, bilingual, "add", "anna@example.org", "--lang", "en")
    changed = run(
        ledger_url, bilingual, "add", "anna@example.org", "--name", "Anna", "--lang", "de"
    )
    assert changed.stdout == (
        'already subscribed: anna@example.org (active); name set to "Anna", language set to de\n'
    ), changed.stderr
    row = exported(ledger_url, bilingual)["anna@example.org"]
    assert (row["lang"], row["lang_changed_by"]) == ("de", "cli")
    assert row["lang_changed_at"].endswith("Z")


def test_add_with_a_language_the_campaign_does_not_offer_names_the_offered_ones(
    ledger_url: str, german_only: Path
) -> None:
    refused = run(ledger_url, german_only, "add", "anna@example.org", "--lang", "en")
    assert refused.returncode == 1
    assert refused.stderr == (
        'error: --lang: the campaign offers de, not "en" (leave --lang out for the default '
        "language)\n"
    )
    assert run(ledger_url, german_only, "list").stdout.splitlines()[-1].startswith("0 shown")


def test_import_with_a_lang_column_checks_each_row(
    ledger_url: str, german_only: Path, tmp_path: Path
) -> None:
    path = tmp_path / "liste.csv"
    path.write_text(
        "E-Mail;Name;Sprache\nanna@example.org;Anna;de\nbernd@example.org;Bernd;en\n"
        "carla@example.org;Carla;\n",
        encoding="utf-8",
    )
    result = run(ledger_url, german_only, "import", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f'{path}:3: unknown language "en" (the campaign offers de; leave the cell empty for the '
        "default language)",
        "imported 2: 2 new, 0 updated, 0 unchanged, 0 duplicates merged, 1 row rejected"
        " (the other rows were imported; fix the rejected ones and import again)",
    ]
    rows = exported(ledger_url, german_only)
    assert {email: row["lang"] for email, row in rows.items()} == {
        "anna@example.org": "de",
        "carla@example.org": "",
    }


def test_import_without_a_lang_column_does_not_need_the_campaign(
    ledger_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "liste.csv"
    path.write_text("email\nanna@example.org\n", encoding="utf-8")
    result = run(ledger_url, tmp_path / "missing.yaml", "import", str(path))
    assert result.returncode == 0, result.stderr + result.stdout


def test_an_export_imports_with_its_languages(
    ledger_url: str, bilingual: Path, tmp_path: Path
) -> None:
    run(ledger_url, bilingual, "add", "anna@example.org", "--lang", "en")
    run(ledger_url, bilingual, "add", "bernd@example.org")
    export = tmp_path / "export.csv"
    export.write_text(run(ledger_url, bilingual, "export").stdout, encoding="utf-8")
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert run(fresh, bilingual, "import", str(export)).returncode == 0
    rows = exported(fresh, bilingual)
    assert (rows["anna@example.org"]["lang"], rows["bernd@example.org"]["lang"]) == ("en", "")


def test_list_shows_each_language_and_a_dash_for_the_default(
    database: Database, bilingual: Path
) -> None:
    run(database.url, bilingual, "add", "anna@example.org", "--lang", "en")
    run(database.url, bilingual, "add", "bernd@example.org")
    listed = run(database.url, bilingual, "list")
    assert listed.returncode == 0, listed.stderr
    header, anna, bernd = listed.stdout.splitlines()[:3]
    column = header.index("lang")
    assert (anna[column : column + 4], bernd[column : column + 4]) == ("en  ", "-   ")
