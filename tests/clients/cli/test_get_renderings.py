"""`emulsion get` of an asset whose style has several formats shows each rendering under
its style, and what the photo says of itself (against a stub server answering the API's
asset shape)."""

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


DESCRIBED = {
    **ASSET,
    "asset": "described.jpg",
    "original": {**ASSET["original"], "filename": "写真.JPG", "sha256": "ab" * 32},  # type: ignore[dict-item]
    "metadata": {
        "taken_at": "2026-05-04T13:14:15+09:00",
        "camera_make": "Canon",
        "camera_model": "Canon EOS R5",
        "lens": "RF50mm F1.8 STM",
        "iso": 400,
        "exposure_time": 0.004,
        "aperture": 2.8,
        "focal_length": 50.0,
        "artist": "写真家 Zoë",
    },
    "placeholder": {"thumbhash": "1QcSHQRnh493V4dIh4eXh1h4kJUI", "dominant_color": "#c8a078"},
}


def described_route(request: Request) -> Reply:
    if request.path == "/v1/assets/c/described.jpg":
        return Reply(200, DESCRIBED)
    return route(request)


def test_get_shows_the_uploaded_name_checksum_capture_and_placeholder(tmp_path: Path) -> None:
    with serve(described_route) as stub:
        done = run(stub.url, "get", "c", "described.jpg", tmp_path=tmp_path)
        plain = run(stub.url, "get", "c", "IMG_1.jpg", tmp_path=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    assert f"写真.JPG  sha256 {'ab' * 32}" in done.stdout
    taken = next(line for line in done.stdout.splitlines() if "taken" in line)
    for shown in ("2026-05-04T13:14:15+09:00", "Canon Canon EOS R5", "f/2.8", "1/250 s"):
        assert shown in taken
    assert "ISO 400" in taken and "50 mm" in taken and "by 写真家 Zoë" in taken
    assert "#c8a078" in done.stdout
    # An asset the API describes not at all (an older API, an older asset): no such lines.
    assert not any(w in plain.stdout for w in ("sha256", "taken", "placeholder"))
