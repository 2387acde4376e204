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
from typing import Final, Literal, Self, TypeVar

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


# Bounds on what a photo's own metadata may put into a manifest: a text field is cut to
# this many characters (a hostile Exif block can hold megabytes of "artist").
TEXT_MAX: Final = 256
UPLOADED_NAME_MAX: Final = 1024
_HEX_COLOUR: Final = r"^#[0-9a-f]{6}$"


class Original(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str
    # The safe ASCII name inside `key` (`keys.safe_name`).
    filename: str
    content_type: str
    bytes: int
    width: int
    height: int
    # The file name exactly as the client gave it when the upload was presigned (Unicode,
    # no path); None when unknown (an upload put by other means, or a manifest older
    # than the field).
    uploaded_name: str | None = Field(default=None, max_length=UPLOADED_NAME_MAX)
    # SHA-256 (hex) of the bytes as uploaded, computed while they were streamed down; a
    # profile that strips metadata stores other bytes. None in older manifests.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class Gps(BaseModel):
    """Where the photo was taken, in decimal degrees (WGS 84) and metres."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude: float | None = None


class PhotoMetadata(BaseModel):
    """What the photo's own Exif says about it: each field only when the file has it and
    it reads as a sensible value (anything else is left out, never an error).

    `taken_at` is the capture time as the camera wrote it (DateTimeOriginal, else
    DateTime), carrying its UTC offset when the file gives one (OffsetTimeOriginal) and
    naive otherwise (local time of an unknown zone). `gps` is present only when the
    profile keeps GPS in originals (a profile stripping `gps` drops it here too).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    taken_at: datetime | None = None
    camera_make: str | None = Field(default=None, max_length=TEXT_MAX)
    camera_model: str | None = Field(default=None, max_length=TEXT_MAX)
    lens: str | None = Field(default=None, max_length=TEXT_MAX)
    iso: int | None = Field(default=None, ge=0)
    # Seconds (1/250 s is 0.004).
    exposure_time: float | None = Field(default=None, gt=0)
    # The f-number (2.8 for f/2.8).
    aperture: float | None = Field(default=None, gt=0)
    # Millimetres, as the lens gives it (not the 35 mm equivalent).
    focal_length: float | None = Field(default=None, gt=0)
    artist: str | None = Field(default=None, max_length=TEXT_MAX)
    copyright: str | None = Field(default=None, max_length=TEXT_MAX)
    # The Exif orientation (1-8) the renderings were turned by.
    orientation: int | None = Field(default=None, ge=1, le=8)
    gps: Gps | None = None

    @property
    def empty(self) -> bool:
        return not any(getattr(self, name) is not None for name in type(self).model_fields)


class Placeholder(BaseModel):
    """What a page paints before the image arrives."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # ThumbHash (base64 of its bytes): a ~32 px blurred preview with the aspect ratio
    # and alpha, decoded in a few lines of client code.
    thumbhash: str = Field(max_length=64)
    # The most common colour (#rrggbb), of the opaque pixels.
    dominant_color: str = Field(pattern=_HEX_COLOUR)


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
    # What the photo says about itself, and its placeholder: None in manifests written
    # before they were recorded (and metadata None for a photo with none of it).
    metadata: PhotoMetadata | None = None
    placeholder: Placeholder | None = None

    @model_validator(mode="after")
    def _tombstone_or_live(self) -> Self:
        if self.deleted_at is not None:
            if self.original_or_none or self.derivatives or self.job_or_none or self.metadata:
                raise ValueError("a tombstone lists no original, derivatives, job or metadata")
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

    def taken_key(self) -> str | None:
        """This version's entry in the capture-order index (`keys.taken_key`); None for a
        tombstone, which has none."""
        if self.is_tombstone:
            return None
        taken_at = self.metadata.taken_at if self.metadata is not None else None
        return keys.taken_key(self.collection, self.asset, self.version, taken_at)

    def stored_keys(self) -> frozenset[str]:
        """Every object this version keeps in the store: `live_keys` and its index entry
        (which is no file of the asset, so `live_keys` does not list it)."""
        taken = self.taken_key()
        return self.live_keys() | {taken} if taken is not None else self.live_keys()

    def supersedes(self, other: AssetManifest) -> bool:
        """True when this version is later than `other` (version ids sort by creation)."""
        return self.version > other.version

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> AssetManifest:
        return cls.model_validate_json(data)
