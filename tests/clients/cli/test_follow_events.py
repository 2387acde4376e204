"""How the job's events drive the CLI: progress on `status`, the result on `end`, and
`deleted`/`error` as errors (an `error` one is retried by reconnecting)."""

from __future__ import annotations

import json

import pytest

from emulsion_cli.errors import ApiRequestError, CliError
from emulsion_cli.ingest import handle_event
from emulsion_cli.sse import Event

SUMMARY = {"name": "j", "succeeded": 3, "failed": 1, "total": 9, "finished": False}


def test_status_reports_progress_and_end_returns_the_summary() -> None:
    seen: list[int] = []
    assert handle_event("j", Event("status", json.dumps(SUMMARY)), seen.append) is None
    final = {**SUMMARY, "succeeded": 8, "finished": True}
    assert handle_event("j", Event("end", json.dumps(final)), seen.append) == final
    assert seen == [4, 9]


def test_other_events_are_ignored() -> None:
    seen: list[int] = []
    assert handle_event("j", Event("message", "hello"), seen.append) is None
    assert seen == []


def test_deleted_and_error() -> None:
    with pytest.raises(CliError, match="job j was deleted"):
        handle_event("j", Event("deleted", '{"name": "j"}'), print)
    with pytest.raises(ApiRequestError) as raised:
        handle_event("j", Event("error", '{"code": "unavailable", "detail": "apiserver"}'), print)
    assert (raised.value.status, raised.value.code) == (503, "unavailable")


def test_a_malformed_event_is_a_clear_error() -> None:
    with pytest.raises(CliError, match="malformed 'status' event"):
        handle_event("j", Event("status", "{not json"), print)
