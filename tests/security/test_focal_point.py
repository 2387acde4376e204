"""The focal point: `PATCH /v1/assets/{collection}/{asset}` on the real stack.

End to end: an asset ingested through the API, its focal point set, its crop styles made
again from the stored original as a new version (the original and the fitted styles
kept where they were), later versions keeping the point, null clearing it. Tenancy:
another tenant's token and no token are refused and learn nothing; a job made past the
API naming another asset's original fails in the processor without touching it.

One stack of this module's own (its processor would take other tests' work items from
a shared stream), with a second API holding two tenants' tokens.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.security.test_uploads import (
    System,
    finished,
    ingest,
    job_names,
    kubectl_job,
    two_tenant_system,
)
from tests.uploading import uploaded

TENANT_A = secrets.token_urlsafe(24)
TENANT_B = secrets.token_urlsafe(24)
A_COLLECTION = "tenant-a-photos"
B_COLLECTION = "tenant-b"
CROPS = ("thumb", "tiny", "really_tiny")
FITTED = ("large", "medium")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with two_tenant_system(
        tmp_path_factory.mktemp("focal-point"),
        {TENANT_A: ["tenant-a-*"], TENANT_B: [B_COLLECTION]},
    ) as system:
        yield system


def panorama(dot_x: float) -> bytes:
    """A 3:1 blue JPEG with a red disc at `dot_x` of its width: a centred square crop
    misses a disc near either end."""
    image = Image.new("RGB", (900, 300), (0, 0, 230))
    x = round(dot_x * 900)
    ImageDraw.Draw(image).ellipse((x - 40, 110, x + 40, 190), fill=(240, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def shows_red(url: str) -> bool:
    with Image.open(io.BytesIO(httpx.get(url, timeout=30).content)) as made:
        red, _, blue = made.convert("RGB").split()
        return any(r > 128 and r > b for r, b in zip(red.tobytes(), blue.tobytes(), strict=True))


def outputs(asset: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {output["style"]: output for output in asset["outputs"]}


def object_key(url: str) -> str:
    """The derivative's key from its download URL (the path after the bucket)."""
    path = httpx.URL(url).path
    return path.split("/", 2)[2]


def ingested(api: httpx.Client, name: str, data: bytes) -> dict[str, Any]:
    key = uploaded(api, A_COLLECTION, name, data)["key"]
    accepted = ingest(api, A_COLLECTION, {"upload_key": key, "asset": name})
    assert accepted.status_code == 202, accepted.text
    done = finished(api, accepted.json()["name"])
    assert (done["phase"], done["succeeded"]) == ("Succeeded", 1), done
    asset = api.get(f"/v1/assets/{A_COLLECTION}/{name}")
    assert asset.status_code == 200, asset.text
    body: dict[str, Any] = asset.json()
    return body


def patched(api: httpx.Client, name: str, point: dict[str, float] | None) -> dict[str, Any]:
    response = api.patch(f"/v1/assets/{A_COLLECTION}/{name}", json={"focal_point": point})
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    assert response.headers["Location"] == accepted["status_url"]
    done = finished(api, accepted["job"])
    assert (done["phase"], done["succeeded"]) == ("Succeeded", 1), done
    asset = api.get(f"/v1/assets/{A_COLLECTION}/{name}")
    assert asset.status_code == 200, asset.text
    body: dict[str, Any] = asset.json()
    return body


def test_a_focal_point_re_renders_only_the_crops_and_later_versions_keep_it(
    system: System,
) -> None:
    with system.api(TENANT_A) as api:
        before = ingested(api, "pano.jpg", panorama(0.9))
        assert before["focal_point"] is None
        assert not shows_red(outputs(before)["thumb"]["url"]), "a centred crop misses the disc"

        after = patched(api, "pano.jpg", {"x": 0.9, "y": 0.5})
        assert after["version"] > before["version"]
        assert after["focal_point"] == {"x": 0.9, "y": 0.5}
        old, new = outputs(before), outputs(after)
        for style in CROPS:
            assert object_key(new[style]["url"]) != object_key(old[style]["url"])
            assert after["version"] in object_key(new[style]["url"])
            assert (new[style]["width"], new[style]["height"]) == (
                old[style]["width"],
                old[style]["height"],
            )
            assert shows_red(new[style]["url"]), style
        for style in FITTED:
            assert object_key(new[style]["url"]) == object_key(old[style]["url"])
        assert object_key(after["original"]["url"]) == object_key(before["original"]["url"])

        # A new upload of the asset keeps the point: the disc is now at the left.
        reuploaded = ingested(api, "pano.jpg", panorama(0.1))
        assert reuploaded["focal_point"] == {"x": 0.9, "y": 0.5}
        # Set anew for the new photo, then cleared: the centre again.
        left = patched(api, "pano.jpg", {"x": 0.1, "y": 0.5})
        assert shows_red(outputs(left)["thumb"]["url"])
        cleared = patched(api, "pano.jpg", None)
        assert cleared["focal_point"] is None
        assert not shows_red(outputs(cleared)["thumb"]["url"])


