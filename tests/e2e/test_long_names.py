"""Names whose keys would not fit a store, ingested end to end on MinIO.

`日本の美しい風景写真コレクション二千二十六年十二月七日撮影分その一.jpg` (301 bytes
percent-encoded) was accepted and then stayed Queued, MinIO refusing a key segment over
255 bytes and the processor waiting that out as an outage; so did 200 items named with
150 '<' each. With a readable prefix plus a hash, every segment fits, and the name is
kept exactly by the manifest and shown by the API.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

import httpx
from PIL import Image

from emulsion_contracts import keys
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import LocalStack

ISSUE_NAME = "日本の美しい風景写真コレクション二千二十六年十二月七日撮影分その一.jpg"


def _tiny_jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (shade % 256, 90, 160)).save(buffer, "JPEG")
    return buffer.getvalue()


def _client(system: LocalStack) -> httpx.Client:
    environment = system.client_environment()
    return httpx.Client(
        base_url=environment["EMULSION_API_URL"],
        headers={"Authorization": f"Bearer {environment['EMULSION_TOKEN']}"},
        timeout=60,
    )


def _upload(api: httpx.Client, collection: str, names: list[str]) -> list[str]:
    """Each name uploaded for `collection` as a file of that name through presigned forms;
    the keys."""
    photos = [_tiny_jpeg(index) for index in range(len(names))]
    files = [
        {"filename": name, "content_type": "image/jpeg", "size": len(photo)}
        for name, photo in zip(names, photos, strict=True)
    ]
    answer = api.post("/v1/uploads", json={"collection": collection, "files": files})
    assert answer.status_code == 201, answer.text
    uploads = answer.json()["uploads"]
    with httpx.Client(timeout=60) as s3:
        for upload, photo in zip(uploads, photos, strict=True):
            posted = s3.post(upload["url"], data=upload["fields"], files={"file": ("f.jpg", photo)})
            assert posted.status_code in (200, 201, 204), posted.text
    # The name each upload defaults to is the file's own, kept whole in its metadata.
    assert [upload["asset"] for upload in uploads] == names
    return [upload["key"] for upload in uploads]


def _ingest_and_finish(api: httpx.Client, collection: str, names: list[str]) -> dict[str, Any]:
    staged = _upload(api, collection, names)
    answer = api.post(
        "/v1/ingests",
        json={"collection": collection, "items": [{"upload_key": key} for key in staged]},
    )
    assert answer.status_code == 202, answer.text
    status_url = answer.json()["status_url"]

    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = api.get(status_url, params={"wait": 10}).json()
        return status if status["succeeded"] + status["failed"] == len(names) else None

    return wait_for(f"{collection} to finish", finished, timeout=300)


def test_names_longer_than_a_store_segment_ingest_and_keep_their_names(
    system: LocalStack, system_s3: Any
) -> None:
    names = [ISSUE_NAME, "写" * 66, "😀" * 50, "<" * 150 + ".jpg", "a" * 196 + ".jpg"]
    collection = "long-names"
    with _client(system) as api:
        status = _ingest_and_finish(api, collection, names)
        assert (status["succeeded"], status["failed"]) == (len(names), 0), status
        for name in names:
            shown = api.get(f"/v1/assets/{collection}/{quote(name, safe='')}")
            assert shown.status_code == 200, shown.text
            assert shown.json()["asset"] == name
        listed = api.get(f"/v1/assets/{collection}", params={"limit": 50}).json()
        assert sorted(entry["asset"] for entry in listed["items"]) == sorted(names)
    bucket = system.client_environment()["EMULSION_BUCKET"]
    stored = [
        entry["Key"]
        for page in system_s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for entry in page.get("Contents", [])
        if f"/{collection}/" in entry["Key"]
    ]
    # Staging keys name the collection too (the uploads and their claims); assets' keys
    # are the ones with segments.
    segments = {keys.asset_segment(name) for name in names}
    assert {
        keys.parse_key(key).segment  # type: ignore[union-attr]
        for key in stored
        if not key.startswith(keys.STAGING)
    } == segments
    assert all(len(part.encode()) <= 255 for key in stored for part in key.split("/"))
    assert keys.asset_segment(ISSUE_NAME).startswith("%E6%97%A5%E6%9C%AC")


def test_200_items_named_with_150_lt_all_succeed(system: LocalStack) -> None:
    names = ["<" * 150 + f"{index:03d}.jpg" for index in range(200)]
    with _client(system) as api:
        status = _ingest_and_finish(api, "lt-names", names)
    assert (status["succeeded"], status["failed"]) == (200, 0), status
