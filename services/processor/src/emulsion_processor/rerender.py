"""Re-rendering a live version's crop styles from its stored original (a focal point set
through the API), instead of promoting an upload.

Such an item's source is the asset's own original (`originals/...`), named by the API
from the manifest it read. It is made only while that manifest is still live: a newer
upload or a delete committed meanwhile wins, and the item ends succeeded but not
committed. The new version keeps the original and every other style where they are (the
manifest lists their keys under the older version, and the janitor never deletes a key a
live manifest lists) and writes only the crops anew, so only those are superseded.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import Derivative, StyleSpec, WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_processor import outcomes, store
from emulsion_processor.errors import ItemRejected
from emulsion_runtime import storage


def check_source(item: WorkItem) -> None:
    """Refuse a re-render whose source is not an original of the item's own asset, by
    its key alone (before anything is read or named in a GC request)."""
    if not keys.is_original_of(item.source, item.collection, item.asset):
        raise ItemRejected(
            FailureReason.UPLOAD_NOT_IN_COLLECTION,
            f"{item.source} is not an original of asset {item.asset!r} "
            f"in collection {item.collection!r}",
        )


def crop_styles(styles: tuple[StyleSpec, ...]) -> tuple[StyleSpec, ...]:
    """The styles a focal point changes: the crops (a fitted style shows the whole image)."""
    return tuple(style for style in styles if style.fit == "crop")


def live_manifest(read: store.Current | None, item: WorkItem) -> AssetManifest | None:
    """The manifest read, if it is live and its original is the item's source: the
    version the re-render was asked for. None: the asset changed (or went) since."""
    if read is None or read.manifest is None or read.manifest.is_tombstone:
        return None
    if read.manifest.original.key != item.source:
        return None
    return read.manifest


def build_manifest(
    item: WorkItem, live: AssetManifest, derivatives: tuple[Derivative, ...]
) -> AssetManifest:
    """`live` at the item's version: the same original and other styles, the crops new
    (`derivatives`: the re-rendered styles' entries, every rendering of each)."""
    made = {derivative.style: derivative for derivative in derivatives}
    kept = [made.pop(d.style) if d.style in made else d for d in live.derivatives]
    return outcomes.manifest_at(
        item,
        live.original,
        (*kept, *made.values()),
        focal=item.focal_point,
        profile=live.profile or item.profile,
        # The same original: what it says and its placeholder are the live version's.
        metadata=live.metadata,
        placeholder=live.placeholder,
    )


def commit(
    s3: Any, bucket: str, key: str, manifest: AssetManifest, read: store.Current
) -> store.CommitResult:
    """Write `manifest` only over exactly the manifest `read` (If-Match on its ETag).

    Unlike an upload's commit, a lost race is not decided again by version: whatever
    was committed meanwhile (a newer upload whose job is older than this one) is another
    original, which these crops must never replace. A write found done (its answer was
    lost, and it is retried) is ALREADY.
    """
    try:
        store.put_manifest(s3, bucket, key, manifest, IfMatch=read.etag)
    except ClientError as error:
        if not storage.is_conflict(error):
            raise
        now = store.read_manifest(s3, bucket, key)
        found = now.manifest if now is not None else None
        if found is not None and found.version == manifest.version:
            return store.CommitResult(store.Outcome.ALREADY, found)
        return store.CommitResult(store.Outcome.STALE, found)
    return store.CommitResult(store.Outcome.COMMITTED, read.manifest)
