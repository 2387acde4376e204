"""`emulsion get` of an asset whose style has several formats shows each rendering under
its style (against a stub server answering the API's asset shape)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulsion_cli.errors import EXIT_OK

from .stub import Reply, Request, serve
from .test_lists_on_a_stub import run

# Runs the CLI as a process against a stub HTTP server: `integration`.
pytestmark = pytest.mark.integration

URL = "https://cdn.example.com/derivatives/c/IMG_1.jpg/v/"
ASSET = {
    "collection": "c",
    "asset": "IMG_1.jpg",
    "version": "v1",
    "job": "j",
    "index": 0,
    "committed_at": "2026-12-07T08:00:00Z",
    "original": {
        "url": URL + "IMG_1.jpg",
        "filename": "IMG_1.jpg",
        "content_type": "image/jpeg",
        "bytes": 9,
        "width": 1600,
        "height": 1200,
    },
    "outputs": [
        {
            "style": "large",
            "url": URL + "large.avif",
            "width": 800,
            "height": 600,
            "bytes": 9,
            "content_type": "image/avif",
            "renderings": [
                {"format": f, "url": URL + f"large.{e}", "bytes": 9, "content_type": f"image/{f}"}
                for f, e in (("avif", "avif"), ("webp", "webp"), ("jpeg", "jpg"))
            ],
        },
        {
            "style": "thumb",
            "url": URL + "thumb.jpg",
            "width": 100,
            "height": 100,
            "bytes": 9,
            "content_type": "image/jpeg",
            "renderings": [],
        },
    ],
}


def route(request: Request) -> Reply:
    if request.path == "/v1/assets/c/IMG_1.jpg":
        return Reply(200, ASSET)
    return Reply(404, {"code": "not_found", "status": 404, "detail": request.path})


def test_get_lists_every_rendering_of_a_style(tmp_path: Path) -> None:
    with serve(route) as stub:
        done = run(stub.url, "get", "c", "IMG_1.jpg", tmp_path=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    lines = done.stdout.splitlines()
    large = next(i for i, line in enumerate(lines) if "large.avif" in line)
    assert "webp" in lines[large + 1] and lines[large + 1].endswith("large.webp")
    assert "jpeg" in lines[large + 2] and lines[large + 2].endswith("large.jpg")
    assert "thumb.jpg" in lines[large + 3]
