"""The OpenAPI 3.1 document of the HTTP API, generated from the route table (docs/api.md).

Nothing here is written by hand per endpoint: paths, methods, scopes, parameters and status
codes come from the `Endpoint`s of `api.routing`, the schemas from their pydantic models
(pydantic writes JSON Schema 2020-12, the dialect of OpenAPI 3.1). No library generates
this for plain Starlette routes with RFC 9457 problems as `application/problem+json`, so the
few lines that turn the table into the document's shape are ours.

Every operation documents the problems any request can meet (401, 403, 429, 503; with a
body also 400, 413, 415, 422) besides its own, each with its `WWW-Authenticate` or
`Retry-After` header, so a client generated from the document handles them all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaValue, models_json_schema

from dispatcher.web.api.problems import MEDIA_TYPE, Problem
from dispatcher.web.api.routing import PREFIX, Endpoint

OPENAPI_VERSION = "3.1.0"
SECURITY = "bearer"
_CONVERTER = re.compile(r"\{(\w+):\w+\}")
Mode = Literal["validation", "serialization"]


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


#: Problems any authenticated request can meet, with the headers they carry.
_COMMON: dict[int, tuple[str, dict[str, Any]]] = {
    401: (
        "no token, or an unknown or revoked one",
        {"WWW-Authenticate": _header("Bearer, with error=invalid_token for a wrong token")},
    ),
    403: (
        "the token lacks the endpoint's scope",
        {"WWW-Authenticate": _header('Bearer error="insufficient_scope" and the scope')},
    ),
    429: (
        "the token's requests per minute are used up",
        {"Retry-After": _header("seconds until the next request is taken")},
    ),
    503: (
        "the ledger (database) does not answer",
        {"Retry-After": _header("seconds to wait before trying again")},
    ),
}
_WITH_BODY: dict[int, str] = {
    400: "the body is not JSON",
    413: "the body is too large",
    415: "the body is not sent as application/json",
    422: "the body does not match the schema; `errors` lists each wrong field",
}


def openapi_path(path: str) -> str:
    """`/dispatches/{dispatch_id:int}/cancel` -> `/api/v1/dispatches/{dispatch_id}/cancel`."""
    return PREFIX + _CONVERTER.sub(r"{\1}", path)


def _schemas(
    endpoints: Sequence[Endpoint],
) -> tuple[dict[tuple[type[BaseModel], Mode], JsonSchemaValue], dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], Mode]] = [(Problem, "serialization")]
    for endpoint in endpoints:
        if endpoint.body is not None:
            wanted.append((endpoint.body, "validation"))
        if endpoint.answer is not None:
            wanted.append((endpoint.answer, "serialization"))
    refs, top = models_json_schema(
        list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}"
    )
    found: dict[tuple[type[BaseModel], Mode], JsonSchemaValue] = {
        (model, mode): ref
        for (model, mode), ref in refs.items()
        if isinstance(model, type) and issubclass(model, BaseModel)
    }
    return found, dict(top.get("$defs", {}))


def _problem(description: str, ref: JsonSchemaValue, headers: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {MEDIA_TYPE: {"schema": ref}}}
    if headers:
        answer["headers"] = headers
    return answer


def _operation(
    endpoint: Endpoint, refs: dict[tuple[type[BaseModel], Mode], JsonSchemaValue]
) -> dict[str, Any]:
    problem = refs[(Problem, "serialization")]
    success: dict[str, Any] = {"description": HTTPStatus(endpoint.status).phrase}
    if endpoint.answer is not None:
        schema = refs[(endpoint.answer, "serialization")]
        success["content"] = {"application/json": {"schema": schema}}
    responses: dict[str, Any] = {str(endpoint.status): success}
    problems: dict[int, tuple[str, dict[str, Any]]] = dict(_COMMON)
    if endpoint.body is not None:
        problems |= {status: (text, {}) for status, text in _WITH_BODY.items()}
    problems |= {status: (text, {}) for status, text in endpoint.problems.items()}
    for status in sorted(problems):
        text, headers = problems[status]
        responses[str(status)] = _problem(text, problem, headers)
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "security": [{SECURITY: [endpoint.scope]}],
        "responses": responses,
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.tag:
        operation["tags"] = [endpoint.tag]
    if endpoint.parameters:
        operation["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": parameter.schema,
                "description": parameter.description,
                "example": parameter.example,
            }
            for name, parameter in endpoint.parameters.items()
        ]
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": endpoint.body_required,
            "content": {"application/json": {"schema": refs[(endpoint.body, "validation")]}},
        }
    return operation


def document(
    endpoints: Sequence[Endpoint], *, title: str, version: str, description: str
) -> dict[str, Any]:
    """The OpenAPI document of `endpoints` (paths relative to the server's root)."""
    refs, schemas = _schemas(endpoints)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(openapi_path(endpoint.path), {})[endpoint.method.lower()] = _operation(
            endpoint, refs
        )
    paths[PREFIX + "/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "the OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                SECURITY: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `dispatcher tokens create`; the scopes each "
                    "operation lists are what the token needs",
                }
            },
        },
    }
