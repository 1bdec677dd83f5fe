"""Desk edits of the campaign file: only the intended lines change, and the file says so.

Every action runs on a copy of config/campaign.yaml. The diff before/after is asserted line by
line (what an editor reviewing `git diff` would see), and the loader reads the intended change.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import difflib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dispatcher.campaign import editing
from dispatcher.campaign.editing import (
    EditConflict,
    EditFields,
    EditRefused,
    EditResult,
    Hold,
    Move,
    Pin,
    Release,
    RestoreItem,
    apply_edit,
    edit_campaign_file,
    version_of,
    write_refusal,
)
from dispatcher.campaign.loading import CampaignError, load_campaign_text
from dispatcher.campaign.model import Campaign, ItemStatus

SAMPLE = Path(__file__).parents[2] / "config" / "campaign.yaml"
TEXT = SAMPLE.read_text(encoding="utf-8")
ORDER = [
    "nordwind-maritim",  # pinned 2019-04-02
    "saxony-mikroelektronik",
    "bayern-medizintechnik",
    "nrw-kunststoff",
    "bw-automotive",
    "berlin-digital",
    "hessen-logistik",
    "niedersachsen-agrar",  # pinned 2019-04-11
]


def load(text: str) -> Campaign:
    return load_campaign_text(text, "campaign.yaml")


def changes(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) of the unified diff, without their line breaks."""
    removed: list[str] = []
    added: list[str] = []
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    for line in diff:
        if line.startswith(("---", "+++", "@@")):
            continue
        (removed if line.startswith("-") else added).append(line[1:])
    return removed, added


def item_lines(text: str, item_id: str) -> list[str]:
    """The lines of one item: from its `- id:` to its last line before the next item (or a
    comment at the level of the items)."""
    lines = text.splitlines()
    start = lines.index(f"  - id: {item_id}")
    end = start + 1
    while end < len(lines) and not lines[end].startswith(("  - ", "  #")):
        end += 1
    while not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def chunks(text: str) -> collections.Counter[str]:
    """The text's pieces between blank lines: an item with its own comments is one."""
    return collections.Counter(text.split("\n\n"))


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    path = tmp_path / "campaign.yaml"
    shutil.copyfile(SAMPLE, path)
    return path


# --- status ---------------------------------------------------------------------------------


def test_hold_changes_only_the_status_line_of_that_item() -> None:
    after = apply_edit(TEXT, Hold("bayern-medizintechnik"))
    assert changes(TEXT, after) == (["    status: ready"], ["    status: hold"])
    campaign = load(after)
    assert campaign.item("bayern-medizintechnik").status is ItemStatus.HOLD
    assert [i.id for i in campaign.items if i.status is ItemStatus.HOLD] == [
        "bayern-medizintechnik"
    ]


def test_release_gives_back_the_file_as_it_was() -> None:
    held = apply_edit(TEXT, Hold("nrw-kunststoff"))
    assert apply_edit(held, Release("nrw-kunststoff")) == TEXT


def test_hold_adds_a_status_key_at_the_end_of_an_item_without_one() -> None:
    before = TEXT.replace("    status: ready\n\n  - id: bw-automotive", "\n  - id: bw-automotive")
    after = apply_edit(before, Hold("nrw-kunststoff"))
    assert changes(before, after) == ([], ["    status: hold"])
    assert item_lines(after, "nrw-kunststoff")[-2:] == [
        "        tags: [ClusterWeek, Circular Economy, SMEs]",  # the end of its English version
        "    status: hold",
    ]
    assert load(after).item("nrw-kunststoff").status is ItemStatus.HOLD


def test_release_of_a_ready_item_changes_nothing_and_writing_it_is_refused(
    campaign_file: Path,
) -> None:
    assert apply_edit(TEXT, Release("bw-automotive")) == TEXT
    with pytest.raises(EditRefused, match="Nichts geändert"):
        edit_campaign_file(
            campaign_file, Release("bw-automotive"), expected_version=version_of(TEXT)
        )
    assert campaign_file.read_text(encoding="utf-8") == TEXT


def test_an_unknown_item_is_refused_in_german() -> None:
    with pytest.raises(EditRefused, match="„gibt-es-nicht“ gibt es in der Datei nicht"):
        apply_edit(TEXT, Hold("gibt-es-nicht"))