def anonymous(response: httpx.Response, *names: str) -> dict[str, Any]:
    """A problem's body without its trace id and with the names asked for taken out."""
    body: dict[str, Any] = response.json()
    body.pop("trace_id", None)
    text = json.dumps(body)
    for name in names:
        text = text.replace(name, "<name>")
    cleaned: dict[str, Any] = json.loads(text)
    return cleaned


def test_another_tenant_or_no_token_cannot_set_a_focal_point_and_learns_nothing(
    system: System,
) -> None:
    with system.api(TENANT_A) as tenant_a, system.api(TENANT_B) as tenant_b:
        before = ingested(tenant_a, "private.jpg", panorama(0.5))
        jobs_before = job_names(system, A_COLLECTION)
        body = {"focal_point": {"x": 0.1, "y": 0.1}}

        theirs = tenant_b.patch(f"/v1/assets/{A_COLLECTION}/private.jpg", json=body)
        nothing = tenant_b.patch(f"/v1/assets/{A_COLLECTION}/never-was.jpg", json=body)
        absent_collection = tenant_b.patch("/v1/assets/tenant-a-nothing/x.jpg", json=body)
        assert theirs.status_code == nothing.status_code == 404
        assert anonymous(theirs, "private.jpg") == anonymous(nothing, "never-was.jpg")
        assert anonymous(theirs, "private.jpg", A_COLLECTION) == anonymous(
            absent_collection, "x.jpg", "tenant-a-nothing"
        )
        with system.api(None) as stranger:
            unauthenticated = stranger.patch(f"/v1/assets/{A_COLLECTION}/private.jpg", json=body)
            unknown = stranger.patch(f"/v1/assets/{A_COLLECTION}/never-was.jpg", json=body)
        assert unauthenticated.status_code == unknown.status_code == 401
        assert anonymous(unauthenticated, "private.jpg") == anonymous(unknown, "never-was.jpg")

        # Nothing was started or changed.
        assert job_names(system, A_COLLECTION) == jobs_before
        after = tenant_a.get(f"/v1/assets/{A_COLLECTION}/private.jpg").json()
        assert (after["version"], after["focal_point"]) == (before["version"], None)


def test_a_job_made_past_the_api_cannot_re_render_another_assets_original(
    system: System,
) -> None:
    with system.api(TENANT_A) as tenant_a, system.api(system.admin) as admin:
        mine = ingested(tenant_a, "kept.jpg", panorama(0.5))
        original = next(
            key
            for key in (
                item["Key"]
                for item in system.s3.list_objects_v2(
                    Bucket=system.endpoints.bucket, Prefix=f"originals/{A_COLLECTION}/kept.jpg/"
                )["Contents"]
            )
        )
        # Into B's collection, and under another asset of A's: both fail in the processor.
        for collection, asset in ((B_COLLECTION, "kept.jpg"), (A_COLLECTION, "other.jpg")):
            forged = kubectl_job(system, collection, original, asset)
            status = finished(admin, forged)
            assert (status["failed"], status["failures"][0]["reason"]) == (
                1,
                "UploadNotInCollection",
            )
            assert admin.get(f"/v1/assets/{collection}/{asset}").status_code == 404
        after = tenant_a.get(f"/v1/assets/{A_COLLECTION}/kept.jpg").json()
        assert after["version"] == mine["version"]
        assert system.head(original) is not None


def test_a_re_render_of_an_original_no_longer_live_changes_nothing(system: System) -> None:
    """An upload committed after the PATCH read the manifest wins: the re-render's item
    ends succeeded but not made live, and the newer upload's crops stay."""
    with system.api(TENANT_A) as tenant_a, system.api(system.admin) as admin:
        first = ingested(tenant_a, "raced.jpg", panorama(0.9))
        listed = system.s3.list_objects_v2(
            Bucket=system.endpoints.bucket, Prefix=f"originals/{A_COLLECTION}/raced.jpg/"
        )["Contents"]
        [old_original] = [item["Key"] for item in listed if first["version"] in item["Key"]]
        second = ingested(tenant_a, "raced.jpg", panorama(0.1))
        late = kubectl_job(system, A_COLLECTION, old_original, "raced.jpg")
        status = finished(admin, late)
        assert (status["phase"], status["succeeded"]) == ("Succeeded", 1), status
        assert status["items"][0]["live"] is False, status["items"][0]
        now = tenant_a.get(f"/v1/assets/{A_COLLECTION}/raced.jpg").json()
        assert now["version"] == second["version"]
        kept = {style: object_key(o["url"]) for style, o in outputs(second).items()}
        assert {style: object_key(o["url"]) for style, o in outputs(now).items()} == kept
