"""An asset's photo metadata, uploaded name, checksum and placeholder, as the API shows
them: from the manifest, null where an older manifest has none, and nothing of them to
another tenant or to a caller without a token."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest, Gps, PhotoMetadata, Placeholder
from emulsion_devstack.stack import Endpoints
from emulsion_runtime import storage

from ..conftest import TENANT_A_TOKEN, ApiProcess, commit_manifest, new_collection
from .test_uploads import presign

NAME = "写真.JPG"
METADATA = PhotoMetadata(
    taken_at=datetime(2026, 5, 4, 13, 14, 15, tzinfo=timezone(timedelta(hours=9))),
    camera_make="Canon",
    camera_model="Canon EOS R5",
    lens="RF50mm F1.8 STM",
    iso=400,
    exposure_time=0.004,
    aperture=2.8,
    focal_length=50.0,
    artist="写真家 Zoë",
    orientation=6,
    gps=Gps(latitude=35.6751389, longitude=139.75),
)
PLACEHOLDER = Placeholder(thumbhash="1QcSHQRnh493V4dIh4eXh1h4kJUI", dominant_color="#c8a078")
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def described(s3: Any, bucket: str, collection: str, asset: str, **fields: Any) -> AssetManifest:
    """An asset committed as a processor that records metadata leaves it."""
    plain = commit_manifest(s3, bucket, collection, asset)
    original = plain.original.model_copy(update={"uploaded_name": NAME, "sha256": SHA})
    manifest = plain.model_copy(
        update={
            "original_or_none": original,
            "metadata": METADATA,
            "placeholder": PLACEHOLDER,
            **fields,
        }
    )
    key = keys.manifest_key(collection, asset)
    s3.put_object(Bucket=bucket, Key=key, Body=manifest.to_bytes())
    return manifest


def test_an_asset_shows_its_metadata_uploaded_name_checksum_and_placeholder(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    described(s3, stack.bucket, collection, "IMG_1.jpg")
    body = api.get(f"/v1/assets/{collection}/IMG_1.jpg").json()
    assert body["original"]["filename"] == NAME
    assert body["original"]["stored_filename"] == "IMG_1.jpg"
    assert body["original"]["sha256"] == SHA
    metadata = body["metadata"]
    assert metadata["taken_at"] == "2026-05-04T13:14:15+09:00"
    assert metadata["artist"] == "写真家 Zoë"
    assert (metadata["iso"], metadata["exposure_time"], metadata["aperture"]) == (400, 0.004, 2.8)
    assert metadata["gps"] == {"latitude": 35.6751389, "longitude": 139.75, "altitude": None}
    assert metadata["copyright"] is None
    assert body["placeholder"] == PLACEHOLDER.model_dump()
    # The list carries them too, for a gallery page's thumbnails.
    listed = api.get(f"/v1/assets/{collection}").json()["items"]
    assert listed[0]["placeholder"] == PLACEHOLDER.model_dump()
    assert listed[0]["metadata"]["camera_model"] == "Canon EOS R5"


def test_a_photo_without_exif_has_every_field_null(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    described(s3, stack.bucket, collection, "scan.png", metadata=None)
    body = api.get(f"/v1/assets/{collection}/scan.png").json()
    assert body["metadata"] is not None
    assert set(body["metadata"].values()) == {None}
    assert body["placeholder"]["dominant_color"] == "#c8a078"


def test_an_asset_from_before_metadata_shows_nulls_and_its_stored_name(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    commit_manifest(s3, stack.bucket, collection, "old.jpg")
    body = api.get(f"/v1/assets/{collection}/old.jpg").json()
    assert (body["metadata"], body["placeholder"], body["original"]["sha256"]) == (None,) * 3
    assert body["original"]["filename"] == body["original"]["stored_filename"] == "old.jpg"


def test_another_tenant_and_no_token_learn_nothing_of_it(
    api_process: ApiProcess, s3: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    described(s3, stack.bucket, collection, "IMG_1.jpg")
    path = f"/v1/assets/{collection}/IMG_1.jpg"
    with api_process.client(TENANT_A_TOKEN) as tenant:
        theirs = tenant.get(path)
        missing = tenant.get(f"/v1/assets/{collection}/{quote('no such.jpg')}")
        listed = tenant.get(f"/v1/assets/{collection}")
    with httpx.Client(base_url=api_process.url, timeout=30) as anonymous:
        unauthenticated = anonymous.get(path)
    # The same answer as for an asset that does not exist: not even that it exists.
    assert (theirs.status_code, missing.status_code, listed.status_code) == (404, 404, 404)
    assert theirs.json()["code"] == missing.json()["code"] == "not_found"
    assert unauthenticated.status_code == 401
    for response in (theirs, listed, unauthenticated):
        for secret in ("写真", "Canon", SHA, PLACEHOLDER.thumbhash, "35.67"):
            assert secret not in response.text


def test_the_upload_form_records_the_name_as_given(api: httpx.Client) -> None:
    upload = presign(api, "Ünïcode 写真.JPG").json()
    recorded = upload["fields"]["x-amz-meta-emulsion-filename"]
    assert recorded.isascii()
    assert storage.decode_filename(recorded) == "Ünïcode 写真.JPG"
    assert upload["key"].endswith("/Unicode.jpg")  # the key's name is folded to ASCII