# --- pin -------------------------------------------------------------------------------------


def test_pin_adds_a_date_line_after_the_tags() -> None:
    after = apply_edit(TEXT, Pin("saxony-mikroelektronik", dt.date(2019, 4, 3)))
    assert changes(TEXT, after) == ([], ["    date: 2019-04-03"])
    lines = item_lines(after, "saxony-mikroelektronik")
    assert lines[lines.index("    date: 2019-04-03") - 1].startswith("    tags: ")
    assert load(after).item("saxony-mikroelektronik").date == dt.date(2019, 4, 3)


def test_pin_to_another_day_rewrites_only_the_date() -> None:
    after = apply_edit(TEXT, Pin("nordwind-maritim", dt.date(2019, 4, 4)))
    assert changes(TEXT, after) == (["    date: 2019-04-02"], ["    date: 2019-04-04"])
    assert load(after).item("nordwind-maritim").date == dt.date(2019, 4, 4)


def test_unpin_removes_the_date_line() -> None:
    after = apply_edit(TEXT, Pin("niedersachsen-agrar", None))
    assert changes(TEXT, after) == (["    date: 2019-04-11"], [])
    assert load(after).item("niedersachsen-agrar").date is None


def test_a_quoted_date_stays_quoted() -> None:
    before = TEXT.replace("date: 2019-04-02", 'date: "2019-04-02"  # Pressetermin')
    after = apply_edit(before, Pin("nordwind-maritim", dt.date(2019, 4, 3)))
    assert changes(before, after) == (
        ['    date: "2019-04-02"  # Pressetermin'],
        ['    date: "2019-04-03"  # Pressetermin'],
    )
    assert load(after).item("nordwind-maritim").date == dt.date(2019, 4, 3)


@pytest.mark.parametrize(
    ("day", "problem"),
    [
        (  # a Sunday; the new date line would be line 86, after the tags of items[1]
            dt.date(2019, 4, 7),
            "86:11: items[1].date: 2019-04-07 is not a send day of the campaign (weekday, "
            "holiday, skip or outside start..end); pick a send day or remove date",
        ),
        (  # the day of items[7]: the loader names the later pin, moved down by the new line
            dt.date(2019, 4, 11),
            "211:11: items[7].date: 2019-04-11 is already pinned by items[1]",
        ),
    ],
)
def test_a_pin_the_loader_refuses_is_not_written(
    campaign_file: Path, day: dt.date, problem: str
) -> None:
    before = campaign_file.read_bytes()
    with pytest.raises(CampaignError) as caught:
        edit_campaign_file(
            campaign_file, Pin("saxony-mikroelektronik", day), expected_version=version_of(TEXT)
        )
    assert [str(p) for p in caught.value.problems] == [f"{campaign_file}:{problem}"]
    assert campaign_file.read_bytes() == before
    assert sorted(p.name for p in campaign_file.parent.iterdir()) == [
        ".campaign.yaml.lock",
        "campaign.yaml",
    ]


def test_a_pin_onto_a_public_holiday_is_not_written(tmp_path: Path) -> None:
    # Easter Monday 2019 (22 April) is a holiday in all of Germany.
    text = TEXT.replace("end: 2019-04-11", "end: 2019-04-26")
    path = tmp_path / "campaign.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CampaignError, match="2019-04-22 is not a send day"):
        edit_campaign_file(
            path, Pin("bw-automotive", dt.date(2019, 4, 22)), expected_version=version_of(text)
        )
    assert path.read_text(encoding="utf-8") == text


# --- move ------------------------------------------------------------------------------------


def assert_only_reordered(before: str, after: str, moved: set[str]) -> None:
    """The same lines, only in another order; the changed ones belong to the moved items;
    each item moved whole, and items stay apart by the blank lines they had."""
    assert chunks(before) == chunks(after)
    removed, added = changes(before, after)
    assert removed and collections.Counter(removed) == collections.Counter(added)
    pieces = [p for p in chunks(before) if any(f"  - id: {i}\n" in p + "\n" for i in moved)]
    assert len(pieces) == len(moved)
    assert set(removed) <= {line for piece in pieces for line in piece.splitlines()} | {""}


