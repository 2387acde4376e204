"""CORS: a page on an allowed origin may call the API and read what it answers; others not."""

from __future__ import annotations

import httpx

from .conftest import GALLERY_ORIGIN, ApiProcess


def test_a_preflight_from_an_allowed_origin_is_answered(api_process: ApiProcess) -> None:
    response = httpx.options(
        f"{api_process.url}/v1/assets/holiday",
        headers={
            "Origin": GALLERY_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, if-none-match",
        },
    )

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == GALLERY_ORIGIN
    assert "GET" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "if-none-match" in allowed


def test_answers_to_an_allowed_origin_expose_the_headers_a_page_needs(
    api_process: ApiProcess,
) -> None:
    with api_process.client() as api:
        response = api.get("/v1/profiles", headers={"Origin": "https://admin.example.com"})
    refused = httpx.get(f"{api_process.url}/v1/profiles", headers={"Origin": GALLERY_ORIGIN})

    assert response.headers["access-control-allow-origin"] == "https://admin.example.com"
    exposed = response.headers["access-control-expose-headers"].lower()
    assert {"etag", "location", "retry-after", "idempotent-replayed"} <= set(exposed.split(", "))
    # An error is readable too: the page can show its code.
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == GALLERY_ORIGIN


def test_another_origin_gets_no_cors_headers(api_process: ApiProcess) -> None:
    preflight = httpx.options(
        f"{api_process.url}/v1/profiles",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    with api_process.client() as api:
        response = api.get("/v1/profiles", headers={"Origin": "https://evil.example"})

    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in response.headers
