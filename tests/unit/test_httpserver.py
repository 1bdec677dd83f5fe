"""The fake-provider base itself: recording, scripted faults, late answers."""

from __future__ import annotations

import time

import requests

from tests.support.httpserver import FakeHTTPServer, Request, Response


class Counter(FakeHTTPServer):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def handle(self, request: Request) -> Response:
        self.count += 1
        return Response(201, json={"n": self.count, "echo": request.json()})


def test_records_requests_and_scripts_faults() -> None:
    with Counter() as server:
        server.fail_next("/x", Response(500, json={"error": "boom"}))
        server.fail_next("/x", Response(503, after_handling=True))
        first = requests.post(f"{server.url}/x?a=1", json={"k": "ü"}, timeout=5)
        second = requests.post(f"{server.url}/x", json={"k": 2}, timeout=5)
        third = requests.post(f"{server.url}/x", json={"k": 3}, timeout=5)
        assert (first.status_code, second.status_code, third.status_code) == (500, 503, 201)
        assert server.count == 2  # the 500 never reached the handler, the 503 did
        assert third.json() == {"n": 2, "echo": {"k": 3}}
        assert server.requests[0].query == {"a": ["1"]}
        assert server.requests[0].json() == {"k": "ü"}
        assert len(server.requests_to("/x")) == 3


def test_delay_answers_late() -> None:
    with Counter() as server:
        server.fail_next("/", Response(200, json={}, delay=0.3))
        started = time.monotonic()
        requests.get(server.url + "/", timeout=5)
        assert time.monotonic() - started >= 0.3