def test_move_up_swaps_with_the_previous_item() -> None:
    after = apply_edit(TEXT, Move("bayern-medizintechnik", "up"))
    order = [*ORDER]
    order[1], order[2] = order[2], order[1]
    assert [i.id for i in load(after).items] == order
    assert_only_reordered(TEXT, after, {"bayern-medizintechnik", "saxony-mikroelektronik"})


def test_move_down_swaps_with_the_next_item() -> None:
    after = apply_edit(TEXT, Move("berlin-digital", "down"))
    order = [*ORDER]
    order[5], order[6] = order[6], order[5]
    assert [i.id for i in load(after).items] == order
    assert_only_reordered(TEXT, after, {"berlin-digital", "hessen-logistik"})


def test_move_jumps_over_pinned_items_which_keep_their_place() -> None:
    pinned = apply_edit(TEXT, Pin("bayern-medizintechnik", dt.date(2019, 4, 3)))
    after = apply_edit(pinned, Move("nrw-kunststoff", "up"))
    order = [*ORDER]
    order[1], order[3] = order[3], order[1]
    assert [i.id for i in load(after).items] == order
    assert_only_reordered(pinned, after, {"nrw-kunststoff", "saxony-mikroelektronik"})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # items[0] is pinned: saxony is the first of the unpinned queue.
        (Move("saxony-mikroelektronik", "up"), "steht schon an erster Stelle"),
        (Move("hessen-logistik", "down"), "steht schon an letzter Stelle"),
        (Move("nordwind-maritim", "down"), "festen Sendetag"),
    ],
)
def test_a_move_past_the_end_or_of_a_pinned_item_is_refused(edit: Move, message: str) -> None:
    with pytest.raises(EditRefused, match=message):
        apply_edit(TEXT, edit)


def test_a_moved_item_takes_its_own_comments_along() -> None:
    before = TEXT.replace(
        "  - id: nrw-kunststoff\n",
        "  # Termin mit der Pressestelle noch offen\n  - id: nrw-kunststoff\n",
    ).replace(
        "    region: Nordrhein-Westfalen\n",
        "    region: Nordrhein-Westfalen  # Sitz: Essen\n    # Bild folgt\n",
    )
    after = apply_edit(before, Move("nrw-kunststoff", "up"))
    assert [i.id for i in load(after).items][2:4] == ["nrw-kunststoff", "bayern-medizintechnik"]
    assert_only_reordered(before, after, {"nrw-kunststoff", "bayern-medizintechnik"})
    lines = after.splitlines()
    here = lines.index("  - id: nrw-kunststoff")
    assert lines[here - 2 : here] == ["", "  # Termin mit der Pressestelle noch offen"]
    assert lines.index("    # Bild folgt") < lines.index("  - id: bayern-medizintechnik")


# --- fields ----------------------------------------------------------------------------------


def test_a_one_word_change_in_a_folded_teaser_is_a_one_line_diff() -> None:
    old = load(TEXT).item("nordwind-maritim").teaser
    after = apply_edit(
        TEXT, EditFields("nordwind-maritim", {"teaser": old.replace("Kiel", "Flensburg")})
    )
    assert changes(TEXT, after) == (
        ["      Schiffsantriebe. Wir haben das Clustermanagement in Kiel besucht."],
        ["      Schiffsantriebe. Wir haben das Clustermanagement in Flensburg besucht."],
    )
    assert load(after).item("nordwind-maritim").teaser == old.replace("Kiel", "Flensburg")


def test_a_new_teaser_stays_folded_and_is_wrapped_like_the_file() -> None:
    teaser = (
        "Ein ganz neuer Teaser: Wie ein Netzwerk aus Kiel, Rostock und Emden die Werften "
        "fit macht für Wasserstoff, Methanol und Wind – mit Geld aus Bund und Land."
    )
    after = apply_edit(TEXT, EditFields("bayern-medizintechnik", {"teaser": teaser}))
    removed, added = changes(TEXT, after)
    assert removed == item_lines(TEXT, "bayern-medizintechnik")[3:5]
    # Wrapped to 100 columns, as the file is written.
    assert added == [
        "      Ein ganz neuer Teaser: Wie ein Netzwerk aus Kiel, Rostock und Emden die Werften fit macht für",
        "      Wasserstoff, Methanol und Wind – mit Geld aus Bund und Land.",
    ]
    assert "    teaser: >-" in item_lines(after, "bayern-medizintechnik")
    assert load(after).item("bayern-medizintechnik").teaser == teaser


