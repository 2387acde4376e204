"""The asset manifest, `assets/<collection>/<asset>.json`: the single source of truth for live.

Processors commit it with conditional writes; the API replaces it with a tombstone when the
asset is deleted; the janitor re-reads it before deleting anything, never deletes a key
listed in `live_keys`, and removes a tombstone once no older version can arrive any more.

A tombstone is a manifest with `deleted_at` set and nothing live: its version is the
deleting version, later than every version ingested before the delete, so a queued or
retried older item loses to it (its commit is stale) while a newer ingest replaces it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulsion_contracts import keys
from emulsion_contracts.messages import (
    Collection,
    Derivative,
    FocalPoint,
    JobRef,
    Name,
    VersionId,
)

_Field = TypeVar("_Field")


class Original(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str
    filename: str
    content_type: str
    bytes: int
    width: int
    height: int


class AssetManifest(BaseModel):
    # original, job and index are None only in a tombstone; the properties of the same
    # names give the values of a live manifest to code that never handles a tombstone.
    model_config = ConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, serialize_by_alias=True
    )

    v: Literal[1] = 1
    collection: Collection
    asset: Name
    version: VersionId
    job_or_none: JobRef | None = Field(alias="job")
    index_or_none: int | None = Field(alias="index")
    original_or_none: Original | None = Field(alias="original")
    derivatives: tuple[Derivative, ...]
    # When this version went live, which is when the previous one was superseded.
    committed_at: datetime
    deleted_at: datetime | None = None
    # The point every crop keeps (PATCH /v1/assets/...): renders of this asset keep it,
    # a new upload's included, until a PATCH clears it. None: each style's gravity.
    focal_point: FocalPoint | None = None
    # The profile that made it: a re-render of its crop styles uses the same one. None in
    # manifests written before it was recorded (read as the default profile).
    profile: str | None = None

    @model_validator(mode="after")
    def _tombstone_or_live(self) -> Self:
        if self.deleted_at is not None:
            if self.original_or_none or self.derivatives or self.job_or_none:
                raise ValueError("a tombstone lists no original, derivatives or job")
        elif self.original_or_none is None or self.job_or_none is None:
            raise ValueError("a live manifest needs its original and job")
        elif self.index_or_none is None:
            raise ValueError("a live manifest needs its item index")
        return self

    @classmethod
    def tombstone(
        cls, collection: str, asset: str, now: datetime, version: str | None = None
    ) -> AssetManifest:
        """The manifest a delete leaves: nothing live, at a version later than any before.

        `version`: a job version minted for the delete from the shared clock
        (emulsion_runtime.clock), which is what makes it later than every version
        minted before, whatever the clocks; without it, one from `now` (tests).
        """
        return cls(
            collection=collection,
            asset=asset,
            version=keys.version_id(version or keys.new_ulid(now.timestamp()), 0),
            job=None,
            index=None,
            original=None,
            derivatives=(),
            committed_at=now,
            deleted_at=now,
        )

    @property
    def is_tombstone(self) -> bool:
        return self.deleted_at is not None

    @property
    def original(self) -> Original:
        return self._live(self.original_or_none, "nothing is live")

    @property
    def job(self) -> JobRef:
        return self._live(self.job_or_none, "no job made it")

    @property
    def index(self) -> int:
        return self._live(self.index_or_none, "no item made it")

    def _live(self, value: _Field | None, absent: str) -> _Field:
        """`value`, which only a tombstone lacks (ValueError saying `absent`)."""
        if value is None:
            raise ValueError(f"the manifest of {self.asset!r} is a tombstone: {absent}")
        return value

    @property
    def superseded_at(self) -> datetime:
        """When the version before this one stopped being live (the janitor's grace starts)."""
        return self.committed_at

    def live_keys(self) -> frozenset[str]:
        if self.original_or_none is None:
            return frozenset()
        # Every rendering of every style: a superseded version's are all garbage.
        return frozenset(
            {self.original_or_none.key}.union(*(d.stored_keys() for d in self.derivatives))
        )

    def supersedes(self, other: AssetManifest) -> bool:
        """True when this version is later than `other` (version ids sort by creation)."""
        return self.version > other.version

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> AssetManifest:
        return cls.model_validate_json(data)
