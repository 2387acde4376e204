"""`GET /v1/profiles`: every profile with the styles it makes."""

from __future__ import annotations

import httpx

from emulsion_contracts.profiles import DEFAULT_PROFILE

from ..conftest import ApiProcess


def test_profiles_list_the_default_with_its_styles(api: httpx.Client) -> None:
    response = api.get("/v1/profiles")

    assert response.status_code == 200, response.text
    (default,) = [p for p in response.json()["items"] if p["name"] == DEFAULT_PROFILE.name]
    assert [style["name"] for style in default["styles"]] == [
        style.name for style in DEFAULT_PROFILE.styles
    ]
    thumb = next(style for style in default["styles"] if style["name"] == "thumb")
    assert thumb == {
        "name": "thumb",
        "width": 100,
        "height": 100,
        "fit": "crop",
        "format": "jpeg",
        "formats": ["jpeg"],
        "gravity": "center",
        "watermarked": False,
    }
    large = next(style for style in default["styles"] if style["name"] == "large")
    assert large["gravity"] is None  # a fitted style is never cut


def test_profiles_need_a_token(api_process: ApiProcess) -> None:
    response = httpx.get(f"{api_process.url}/v1/profiles")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"
