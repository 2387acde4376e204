"""`GET /v1/access`: a token learns its own scopes, and a wrong token is told so."""

from __future__ import annotations

import pytest

from ..conftest import (
    TENANT_A_PREFIX,
    TENANT_A_TOKEN,
    TENANT_B_COLLECTION,
    TENANT_B_TOKEN,
    ApiProcess,
)


def test_an_admin_token_may_use_every_collection(api_process: ApiProcess) -> None:
    with api_process.client() as api:
        response = api.get("/v1/access")

    assert response.status_code == 200, response.text
    assert response.json() == {"all_collections": True, "collections": [], "prefixes": []}


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (
            TENANT_A_TOKEN,
            {"all_collections": False, "collections": [], "prefixes": [TENANT_A_PREFIX]},
        ),
        (
            TENANT_B_TOKEN,
            {
                "all_collections": False,
                "collections": [TENANT_B_COLLECTION],
                "prefixes": ["other-"],
            },
        ),
    ],
    # The tokens are random: named ids keep the test ids the same in every worker.
    ids=["tenant-a", "tenant-b"],
)
def test_a_scoped_token_sees_only_its_own_scopes(
    api_process: ApiProcess, token: str, expected: dict[str, object]
) -> None:
    with api_process.client(token) as api:
        response = api.get("/v1/access")

    assert response.status_code == 200, response.text
    assert response.json() == expected


@pytest.mark.parametrize(
    "token",
    ["wrong", TENANT_A_TOKEN + "x", TENANT_A_TOKEN[:-1]],
    ids=["wrong", "one-character-more", "one-character-less"],
)
def test_a_token_the_api_does_not_accept_is_401(api_process: ApiProcess, token: str) -> None:
    with api_process.client(token) as api:
        response = api.get("/v1/access")

    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
