"""Address normal form and subscriber CSV files: what an operator's spreadsheet really holds."""

from __future__ import annotations

import pytest

from dispatcher.ledger.subscriber_csv import Row, RowProblem, parse_csv
from dispatcher.ledger.tables import SubscriberState
from dispatcher.mail.addresses import (
    InvalidAddress,
    InvalidName,
    ascii_form,
    clean_name,
    normalise,
    wire_form,
)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Erika.Mustermann@Example.ORG", "erika.mustermann@example.org"),
        ("erika.mustermann@example.org", "erika.mustermann@example.org"),
        ("info@bücher.de", "info@bücher.de"),
        ("info@xn--bcher-kva.de", "info@bücher.de"),
        ("INFO@BÜCHER.DE", "info@bücher.de"),
        ("  erika@example.org\t", "erika@example.org"),
        ("straße@example.org", "straße@example.org"),  # lower, not casefold: ß stays
    ],
)
def test_normalise(address: str, expected: str) -> None:
    assert normalise(address) == expected


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("a@b", "should have a period"),
        ("x@", "something after the @-sign"),
        ("@example.org", "something before the @-sign"),
        ("", "must have an @-sign"),
        ("erika mustermann@example.org", "SPACE"),
        ("Erika Mustermann <erika@example.org>", "display name"),
        ("<erika@example.org>", ""),
        ("erika@example.org, max@example.org", ""),
        ("x..y@example.org", "two periods"),
    ],
)
def test_invalid_addresses_say_why(address: str, reason: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalise(address)
    assert str(caught.value).startswith(f'invalid address "{address}": ')
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_ascii_form_for_servers_without_smtputf8() -> None:
    assert ascii_form("info@bücher.de") == "info@xn--bcher-kva.de"
    assert ascii_form("jörg@example.org") is None


@pytest.mark.parametrize(
    ("stored", "on_the_wire"),
    [
        ("erika@example.org", "erika@example.org"),
        ("info@bücher.de", "info@xn--bcher-kva.de"),  # A-label: any relay takes it
        ("jürgen@example.de", "jürgen@example.de"),  # no ASCII form: SMTPUTF8 only
        ("jürgen@bücher.de", "jürgen@bücher.de"),
    ],
)
def test_wire_form(stored: str, on_the_wire: str) -> None:
    assert wire_form(stored) == on_the_wire
    assert normalise(on_the_wire) == stored  # a bounce for the wire form finds the subscriber


def test_wire_form_of_a_broken_address_says_why() -> None:
    with pytest.raises(InvalidAddress, match="invalid address"):
        wire_form("jürgen@@example.de")


def test_clean_name() -> None:
    assert clean_name("  Erika \n Mustermann ") == "Erika Mustermann"
    assert clean_name("   ") is None
    assert clean_name(None) is None
    with pytest.raises(InvalidName, match="longer than 200"):
        clean_name("x" * 201)


def test_csv_with_commas() -> None:
    rows, problems = parse_csv("email,name\nErika@Example.ORG,Erika\nmax@example.org,\n")
    assert problems == []
    assert rows == [
        Row(2, "erika@example.org", "Erika"),
        Row(3, "max@example.org", None),
    ]


def test_csv_from_german_excel_with_semicolons_and_bom() -> None:
    text = "\ufeffName;E-Mail\r\nMustermann, Erika;erika@example.org\r\nJörg;jörg@bücher.de\r\n"
    rows, problems = parse_csv(text)
    assert problems == []
    assert rows == [
        Row(2, "erika@example.org", "Mustermann, Erika"),
        Row(3, "jörg@bücher.de", "Jörg"),
    ]


@pytest.mark.parametrize("header", ["EMAIL", "e-mail", "Mail", "E-Mail-Adresse"])
def test_csv_email_column_names(header: str) -> None:
    rows, problems = parse_csv(f"{header}\nerika@example.org\n")
    assert (rows, problems) == ([Row(2, "erika@example.org", None)], [])


def test_quoted_multi_line_field_keeps_line_numbers() -> None:
    text = (
        "email,name\n"
        'erika@example.org,"Erika\nMustermann"\n'  # lines 2-3
        "x@,Bad\n"  # line 4
        "\n"  # line 5: empty, ignored
        'max@example.org,"M\n\na\nx"\n'  # lines 6-9
        "a@b,Also bad\n"  # line 10
    )
    rows, problems = parse_csv(text)
    assert [(r.line, r.email, r.name) for r in rows] == [
        (2, "erika@example.org", "Erika Mustermann"),
        (6, "max@example.org", "M a x"),
    ]
    assert [p.line for p in problems] == [4, 10]
    assert problems[0].message.startswith('invalid address "x@": ')
    assert "should have a period" in problems[1].message


def test_missing_email_column_is_one_problem_on_line_1() -> None:
    rows, problems = parse_csv("name,adresse\nErika,erika@example.org\nMax,max@example.org\n")
    assert rows == []
    assert len(problems) == 1
    assert problems[0].line == 1
    assert 'found "name", "adresse"' in problems[0].message


@pytest.mark.parametrize("text", ["", "\n\n", "\ufeff"])
def test_empty_file_is_one_problem_on_line_1(text: str) -> None:
    rows, problems = parse_csv(text)
    assert rows == []
    assert problems == [
        RowProblem(1, "empty file: expected a header row with an email column"),
    ]


def test_bad_rows_are_reported_with_their_lines_and_good_rows_kept() -> None:
    text = "email;name\n;Nobody\nerika@example.org;Erika;\nmax@example.org;Max;extra\nx@y.de;" + (
        "n" * 201
    )
    rows, problems = parse_csv(text)
    assert rows == [Row(3, "erika@example.org", "Erika")]  # a trailing empty field is fine
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [
        (2, "no address in the email column"),
        (4, "3 fields but the header has 2"),
        (5, "name longer than 200 characters"),
    ]


def test_duplicates_are_left_to_the_import() -> None:
    rows, _ = parse_csv("email\nerika@example.org\nERIKA@example.org\n")
    assert [r.email for r in rows] == ["erika@example.org", "erika@example.org"]


def test_state_column_of_an_export_is_kept() -> None:
    text = (
        "email,name,state,created_at,updated_at,source\n"
        "erika@example.org,Erika,unsubscribed,2019-04-02T06:00:00Z,2019-04-02T06:00:00Z,cli\n"
        "max@example.org,,,,,\n"
        "eva@example.org,,gone,,,\n"
    )
    rows, problems = parse_csv(text)
    assert [(r.email, r.state) for r in rows] == [
        ("erika@example.org", SubscriberState.UNSUBSCRIBED),
        ("max@example.org", None),
    ]
    assert problems[0].line == 4 and 'unknown state "gone"' in problems[0].message
