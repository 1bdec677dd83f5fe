"""The campaign in force while the file is edited: the last good version stays, the problems
of the file as it is now are remembered until it is fixed (`dispatcher run` and `web`)."""

from __future__ import annotations

from pathlib import Path

from dispatcher.campaign.source import CHECK_SECONDS, CampaignSource, Reload
from tests.support.campaigns import campaign_copy

GOOD_URL = "url: https://www.clusterplattform.de/reportage/2019/medizintechnik-franken"
BAD_URL = "url: htps://www.clusterplattform.de/reportage/2019/medizintechnik-franken"


def line_col_of(path: Path, needle: str) -> tuple[int, int]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + len("url: ") + 1
    raise AssertionError(needle)


def test_a_broken_save_keeps_the_last_good_version_and_names_the_problem(tmp_path: Path) -> None:
    path = campaign_copy(tmp_path)
    source = CampaignSource(path)
    good = source.campaign
    assert source.problems == [] and source.check() is Reload.UNCHANGED

    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(GOOD_URL, BAD_URL), encoding="utf-8")
    assert source.check() is Reload.REJECTED

    line, column = line_col_of(path, BAD_URL)
    assert source.campaign is good
    assert len(source.problems) == 1
    assert source.problems[0].startswith(f"{path}:{line}:{column}: items[2].url: not a valid URL")
    assert source.rejected == 1
    assert source.check() is Reload.UNCHANGED  # not counted again until the next save
    assert source.rejected == 1

    path.write_text(text.replace("Medizintechnik-Allianz Franken", "MedTech Franken"), "utf-8")
    assert source.check() is Reload.LOADED
    assert source.problems == [] and source.error is None
    assert source.campaign.item("bayern-medizintechnik").initiative == "MedTech Franken"


def test_a_process_without_scheduler_checks_when_asked_at_most_every_few_seconds(
    tmp_path: Path,
) -> None:
    path = campaign_copy(tmp_path)
    now = [100.0]
    source = CampaignSource(path, monotonic=lambda: now[0])
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(GOOD_URL, BAD_URL), encoding="utf-8")

    assert source.current_problems() == []  # checked just now (at start)
    now[0] += CHECK_SECONDS
    assert len(source.current_problems()) == 1
    assert source.current().id == "clusterwoche-2019"  # the last good version

    path.write_text(text, encoding="utf-8")
    now[0] += CHECK_SECONDS / 2
    assert len(source.current_problems()) == 1
    now[0] += CHECK_SECONDS / 2
    assert source.current_problems() == []


def test_a_deleted_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = campaign_copy(tmp_path)
    source = CampaignSource(path)
    path.unlink()
    assert source.check() is Reload.REJECTED
    assert source.problems == [
        f"{path}:1:1: cannot read the campaign file: No such file or directory"
    ]
    assert source.campaign.id == "clusterwoche-2019"
