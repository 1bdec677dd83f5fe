"""`validate` on arbitrary YAML and on mutations of the sample campaign: it never raises
anything but `CampaignError`, and every problem points at a file, a line and a column."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.campaign.loading import CampaignError, load_campaign_text
from dispatcher.campaign.model import Campaign

SAMPLE = (Path(__file__).parents[2] / "config" / "campaign.yaml").read_text(encoding="utf-8")
FILE = "config/campaign.yaml"
FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.dates(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.sampled_from(["08:00", "8:00", "24:00", "6h", "90m", "0", "DE", "DE-SN", "XX", "mon",
                     "Europe/Berlin", "Mars/Olympus", "https://example.org/a", "javascript:x",
                     "2019-04-02", "2019-02-30", "ready", "draft", "email", "mastodon"]),
)  # fmt: skip
keys = st.one_of(
    st.sampled_from(["campaign", "send", "items", "id", "name", "timezone", "start", "end",
                     "weekdays", "holidays", "skip", "locale", "catch_up", "email", "mastodon",
                     "bluesky", "linkedin", "webhook", "title", "teaser", "url", "initiative",
                     "region", "image", "image_alt", "tags", "body", "date", "channels",
                     "status"]),
    st.text(max_size=10),
    st.integers(-5, 5),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=40,
)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "campaign": st.dictionaries(keys, documents, max_size=10),
        "send": st.dictionaries(keys, scalars, max_size=6),
        "items": st.lists(st.dictionaries(keys, documents, max_size=12), max_size=4),
    },
)


class Counter:
    def __init__(self, name: str) -> None:
        self.name, self.cases, self.valid = name, 0, 0

    def report(self) -> None:
        print(f"\n{self.name}: {self.cases} cases ({self.valid} valid campaigns)")


def check(text: str, counter: Counter) -> None:
    counter.cases += 1
    try:
        campaign = load_campaign_text(text, FILE)
    except CampaignError as error:
        assert error.problems, "a CampaignError lists at least one problem"
        for problem in error.problems:
            assert problem.file == FILE
            assert problem.position.line >= 1 and problem.position.column >= 1, problem
            assert str(problem).startswith(f"{FILE}:{problem.position.line}:")
            assert problem.message
    else:
        assert isinstance(campaign, Campaign)
        counter.valid += 1


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def test_arbitrary_yaml_documents() -> None:
    counter = Counter("arbitrary YAML documents")

    @FUZZ
    @given(st.one_of(documents, shaped))
    def run(document: Any) -> None:
        check(_dump(document), counter)

    run()
    counter.report()


@st.composite
def mutations(draw: st.DrawFn) -> str:
    """The sample with lines dropped, duplicated, swapped, re-indented, or bytes changed."""
    lines = SAMPLE.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        match draw(st.sampled_from(["drop", "dup", "swap", "indent", "dedent", "char", "insert",
                                    "truncate", "tab"])):  # fmt: skip
            case "drop":
                del lines[index]
            case "dup":
                lines.insert(index, lines[index])
            case "swap":
                other = draw(st.integers(0, len(lines) - 1))
                lines[index], lines[other] = lines[other], lines[index]
            case "indent":
                lines[index] = "  " + lines[index]
            case "dedent":
                lines[index] = lines[index][2:]
            case "tab":
                lines[index] = "\t" + lines[index]
            case "char":
                line = lines[index]
                at = draw(st.integers(0, max(len(line) - 1, 0)))
                char = draw(
                    st.characters(codec="utf-8") | st.sampled_from(list(":-[]{}'\"#&*!|>%@`,"))
                )
                lines[index] = line[:at] + char + line[at + 1 :]
            case "insert":
                lines.insert(index, draw(st.text(max_size=40)) + "\n")
            case "truncate":
                lines = lines[: index + 1]
        if not lines:
            lines = [""]
    return "".join(lines)


def test_mutations_of_the_sample_campaign() -> None:
    counter = Counter("mutations of config/campaign.yaml")

    @FUZZ
    @given(mutations())
    def run(text: str) -> None:
        check(text, counter)

    run()
    counter.report()


def test_arbitrary_text() -> None:
    counter = Counter("arbitrary text")

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.text(max_size=200) | st.sampled_from(["\x00", "\ufeff", "a: !!python/object:os.system x",
                                                     "a: !!binary ===", "a: !!timestamp 2019-99-99",
                                                     "&a [*a]", "a: *b", "? [a]\n: 1", "--- 1\n--- 2",
                                                     "a: !!int x", "a: !!float x", "!!set {a}"]))  # fmt: skip
    def run(text: str) -> None:
        check(text, counter)

    run()
    counter.report()
