"""Whose upload an item may promote, and promoting it once.

An upload is presigned for one collection (its key says so, and its form bound the same
collection into the object's metadata, where a browser cannot change it). Before an item
promotes its upload, the processor checks both against the item's collection, then
claims the upload with a marker object beside it (`keys.claim_key`), written with
`If-None-Match: *`: the first job to promote an upload owns it for good. The same job
and item finding its own claim (a redelivery) goes on; any other claim fails the item.
The promotion itself copies on the ETag of the bytes that were downloaded and checked
(`store.copy_original`), so a form replayed meanwhile can never put other bytes into
`originals/`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import ClientError

from emulsion_contracts import keys
from emulsion_contracts.messages import WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_processor.reasons import ItemRejected, TransientTrouble
from emulsion_runtime import storage

log = logging.getLogger(__name__)

CLAIM_SCHEMA: Final = 1
# A concurrent conditional write to the marker (409), or the marker vanishing between a
# refused write and its read: both pass at once; a few rounds settle them.
CLAIM_ATTEMPTS: Final = 5


def check_source(item: WorkItem) -> None:
    """Refuse an item whose source was not presigned for its collection, by its key alone
    (before anything is read, and before any GC request could name the key)."""
    if keys.staging_collection(item.source) != item.collection:
        raise ItemRejected(
            FailureReason.UPLOAD_NOT_IN_COLLECTION,
            f"{item.source} is not an upload of collection {item.collection!r} "
            f"(expected a key under {keys.staging_prefix(item.collection)})",
        )


def check_recorded_collection(item: WorkItem, metadata: dict[str, str]) -> None:
    """Refuse an upload whose form recorded another collection (or none): its key was
    written by other means than a form for this collection."""
    recorded = metadata.get(storage.UPLOAD_COLLECTION_METADATA)
    if recorded != item.collection:
        raise ItemRejected(
            FailureReason.UPLOAD_NOT_IN_COLLECTION,
            f"{item.source} records collection {recorded!r}, not {item.collection!r}",
        )


@dataclass(frozen=True, slots=True)
class Claim:
    job: str
    index: int
    version: str

    @classmethod
    def of(cls, item: WorkItem) -> Claim:
        return cls(item.job.uid, item.index, item.version)

    def to_bytes(self) -> bytes:
        body = {"schema": CLAIM_SCHEMA, "job": self.job, "index": self.index}
        return json.dumps({**body, "version": self.version}, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> Claim | None:
        try:
            body = json.loads(data)
            return cls(str(body["job"]), int(body["index"]), str(body["version"]))
        except (ValueError, TypeError, KeyError):
            return None

    def same_item(self, other: Claim) -> bool:
        return (self.job, self.index) == (other.job, other.index)


def claim(s3: Any, bucket: str, item: WorkItem) -> None:
    """Claim `item`'s upload for it, or raise `UploadAlreadyIngested` if another item holds
    it. Blocking (S3 calls)."""
    ours = Claim.of(item)
    marker = keys.claim_key(item.source)
    for _ in range(CLAIM_ATTEMPTS):
        try:
            s3.put_object(
                Bucket=bucket,
                Key=marker,
                Body=ours.to_bytes(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
            return
        except ClientError as error:
            if not storage.is_conflict(error):
                raise
        held = _read_claim(s3, bucket, marker)
        if held is None:
            continue  # gone again (swept) or mid-write: try the write once more
        if held.same_item(ours):
            log.info("%s: claimed by this item already (a redelivery)", item.source)
            return
        raise ItemRejected(
            FailureReason.UPLOAD_ALREADY_INGESTED,
            f"{item.source} was already ingested by job uid {held.job} item {held.index}",
        )
    raise TransientTrouble(f"{marker}: no settled claim after {CLAIM_ATTEMPTS} attempts")


def _read_claim(s3: Any, bucket: str, marker: str) -> Claim | None:
    try:
        response = s3.get_object(Bucket=bucket, Key=marker)
    except ClientError as error:
        if storage.is_missing(error):
            return None
        raise
    with response["Body"] as body:
        data = body.read()
    held = Claim.parse(data)
    if held is None:
        # Not a marker this processor wrote, yet it sits where a claim goes: someone else's.
        return Claim(job="unknown", index=-1, version="")
    return held
