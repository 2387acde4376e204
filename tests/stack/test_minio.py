"""MinIO as the S3 Emulsion relies on: presigned POST limits and conditional writes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from emulsion_contracts import keys
from emulsion_devstack.stack import Endpoints
from emulsion_runtime import storage

LIMIT = 1024


def presign(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    post: dict[str, Any] = s3.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": "image/jpeg"},
        Conditions=[["content-length-range", 1, LIMIT], ["starts-with", "$Content-Type", "image/"]],
        ExpiresIn=300,
    )
    return post


def upload(post: dict[str, Any], body: bytes, **field_overrides: str) -> httpx.Response:
    fields = {**post["fields"], **field_overrides}
    return httpx.post(
        post["url"], data=fields, files={"file": ("x.jpg", body, "image/jpeg")}, timeout=30
    )


def test_presigned_post_accepts_a_conforming_upload(stack: Endpoints, s3: Any) -> None:
    key = keys.staging_key("gallery-42", keys.new_ulid(), "IMG_0001.JPG")
    response = upload(presign(s3, stack.bucket, key), b"\xff\xd8" + b"x" * 100)
    assert response.status_code == 204, response.text
    assert s3.head_object(Bucket=stack.bucket, Key=key)["ContentLength"] == 102


def test_presigned_post_refuses_a_too_large_upload(stack: Endpoints, s3: Any) -> None:
    key = keys.staging_key("gallery-42", keys.new_ulid(), "big.jpg")
    response = upload(presign(s3, stack.bucket, key), b"x" * (LIMIT + 1))
    assert response.status_code == 400
    assert "EntityTooLarge" in response.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=stack.bucket, Key=key)


def test_presigned_post_refuses_another_key(stack: Endpoints, s3: Any) -> None:
    key = keys.staging_key("gallery-42", keys.new_ulid(), "mine.jpg")
    other = "originals/gallery-42/IMG_0001.jpg/x/IMG_0001.jpg"
    response = upload(presign(s3, stack.bucket, key), b"x" * 10, key=other)
    assert response.status_code == 403
    with pytest.raises(ClientError):
        s3.head_object(Bucket=stack.bucket, Key=other)


def test_presigned_post_refuses_a_non_image_content_type(stack: Endpoints, s3: Any) -> None:
    key = keys.staging_key("gallery-42", keys.new_ulid(), "page.html")
    response = upload(presign(s3, stack.bucket, key), b"<html>", **{"Content-Type": "text/html"})
    assert response.status_code == 403


def test_a_copy_on_an_etag_is_refused_once_the_source_changed(stack: Endpoints, s3: Any) -> None:
    """What promotion relies on: the store refuses CopySourceIfMatch on an ETag
    the source no longer has, and If-None-Match: * on an existing claim marker."""
    key = keys.staging_key("gallery-42", keys.new_ulid(), "IMG_0001.jpg")
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"checked")
    checked = s3.head_object(Bucket=stack.bucket, Key=key)["ETag"]
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"replayed")
    target = f"originals/gallery-42/copy-{keys.new_ulid()}.jpg"
    with pytest.raises(ClientError) as refused:
        s3.copy_object(
            Bucket=stack.bucket,
            Key=target,
            CopySource={"Bucket": stack.bucket, "Key": key},
            CopySourceIfMatch=checked,
        )
    assert storage.is_conflict(refused.value)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=stack.bucket, Key=target)
    marker = keys.claim_key(key)
    s3.put_object(Bucket=stack.bucket, Key=marker, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as claimed:
        s3.put_object(Bucket=stack.bucket, Key=marker, Body=b"second", IfNoneMatch="*")
    assert storage.is_conflict(claimed.value)
    assert s3.get_object(Bucket=stack.bucket, Key=marker)["Body"].read() == b"first"


def test_conditional_writes_protect_the_manifest(stack: Endpoints, s3: Any) -> None:
    """The pinned MinIO has the fix for minio/minio#21526 (If-Match on a missing key)."""
    key = keys.manifest_key("gallery-42", f"cond-{keys.new_ulid()}.jpg")
    with pytest.raises(ClientError) as missing:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b"{}", IfMatch='"0123456789abcdef"')
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] in (404, 412)

    first = s3.put_object(Bucket=stack.bucket, Key=key, Body=b'{"v":1}', IfNoneMatch="*")
    with pytest.raises(ClientError) as exists:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b'{"v":2}', IfNoneMatch="*")
    assert exists.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412

    s3.put_object(Bucket=stack.bucket, Key=key, Body=b'{"v":2}', IfMatch=first["ETag"])
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=b'{"v":3}', IfMatch=first["ETag"])
    assert stale.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b'{"v":2}'
