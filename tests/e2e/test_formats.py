"""A style with several formats end to end: the CLI ingests with a profile whose styles
list `[avif, webp, jpeg]`; every rendering is stored at the style's size, the API lists
them and its style URL redirects by `Accept`; a re-upload's janitor takes every old
rendering and none of the new."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from PIL import Image

from emulsion_contracts import keys
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import LocalStack

from .test_gallery import api_client, emulsion, exists, gallery, image_files, manifest

PIL_NAMES = {"avif": "AVIF", "webp": "WEBP", "jpeg": "JPEG"}


def ingest(system: LocalStack, directory: Path, collection: str) -> None:
    result = emulsion(
        system, "ingest", str(directory), "--collection", collection, "--profile", "formats"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_style_serves_avif_webp_and_a_jpeg_fallback_and_the_janitor_takes_old_renderings(
    system: LocalStack, system_s3: Any, tmp_path: Path
) -> None:
    bucket, collection = system.bucket, "formats"
    photos = gallery(tmp_path / "photos", 3, seed=27)
    ingest(system, photos, collection)
    asset = image_files(photos)[0].name
    live = manifest(system_s3, bucket, collection, asset)
    by_style = {d.style: d for d in live.derivatives}
    assert [r.format for r in by_style["large"].renderings] == ["avif", "webp", "jpeg"]
    assert [r.format for r in by_style["thumb"].renderings] == ["avif", "jpeg"]
    assert by_style["tiny"].renderings == ()
    for derivative in live.derivatives:
        for rendering in derivative.all_renderings():
            body = system_s3.get_object(Bucket=bucket, Key=rendering.key)
            assert body["ContentType"] == rendering.content_type
            with Image.open(io.BytesIO(body["Body"].read())) as image:
                assert image.format == PIL_NAMES[rendering.format]
                assert image.size == (derivative.width, derivative.height)

    with api_client(system) as client:
        outputs = {
            o["style"]: o
            for o in client.get(f"/v1/assets/{collection}/{quote(asset)}").json()["outputs"]
        }
        assert [r["format"] for r in outputs["large"]["renderings"]] == ["avif", "webp", "jpeg"]
        style = f"/v1/assets/{collection}/{quote(asset)}/styles/large"
        for accept, expected in [
            ("image/avif,image/webp,image/*,*/*;q=0.8", "AVIF"),
            ("image/webp,image/*;q=0.8", "WEBP"),
            ("image/png,image/jpeg;q=0.5", "JPEG"),
            ("image/png", "JPEG"),
            ("*/*", "AVIF"),
        ]:
            response = client.get(style, headers={"Accept": accept})
            assert response.status_code == 302, response.text
            assert "Accept" in [v.strip() for v in response.headers["Vary"].split(",")]
            with Image.open(io.BytesIO(httpx.get(response.headers["Location"]).content)) as image:
                assert image.format == expected, accept

    # A re-upload under the same name: every rendering of the old version goes, none of
    # the new one's.
    edits = tmp_path / "edits"
    edits.mkdir()
    with Image.open(image_files(gallery(tmp_path / "other", 1, seed=72))[0]) as image:
        image.convert("RGB").save(edits / asset)
    ingest(system, edits, collection)
    after = manifest(system_s3, bucket, collection, asset)
    assert after.version > live.version
    old_keys = sorted(live.live_keys())
    new_keys = sorted(after.live_keys())
    assert sum(k.startswith(keys.DERIVATIVES) for k in new_keys) == 6
    wait_for(
        "the janitor deleted every superseded rendering",
        lambda: not any(exists(system_s3, bucket, key) for key in old_keys),
        timeout=120,
    )
    assert all(exists(system_s3, bucket, key) for key in new_keys)
