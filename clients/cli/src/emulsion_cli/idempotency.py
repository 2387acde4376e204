"""The Idempotency-Key of an ingest request: a hash of what is being ingested.

Derived from the collection, the profile and the file set (content hash and name of each
file, in any order), so the same files sent again — a retried request, or a re-run
after an interruption that uploaded everything — name the same key and the API returns
the job it already made instead of making a second one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

PREFIX: Final = "emulsion-cli-v1-"


def idempotency_key(
    collection: str,
    profile: str,
    files: Iterable[tuple[str, str]],
    upload_keys: Iterable[str] = (),
) -> str:
    """`files` are (content sha256, relative path) pairs.

    `upload_keys` is for the one case the file set alone cannot tell apart: the same
    files were sent before with other staging keys (the resume state was lost), so the
    API refuses the plain key as reused with a different body. Adding the keys makes a
    new key that still replays exactly this request.
    """
    digest = hashlib.sha256()
    for part in (collection, profile):
        digest.update(part.encode())
        digest.update(b"\0")
    for content_hash, relative in sorted(files):
        digest.update(f"{content_hash}\0{relative}\n".encode())
    for key in sorted(upload_keys):
        digest.update(f"\1{key}\n".encode())
    return PREFIX + digest.hexdigest()
