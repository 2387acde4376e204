"""`/v1/assets/<collection>/<asset>`: the live manifest with URLs; delete hands files to GC."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import nats
import pytest

from emulsion_contracts import keys, messaging
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import GcRequest
from emulsion_devstack.stack import Endpoints

from ..conftest import commit_manifest, new_collection


def test_asset_shows_the_live_version_with_download_urls(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    version = keys.version_id(keys.new_ulid(), 3)
    manifest = commit_manifest(s3, stack.bucket, collection, "IMG_7.jpg", version, job="j1")

    response = api.get(f"/v1/assets/{collection}/IMG_7.jpg")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["job"], body["index"]) == (version, "j1", 3)
    assert body["original"]["width"] == 1600
    assert [o["style"] for o in body["outputs"]] == [d.style for d in manifest.derivatives]
    assert httpx.get(body["outputs"][0]["url"]).content == b"jpg"


def test_delete_removes_the_manifest_and_publishes_the_keys_to_gc(
    api: httpx.Client, s3: Any, stack: Endpoints, run: Any
) -> None:
    collection = new_collection()
    version = keys.version_id(keys.new_ulid(), 0)
    manifest = commit_manifest(s3, stack.bucket, collection, "IMG_1.jpg", version)

    response = api.delete(
        f"/v1/assets/{collection}/IMG_1.jpg",
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["version"], body["keys"]) == (version, 3)
    # A tombstone replaces the manifest, so a late older item cannot bring the asset back.
    stored = s3.get_object(Bucket=stack.bucket, Key=keys.manifest_key(collection, "IMG_1.jpg"))
    tombstone = AssetManifest.from_bytes(stored["Body"].read())
    assert tombstone.is_tombstone and tombstone.version > version
    assert tombstone.live_keys() == frozenset()
    # The files stay until the janitor's grace period has passed.
    for key in manifest.live_keys():
        s3.head_object(Bucket=stack.bucket, Key=key)

    async def last_gc_message() -> Any:
        connection = await nats.connect(stack.nats_url)
        try:
            return await connection.jetstream().get_last_msg(
                messaging.GC_STREAM, messaging.gc_subject("deleted")
            )
        finally:
            await connection.close()

    message = run(last_gc_message())
    request = GcRequest.model_validate_json(message.data)
    assert (request.reason, request.collection, request.asset) == (
        "deleted",
        collection,
        "IMG_1.jpg",
    )
    assert set(request.keys) == manifest.live_keys()
    not_before = datetime.fromisoformat(body["not_before"])
    assert request.not_before == not_before
    assert timedelta(seconds=100) < not_before - datetime.now(UTC) <= timedelta(seconds=120)
    headers = message.headers or {}
    assert headers[messaging.HEADER_MSG_ID] == f"deleted/{collection}/IMG_1.jpg/{version}"
    assert headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")

    assert api.get(f"/v1/assets/{collection}/IMG_1.jpg").status_code == 404
    again = api.delete(f"/v1/assets/{collection}/IMG_1.jpg")
    assert again.status_code == 404 and again.json()["code"] == "not_found"


def test_bad_asset_names_are_refused(api: httpx.Client) -> None:
    for path in (
        "/v1/assets/c/" + "a" * 1000,
        "/v1/assets/c/a%00b.jpg",
        "/v1/assets/c/a%5Cb.jpg",
        "/v1/assets/c/%20lead.jpg",
        "/v1/assets/c/%E2%80%AEbidi.jpg",
    ):
        response = api.delete(path)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("name", ["日本.jpg", "中国.jpg", "Фото 1.jpg", "photo 1.JPG", ".hidden"])
def test_unicode_assets_are_read_and_deleted_by_their_percent_encoded_name(
    api: httpx.Client, s3: Any, stack: Endpoints, name: str
) -> None:
    collection = new_collection()
    version = keys.version_id(keys.new_ulid(), 0)
    commit_manifest(s3, stack.bucket, collection, name, version)
    path = f"/v1/assets/{collection}/{quote(name, safe='')}"

    response = api.get(path)

    assert response.status_code == 200, response.text
    assert (response.json()["asset"], response.json()["version"]) == (name, version)
    # NFD in the URL names the same (NFC) asset.
    decomposed = quote(unicodedata.normalize("NFD", name), safe="")
    assert api.get(f"/v1/assets/{collection}/{decomposed}").status_code == 200
    assert api.delete(path).status_code == 202
    assert api.get(path).status_code == 404
