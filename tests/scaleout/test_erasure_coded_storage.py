"""MinIO erasure coded: four drives, EC:2 (`make up MINIO_DRIVES=4`).

The conditional writes the pipeline stands on (If-Match, If-None-Match, CopySourceIfMatch,
the presigned POST's policy: tests/stack/test_minio.py) hold on it as on one drive. Losing
one drive leaves reads and writes working; losing two leaves every object readable (two
data shards of four remain) but refuses writes (below write quorum) with a 503, which the
services treat as an outage to wait out; the drives back, writes work again.

Four MinIO processes of a drive each (a node-loss layout) cannot run here: in a container
MinIO waits for ever for a distributed endpoint on a loopback address to "resolve to a
valid IP" (see stack.MINIO_LAYOUTS).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulsion_contracts import keys
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import Endpoints, LocalStack, ensure_bucket, minio_drive, s3_client
from tests.stack import test_minio as proofs

Layout = tuple[LocalStack, Endpoints, Any]


@pytest.fixture(scope="module")
def four_drives(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    stack = LocalStack(
        tmp_path_factory.mktemp("minio-ec"), say=lambda line: None, minio_layout="drives"
    )
    try:
        endpoints = stack.up()
        ensure_bucket(endpoints)
        yield stack, endpoints, s3_client(endpoints)
    finally:
        stack.down()


def test_the_conditional_writes_hold_erasure_coded(four_drives: Layout) -> None:
    _, endpoints, s3 = four_drives
    proofs.test_conditional_writes_protect_the_manifest(endpoints, s3)
    proofs.test_a_copy_on_an_etag_is_refused_once_the_source_changed(endpoints, s3)
    proofs.test_presigned_post_accepts_a_conforming_upload(endpoints, s3)
    proofs.test_presigned_post_refuses_another_key(endpoints, s3)


def put_and_read(s3: Any, bucket: str, body: bytes) -> bytes:
    key = keys.manifest_key("ec", f"{keys.new_ulid()}.jpg")
    s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def lose(drive: Path) -> Path:
    """The drive's contents gone, as a failed disk's are (kept aside to give back)."""
    aside = drive.with_name(f"{drive.name}.lost")
    drive.rename(aside)
    return aside


def test_losing_one_drive_keeps_writes_losing_two_keeps_reads(four_drives: Layout) -> None:
    _, endpoints, s3 = four_drives
    bucket, data_dir = endpoints.bucket, Path(endpoints.data_dir)
    before = keys.manifest_key("ec", f"before-{keys.new_ulid()}.jpg")
    s3.put_object(Bucket=bucket, Key=before, Body=b"written on four drives")
    lost: list[tuple[Path, Path]] = []
    try:
        drive = minio_drive(data_dir, 4)
        lost.append((drive, lose(drive)))
        assert put_and_read(s3, bucket, b"one drive lost") == b"one drive lost"
        drive = minio_drive(data_dir, 3)
        lost.append((drive, lose(drive)))
        assert s3.get_object(Bucket=bucket, Key=before)["Body"].read() == b"written on four drives"

        def refused() -> bool:
            try:
                put_and_read(s3, bucket, b"two drives lost")
            except ClientError as error:
                return bool(error.response["ResponseMetadata"]["HTTPStatusCode"] == 503)
            return False

        wait_for("writes refused below quorum", refused, 60)
    finally:
        for drive, aside in lost:
            shutil.rmtree(drive, ignore_errors=True)
            aside.rename(drive)

    def writes_again() -> bool:
        try:
            return put_and_read(s3, bucket, b"drives back") == b"drives back"
        except ClientError:
            return False

    wait_for("writes with the drives back", writes_again, 60)
    assert s3.get_object(Bucket=bucket, Key=before)["Body"].read() == b"written on four drives"
