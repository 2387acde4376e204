"""The one gate every deletion passes: `may_delete` says which guard, if any, refuses a key.

Both paths (GC messages and the sweep) delete only through `deleter.Deleter`, which asks
this function about every key right before the delete call, with facts read just then.
Unknown facts refuse: an unreadable manifest protects its asset, an unknown age is never
old enough, an unknown lease counts as held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest

# Manifests (assets/) are the API's to delete; everything else is outside Emulsion's layout.
# An index entry (taken/) names one version of one asset, like that version's files, and
# is judged like them: kept while its version is live (or newer, for the orphan age).
DELETABLE_AREAS: Final = frozenset({"staging", "originals", "derivatives", "taken"})
VERSIONED_AREAS: Final = ("originals", "derivatives")


class Guard(StrEnum):
    BUCKET = "bucket"
    PREFIX = "prefix"
    UNREADABLE_MANIFEST = "unreadable_manifest"
    LIVE = "live"
    NEWER_THAN_LIVE = "newer_than_live"
    LEASED = "leased"
    GRACE = "grace"
    CAP = "cap"
    DRY_RUN = "dry_run"

    @property
    def passes_with_time(self) -> bool:
        """A refusal that a later attempt may get past (the key is not protected forever)."""
        return self in (Guard.GRACE, Guard.LEASED, Guard.NEWER_THAN_LIVE)


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
    # The asset as its keys name it (`keys.asset_segment`): a shortened segment does not
    # hold the name, so keys are matched to their manifest by segment.
    segment: str
    readable: bool
    version: str | None = None
    keys: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    # When the version before this one stopped being live: the grace of every other
    # version's keys runs from here (a key written days ago and superseded a second ago
    # may still be in use). None when no manifest says.
    superseded_at: datetime | None = None
    # The asset was deleted: the manifest is a tombstone and nothing is live.
    tombstone: bool = False

    @classmethod
    def of(cls, manifest: AssetManifest, segment: str | None = None) -> Live:
        # The live version's whole prefixes, not only the listed keys: a key the manifest
        # forgot to list (or a style added later) under the live version is still live.
        prefixes = tuple(
            keys.version_prefix(area, manifest.collection, manifest.asset, manifest.version)
            for area in VERSIONED_AREAS
        )
        return cls(
            manifest.collection,
            # The segment its manifest was read under: a key written before segments were
            # bounded may carry the whole encoding of a name that is now shortened.
            segment or keys.asset_segment(manifest.asset),
            True,
            manifest.version,
            manifest.stored_keys(),
            prefixes,
            manifest.superseded_at,
            manifest.is_tombstone,
        )

    @classmethod
    def nothing(cls, collection: str, segment: str) -> Live:
        """The asset has no manifest: never committed yet, or its tombstone was removed."""
        return cls(collection, segment, True)

    @classmethod
    def unreadable(cls, collection: str, segment: str) -> Live:
        return cls(collection, segment, False)

    def protects(self, key: str) -> bool:
        return key in self.keys or key.startswith(self.prefixes) or self._indexes(key)

    def _indexes(self, key: str) -> bool:
        """Whether `key` is an index entry of the live version, whatever its time segment
        (one written by a processor that read the time otherwise is still this version's)."""
        if self.version is None or self.tombstone or not key.startswith(keys.TAKEN):
            return False
        parsed = keys.parse_key(key)
        return (
            parsed is not None
            and parsed.area == "taken"
            and (parsed.collection, parsed.segment, parsed.version)
            == (self.collection, self.segment, self.version)
        )


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
    # The sweep's age rule for a version newer than the live one (an item in flight, or
    # one that failed after writing): such a key goes only once it is this old. None:
    # never (no rule known, so no age is old enough).
    orphan_age: timedelta | None = None


def grace_starts(stored: StoredObject, facts: Facts) -> datetime | None:
    """When `stored`'s grace period began; None if unknown (then it never ends).

    A staging upload's runs from its write. A version's key runs from its write or from
    the moment its asset's current manifest went live (the supersession, or the delete),
    whichever is later: readers may have used the key until that moment.
    """
    if stored.last_modified is None:
        return None
    superseded_at = facts.live.superseded_at if facts.live is not None else None
    if superseded_at is None or area_of(stored.key) == "staging":
        return stored.last_modified
    if superseded_at.tzinfo is None:  # a writer that left out the zone means UTC
        superseded_at = superseded_at.replace(tzinfo=UTC)
    return max(stored.last_modified, superseded_at)


def newer_than_live(version: str, live: Live) -> bool:
    """Whether `version` sorts after the asset's live version (or its tombstone's), or
    the asset has no manifest at all: such a version has not been, or is not yet, live."""
    return live.version is None or version > live.version


def orphan_age_left(stored: StoredObject, orphan_age: timedelta | None, now: datetime) -> timedelta:
    """How much longer a key newer than the live version must be kept (<= 0: not at all);
    forever (a day, asked again) when its age or the rule is unknown."""
    if orphan_age is not None and not orphan_age:
        # A rule of zero lets every age pass, even one the store rounded up past `now`
        # (as a grace of zero does).
        return timedelta(0)
    if stored.last_modified is None or orphan_age is None:
        return timedelta(days=1)
    return stored.last_modified + orphan_age - now


def grace_left(stored: StoredObject, facts: Facts, grace: timedelta, now: datetime) -> timedelta:
    """How much longer `stored` must be kept for its grace period (<= 0: not at all)."""
    starts = grace_starts(stored, facts)
    if starts is None:
        return grace
    return starts + grace - now


def tombstone_removable(manifest: AssetManifest, keep_for: timedelta, now: datetime) -> bool:
    """A tombstone may go once no version older than the delete can arrive any more.

    Work items live at most the work stream's max age, so `keep_for` is at least that.
    """
    if manifest.deleted_at is None:
        return False
    deleted_at = manifest.deleted_at
    if deleted_at.tzinfo is None:
        deleted_at = deleted_at.replace(tzinfo=UTC)
    return now - deleted_at >= keep_for


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


class WindowBudget(Budget):
    """A cap that refills every `window` seconds: the fast path's share of the deletion cap.

    The fast path has no end like a sweep; without this, a bug or a wrong producer could
    empty the bucket through GC messages that the sweep's cap never sees.
    """

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(limit)
        self.window = window
        self._clock = clock
        self._started = clock()

    def _roll(self) -> None:
        now = self._clock()
        if now - self._started >= self.window:
            self._started = now
            self.taken = 0

    def take(self) -> bool:
        self._roll()
        return super().take()

    @property
    def exhausted(self) -> bool:
        self._roll()
        return super().exhausted

    def refills_in(self) -> float:
        """Seconds until the next window (and its full allowance) begins."""
        return max(self._started + self.window - self._clock(), 0.0)


def area_of(key: str) -> Literal["staging", "originals", "derivatives", "taken"] | None:
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
            or (live.collection, live.segment) != (parsed.collection, parsed.segment)
        ):
            return Guard.UNREADABLE_MANIFEST
        if live.protects(stored.key):
            return Guard.LIVE
        # A GC request is not proof that a version is finished with: a version after the
        # live one may be an item still being made (its commit would then point at deleted
        # keys), and a forged or mistaken request must not be able to take it. Only the
        # sweep's own rule for such keys, their age, lets them go.
        assert parsed.version is not None
        if newer_than_live(parsed.version, live) and orphan_age_left(
            stored, policy.orphan_age, now
        ) > timedelta(0):
            return Guard.NEWER_THAN_LIVE
    if policy.grace and grace_left(stored, facts, policy.grace, now) > timedelta(0):
        return Guard.GRACE
    if not budget.take():
        return Guard.CAP
    if policy.dry_run:
        return Guard.DRY_RUN
    return None
