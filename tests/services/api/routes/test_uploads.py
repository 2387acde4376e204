"""`POST /v1/uploads`: presigned POST forms that MinIO enforces, and safe staging keys."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from emulsion_contracts import formats, keys
from emulsion_devstack.stack import Endpoints

from ..conftest import TENANT_A_TOKEN, TENANT_B_COLLECTION, ApiProcess, new_collection

COLLECTION = "uploads-tests"


def presign(api: httpx.Client, filename: str = "IMG_1.jpg", **extra: Any) -> httpx.Response:
    return api.post(
        "/v1/uploads",
        json={
            "filename": filename,
            "content_type": "image/jpeg",
            "size": 4,
            "collection": COLLECTION,
            **extra,
        },
    )


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd",
        "..",
        "a\x00b.jpg",
        "x" * 1000 + ".jpg",
        "C:\\Users\\me\\IMG 1.JPG",
        ".hidden.png",
        "Über café.jpeg",
        "%2e%2e%2fkey.jpg",
    ],
)
def test_hostile_filenames_become_one_safe_staging_key(api: httpx.Client, filename: str) -> None:
    response = presign(api, filename)

    assert response.status_code == 201, response.text
    upload = response.json()
    assert keys.check_staging_key(upload["key"]) == upload["key"]
    assert upload["key"].startswith(f"staging/{COLLECTION}/{upload['upload_id']}/")
    assert len(upload["key"].rsplit("/", 1)[1]) <= keys.SAFE_NAME_MAX
    assert upload["fields"]["key"] == upload["key"]


def test_the_form_uploads_exactly_its_key_with_an_image_type(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    upload = presign(api).json()
    fields = upload["fields"]
    assert fields["Content-Type"] == "image/jpeg"

    posted = httpx.post(upload["url"], data=fields, files={"file": ("f", b"\xff\xd8ab")})
    assert posted.status_code in (200, 201, 204), posted.text
    stored = s3.head_object(Bucket=stack.bucket, Key=upload["key"])
    assert (stored["ContentLength"], stored["ContentType"]) == (4, "image/jpeg")

    # The signature covers the key and the content type: changing either is refused.
    elsewhere = {**fields, "key": "originals/c/a/evil.jpg"}
    assert httpx.post(upload["url"], data=elsewhere, files={"file": ("f", b"x")}).status_code == 403
    other_collection = {**fields, "key": upload["key"].replace(COLLECTION, "other", 1)}
    assert (
        httpx.post(upload["url"], data=other_collection, files={"file": ("f", b"x")}).status_code
        == 403
    )
    html = {**fields, "Content-Type": "text/html"}
    assert httpx.post(upload["url"], data=html, files={"file": ("f", b"x")}).status_code == 403
    # An empty file is outside the content-length range.
    empty = presign(api).json()
    assert (
        httpx.post(empty["url"], data=empty["fields"], files={"file": ("f", b"")}).status_code
        == 400
    )


def _post(upload: dict[str, Any], body: bytes, **fields: str) -> httpx.Response:
    return httpx.post(
        upload["url"], data={**upload["fields"], **fields}, files={"file": ("f", body)}
    )


def test_the_form_accepts_exactly_the_declared_size_only(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    """A 30 MB body once went through a form presigned for 1,000 bytes."""
    declared = presign(api, size=1000).json()

    for body in (b"x" * 1001, b"x" * (30 * 1024 * 1024), b"x" * 999):
        refused = _post(declared, body)
        assert refused.status_code == 400, (len(body), refused.text)
        assert "EntityTooLarge" in refused.text or "EntityTooSmall" in refused.text
    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix=declared["key"])["KeyCount"] == 0

    assert _post(declared, b"x" * 1000).status_code in (200, 201, 204)
    assert s3.head_object(Bucket=stack.bucket, Key=declared["key"])["ContentLength"] == 1000


@pytest.mark.parametrize("content_type", formats.ACCEPTED_CONTENT_TYPES)
def test_the_accepted_formats_can_be_uploaded(api: httpx.Client, content_type: str) -> None:
    upload = presign(api, content_type=content_type).json()
    assert upload["fields"]["Content-Type"] == content_type
    assert _post(upload, b"abcd").status_code in (200, 201, 204)


@pytest.mark.parametrize(
    "content_type", ["image/svg+xml", "image/tiff", "image/x-icon", "image/jxl", "video/mp4"]
)
def test_other_image_types_are_refused_by_the_api_and_by_the_form(
    api: httpx.Client, content_type: str
) -> None:
    refused = presign(api, content_type=content_type)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "invalid_request"

    # A form made for a PNG does not take an SVG either: S3 checks the policy.
    png = presign(api, content_type="image/png").json()
    assert _post(png, b"<svg/>", **{"Content-Type": content_type}).status_code == 403


@pytest.mark.parametrize(
    ("filename", "asset"),
    [
        ("日本.jpg", "日本.jpg"),
        ("photos/Фото 1.jpg", "Фото 1.jpg"),
        ("C:\\Users\\me\\photo 1.JPG", "photo 1.JPG"),
        ("Cafe\u0301.jpg", "Café.jpg"),
        ("a\x00b.jpg", "a-b.jpg"),  # not a valid asset name: its safe name
    ],
)
def test_the_upload_records_the_asset_name_an_ingest_defaults_to(
    api: httpx.Client, s3: Any, stack: Endpoints, filename: str, asset: str
) -> None:
    upload = presign(api, filename).json()
    assert upload["asset"] == asset

    assert _post(upload, b"abcd").status_code in (200, 201, 204)
    stored = s3.head_object(Bucket=stack.bucket, Key=upload["key"])
    assert keys.asset_name(stored["Metadata"]["asset"]) == asset
    # The name is part of the signed policy: a client cannot record another one.
    other = presign(api, filename).json()
    forged = _post(other, b"abcd", **{"x-amz-meta-asset": "other.jpg"})
    assert forged.status_code == 403


def test_the_form_records_the_collection_and_the_callers_identity_which_it_binds(
    api_process: ApiProcess, s3: Any, stack: Endpoints
) -> None:
    """An upload names who asked and for which collection, and the browser
    cannot change either (they are `eq` conditions of the signed policy)."""
    collection = f"{TENANT_B_COLLECTION}"
    with api_process.client(TENANT_A_TOKEN) as tenant_a, api_process.client() as admin:
        mine = f"tenant-a-{keys.new_ulid().lower()[-8:]}"
        upload = presign(tenant_a, collection=mine).json()
        fields = upload["fields"]
        identity = hashlib.sha256(TENANT_A_TOKEN.encode()).hexdigest()[:16]
        assert fields["x-amz-meta-emulsion-collection"] == mine
        assert fields["x-amz-meta-emulsion-owner"] == identity
        for name, value in (
            ("x-amz-meta-emulsion-collection", collection),
            ("x-amz-meta-emulsion-owner", "0" * 16),
        ):
            forged = _post(upload, b"abcd", **{name: value})
            assert forged.status_code == 403, (name, forged.text)
            assert s3.list_objects_v2(Bucket=stack.bucket, Prefix=upload["key"])["KeyCount"] == 0
        assert _post(upload, b"abcd").status_code in (200, 201, 204)
        stored = s3.head_object(Bucket=stack.bucket, Key=upload["key"])["Metadata"]
        assert (stored["emulsion-collection"], stored["emulsion-owner"]) == (mine, identity)
        # The admin token's identity is another one.
        theirs = presign(admin, collection=mine).json()["fields"]["x-amz-meta-emulsion-owner"]
        assert theirs != identity


def test_a_token_may_presign_only_for_a_collection_it_may_use(api_process: ApiProcess) -> None:
    with api_process.client(TENANT_A_TOKEN) as tenant_a:
        for body in (
            {"filename": "a.jpg", "content_type": "image/jpeg", "size": 4},
            {"files": [{"filename": "a.jpg", "content_type": "image/jpeg", "size": 4}]},
        ):
            refused = tenant_a.post("/v1/uploads", json={**body, "collection": TENANT_B_COLLECTION})
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "forbidden"
            missing = tenant_a.post("/v1/uploads", json=body)
            assert missing.status_code == 422, missing.text
    with api_process.client("not-a-token") as stranger:
        refused = stranger.post(
            "/v1/uploads",
            json={"filename": "a.jpg", "content_type": "image/jpeg", "size": 4, "collection": "x"},
        )
        assert refused.status_code == 401


def test_batch_form_presigns_every_file(api: httpx.Client) -> None:
    files = [
        {"filename": f"IMG_{i}.jpg", "content_type": "image/jpeg", "size": 10} for i in range(40)
    ]
    collection = new_collection()

    response = api.post("/v1/uploads", json={"collection": collection, "files": files})

    assert response.status_code == 201, response.text
    uploads = response.json()["uploads"]
    assert [u["key"].rsplit("/", 1)[1] for u in uploads] == [f"IMG_{i}.jpg" for i in range(40)]
    assert len({u["upload_id"] for u in uploads}) == 40
    assert all(keys.staging_collection(u["key"]) == collection for u in uploads)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"filename": "a.jpg", "content_type": "text/html", "size": 1}, "invalid_request"),
        ({"filename": "a.jpg", "content_type": "image/jpeg", "size": 0}, "invalid_request"),
        ({"filename": "", "content_type": "image/jpeg", "size": 1}, "invalid_request"),
        (
            {"filename": "a.jpg", "content_type": "image/jpeg", "size": 101 * 2**20},
            "file_too_large",
        ),
        ({"files": []}, "invalid_request"),
        (
            {"files": [{"filename": "a.jpg", "content_type": "image/jpeg", "size": 1}] * 5001},
            "too_many_items",
        ),
        (
            {"filename": "a.jpg", "content_type": "image/jpeg", "size": 1, "collection": "a/b"},
            "invalid_request",
        ),
    ],
    ids=[
        "not an image",
        "empty",
        "no name",
        "too large",
        "no files",
        "too many files",
        "bad collection",
    ],
)
def test_bad_upload_requests_are_refused(api: httpx.Client, body: Any, code: str) -> None:
    response = api.post("/v1/uploads", json={"collection": COLLECTION, **body})

    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


def test_present_tells_which_staging_keys_hold_an_upload(
    api: httpx.Client, s3: Any, stack: Endpoints
) -> None:
    uploaded, absent, claimed = (
        keys.staging_key(COLLECTION, keys.new_ulid(), f"IMG_{i}.jpg") for i in range(3)
    )
    for key in (uploaded, claimed, keys.claim_key(claimed)):
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"\xff\xd8")

    response = api.post("/v1/uploads/present", json={"keys": [absent, uploaded, claimed]})

    assert response.status_code == 200, response.text
    # A claimed upload was ingested already: it is not there to be ingested again.
    assert response.json() == {"present": [uploaded]}


@pytest.mark.parametrize(
    "key",
    [
        "originals/x/y",
        "staging/../x",
        "staging/NOTAULID/a.jpg",
        "staging/c/01M97GDBSFA4SKJQF652N93NQJ/.claim",
    ],
)
def test_present_refuses_what_is_no_staging_key(api: httpx.Client, key: str) -> None:
    response = api.post("/v1/uploads/present", json={"keys": [key]})

    assert response.status_code == 422
