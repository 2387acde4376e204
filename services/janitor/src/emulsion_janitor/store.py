"""Everything the janitor asks of object storage: list, stat, read manifests, delete.

boto3 is synchronous; callers run these functions in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from emulsion_contracts import keys
from emulsion_contracts.storage_access import JANITOR_STATE
from emulsion_janitor.guards import Live, StoredObject
from emulsion_runtime import storage

log = logging.getLogger(__name__)

# The S3 limit for one DeleteObjects call, and the listing page size.
MAX_BATCH: Final = 1000
# HEAD answers Last-Modified as an HTTP date, truncated to the second; listings carry
# milliseconds. Rounding up keeps the grace guard from deleting up to a second early.
_HTTP_DATE_RESOLUTION: Final = timedelta(seconds=1)


def pages(
    s3: Any, bucket: str, prefix: str, start_after: str | None = None, page_size: int = MAX_BATCH
) -> Iterator[list[StoredObject]]:
    """The objects under `prefix` (after `start_after`, if given), one listing page (at most
    `page_size`) at a time, in key order."""
    paginator = s3.get_paginator("list_objects_v2")
    extra = {"StartAfter": start_after} if start_after else {}
    for page in paginator.paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}, **extra
    ):
        yield [
            StoredObject(item["Key"], int(item.get("Size", 0)), item.get("LastModified"))
            for item in page.get("Contents", ())
        ]


def stat(s3: Any, bucket: str, key: str) -> StoredObject | None:
    """Size and age of `key`; None if it does not exist (already deleted)."""
    try:
        response = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if storage.is_missing(error):
            return None
        raise
    last_modified = response.get("LastModified")
    if last_modified is not None:
        last_modified += _HTTP_DATE_RESOLUTION
    return StoredObject(key, int(response.get("ContentLength", 0)), last_modified)


def read_live(s3: Any, bucket: str, collection: str, segment: str) -> Live:
    """The manifest of the asset whose keys carry `segment`, read now; an unreadable one
    protects the whole asset."""
    manifest_key = keys.segment_manifest_key(collection, segment)
    read = storage.read_manifest(s3, bucket, manifest_key)
    if read is None:
        return Live.nothing(collection, segment)
    manifest = read.manifest
    if manifest is None:
        error = read.invalid
        log.warning(
            "manifest %s does not parse; none of the asset's versions will be deleted: %s",
            manifest_key,
            error.errors()[0]["msg"] if error is not None and error.errors() else error,
        )
        return Live.unreadable(collection, segment)
    if manifest.collection != collection or not keys.is_segment_of(segment, manifest.asset):
        log.warning("manifest %s names another asset; the asset is left alone", manifest_key)
        return Live.unreadable(collection, segment)
    return Live.of(manifest, segment)


@dataclass(frozen=True, slots=True)
class DeleteFailure:
    key: str
    code: str
    message: str


def delete_batch(s3: Any, bucket: str, keys_to_delete: Sequence[str]) -> list[DeleteFailure]:
    """Delete up to MAX_BATCH keys in one call; a key that is already gone counts as deleted."""
    if not keys_to_delete:
        return []
    if len(keys_to_delete) > MAX_BATCH:
        raise ValueError(f"{len(keys_to_delete)} keys in one delete; the limit is {MAX_BATCH}")
    response = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": key} for key in keys_to_delete], "Quiet": True},
    )
    return [
        DeleteFailure(error.get("Key", ""), error.get("Code", ""), error.get("Message", ""))
        for error in response.get("Errors", ())
        if error.get("Code") not in storage.MISSING_CODES
    ]


def read_tombstone(s3: Any, bucket: str, key: str) -> storage.StoredManifest | None:
    """The manifest at `key` with its ETag if it is a tombstone of the asset its key names."""
    read = storage.read_manifest(s3, bucket, key)
    # An unparsable one is not ours to judge: the sweep of its versions already refuses it.
    stored = read.stored() if read is not None else None
    if stored is None or not stored.manifest.is_tombstone:
        return None
    if keys.manifest_key(stored.manifest.collection, stored.manifest.asset) != key:
        return None
    return stored


def remove_tombstone(s3: Any, bucket: str, key: str, etag: str) -> bool:
    """Delete the tombstone at `key` only if it is still the one read (ETag `etag`).

    The DELETE carries If-Match, which S3 enforces. MinIO ignores it (tests/services/api/
    test_store.py shows it), so the ETag is also checked with a HEAD just before: a new
    ingest committing in that one round trip would lose its manifest. That window is only
    open for an asset deleted longer ago than the work stream keeps items, and the loss
    is the asset's new version (its files then go as orphans), never a tenant's other data.
    """
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if str(head["ETag"]) != etag:
            return False
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as error:
        if storage.is_missing(error) or storage.is_conflict(error):
            return False
        raise
    return True


# Where the full pass keeps its progress: one small object, rewritten after each page.
PROGRESS_KEY: Final = f"{JANITOR_STATE}full-pass.json"


class PassProgress(BaseModel):
    """How far the full pass got: the area it lists and the last key it finished with.

    `after` is the key after which a resumed pass lists (None: the area from its start).
    A finished pass keeps its start, from which the next one is due.
    """

    started_at: datetime
    prefix: str | None = None
    after: str | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


def read_progress(s3: Any, bucket: str) -> PassProgress | None:
    """The full pass's stored progress; None if there is none or it does not parse (then a
    new pass starts: listing again costs time, never a key)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=PROGRESS_KEY)["Body"].read()
    except ClientError as error:
        if storage.is_missing(error):
            return None
        raise
    try:
        return PassProgress.model_validate_json(body)
    except ValidationError as error:
        log.warning(
            "the full pass's progress %s does not parse; starting anew: %s", PROGRESS_KEY, error
        )
        return None


def write_progress(s3: Any, bucket: str, progress: PassProgress) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=PROGRESS_KEY,
        Body=progress.model_dump_json().encode(),
        ContentType="application/json",
    )
