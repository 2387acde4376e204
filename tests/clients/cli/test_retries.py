"""Retries: transient answers are tried again, a Retry-After is honoured (with jitter), a
deterministic error fails at once; against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_cli.api import (
    ATTEMPTS,
    JITTER_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    Api,
    retry_after_seconds,
    retry_attempts,
    retry_backoff,
    throttled_wait,
)
from emulsion_cli.config import Config
from emulsion_cli.errors import EXIT_API, ApiRequestError, CliError, Unreachable, UsageError

from .stub import Reply, Request, serve


def ask_job(url: str, job: str = "job-1") -> object:
    """`job`'s status through the CLI's API client, retries and all."""

    async def ask() -> object:
        async with Api(Config(url, "t")) as api:
            return await api.job(job)

    return asyncio.run(ask())


def test_retry_after_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None


@given(st.sampled_from([429, 502, 503, 504]), st.floats(0, 600))
def test_a_retry_after_sets_the_wait_plus_jitter(status: int, after: float) -> None:
    wait = retry_backoff(ApiRequestError(status, "throttled", "slow down", after))
    assert isinstance(wait, float)
    base = min(after, MAX_RETRY_AFTER_SECONDS)
    assert base <= wait <= base + JITTER_SECONDS


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500])
def test_deterministic_answers_are_not_retried(status: int) -> None:
    assert retry_backoff(ApiRequestError(status, "x", "y", 1.0)) is False


def test_lost_connections_back_off_exponentially() -> None:
    assert retry_backoff(Unreachable("gone")) is True
    assert retry_backoff(ApiRequestError(503, "unavailable", "later")) is True
    assert retry_backoff(CliError("a malformed answer")) is False


# Integration, not `make unit`: a stub HTTP server (see tests/conftest.py).
@pytest.mark.integration
def test_a_429_with_retry_after_is_waited_for_then_retried() -> None:
    answered: list[float] = []

    def route(request: Request) -> Reply:
        answered.append(time.monotonic())
        if len(answered) == 1:
            return Reply(
                429, {"code": "too_many_requests", "message": "slow"}, {"Retry-After": "1"}
            )
        return Reply(200, {"name": "job-1", "phase": "Running", "total": 0})

    with serve(route) as stub:
        status = ask_job(stub.url)

    assert status == {"name": "job-1", "phase": "Running", "total": 0}
    assert len(answered) == 2
    assert 1.0 <= answered[1] - answered[0] <= 1.0 + JITTER_SECONDS + 0.5


# Integration, not `make unit`: a stub HTTP server (see tests/conftest.py).
@pytest.mark.integration
def test_a_404_is_one_request_and_an_api_error() -> None:
    not_found = Reply(404, {"code": "not_found", "message": "no job"})
    with serve(lambda request: not_found) as stub, pytest.raises(ApiRequestError) as raised:
        ask_job(stub.url, "nope")

    assert raised.value.exit_code == EXIT_API
    assert len(stub.requests) == 1


# Integration, not `make unit`: a stub HTTP server (see tests/conftest.py).
@pytest.mark.integration
@pytest.mark.parametrize("attempts", [1, 2])
def test_emulsion_retries_sets_how_often_a_call_is_tried(
    attempts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMULSION_RETRIES", str(attempts))
    unavailable = Reply(503, {"code": "unavailable", "message": "later"})
    with serve(lambda request: unavailable) as stub, pytest.raises(ApiRequestError):
        ask_job(stub.url)

    assert len(stub.requests) == attempts


@pytest.mark.parametrize("value", ["0", "-1", "many", ""])
def test_an_unusable_emulsion_retries_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="EMULSION_RETRIES"):
        retry_attempts({"EMULSION_RETRIES": value})


def test_without_emulsion_retries_a_call_is_tried_five_times() -> None:
    assert retry_attempts({}) == ATTEMPTS == 5


# Integration, not `make unit`: a stub HTTP server (see tests/conftest.py).
@pytest.mark.integration
def test_the_tokens_own_limit_is_waited_out_without_spending_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One try only: the throttled answers must not count as tries, or this would fail.
    monkeypatch.setenv("EMULSION_RETRIES", "1")
    answered: list[float] = []

    def route(request: Request) -> Reply:
        answered.append(time.monotonic())
        if len(answered) <= 3:
            problem = {
                "code": "rate_limited",
                "detail": "this token may make 1 ingest requests a second",
                "limit": "notifies_per_second",
            }
            return Reply(429, problem, {"Retry-After": "0"})
        return Reply(200, {"name": "job-1", "phase": "Running", "total": 0})

    with serve(route) as stub:
        status = ask_job(stub.url)

    assert status == {"name": "job-1", "phase": "Running", "total": 0}
    assert len(answered) == 4


@given(st.floats(0, 600))
def test_a_throttled_wait_is_the_retry_after_capped_plus_jitter(after: float) -> None:
    wait = throttled_wait(ApiRequestError(429, "rate_limited", "slow down", after))
    assert wait is not None
    base = min(after, MAX_RETRY_AFTER_SECONDS)
    assert base <= wait <= base + JITTER_SECONDS
    # Any other answer is not the token's own limit: the ordinary retries handle it.
    assert throttled_wait(ApiRequestError(429, "overloaded", "apiserver", after)) is None
    assert throttled_wait(ApiRequestError(503, "rate_limited", "?", after)) is None
