"""The uploader's page and bundle as the API serves them, built or not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulsion_devstack.stack import Endpoints, LocalStack


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web")


@pytest.fixture(scope="module")
def web_api(stack: Endpoints, stack_state_dir: Path, web_dir: Path) -> Iterator[httpx.Client]:
    record = LocalStack(stack_state_dir, say=lambda line: None).start_service(
        "api", {"EMULSION_WEB_DIR": str(web_dir)}
    )
    with httpx.Client(base_url=LocalStack.service_url(record), timeout=30) as client:
        yield client


def test_without_a_build_the_page_says_how_to_build_it(web_api: httpx.Client) -> None:
    response = web_api.get("/upload")

    assert response.status_code == 503
    assert "make web" in response.text
    assert "not built" in response.text


def test_the_built_page_and_its_assets_are_served(web_api: httpx.Client, web_dir: Path) -> None:
    (web_dir / "assets").mkdir(exist_ok=True)
    (web_dir / "index.html").write_text("<!doctype html><title>Emulsion</title>")
    (web_dir / "assets" / "main-ABC123.js").write_text("console.log(1)")

    page = web_api.get("/upload")
    script = web_api.get("/upload/assets/main-ABC123.js")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "immutable" in script.headers["cache-control"]
    assert web_api.get("/").headers.get("location") == "/upload"


@pytest.mark.parametrize(
    "name", ["..%2Findex.html", "%2E%2E%2F..%2Fetc%2Fpasswd", "missing.js", "index.html", ".x.js"]
)
def test_only_built_assets_are_served(web_api: httpx.Client, web_dir: Path, name: str) -> None:
    (web_dir / "index.html").write_text("<!doctype html><title>Emulsion</title>")

    response = web_api.get(f"/upload/assets/{name}")

    assert response.status_code == 404


def test_the_page_needs_no_token_but_the_api_does(web_api: httpx.Client) -> None:
    assert web_api.get("/v1/access").status_code == 401
