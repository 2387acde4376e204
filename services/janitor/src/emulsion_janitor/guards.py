"""The one gate every deletion passes: `may_delete` says which guard, if any, refuses a key.

Both paths (GC messages and the sweep) delete only through `deleter.Deleter`, which asks
this function about every key right before the delete call, with facts read just then.
Unknown facts refuse: an unreadable manifest protects its asset, an unknown age is never
old enough, an unknown lease counts as held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest

# Manifests (assets/) are the API's to delete; everything else is outside Emulsion's layout.
DELETABLE_AREAS: Final = frozenset({"staging", "originals", "derivatives"})
VERSIONED_AREAS: Final = ("originals", "derivatives")


class Guard(StrEnum):
    BUCKET = "bucket"
    PREFIX = "prefix"
    UNREADABLE_MANIFEST = "unreadable_manifest"
    LIVE = "live"
    LEASED = "leased"
    GRACE = "grace"
    CAP = "cap"
    DRY_RUN = "dry_run"

    @property
    def passes_with_time(self) -> bool:
        """A refusal that a later attempt may get past (the key is not protected forever)."""
        return self in (Guard.GRACE, Guard.LEASED)


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    # None when the store did not say; such an object is never old enough to delete.
    last_modified: datetime | None


@dataclass(frozen=True, slots=True)
class Live:
    """What one asset's manifest says is live, as read right before a deletion."""

    collection: str
    asset: str
    readable: bool
    version: str | None = None
    keys: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, manifest: AssetManifest) -> Live:
        # The live version's whole prefixes, not only the listed keys: a key the manifest
        # forgot to list (or a style added later) under the live version is still live.
        prefixes = tuple(
            keys.version_prefix(area, manifest.collection, manifest.asset, manifest.version)
            for area in VERSIONED_AREAS
        )
        return cls(
            manifest.collection,
            manifest.asset,
            True,
            manifest.version,
            manifest.live_keys(),
            prefixes,
        )

    @classmethod
    def nothing(cls, collection: str, asset: str) -> Live:
        """The asset has no manifest: it was deleted (or never committed)."""
        return cls(collection, asset, True)

    @classmethod
    def unreadable(cls, collection: str, asset: str) -> Live:
        return cls(collection, asset, False)

    def protects(self, key: str) -> bool:
        return key in self.keys or key.startswith(self.prefixes)


@dataclass(frozen=True, slots=True)
class Facts:
    """What `may_delete` needs to know about one key beyond the key itself."""

    # originals/ and derivatives/: the asset's manifest as just read.
    live: Live | None = None
    # staging/: whether a running job holds a lease on the upload.
    leased: bool | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    bucket: str
    grace: timedelta
    dry_run: bool


class Budget:
    """Deletions still allowed in one sweep; None means no cap (the GC-message path)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.taken = 0

    def take(self) -> bool:
        if self.limit is not None and self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.taken >= self.limit


def area_of(key: str) -> Literal["staging", "originals", "derivatives"] | None:
    parsed = keys.parse_key(key)
    if parsed is None or parsed.area not in DELETABLE_AREAS:
        return None
    return parsed.area  # type: ignore[return-value]


def may_delete(
    bucket: str,
    stored: StoredObject,
    facts: Facts,
    policy: Policy,
    budget: Budget,
    now: datetime,
) -> Guard | None:
    """None if `stored` may be deleted from `bucket` now, else the guard that refuses it.

    The order matters only for which guard is counted: every guard must pass. The cap
    is taken only by a key every other guard lets through, and dry-run comes last so
    its report is exactly what a real run would have deleted.
    """
    if bucket != policy.bucket:
        return Guard.BUCKET
    parsed = keys.parse_key(stored.key)
    if parsed is None or parsed.area not in DELETABLE_AREAS:
        return Guard.PREFIX
    if parsed.area == "staging":
        if facts.leased is not False:
            return Guard.LEASED
    else:
        live = facts.live
        if (
            live is None
            or not live.readable
            or (live.collection, live.asset) != (parsed.collection, parsed.asset)
        ):
            return Guard.UNREADABLE_MANIFEST
        if live.protects(stored.key):
            return Guard.LIVE
    if policy.grace and (stored.last_modified is None or now - stored.last_modified < policy.grace):
        return Guard.GRACE
    if not budget.take():
        return Guard.CAP
    if policy.dry_run:
        return Guard.DRY_RUN
    return None
