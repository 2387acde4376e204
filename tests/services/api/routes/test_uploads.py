"""`POST /v1/uploads`: presigned POST forms that MinIO enforces, and safe staging keys."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulsion_contracts import keys
from emulsion_devstack.stack import Endpoints


def presign(api: httpx.Client, filename: str = "IMG_1.jpg", **extra: Any) -> httpx.Response:
    return api.post(
        "/v1/uploads",
        json={"filename": filename, "content_type": "image/jpeg", "size": 4, **extra},
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
    assert upload["key"].startswith(f"staging/{upload['upload_id']}/")
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
    html = {**fields, "Content-Type": "text/html"}
    assert httpx.post(upload["url"], data=html, files={"file": ("f", b"x")}).status_code == 403
    # An empty file is outside the content-length range.
    empty = presign(api).json()
    assert (
        httpx.post(empty["url"], data=empty["fields"], files={"file": ("f", b"")}).status_code
        == 400
    )


def test_batch_form_presigns_every_file(api: httpx.Client) -> None:
    files = [
        {"filename": f"IMG_{i}.jpg", "content_type": "image/jpeg", "size": 10} for i in range(40)
    ]

    response = api.post("/v1/uploads", json={"files": files})

    assert response.status_code == 201, response.text
    uploads = response.json()["uploads"]
    assert [u["key"].rsplit("/", 1)[1] for u in uploads] == [f"IMG_{i}.jpg" for i in range(40)]
    assert len({u["upload_id"] for u in uploads}) == 40


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
    ],
    ids=["not an image", "empty", "no name", "too large", "no files", "too many files"],
)
def test_bad_upload_requests_are_refused(api: httpx.Client, body: Any, code: str) -> None:
    response = api.post("/v1/uploads", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