def test_a_double_quoted_title_stays_double_quoted_and_is_escaped() -> None:
    title = 'Vorhang auf: "Nordwind" #1 – Kiel: Förde'
    after = apply_edit(TEXT, EditFields("nordwind-maritim", {"title": title}))
    assert changes(TEXT, after) == (
        ['    title: "Vorhang auf: Nordwind Maritim e. V."'],
        ['    title: "Vorhang auf: \\"Nordwind\\" #1 – Kiel: Förde"'],
    )
    assert load(after).item("nordwind-maritim").title == title


def test_a_plain_value_stays_plain_unless_it_needs_quotes() -> None:
    before = TEXT.replace(
        '    title: "Vorhang auf: Mobilitätscluster Neckar"',
        "    title: Mobilitätscluster Neckar",
    )
    plain = apply_edit(before, EditFields("bw-automotive", {"title": "Cluster Neckar"}))
    assert changes(before, plain) == (
        ["    title: Mobilitätscluster Neckar"],
        ["    title: Cluster Neckar"],
    )
    for title, written in [
        ("Vorhang auf: Neckar", '"Vorhang auf: Neckar"'),
        ("Neckar#1", "Neckar#1"),
        ("Neckar #1", '"Neckar #1"'),
        ("yes", '"yes"'),
        ("2019-04-02", '"2019-04-02"'),
        ("- Neckar", '"- Neckar"'),
    ]:
        after = apply_edit(before, EditFields("bw-automotive", {"title": title}))
        assert changes(before, after)[1] == [f"    title: {written}"]
        assert load(after).item("bw-automotive").title == title


def test_a_literal_body_stays_literal() -> None:
    body = "**Kiel.** Neu geschrieben.\n\n# Zwischentitel\n\n  eingerückter Code"
    after = apply_edit(TEXT, EditFields("saxony-mikroelektronik", {"body": body}))
    assert changes(TEXT, after) == (
        [
            "      Der Reinraum ist gelb beleuchtet. Hier testen drei KMU gemeinsam einen neuen Sensor."
        ],
        [
            "      **Kiel.** Neu geschrieben.",
            "",
            "      # Zwischentitel",
            "",
            "        eingerückter Code",
        ],
    )
    # The block's final line break is YAML's (`|` keeps one), as for every body in the file.
    assert load(after).item("saxony-mikroelektronik").body == body + "\n"


def test_tags_stay_a_flow_list_and_odd_tags_are_quoted() -> None:
    tags = ["Clusterwoche", "Häfen & Werften", "KI, Daten", "yes"]
    after = apply_edit(TEXT, EditFields("nordwind-maritim", {"tags": tags}))
    assert changes(TEXT, after) == (
        ["    tags: [Clusterwoche, Maritime Wirtschaft, Innovation]"],
        ['    tags: [Clusterwoche, Häfen & Werften, "KI, Daten", "yes"]'],
    )
    assert load(after).item("nordwind-maritim").tags == tuple(tags)


def test_a_block_list_stays_a_block_list() -> None:
    before = TEXT.replace(
        "    tags: [Clusterwoche, Logistik, Digitalisierung]\n",
        "    tags:\n      - Clusterwoche\n      - Logistik\n      - Digitalisierung\n",
    )
    after = apply_edit(
        before, EditFields("hessen-logistik", {"tags": ["Clusterwoche", "Logistik", "Häfen"]})
    )
    assert changes(before, after) == (["      - Digitalisierung"], ["      - Häfen"])
    assert load(after).item("hessen-logistik").tags == ("Clusterwoche", "Logistik", "Häfen")


