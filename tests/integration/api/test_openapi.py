"""The OpenAPI document at /api/v1/openapi.json: a valid OpenAPI 3.1 document, true about
every operation's scope, and — checked by schemathesis, requests generated from the
document against the running app — no server error and every answer as documented."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dispatcher.ledger import store, tokens
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.ledger.tables import DispatchState
from dispatcher.web.api.models import EXAMPLE_ADDRESS
from dispatcher.web.api.problems import TYPES
from tests.support.api import Api, issue_token, problem
from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, WebApp, serve_webapp

#: Examples per operation and generation mode: enough to reach every status an operation
#: documents, few enough that all operations on both backends take well under a minute.
EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


@pytest.fixture
def app(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(database, smtp_server, tmp_path)


def _document(app: WebApp) -> dict[str, Any]:
    answer = requests.get(f"{app.url}/api/v1/openapi.json", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    document: dict[str, Any] = answer.json()
    return document


def test_the_document_is_valid_openapi_3_1(app: WebApp) -> None:
    document = _document(app)
    validate(document)  # raises, naming the place, if it is not
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.fixture
def sqlite_app(
    sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> Iterator[WebApp]:
    yield from serve_webapp(sqlite_database, smtp_server, tmp_path)


def test_docs_api_md_lists_every_operation_scope_and_problem_type(sqlite_app: WebApp) -> None:
    """docs/api.md is where integrators look: an operation, scope or problem type added to
    the code must appear there too."""
    text = (Path(__file__).parents[3] / "docs" / "api.md").read_text(encoding="utf-8")
    for path, methods in _document(sqlite_app)["paths"].items():
        for method in methods:
            shown = path.removeprefix("/api/v1").replace("{dispatch_id}", "{id}")
            assert f"`{method.upper()} {shown}" in text, f"docs/api.md lacks {method} {path}"
    for scope in tokens.SCOPES:
        assert f"| `{scope}` |" in text, f"docs/api.md lacks the scope {scope}"
    for kind in TYPES:
        assert f"| `{kind}` |" in text, f"docs/api.md lacks the problem type {kind}"


def test_each_operation_needs_the_scope_the_document_names(app: WebApp) -> None:
    operations = [
        (method.upper(), path, operation["security"])
        for path, methods in _document(app)["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) == 11
    for method, path, security in operations:
        if not security:
            assert path == "/api/v1/openapi.json"
            continue
        [[scope]] = [requirement["bearer"] for requirement in security]
        concrete = path.replace("{email}", "leser00000@example.org").replace("{dispatch_id}", "1")
        call = f"{method} {concrete}"
        anonymous = requests.request(method, app.url + concrete, timeout=10)
        assert problem(anonymous, 401)["status"] == 401, call
        others = [s for s in tokens.SCOPES if s != scope]
        lacking = Api(app.url, issue_token(app.database, *others, name="others"))
        refused = problem(lacking.call(method, concrete.removeprefix("/api/v1")), 403)
        assert refused["scope"] == scope, call


def _known(app: WebApp) -> None:
    """The ledger state the document's examples refer to: the example address subscribed
    (so look-up, unsubscribe and erase can succeed), and a running dispatch with id 1."""
    add_subscribers(app.database, 2)
    with app.database.engine.begin() as connection:
        subscriber_store.add(connection, EXAMPLE_ADDRESS, source="test", now=START)
        dispatch = store.ensure_dispatch(
            connection, campaign_id=app.campaign.id, day=dt.date(2019, 4, 2), channel="email",
            item_id="a", content_hash="h", content="{}", send_at=START,
            state=DispatchState.RUNNING, now=START,
        )  # fmt: skip
        store.fan_out_subscribers(
            connection, dispatch, limit=10, key_prefix="<k.", key_suffix="@x>", now=START
        )
    assert dispatch.id == 1


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_generated_requests_get_documented_answers_and_no_server_error(
    app: WebApp, mode: schemathesis.GenerationMode
) -> None:
    """Requests made from the document by schemathesis — valid ones from its examples and
    schemas, and with `negative` ones the document forbids — sent to the running app with a
    token of every scope. Every answer must be no 5xx and of a documented status, media type,
    header set and schema; a request the document forbids must be refused (4xx); and without
    the token (`ignored_auth`) every operation must refuse.

    (schemathesis' pytest integration cannot load the document of a server that a fixture
    starts under this pytest version, so the operations' strategies are driven here.)"""
    _known(app)
    headers = {"Authorization": f"Bearer {issue_token(app.database, name='schemathesis')}"}
    schema = schemathesis.openapi.from_url(f"{app.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    documented = {
        f"{method.upper()} {path}"
        for path, methods in _document(app)["paths"].items()
        for method in methods
    }
    # schemathesis leaves out the document's own URL; every other operation is exercised
    assert {o.label for o in operations} == documented - {"GET /api/v1/openapi.json"}

    for operation in operations:
        examples = schema.get_strategies_from_examples(operation) if mode == "positive" else []
        cases = st.one_of(operation.as_strategy(generation_mode=mode), *examples)

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def answers_as_documented(case: schemathesis.Case[Any]) -> None:
            app.clock.advance(seconds=1)  # a request a second: under the rate limit
            case.call_and_validate(base_url=app.url, headers=headers, checks=CHECKS)

        answers_as_documented()
