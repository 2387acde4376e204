"""The JSON messages exchanged over JetStream; each carries references, never image bytes.

`v` is the schema version. Consumers ignore fields they do not know (so a producer may
add one without a new version) and reject a `v` they do not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from emulsion_contracts import keys

Name = Annotated[str, StringConstraints(pattern=f"^{keys.NAME_PATTERN}$")]
Collection = Annotated[str, StringConstraints(pattern=f"^{keys.COLLECTION_PATTERN}$")]
StagingKey = Annotated[str, StringConstraints(pattern=f"^{keys.STAGING_KEY_PATTERN}$")]
VersionId = Annotated[str, StringConstraints(pattern=f"^{keys.VERSION_PATTERN}$")]
StyleName = Annotated[str, StringConstraints(pattern=f"^{keys.STYLE_PATTERN}$")]


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


class StyleSpec(BaseModel):
    """One derivative: a box, how the image meets it, and how it is encoded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: StyleName
    width: Annotated[int, Field(ge=1, le=8192)]
    height: Annotated[int, Field(ge=1, le=8192)]
    fit: Literal["fit", "crop"] = "fit"
    format: Literal["jpeg", "png", "webp"] | None = None
    quality: Annotated[int, Field(ge=1, le=100)] | None = None
    watermark: bool = False


class WorkItem(Message):
    """controller -> processors: make one item of one IngestJob."""

    job: JobRef
    index: Annotated[int, Field(ge=0)]
    source: StagingKey
    collection: Collection
    asset: Name
    version: VersionId
    profile: str = "default"
    styles: tuple[StyleSpec, ...] | None = None


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
    # Machine-readable, stable reasons (e.g. DecompressionBomb, UnsupportedFormat,
    # SourceMissing, RetriesExhausted, Cancelled, InvalidMessage, RenderFailed,
    # TooLargeForMemory); None on success.
    reason: str | None = None
    message: str | None = None
    # None only for a work message whose body could not be read (reason InvalidMessage):
    # its job and index then come from the subject and the Nats-Msg-Id header.
    collection: Collection | None = None
    asset: Name | None = None
    version: VersionId | None = None
    original: str | None = None
    width: int | None = None
    height: int | None = None
    outputs: tuple[Derivative, ...] = ()
    # False when a later job already owned the asset: the work was done but not made live.
    committed: bool = False
    attempts: int = 1
    finished_at: datetime


class GcRequest(Message):
    """processors, API -> janitor: keys that may go once `not_before` has passed."""

    # superseded: a later version went live; stale: this version lost to a later job;
    # deleted: the asset was deleted; promoted: a staging upload copied to originals/;
    # abandoned: a staging upload no job used.
    reason: Literal["superseded", "stale", "deleted", "promoted", "abandoned"]
    keys: tuple[str, ...]
    not_before: datetime
    collection: Collection | None = None
    asset: Name | None = None
