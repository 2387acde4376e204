"""`/v1/assets/<collection>`: newest-first pages; `/v1/assets/<collection>/<asset>`: the live
manifest with URLs and its ETag; delete hands files to GC, If-Match guards it."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from emulsion_contracts import keys, wire
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import GcRequest
from emulsion_devstack.stack import Endpoints

from ..conftest import (
    TENANT_A_TOKEN,
    ApiProcess,
    commit_manifest,
    live_collection,
    new_collection,
    wait_for,
)


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
        connection = await stack.nats_connect()
        try:
            return await connection.jetstream().get_last_msg(
                wire.GC_STREAM, wire.gc_subject("deleted")
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
    assert set(request.keys) == manifest.stored_keys()
    not_before = datetime.fromisoformat(body["not_before"])
    assert request.not_before == not_before
    assert timedelta(seconds=100) < not_before - datetime.now(UTC) <= timedelta(seconds=120)
    headers = message.headers or {}
    assert headers[wire.HEADER_MSG_ID] == f"deleted/{collection}/IMG_1.jpg/{version}"
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


# -- listing a collection -------------------------------------------------------------------


def _commit_in_order(s3: Any, bucket: str, collection: str, names: list[str]) -> None:
    """Commit `names` oldest to newest; S3 times are whole seconds, so each waits for the
    store's clock to move on (polled, not slept blindly) to make the order observable."""
    previous: datetime | None = None
    for name in names:
        if previous is not None:
            written = previous
            wait_for(
                "the store's clock to tick",
                lambda: _store_now(s3, bucket, collection) > written,  # noqa: B023
                timeout=5,
            )
        commit_manifest(s3, bucket, collection, name)
        previous = s3.head_object(Bucket=bucket, Key=keys.manifest_key(collection, name))[
            "LastModified"
        ]


def _store_now(s3: Any, bucket: str, collection: str) -> datetime:
    key = keys.staging_key(collection, keys.new_ulid(), "clock.txt")
    s3.put_object(Bucket=bucket, Key=key, Body=b"")
    modified: datetime = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
    s3.delete_object(Bucket=bucket, Key=key)
    return modified


def _all_pages(api: httpx.Client, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        response = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_a_collection_lists_newest_first_in_pages_with_urls_for_a_gallery(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    names = ["first.jpg", "second.jpg", "Strand bei Nacht.jpg"]
    _commit_in_order(s3, stack.bucket, collection, names)

    pages = _all_pages(api, f"/v1/assets/{collection}", limit=2)

    assert [len(page) for page in pages] == [2, 1]
    entries = [entry for page in pages for entry in page]
    assert [entry["asset"] for entry in entries] == list(reversed(names))
    newest = entries[0]
    assert newest["state"] == "live"
    assert newest["url"] == f"/v1/assets/{collection}/{quote('Strand bei Nacht.jpg', safe='')}"
    thumb = next(output for output in newest["outputs"] if output["style"] == "thumb")
    assert httpx.get(thumb["url"]).content == b"jpg"
    assert api.get(newest["url"]).json()["asset"] == "Strand bei Nacht.jpg"


def test_deleted_assets_are_hidden_unless_asked_for(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = live_collection(s3, stack.bucket, *("kept.jpg", "gone.jpg"))
    assert api.delete(f"/v1/assets/{collection}/gone.jpg").status_code == 202

    def listed(state: str) -> list[tuple[str, str]]:
        items = api.get(f"/v1/assets/{collection}", params={"state": state}).json()["items"]
        return sorted((item["asset"], item["state"]) for item in items)

    assert listed("live") == [("kept.jpg", "live")]
    assert listed("deleted") == [("gone.jpg", "deleted")]
    assert listed("all") == [("gone.jpg", "deleted"), ("kept.jpg", "live")]
    tombstone = api.get(f"/v1/assets/{collection}", params={"state": "deleted"}).json()["items"][0]
    assert tombstone["original"] is None and tombstone["outputs"] == []
    assert tombstone["deleted_at"] is not None


def test_a_cursor_from_another_list_or_forged_is_refused(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = live_collection(s3, stack.bucket, *("a.jpg", "b.jpg"))
    cursor = api.get(f"/v1/assets/{collection}", params={"limit": 1}).json()["next_cursor"]
    assert cursor is not None

    for params in (
        {"cursor": cursor, "state": "all"},
        {"cursor": "not-a-cursor"},
        {"cursor": cursor[:-4]},
    ):
        response = api.get(f"/v1/assets/{collection}", params={"limit": 1, **params})
        assert response.status_code == 422, params
        assert response.json()["code"] == "invalid_cursor"
    other = api.get(f"/v1/assets/{new_collection()}", params={"cursor": cursor})
    assert other.json()["code"] == "invalid_cursor"


def test_an_empty_collection_is_an_empty_page(api: httpx.Client) -> None:
    assert api.get(f"/v1/assets/{new_collection()}").json() == {"items": [], "next_cursor": None}


def test_a_collection_outside_the_tokens_scopes_is_not_found(
    api_process: ApiProcess, s3: Any, stack: Endpoints
) -> None:
    collection = live_collection(s3, stack.bucket, "a.jpg")
    with api_process.client(TENANT_A_TOKEN) as tenant:
        response = tenant.get(f"/v1/assets/{collection}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# -- conditional requests -------------------------------------------------------------------


def test_etag_is_the_version_and_if_none_match_answers_304(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    version = commit_manifest(s3, stack.bucket, collection, "a.jpg").version
    path = f"/v1/assets/{collection}/a.jpg"

    first = api.get(path)
    assert first.headers["etag"] == f'"{version}"'

    unchanged = api.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == f'"{version}"'
    assert api.get(path, headers={"If-None-Match": f'W/"{version}", "x"'}).status_code == 304

    newer = keys.version_id(keys.new_ulid(), 1)
    commit_manifest(s3, stack.bucket, collection, "a.jpg", newer)
    changed = api.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and changed.json()["version"] == newer


def test_delete_with_if_match_refuses_another_version(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    old = commit_manifest(s3, stack.bucket, collection, "a.jpg").version
    newer = keys.version_id(keys.new_ulid(), 1)
    commit_manifest(s3, stack.bucket, collection, "a.jpg", newer)
    path = f"/v1/assets/{collection}/a.jpg"

    refused = api.delete(path, headers={"If-Match": f'"{old}"'})

    assert refused.status_code == 412, refused.text
    assert refused.json()["code"] == "precondition_failed"
    assert api.get(path).json()["version"] == newer
    accepted = api.delete(path, headers={"If-Match": f'"{newer}"'})
    assert accepted.status_code == 202 and accepted.json()["version"] == newer
