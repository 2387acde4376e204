"""Turning API answers into one clear line: 401, an RFC 9457 problem, anything else."""

from __future__ import annotations

import httpx

from emulsion_cli.api import error_from_response
from emulsion_cli.errors import ApiRequestError


def test_401_says_to_check_the_token() -> None:
    error = error_from_response(httpx.Response(401, json={"code": "unauthorized", "detail": "no"}))
    assert isinstance(error, ApiRequestError)
    assert error.code == "unauthorized"
    assert "check EMULSION_TOKEN" in error.message


def test_a_problem_gives_code_detail_and_first_error() -> None:
    body = {
        "type": "urn:emulsion:problem:upload_missing",
        "title": "An upload is not in the staging area",
        "status": 422,
        "code": "upload_missing",
        "detail": "2 upload(s) not found in the staging area",
        "instance": "/v1/ingests",
        "trace_id": None,
        "errors": [
            {"field": "body.items", "message": "staging/A/x.jpg was not uploaded"},
            {"field": "body.items", "message": "staging/B/y.jpg was not uploaded"},
        ],
    }
    error = error_from_response(httpx.Response(422, json=body))
    assert isinstance(error, ApiRequestError)
    assert (error.status, error.code) == (422, "upload_missing")
    assert error.message == (
        "the API said 422 upload_missing: 2 upload(s) not found in the staging area — "
        "body.items: staging/A/x.jpg was not uploaded (and 1 more)"
    )


def test_a_body_that_is_not_the_error_shape() -> None:
    error = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(error, ApiRequestError)
    assert (error.status, error.code) == (502, "http_error")
    assert "\n" not in error.message
