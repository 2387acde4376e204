"""The JSON messages exchanged over JetStream; each carries references, never image bytes.

`v` is the schema version. Consumers ignore fields they do not know (so a producer may
add one without a new version) and reject a `v` they do not know.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from emulsion_contracts import keys
from emulsion_contracts.formats import OutputFormat
from emulsion_contracts.reasons import FailureReason


def _asset_name(value: str) -> str:
    # A hostile size is refused before normalising it (NFC may only change lengths a little).
    if len(value) > 4 * keys.ASSET_NAME_MAX:
        raise ValueError(f"asset names are at most {keys.ASSET_NAME_MAX} characters")
    return keys.check_asset_name(unicodedata.normalize("NFC", value))


# An asset's name as its user gave it (contract 1): Unicode, normalised to NFC here, then
# checked by `keys.check_asset_name`. Keys carry it encoded by `keys.asset_segment`.
AssetName = Annotated[
    str,
    AfterValidator(_asset_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": keys.ASSET_NAME_MAX,
            "description": (
                f"Unicode (normalised to NFC), 1-{keys.ASSET_NAME_MAX} characters and at most "
                f"{keys.ASSET_NAME_MAX} bytes of UTF-8; no control or format characters, "
                "no '/' or '\\', not '.' or '..', no leading or trailing whitespace."
            ),
        }
    ),
]
# The old name of the asset type; manifest.py (and anything else importing it) gets the
# asset rule through it. New code says AssetName.
Name = AssetName
Collection = Annotated[str, StringConstraints(pattern=f"^{keys.COLLECTION_PATTERN}$")]
StagingKey = Annotated[str, StringConstraints(pattern=f"^{keys.STAGING_KEY_PATTERN}$")]
# An upload, or the asset's own stored original (a re-render: see WorkItem.rerender).
SourceKey = Annotated[
    str,
    StringConstraints(max_length=keys.SOURCE_KEY_MAX, pattern=f"^{keys.SOURCE_KEY_PATTERN}$"),
]
VersionId = Annotated[str, StringConstraints(pattern=f"^{keys.VERSION_PATTERN}$")]
StyleName = Annotated[str, StringConstraints(pattern=f"^{keys.STYLE_PATTERN}$")]

# The profile a job (and each of its work items) uses when it names none.
DEFAULT_PROFILE_NAME = "default"
# A reader takes a reason it does not know as UNKNOWN (logged) rather than refusing the
# whole message: a result must not be lost over its wording (see reasons.py).
ReadReason = Annotated[FailureReason, BeforeValidator(FailureReason.parse)]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        return cls.model_validate_json(data)


class JobRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    namespace: str
    name: str
    uid: str


# Where a `crop` style cuts: `center` (the default, and what every style did before),
# `smart` (the part with the most detail and colour), `faces` (the faces a detector
# finds, else `smart`). An asset's focal point, when set, wins over all three.
Gravity = Literal["center", "smart", "faces"]


class FocalPoint(BaseModel):
    """A point of the upright image, as fractions of its width and height (0,0: top left),
    that every crop of the asset keeps inside its frame."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    x: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    y: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class StyleSpec(BaseModel):
    """One derivative: a box, how the image meets it, and how it is encoded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: StyleName
    width: Annotated[int, Field(ge=1, le=8192)]
    height: Annotated[int, Field(ge=1, le=8192)]
    fit: Literal["fit", "crop"] = "fit"
    format: OutputFormat | None = None
    quality: Annotated[int, Field(ge=1, le=100)] | None = None
    watermark: bool = False
    # Only for `crop`; None is `center`. None rather than a default value so a style
    # without it serialises as before (a processor that predates gravity reads it).
    gravity: Gravity | None = None

    @model_validator(mode="after")
    def _gravity_crops(self) -> Self:
        if self.gravity is not None and self.fit != "crop":
            raise ValueError(f"style {self.name!r}: gravity applies to fit 'crop' only")
        return self


class WorkItem(Message):
    """controller -> processors: make one item of one IngestJob."""

    job: JobRef
    index: Annotated[int, Field(ge=0)]
    source: SourceKey
    collection: Collection
    asset: AssetName
    version: VersionId
    profile: str = DEFAULT_PROFILE_NAME
    styles: tuple[StyleSpec, ...] | None = None
    # The asset's focal point, which every crop style keeps (see FocalPoint). An upload's
    # item without one keeps the live manifest's; a re-render's sets exactly this.
    focal_point: FocalPoint | None = None

    @property
    def rerender(self) -> bool:
        """Whether this item re-renders the live version from its stored original (its
        source is under originals/) instead of promoting an upload."""
        return self.source.startswith("originals/")


class Derivative(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    style: StyleName
    key: str
    width: int
    height: int
    bytes: int
    content_type: str


class ItemResult(Message):
    """processors -> controller: the outcome of one item, folded into the job's status."""

    job: JobRef
    index: Annotated[int, Field(ge=0)]
    outcome: Literal["succeeded", "failed"]
    # Why it failed (emulsion_contracts.reasons); None on success.
    reason: ReadReason | None = None
    message: str | None = None
    # None only for a work message whose body could not be read (reason InvalidMessage):
    # its job and index then come from the subject and the Nats-Msg-Id header.
    collection: Collection | None = None
    asset: AssetName | None = None
    version: VersionId | None = None
    original: str | None = None
    width: int | None = None
    height: int | None = None
    outputs: tuple[Derivative, ...] = ()
    # False when a later job already owned the asset: the work was done but not made live.
    committed: bool = False
    attempts: int = 1
    finished_at: datetime

    @classmethod
    def failed(
        cls, work: WorkItem, reason: FailureReason, message: str, attempts: int
    ) -> ItemResult:
        """The one way a failed item's result is made (processors and controller alike)."""
        return cls(
            job=work.job,
            index=work.index,
            outcome="failed",
            reason=reason,
            message=message,
            collection=work.collection,
            asset=work.asset,
            version=work.version,
            attempts=attempts,
            finished_at=datetime.now(UTC),
        )


# Why keys are handed to the janitor (also the last token of the GC subject).
# superseded: a later version went live; stale: this version lost to a later job;
# deleted: the asset was deleted; promoted: a staging upload copied to originals/;
# abandoned: a staging upload no job used.
GcReason = Literal["superseded", "stale", "deleted", "promoted", "abandoned"]


class GcRequest(Message):
    """processors, API -> janitor: keys that may go once `not_before` has passed."""

    reason: GcReason
    keys: tuple[str, ...]
    not_before: datetime
    collection: Collection | None = None
    asset: AssetName | None = None
