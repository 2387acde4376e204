"""The seed scenario at small scale, through the real CLI and the four services as processes.

A photographer's gallery is uploaded directly to S3 and announced with one notify; every
item succeeds with every style at the right size; re-uploading some photos supersedes
their old versions, which the janitor removes only after the new ones are live; a
corrupt photo in a batch fails alone, with its reason.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageOps

from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import LocalStack

# Small photos keep the test quick on two cores; the bench uses full-size ones.
SMALL = {"min_megapixels": 0.3, "max_megapixels": 1.5}


def gallery(root: Path, count: int, seed: int) -> Path:
    return ensure_gallery(GalleryParams(count=count, seed=seed, **SMALL), root=root)


def emulsion(
    system: LocalStack, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The CLI run with `args` against the system, as its user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "emulsion_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **system.client_environment()},
    )


def ingest(system: LocalStack, directory: Path, collection: str) -> dict[str, Any]:
    result = emulsion(system, "ingest", str(directory), "--collection", collection, "--json")
    assert result.stdout, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def api_client(system: LocalStack, timeout: float = 30) -> httpx.Client:
    """The system's API over HTTP, with the token the CLI is given."""
    environment = system.client_environment()
    return httpx.Client(
        base_url=environment["EMULSION_API_URL"],
        headers={"Authorization": f"Bearer {environment['EMULSION_TOKEN']}"},
        timeout=timeout,
    )


def api_get(system: LocalStack, path: str) -> dict[str, Any]:
    with api_client(system) as api:
        response = api.get(path)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in {".jpg", ".png", ".webp"})


def expected_size(source: Path, style_name: str) -> tuple[int, int]:
    style = next(s for s in DEFAULT_PROFILE.styles if s.name == style_name)
    with Image.open(source) as image:
        width, height = ImageOps.exif_transpose(image).size
    if style.fit == "crop":
        return style.width, style.height
    scale = min(style.width / width, style.height / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def manifest(s3: Any, bucket: str, collection: str, asset: str) -> AssetManifest:
    body = s3.get_object(Bucket=bucket, Key=keys.manifest_key(collection, asset))["Body"]
    return AssetManifest.model_validate_json(body.read())


def exists(s3: Any, bucket: str, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"))


def kubectl(system: LocalStack, *args: str) -> str:
    return subprocess.run(
        [str(ensure_binary("kubectl")), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **system.client_environment()},
    ).stdout


def test_a_gallery_of_50_ingests_with_every_style_at_its_size(
    system: LocalStack, system_s3: Any, tmp_path: Path
) -> None:
    photos = gallery(tmp_path / "gallery", 50, seed=1361)
    summary = ingest(system, photos, "wedding")

    assert summary["uploaded_files"] == 50
    assert summary["items"] == 50
    assert summary["succeeded"] == 50, summary["failed"]
    # The CLI notifies batch by batch (25, then doubling), so 50 photos are two IngestJobs.
    assert len(summary["jobs"]) == 2
    items = []
    for job in summary["jobs"]:
        status = api_get(system, f"/v1/ingests/{job}")
        assert status["phase"] == "Succeeded"
        count = len(status["items"])
        table = kubectl(system, "get", "ij", job)
        assert "Succeeded" in table and f"{count}/{count}" in table, table
        items.extend(status["items"])
    assert len(items) == 50
    sources = {p.name: p for p in image_files(photos)}
    for item in items:
        assert item["state"] == "succeeded", item
        outputs = {output["style"]: output for output in item["outputs"]}
        assert set(outputs) == {s.name for s in DEFAULT_PROFILE.styles}
        source = sources[item["upload_key"].rsplit("/", 1)[1]]
        for style, output in outputs.items():
            body = httpx.get(output["url"], timeout=30)
            body.raise_for_status()
            with Image.open(io.BytesIO(body.content)) as derivative:
                assert derivative.size == expected_size(source, style), (source.name, style)
                assert (output["width"], output["height"]) == derivative.size
                assert not derivative.getexif(), "metadata must be stripped from derivatives"


def test_a_reupload_supersedes_and_the_old_version_goes_only_after_the_new_is_live(
    system: LocalStack, system_s3: Any, tmp_path: Path
) -> None:
    bucket = system.bucket
    first = gallery(tmp_path / "first", 8, seed=2024)
    assert ingest(system, first, "portraits")["succeeded"] == 8
    assets = [p.name for p in image_files(first)][:5]
    before = {asset: manifest(system_s3, bucket, "portraits", asset) for asset in assets}

    # New photos under the same names: a photographer re-exporting five edits.
    edits = tmp_path / "edits"
    edits.mkdir()
    replacements = image_files(gallery(tmp_path / "second", 8, seed=4048))
    for asset, replacement in zip(assets, replacements, strict=False):
        with Image.open(replacement) as image:
            image.convert("RGB").save(edits / asset)  # the format follows the name
    summary = ingest(system, edits, "portraits")
    assert summary["succeeded"] == 5, summary["failed"]

    after = {asset: manifest(system_s3, bucket, "portraits", asset) for asset in assets}
    old_keys = [key for m in before.values() for key in m.live_keys()]
    new_keys = [key for m in after.values() for key in m.live_keys()]
    for asset in assets:
        assert after[asset].version != before[asset].version
        assert after[asset].version > before[asset].version  # later job, later version
    # The new versions are live and whole; the old ones are still there (grace period).
    assert all(exists(system_s3, bucket, key) for key in new_keys)
    assert all(exists(system_s3, bucket, key) for key in old_keys)

    wait_for(
        "the janitor deleted the superseded versions",
        lambda: not any(exists(system_s3, bucket, key) for key in old_keys),
        timeout=120,
    )
    assert all(exists(system_s3, bucket, key) for key in new_keys)
    for asset in assets:
        assert manifest(system_s3, bucket, "portraits", asset).version == after[asset].version


def test_a_corrupt_photo_fails_alone_with_its_reason(
    system: LocalStack, system_s3: Any, tmp_path: Path
) -> None:
    batch = tmp_path / "batch"
    shutil.copytree(gallery(tmp_path / "good", 4, seed=77), batch, ignore=_only_images)
    healthy = image_files(batch)[0]
    # A JPEG cut short in transfer: its magic bytes pass the CLI, its pixels do not exist.
    (batch / "cut-short.jpg").write_bytes(healthy.read_bytes()[:2000])

    summary = ingest(system, batch, "mixed")
    assert summary["items"] == 5
    assert summary["succeeded"] == 4
    assert [f["file"] for f in summary["failed"]] == ["cut-short.jpg"]
    [job] = summary["jobs"]
    status = api_get(system, f"/v1/ingests/{job}")
    assert status["phase"] == "PartiallyFailed"
    [failure] = status["failures"]
    assert failure["reason"] and failure["message"]
    assert "PartiallyFailed" in kubectl(system, "get", "ij", job)


def _only_images(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if not n.endswith((".jpg", ".png", ".webp"))]
