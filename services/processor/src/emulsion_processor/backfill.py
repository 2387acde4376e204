"""`emulsion-processor --index-existing`: the capture-order index entries of versions
committed before the index existed (`keys.taken_key`), written once by an operator.

Every live manifest's entry is PUT (the processor may write `taken/`, not read it, so an
entry already there is written again: one PUT per asset). Safe beside running
processors: an entry is only ever a hint the API checks against the manifest, so one
written for a version superseded meanwhile is passed over by the API and collected by the
janitor like any superseded version's entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from emulsion_contracts import keys
from emulsion_processor.store import put_index_entry
from emulsion_runtime import storage

log = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    manifests: int = 0
    indexed: int = 0
    # Tombstones, and manifests that do not parse: nothing to index.
    skipped: int = 0


def index_existing(s3: Any, bucket: str, collection: str | None = None) -> BackfillReport:
    """Write the index entry of every live manifest (of `collection`, or all); blocking."""
    prefix = keys.MANIFESTS + (f"{keys.check_collection(collection)}/" if collection else "")
    report = BackfillReport()
    arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = s3.list_objects_v2(**arguments)
        for listed in page.get("Contents", []):
            key = str(listed["Key"])
            parsed = keys.parse_key(key)
            if parsed is None or parsed.area != "assets":
                continue
            report.manifests += 1
            read = storage.read_manifest(s3, bucket, key)
            manifest = read.manifest if read is not None else None
            entry = manifest.taken_key() if manifest is not None else None
            if entry is None:
                report.skipped += 1
                continue
            put_index_entry(s3, bucket, entry)
            report.indexed += 1
        if not page.get("IsTruncated"):
            break
        arguments["ContinuationToken"] = page["NextContinuationToken"]
    log.info(
        "indexed %d of %d manifests (%d tombstones or unreadable)",
        report.indexed,
        report.manifests,
        report.skipped,
    )
    return report
