"""The `lang` column of a subscriber file: checked per row against the campaign's languages."""

from __future__ import annotations

from dispatcher.ledger.subscriber_csv import parse_csv


def test_lang_column_is_read_in_any_case_and_empty_means_the_default() -> None:
    rows, problems = parse_csv(
        "E-Mail;Name;Sprache\nanna@example.org;Anna;EN\nbernd@example.org;Bernd;\n",
        languages=("de", "en"),
    )
    assert problems == []
    assert [(row.email, row.lang) for row in rows] == [
        ("anna@example.org", "en"),
        ("bernd@example.org", None),
    ]


def test_a_language_the_campaign_does_not_offer_is_a_problem_on_its_line() -> None:
    rows, problems = parse_csv(
        "email,lang\nanna@example.org,en\nbernd@example.org,fr\n", languages=("de",)
    )
    assert rows == []
    assert [str(problem) for problem in problems] == [
        '2: unknown language "en" (the campaign offers de; leave the cell empty for the '
        "default language)",
        '3: unknown language "fr" (the campaign offers de; leave the cell empty for the '
        "default language)",
    ]


def test_two_language_columns_are_refused() -> None:
    rows, problems = parse_csv("email,lang,language\nanna@example.org,en,de\n")
    assert rows == []
    assert [str(problem) for problem in problems] == ["1: more than one lang column in the header"]
