"""Everything the processor does to object storage: stream down, copy, upload, commit.

Nothing here deletes: deletion is the janitor's, driven by the GC messages the worker sends.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError

from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.reasons import FailureReason
from emulsion_processor.errors import ItemRejected, TransientTrouble
from emulsion_runtime import storage

log = logging.getLogger(__name__)

CHUNK: Final = 1024 * 1024
# Derivative keys embed their version, so a key's content never changes.
IMMUTABLE: Final = "public, max-age=31536000, immutable"
COMMIT_ATTEMPTS: Final = 8


def keys_refused_for_good(function: Any, *arguments: Any) -> Any:
    """`function(*arguments)`, a storage call; a store's refusal of the key becomes the
    item's failure (InvalidKey, with the store's code and words). Otherwise it is a
    ClientError, which the worker waits out as an outage: the item would stay Queued
    for ever, retried every few seconds, for a key the store will never take."""
    try:
        return function(*arguments)
    except ClientError as error:
        if storage.is_key_refused(error):
            said = error.response.get("Error", {}).get("Message", "")
            raise ItemRejected(
                FailureReason.INVALID_KEY,
                f"the object store refused the key: {storage.error_code(error)}: {said}",
            ) from None
        raise


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    bytes: int
    # The ETag of exactly these bytes: the promotion copies on it (CopySourceIfMatch).
    etag: str = ""
    # The object's user metadata (without the x-amz-meta- prefix).
    metadata: dict[str, str] = field(default_factory=dict)
    # SHA-256 (hex) of these bytes, computed as they were streamed down.
    sha256: str = ""


def download(
    s3: Any,
    bucket: str,
    key: str,
    destination: Path,
    *,
    max_bytes: int,
    min_free_bytes: int,
) -> Downloaded:
    """Stream `key` into `destination` in chunks, after checking it fits on the scratch volume."""
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if storage.is_missing(error):
            raise ItemRejected(FailureReason.SOURCE_MISSING, f"{key} does not exist") from None
        raise
    body = response["Body"]
    try:
        size = int(response["ContentLength"])
        if size == 0:
            raise ItemRejected(FailureReason.EMPTY_FILE, f"{key} is empty (0 bytes)")
        if size > max_bytes:
            raise ItemRejected(
                FailureReason.SOURCE_TOO_LARGE,
                f"{key} has {size:,} bytes; the limit is {max_bytes:,}",
            )
        free = shutil.disk_usage(destination.parent).free
        if free - size < min_free_bytes:
            raise TransientTrouble(
                f"scratch space short: {free:,} bytes free, {size:,} needed "
                f"plus {min_free_bytes:,} in reserve"
            )
        written = 0
        digest = hashlib.sha256()
        with destination.open("wb") as sink:
            for chunk in body.iter_chunks(CHUNK):
                sink.write(chunk)
                digest.update(chunk)
                written += len(chunk)
        if written != size:
            raise TransientTrouble(f"{key}: read {written} of {size} bytes")
        return Downloaded(
            destination,
            written,
            str(response.get("ETag") or ""),
            dict(response.get("Metadata") or {}),
            digest.hexdigest(),
        )
    finally:
        body.close()


def copy_original(
    s3: Any, bucket: str, source: str, destination: str, content_type: str, etag: str
) -> None:
    """Promote the upload by a server-side copy: the bytes never pass through here.

    The copy is conditional on `etag`, the ETag of the bytes that were downloaded, checked
    and rendered: if the staging object was replaced meanwhile (a replayed upload form),
    the store refuses the copy and the item fails as `SourceChanged`, so the original is
    always the image that was checked. The stored type is `content_type`, what the
    processor detected: the client's own (say `image/svg+xml` on PNG bytes) must not be
    served with the original.
    """
    try:
        s3.copy_object(
            Bucket=bucket,
            Key=destination,
            CopySource={"Bucket": bucket, "Key": source},
            CopySourceIfMatch=etag,
            MetadataDirective="REPLACE",
            ContentType=content_type,
            CacheControl=IMMUTABLE,
        )
    except ClientError as error:
        if storage.is_missing(error):
            raise ItemRejected(FailureReason.SOURCE_MISSING, f"{source} disappeared") from None
        if storage.is_conflict(error):
            raise ItemRejected(
                FailureReason.SOURCE_CHANGED,
                f"{source} was replaced after it was checked (ETag {etag} no longer matches)",
            ) from None
        raise


def upload_file(s3: Any, bucket: str, key: str, path: Path, content_type: str) -> None:
    with path.open("rb") as body:
        s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType=content_type, CacheControl=IMMUTABLE
        )


def put_index_entry(s3: Any, bucket: str, key: str) -> None:
    """A version's capture-order index entry (`keys.taken_key`): empty, the key is all it
    says. Written before the commit, so every live version has one; an unconditional PUT,
    so a retried item writes the same bytes again."""
    s3.put_object(Bucket=bucket, Key=key, Body=b"", CacheControl=IMMUTABLE)


# The manifest as read, with the ETag a conditional write must match.
Current = storage.ManifestRead


def read_manifest(s3: Any, bucket: str, key: str) -> Current | None:
    """The manifest at `key`, or None if the asset has none.

    A manifest that does not parse (written by hand, or a future schema) is returned
    with `manifest=None` and its ETag, so a commit can replace it knowingly.
    """
    current = storage.read_manifest(s3, bucket, key)
    if current is not None and current.invalid is not None:
        log.warning("manifest %s does not parse; it will be replaced: %s", key, current.invalid)
    return current


class Outcome(Enum):
    COMMITTED = "committed"  # this version is live now
    ALREADY = "already"  # an earlier delivery of this item committed it
    STALE = "stale"  # a later version is live; this one must not be


@dataclass(frozen=True, slots=True)
class CommitResult:
    outcome: Outcome
    # COMMITTED: the manifest replaced (None for a new asset); else the live manifest.
    other: AssetManifest | None


def decide(current: Current | None, version: str) -> Outcome | None:
    """What a commit of `version` must do given the manifest now; None: write it.

    A tombstone counts like a live version: an item older than the delete is stale (the
    deleted asset must not come back), a newer ingest replaces it with If-Match.
    """
    if current is None or current.manifest is None:
        return None
    if current.manifest.version == version:
        return Outcome.STALE if current.manifest.is_tombstone else Outcome.ALREADY
    if current.manifest.version > version:
        return Outcome.STALE
    return None


class Unread(Enum):
    """No read of the manifest is at hand: the commit starts with one."""

    UNREAD = "unread"


def put_manifest(s3: Any, bucket: str, key: str, manifest: AssetManifest, **condition: str) -> None:
    """One conditional write of `manifest` (`IfMatch` or `IfNoneMatch`): a refused one
    raises the store's conflict (see `storage.is_conflict`)."""
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=manifest.to_bytes(),
        ContentType="application/json",
        CacheControl="no-cache",
        **condition,
    )


