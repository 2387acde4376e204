"""Bearer-token auth on every `/v1` route: missing, unknown and malformed tokens are 401."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ApiProcess

PROTECTED = [
    ("POST", "/v1/uploads"),
    ("POST", "/v1/ingests"),
    ("GET", "/v1/ingests/some-job"),
    ("GET", "/v1/ingests/some-job/events"),
    ("GET", "/v1/batches/some-batch"),
    ("GET", "/v1/assets/c/a.jpg"),
    ("DELETE", "/v1/assets/c/a.jpg"),
]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Bearer", "Basic dXNlcjpwYXNz", "TOKEN", "Bearer TOKENx"],
    ids=["none", "unknown", "empty", "basic", "no scheme", "token prefix"],
)
def test_every_route_refuses_a_caller_without_a_valid_token(
    api_process: ApiProcess, authorization: str | None
) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.replace("TOKEN", api_process.token)
    with httpx.Client(base_url=api_process.url, headers=headers) as session:
        for method, path in PROTECTED:
            response = session.request(method, path, json={})

            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["code"] == "unauthorized"
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_configured_token_is_accepted(api_process: ApiProcess) -> None:
    with api_process.client() as session:
        assert session.get("/v1/ingests/some-job").status_code == 404
