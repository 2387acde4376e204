"""The JSON messages exchanged over JetStream; each carries references, never image bytes.

`v` is the schema version. Consumers ignore fields they do not know (so a producer may
add one without a new version) and reject a `v` they do not know.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from emulsion_contracts import keys
from emulsion_contracts.formats import EQUAL_QUALITY, OutputFormat
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

    # Several renderings of the style, in the order a client without a preference gets
    # them (the first is also what a reader that knows no renderings sees): e.g.
    # `[avif, webp, jpeg]`, JPEG last as the fallback for clients that accept neither.
    # Instead of `format`, never with it. `quality` is then the JPEG (and PNG) quality;
    # WebP and AVIF take `qualities`, else `formats.EQUAL_QUALITY` (measured to match JPEG).
    formats: Annotated[tuple[OutputFormat, ...], Field(min_length=1, max_length=4)] | None = None
    qualities: dict[OutputFormat, Annotated[int, Field(ge=1, le=100)]] | None = None

    @model_validator(mode="after")
    def _gravity_crops(self) -> Self:
        if self.gravity is not None and self.fit != "crop":
            raise ValueError(f"style {self.name!r}: gravity applies to fit 'crop' only")
        return self

    @model_validator(mode="after")
    def _one_way_to_say_format(self) -> Self:
        if self.formats is not None:
            if self.format is not None:
                raise ValueError("a style names `format` or `formats`, not both")
            if len(set(self.formats)) != len(self.formats):
                raise ValueError("a style lists each of its `formats` once")
        if self.qualities and not set(self.qualities) <= set(self.formats or ()):
            raise ValueError("`qualities` may only name formats the style lists in `formats`")
        return self

    def output_formats(self, default: OutputFormat) -> tuple[OutputFormat, ...]:
        """Every format this style is written in, first the one a client without a
        preference gets; `default` is the profile's format."""
        return self.formats or (self.format or default,)

    def quality_for(self, output_format: OutputFormat, default: int) -> int:
        """The encoder quality of this style's `output_format` rendering; `default` is the
        profile's quality. A single-format style keeps today's meaning: its quality, or the
        profile's, whatever the format."""
        if self.formats is None or output_format in ("jpeg", "png"):
            return self.quality or default
        if self.qualities and output_format in self.qualities:
            return self.qualities[output_format]
        return EQUAL_QUALITY[output_format]


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


class Rendering(BaseModel):
    """One encoding of a style that lists several `formats`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: OutputFormat
    key: str
    bytes: int
    content_type: str


class Derivative(BaseModel):
    """One style of an asset. `key`, `bytes` and `content_type` are its first rendering,
    so a reader that knows no renderings still finds a whole, servable file; a style with
    several `formats` lists every rendering (that first one too) in `renderings`, in the
    style's order. The same size in every rendering."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    style: StyleName
    key: str
    width: int
    height: int
    bytes: int
    content_type: str
    renderings: tuple[Rendering, ...] = ()

    @model_serializer(mode="wrap")
    def _without_empty_renderings(self, handler: Any) -> Any:
        # A single-format style's manifest and result stay byte for byte what they were.
        data = handler(self)
        if isinstance(data, dict) and not data.get("renderings"):
            data.pop("renderings", None)
        return data

    def all_renderings(self) -> tuple[Rendering, ...]:
        """Every file of this style, the first one first (one for a single-format style)."""
        if self.renderings:
            return self.renderings
        extension = self.key.rpartition(".")[2]
        return (
            Rendering(
                format=cast(OutputFormat, keys.EXTENSION_FORMATS.get(extension, "jpeg")),
                key=self.key,
                bytes=self.bytes,
                content_type=self.content_type,
            ),
        )

    def stored_keys(self) -> frozenset[str]:
        return frozenset({self.key, *(rendering.key for rendering in self.renderings)})


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