def test_new_keys_go_where_they_read_naturally() -> None:
    # Only German: an image new to an item with an English version needs its English alt text
    # too, which the desk does not write.
    lines = item_lines(TEXT, "saxony-mikroelektronik")
    english = "\n".join(lines[lines.index("    translations:") : -1]) + "\n"
    assert english.startswith("    translations:\n") and english.endswith("sensor together.\n")
    before = TEXT.replace(english, "", 1)
    after = apply_edit(
        before,
        EditFields(
            "saxony-mikroelektronik",
            {
                "image": "https://example.org/reinraum.jpg",
                "image_alt": "Ein Reinraum: gelbes Licht",
                "channels": ["email", "mastodon"],
            },
        ),
    )
    assert changes(before, after) == (
        [],
        [
            "    image: https://example.org/reinraum.jpg",
            '    image_alt: "Ein Reinraum: gelbes Licht"',
            "    channels: [email, mastodon]",
        ],
    )
    lines = item_lines(after, "saxony-mikroelektronik")
    keys = [line.split(":")[0].strip(" -") for line in lines if line.startswith(("    ", "  - "))]
    keys = [k for k in keys if k and " " not in k]
    assert keys == [
        "id",
        "title",
        "teaser",
        "url",
        "initiative",
        "region",
        "image",
        "image_alt",
        "tags",
        "channels",
        "body",
        "status",
    ]
    item = load(after).item("saxony-mikroelektronik")
    assert (item.image, item.image_alt) == (
        "https://example.org/reinraum.jpg",
        "Ein Reinraum: gelbes Licht",
    )
    assert [c.value for c in item.channels or ()] == ["email", "mastodon"]


def test_none_empty_text_and_empty_list_remove_optional_keys() -> None:
    after = apply_edit(
        TEXT,
        EditFields("nordwind-maritim", {"image": None, "image_alt": "", "tags": [], "body": None}),
    )
    removed, added = changes(TEXT, after)
    assert added == []
    lines = item_lines(TEXT, "nordwind-maritim")
    assert lines[8].startswith("    image: ") and lines[11] == "    date: 2019-04-02"
    assert lines[12] == "    body: |" and lines[21] == "    translations:"
    assert removed == [*lines[8:11], *lines[12:21]]
    item = load(after).item("nordwind-maritim")
    assert (item.image, item.image_alt, item.tags, item.body) == (None, None, (), None)


def test_values_equal_to_the_file_change_nothing() -> None:
    item = load(TEXT).item("nordwind-maritim")
    same = EditFields(
        "nordwind-maritim",
        {
            "title": item.title,
            "teaser": item.teaser.replace(" ", " ", 1) + "\r\n",
            "body": (item.body or "").rstrip("\n").replace("\n", "\r\n"),
            "tags": list(item.tags),
            "image": item.image,
            "image_alt": item.image_alt,
            "channels": None,
        },
    )
    assert apply_edit(TEXT, same) == TEXT


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"title": ""}, "title darf nicht leer sein"),
        ({"teaser": None}, "teaser darf nicht leer sein"),
        ({"url": "https://example.org/"}, "nicht ändern: url"),
    ],
)
def test_required_fields_and_other_keys_are_refused(
    values: dict[str, str | list[str] | None], message: str
) -> None:
    with pytest.raises(EditRefused, match=message):
        apply_edit(TEXT, EditFields("nordwind-maritim", values))


# --- whole files -----------------------------------------------------------------------------


COMMENTED = TEXT.replace(
    "  - id: bw-automotive\n",
    "  # Neckar: Interview am Montag\n  - id: bw-automotive\n",
).replace(
    "    region: Hessen\n",
    "    region: Hessen  # Sitz Frankfurt\n    # Bild: Fraport-Pressestelle anfragen\n",
)