def commit_manifest(
    s3: Any,
    bucket: str,
    key: str,
    manifest: AssetManifest,
    attempts: int = COMMIT_ATTEMPTS,
    read: Current | Unread | None = Unread.UNREAD,
) -> CommitResult:
    """Make `manifest` live unless a later version already is, with conditional writes only.

    Each round reads the manifest and its ETag, decides, and writes on the condition that
    nothing changed in between; a lost race re-reads and decides again. `read`, the
    manifest as an earlier read found it, stands in for the first round's read: however
    old it is, the write is conditional on its ETag (or on no manifest), so a change
    since then fails the write and the next round reads afresh.
    """
    for _ in range(attempts):
        current = read_manifest(s3, bucket, key) if read is Unread.UNREAD else read
        read = Unread.UNREAD
        decided = decide(current, manifest.version)
        if decided is not None:
            return CommitResult(decided, current.manifest if current else None)
        condition = {"IfNoneMatch": "*"} if current is None else {"IfMatch": current.etag}
        try:
            put_manifest(s3, bucket, key, manifest, **condition)
        except ClientError as error:
            if storage.is_conflict(error):
                continue
            raise
        return CommitResult(Outcome.COMMITTED, current.manifest if current else None)
    raise TransientTrouble(f"{key} changed under every one of {attempts} commit attempts")
