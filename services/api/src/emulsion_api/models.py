"""Request and response bodies: what the OpenAPI document shows clients."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from emulsion_contracts import crd, keys
from emulsion_contracts.formats import AcceptedContentType
from emulsion_contracts.ingestjob import DEFAULT_PROFILE_NAME, PROFILE_PATTERN
from emulsion_contracts.messages import AssetName
from emulsion_contracts.reasons import FailureReason

# Generous bounds, so a hostile value is refused by size before any rule looks at it;
# the precise rules (patterns, no "..") are checked with the key-layout functions.
FILENAME_MAX = 1024

ItemState = Literal["pending", "succeeded", "failed"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UploadRequest(Request):
    filename: Annotated[
        str,
        Field(
            min_length=1,
            max_length=FILENAME_MAX,
            description=(
                "The client's file name: its base name (NFC) is the asset name an ingest "
                "defaults to; the staging key holds a safe ASCII form of it."
            ),
        ),
    ]
    content_type: Annotated[
        AcceptedContentType,
        Field(description="The image's type, one of the accepted formats; the form requires it."),
    ]
    size: Annotated[
        int,
        Field(
            ge=1,
            description=(
                "The file's exact size in bytes, at most the configured maximum; the form "
                "accepts a file of this size only."
            ),
        ),
    ]


class UploadBatchRequest(Request):
    files: Annotated[list[UploadRequest], Field(min_length=1)]


class Upload(BaseModel):
    upload_id: str
    key: str = Field(description="The staging key to name in `POST /v1/ingests`.")
    asset: str = Field(
        description=(
            "The asset name an ingest of this upload defaults to: the file's base name (NFC), "
            "or its safe form when the base name is not a valid asset name."
        )
    )
    url: str = Field(description="POST a multipart form here: `fields`, then `file`.")
    fields: dict[str, str]
    expires_at: datetime


class UploadBatch(BaseModel):
    uploads: list[Upload]


StagingKey = Annotated[
    str, Field(max_length=keys.STAGING_KEY_MAX, pattern=f"^{keys.STAGING_KEY_PATTERN}$")
]


class PresentRequest(Request):
    keys: Annotated[list[StagingKey], Field(min_length=1)]


class Present(BaseModel):
    present: list[str] = Field(description="The keys asked about that hold an upload.")


class IngestItem(Request):
    upload_key: Annotated[
        str,
        Field(
            max_length=keys.STAGING_KEY_MAX,
            pattern=f"^{keys.STAGING_KEY_PATTERN}$",
            description="A key returned by `POST /v1/uploads` (staging/<upload-id>/<name>).",
        ),
    ]
    asset: Annotated[
        AssetName | None,
        Field(
            description=(
                "Name inside the collection (Unicode, kept as given in NFC); defaults to the "
                "base name of the file named in `POST /v1/uploads`."
            ),
        ),
    ] = None


class IngestRequest(Request):
    collection: Annotated[
        str, Field(max_length=keys.COLLECTION_MAX, pattern=f"^{keys.COLLECTION_PATTERN}$")
    ]
    items: Annotated[
        list[IngestItem],
        Field(
            min_length=1,
            description=(
                "1 to the configured maximum (default 10,000). Requests over "
                f"{crd.MAX_ITEMS} items become several IngestJobs with one batch id."
            ),
        ),
    ]
    profile: Annotated[str, Field(max_length=63, pattern=PROFILE_PATTERN)] = DEFAULT_PROFILE_NAME


class AcceptedItem(BaseModel):
    index: int = Field(description="Position in the request.")
    job: str = Field(description="The IngestJob that makes this item.")
    job_index: int = Field(description="Position inside that job.")
    upload_key: str
    asset: str


class IngestAccepted(BaseModel):
    name: str = Field(description="The IngestJob's name, or the batch id when split.")
    status_url: str
    batch: str | None = None
    jobs: list[str]
    items: list[AcceptedItem]


class Failure(BaseModel):
    index: int
    asset: str | None = None
    reason: FailureReason
    message: str | None = None


class Output(BaseModel):
    style: str
    url: str
    width: int
    height: int
    bytes: int
    content_type: str


class Original(BaseModel):
    url: str
    filename: str
    content_type: str
    bytes: int
    width: int
    height: int


class ItemStatus(BaseModel):
    index: int
    asset: str
    upload_key: str
    state: ItemState
    version: str | None = Field(
        default=None, description="The asset version this item writes (<job version>-<index>)."
    )
    live: bool | None = Field(
        default=None,
        description="For succeeded items: whether this version is still the asset's live one.",
    )
    reason: FailureReason | None = None
    original: Original | None = None
    outputs: list[Output] = []


class JobSummary(BaseModel):
    name: str
    status_url: str
    collection: str
    profile: str
    batch: str | None = None
    phase: crd.Phase
    finished: bool
    total: int
    succeeded: int
    failed: int
    progress: str
    version: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration: str | None = None
    failures: list[Failure] = []


class IngestStatus(JobSummary):
    item_offset: int = 0
    items: list[ItemStatus] = Field(
        default=[], description="A page of items (see `item_offset` and `item_limit`)."
    )


class BatchStatus(BaseModel):
    batch: str
    status_url: str
    phase: crd.Phase
    finished: bool
    total: int
    succeeded: int
    failed: int
    progress: str
    jobs: list[JobSummary]


class Asset(BaseModel):
    collection: str
    asset: str
    version: str
    job: str
    index: int
    committed_at: datetime
    original: Original
    outputs: list[Output]


class Deleted(BaseModel):
    collection: str
    asset: str
    version: str
    keys: int = Field(description="How many objects were handed to the janitor.")
    not_before: datetime


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = {}