def test_comments_and_blank_lines_survive_ten_mixed_edits() -> None:
    edits: list[editing.Edit] = [
        Hold("bw-automotive"),
        Pin("berlin-digital", dt.date(2019, 4, 4)),
        Move("hessen-logistik", "up"),
        EditFields("hessen-logistik", {"title": "Vorhang auf: Logistik am Main"}),
        Move("bayern-medizintechnik", "down"),
        EditFields(
            "nordwind-maritim",
            {"tags": ["Clusterwoche", "Häfen"], "image": None, "image_alt": None},
        ),
        Pin("nordwind-maritim", None),
        Release("bw-automotive"),
        # A new German body would need an English one too (the loader requires it), which
        # the desk cannot write: replace the body of an item that has both.
        EditFields("saxony-mikroelektronik", {"body": "Neuer Text.\n\nZweiter Absatz."}),
        Move("nordwind-maritim", "down"),
    ]
    text = COMMENTED
    for edit in edits:
        new = apply_edit(text, edit)
        assert new != text, edit
        text = new

    def comments(t: str) -> collections.Counter[str]:
        return collections.Counter(line for line in t.splitlines() if "#" in line)

    assert comments(text) == comments(COMMENTED)
    # Each comment is still with its item.
    hessen = item_lines(text, "hessen-logistik")
    region = hessen.index("    region: Hessen  # Sitz Frankfurt")
    assert hessen[region + 1] == "    # Bild: Fraport-Pressestelle anfragen"
    lines = text.splitlines()
    assert lines[lines.index("  - id: bw-automotive") - 1] == "  # Neckar: Interview am Montag"
    header = COMMENTED.split("items:\n")[0]
    assert text.startswith(header + "items:\n")
    # One blank line between two items, as before.
    assert text.count("\n\n  - id: ") + text.count("\n\n  # ") == 7
    assert "\n\n\n" not in text
    campaign = load(text)
    assert campaign.item("bw-automotive").status is ItemStatus.READY
    assert campaign.item("berlin-digital").date == dt.date(2019, 4, 4)
    assert campaign.item("hessen-logistik").title == "Vorhang auf: Logistik am Main"


def test_restore_gives_back_the_items_text_at_its_current_place() -> None:
    edited = TEXT
    edits: list[editing.Edit] = [
        EditFields("bayern-medizintechnik", {"title": "Neu", "teaser": "Ganz neu.", "tags": ["A"]}),
        Hold("bayern-medizintechnik"),
        Move("bayern-medizintechnik", "down"),
    ]
    for edit in edits:
        edited = apply_edit(edited, edit)
    restored = apply_edit(edited, RestoreItem("bayern-medizintechnik", TEXT))
    assert item_lines(restored, "bayern-medizintechnik") == item_lines(
        TEXT, "bayern-medizintechnik"
    )
    # The move is not undone: the item stays where it is now.
    assert [i.id for i in load(restored).items] == [i.id for i in load(edited).items]
    assert apply_edit(restored, Move("bayern-medizintechnik", "up")) == TEXT


def test_restore_of_an_item_the_old_file_did_not_have_is_refused() -> None:
    with pytest.raises(EditRefused, match="keinen Beitrag „bw-automotive“"):
        apply_edit(TEXT, RestoreItem("bw-automotive", TEXT.replace("bw-automotive", "bw-auto")))


def test_crlf_files_keep_crlf_and_a_missing_final_line_break_stays_missing() -> None:
    crlf = TEXT.replace("\n", "\r\n").rstrip("\r\n")
    after = apply_edit(crlf, Pin("niedersachsen-agrar", dt.date(2019, 4, 10)))
    assert after == crlf.replace("date: 2019-04-11", "date: 2019-04-10")
    after = apply_edit(crlf, Hold("saxony-mikroelektronik"))
    after = apply_edit(after, EditFields("saxony-mikroelektronik", {"body": "Eins\nZwei"}))
    assert "\n" not in after.replace("\r\n", "")
    assert not after.endswith("\n")
    assert load(after).item("saxony-mikroelektronik").body == "Eins\nZwei\n"


def test_a_dash_on_its_own_line_and_a_first_key_that_is_removed() -> None:
    before = textwrap.dedent(
        """\
        campaign: {id: w, name: W, timezone: UTC, start: 2019-04-01, end: 2019-04-05,
                   weekdays: [mon, tue, wed, thu, fri]}
        send: {email: "08:00"}
        items:
        -
          id: a
          title: A
          teaser: T
          url: https://example.org/a
          initiative: I
          region: R
        - tags: [x]
          id: b
          title: B
          teaser: T
          url: https://example.org/b
          initiative: I
          region: R
        """
    )
    after = apply_edit(before, EditFields("b", {"tags": None}))
    assert changes(before, after) == (["- tags: [x]", "  id: b"], ["- id: b"])
    after = apply_edit(after, Move("b", "up"))
    assert [i.id for i in load(after).items] == ["b", "a"]
    assert after.startswith(before.split("items:\n")[0] + "items:\n- id: b\n")


# --- the file --------------------------------------------------------------------------------


def test_a_written_edit_returns_both_versions_and_a_diff(campaign_file: Path) -> None:
    result = edit_campaign_file(
        campaign_file, Hold("bw-automotive"), expected_version=version_of(TEXT)
    )
    assert isinstance(result, EditResult)
    assert (result.before, result.version_before) == (TEXT, version_of(TEXT))
    assert campaign_file.read_text(encoding="utf-8") == result.after
    assert result.version_after == version_of(result.after) != result.version_before
    assert result.diff.startswith("--- a/campaign.yaml\n+++ b/campaign.yaml\n@@ ")
    assert "\n-    status: ready\n+    status: hold\n" in result.diff


def test_a_conflict_writes_nothing(campaign_file: Path) -> None:
    stamp = campaign_file.stat()
    with pytest.raises(EditConflict) as caught:
        edit_campaign_file(campaign_file, Hold("bw-automotive"), expected_version="0" * 64)
    assert caught.value.current_version == version_of(TEXT)
    assert campaign_file.read_text(encoding="utf-8") == TEXT
    assert (campaign_file.stat().st_ino, campaign_file.stat().st_mtime_ns) == (
        stamp.st_ino,
        stamp.st_mtime_ns,
    )


def test_two_racing_edits_of_the_same_version_one_lands(campaign_file: Path) -> None:
    version = version_of(TEXT)
    start = threading.Barrier(2)
    outcomes: dict[str, EditResult | EditConflict] = {}

    def run(item_id: str) -> None:
        start.wait()
        try:
            outcomes[item_id] = edit_campaign_file(
                campaign_file, Hold(item_id), expected_version=version
            )
        except EditConflict as conflict:
            outcomes[item_id] = conflict

    threads = [threading.Thread(target=run, args=(i,)) for i in ("bw-automotive", "berlin-digital")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results = [o for o in outcomes.values() if isinstance(o, EditResult)]
    conflicts = [o for o in outcomes.values() if isinstance(o, EditConflict)]
    assert (len(results), len(conflicts)) == (1, 1)
    assert campaign_file.read_text(encoding="utf-8") == results[0].after
    assert conflicts[0].current_version == results[0].version_after
    held = [i.id for i in load(results[0].after).items if i.status is ItemStatus.HOLD]
    assert len(held) == 1


def test_the_files_mode_is_kept_and_no_temporary_file_is_left(campaign_file: Path) -> None:
    campaign_file.chmod(0o640)
    edit_campaign_file(campaign_file, Hold("bw-automotive"), expected_version=version_of(TEXT))
    assert stat.S_IMODE(campaign_file.stat().st_mode) == 0o640
    assert sorted(p.name for p in campaign_file.parent.iterdir()) == [
        ".campaign.yaml.lock",
        "campaign.yaml",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give the file another owner")
def test_the_files_owner_is_kept(campaign_file: Path) -> None:
    os.chown(campaign_file, 65534, 65534)
    edit_campaign_file(campaign_file, Hold("bw-automotive"), expected_version=version_of(TEXT))
    assert (campaign_file.stat().st_uid, campaign_file.stat().st_gid) == (65534, 65534)


def test_a_symlinked_campaign_file_stays_a_symlink(tmp_path: Path, campaign_file: Path) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(campaign_file)
    edit_campaign_file(link, Hold("bw-automotive"), expected_version=version_of(TEXT))
    assert link.is_symlink()
    assert load(campaign_file.read_text(encoding="utf-8")).item("bw-automotive").status is (
        ItemStatus.HOLD
    )


# --- write_refusal -----------------------------------------------------------------------------


@pytest.fixture
def open_directory() -> Iterator[Path]:
    """A directory the user `nobody` may enter (pytest's tmp_path is private to its owner)."""
    directory = Path(tempfile.mkdtemp(prefix="editing-"))
    directory.chmod(0o777)
    yield directory
    directory.chmod(0o755)
    shutil.rmtree(directory)


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Root writes whatever the modes say; as the effective user `nobody`, modes count."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_write_refusal_is_none_for_a_writable_file(open_directory: Path) -> None:
    path = open_directory / "campaign.yaml"
    path.write_text(TEXT, encoding="utf-8")
    path.chmod(0o666)
    with unprivileged():
        assert write_refusal(path) is None


def test_write_refusal_names_a_read_only_file(open_directory: Path) -> None:
    path = open_directory / "campaign.yaml"
    path.write_text(TEXT, encoding="utf-8")
    path.chmod(0o444)
    with unprivileged():
        reason = write_refusal(path)
    assert reason == f"Der Dienst darf die Datei {path} nicht schreiben (Dateirechte)."


def test_write_refusal_names_a_read_only_directory(open_directory: Path) -> None:
    path = open_directory / "campaign.yaml"
    path.write_text(TEXT, encoding="utf-8")
    path.chmod(0o666)
    open_directory.chmod(0o555)
    with unprivileged():
        reason = write_refusal(path)
    assert reason is not None and reason.startswith(
        f"Der Dienst darf im Verzeichnis {open_directory} keine Dateien anlegen"
    )


def test_write_refusal_names_a_missing_file(tmp_path: Path) -> None:
    reason = write_refusal(tmp_path / "campaign.yaml")
    assert reason is not None and "fehlt" in reason


def test_write_refusal_names_a_read_only_file_system(campaign_file: Path) -> None:
    """A read-only bind mount in a private user and mount namespace: nothing outside sees it."""
    directory = campaign_file.parent
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    script = (
        f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory} && "
        f"{sys.executable} -c 'import sys; from pathlib import Path; "
        "from dispatcher.campaign.editing import write_refusal; "
        "print(write_refusal(Path(sys.argv[1])))' " + str(campaign_file)
    )
    run = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    if run.returncode != 0 and "mount" in run.stderr + run.stdout:
        pytest.skip(f"no private read-only mount here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    assert "schreibgeschützt" in run.stdout
    assert write_refusal(campaign_file) is None  # outside the namespace nothing changed


# --- text round trips ----------------------------------------------------------------------

#: Any character the loader accepts in a title, and the pieces that are special in YAML.
_PIECES = st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from(
    [*"\"':#-[]{},&*!|>%@`?äöüÄÖÜß“„–\\", "  ", " #", ": ", "- ", "yes", "2019-04-02", "\u2028"]
)
_TITLES = st.lists(_PIECES, min_size=1, max_size=20).map("".join)
_TEASERS = st.lists(
    _PIECES | st.sampled_from(["\n", "\n\n", "\t", " \n", "\n ", " "]), min_size=1, max_size=120
).map("".join)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=_TITLES, teaser=_TEASERS)
@example(title='"Vorhang" auf: #1', teaser="Zeile eins\nZeile zwei: #3\n\n„Zitat“ – ü")
@example(title="- yes", teaser="a " * 60 + "\n  eingerückt")
def test_any_title_and_teaser_round_trip(title: str, teaser: str) -> None:
    if not title.strip() or not teaser.strip():
        with pytest.raises(EditRefused):
            apply_edit(TEXT, EditFields("bw-automotive", {"title": title, "teaser": teaser}))
        return
    after = apply_edit(TEXT, EditFields("bw-automotive", {"title": title, "teaser": teaser}))
    item = load(after).item("bw-automotive")
    assert (item.title, item.teaser) == (title.strip(), teaser.strip())
    removed, _ = changes(TEXT, after)
    assert set(removed) <= set(item_lines(TEXT, "bw-automotive"))
    assert load(after).items[:4] == load(TEXT).items[:4]


def test_action_names() -> None:
    names = [
        editing.action_name(edit)
        for edit in (
            Hold("a"),
            Release("a"),
            Pin("a", dt.date(2019, 4, 2)),
            Pin("a", None),
            Move("a", "up"),
            Move("a", "down"),
            EditFields("a", {}),
            RestoreItem("a", ""),
        )
    ]
    assert names == [
        "hold",
        "release",
        "pin",
        "unpin",
        "move-up",
        "move-down",
        "edit",
        "restore",
    ]
