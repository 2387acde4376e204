"""Request and response bodies: what the OpenAPI document shows clients.

Every property carries a description and an example (a test checks the document), so a
client author can read the API from the document alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emulsion_api.errors import Problem
from emulsion_contracts import crd, keys, wire
from emulsion_contracts.formats import AcceptedContentType, OutputFormat
from emulsion_contracts.ingestjob import DEFAULT_PROFILE_NAME, PROFILE_PATTERN
from emulsion_contracts.jobrecords import FailureDetail
from emulsion_contracts.messages import AssetName
from emulsion_contracts.reasons import FailureReason

# Generous bounds, so a hostile value is refused by size before any rule looks at it;
# the precise rules (patterns, no "..") are checked with the key-layout functions.
FILENAME_MAX = 1024

ItemState = Literal["pending", "succeeded", "failed"]
# An asset's manifest is live, or a tombstone left by a delete (until an ingest revives it).
AssetState = Literal["live", "deleted"]

_STAGING_EXAMPLE = "staging/holiday-2026/01JDQ3F9ZK8V6N2XG4T7C5W1RB/IMG_0001.jpg"
_VERSION_EXAMPLE = "01JDQ3G2M4P8R6T0V2X4Z6B8D0-00000"
_JOB_EXAMPLE = "01jdq3g2m4p8r6t0v2x4z6b8d0"
_TIME_EXAMPLE = "2026-11-23T10:15:30Z"
_DOWNLOAD_EXAMPLE = (
    "https://cdn.example.com/derivatives/holiday-2026/IMG_0001.jpg/"
    "01JDQ3G2M4P8R6T0V2X4Z6B8D0-00000/thumb.jpg"
)


def _field(description: str, example: Any, **constraints: Any) -> Any:
    return Field(description=description, examples=[example], **constraints)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _collection_field(description: str) -> Any:
    return _field(
        description,
        "holiday-2026",
        max_length=keys.COLLECTION_MAX,
        pattern=f"^{keys.COLLECTION_PATTERN}$",
    )


_UPLOAD_COLLECTION = (
    "The collection the upload is for: the token must be allowed to use it (403 "
    "otherwise), the key names it, and the form binds it (and the token's identity) into "
    "the object's metadata. Only an ingest into this collection accepts the upload."
)


class UploadFile(Request):
    filename: Annotated[
        str,
        _field(
            "The client's file name: its base name (NFC) is the asset name an ingest "
            "defaults to; the staging key holds a safe ASCII form of it.",
            "IMG_0001.jpg",
            min_length=1,
            max_length=FILENAME_MAX,
        ),
    ]
    content_type: Annotated[
        AcceptedContentType,
        _field(
            "The image's type, one of the accepted formats (an iPhone photo is "
            "image/heic); the form requires it.",
            "image/jpeg",
        ),
    ]
    size: Annotated[
        int,
        _field(
            "The file's exact size in bytes, at most the configured maximum; the form "
            "accepts a file of this size only.",
            2_483_012,
            ge=1,
        ),
    ]


class UploadRequest(UploadFile):
    collection: Annotated[str, _collection_field(_UPLOAD_COLLECTION)]


class UploadBatchRequest(Request):
    collection: Annotated[str, _collection_field(_UPLOAD_COLLECTION)]
    files: Annotated[
        list[UploadFile],
        _field(
            "The files to presign, at most the configured batch size.",
            [{"filename": "IMG_0001.jpg", "content_type": "image/jpeg", "size": 2483012}],
            min_length=1,
        ),
    ]


class Upload(BaseModel):
    upload_id: str = _field("The upload's id (a ULID).", "01JDQ3F9ZK8V6N2XG4T7C5W1RB")
    key: str = _field("The staging key to name in `POST /v1/ingests`.", _STAGING_EXAMPLE)
    asset: str = _field(
        "The asset name an ingest of this upload defaults to: the file's base name (NFC), "
        "or its safe form when the base name is not a valid asset name.",
        "IMG_0001.jpg",
    )
    url: str = _field(
        "POST a multipart form here: `fields`, then `file`.",
        "https://s3.example.com/emulsion",
    )
    fields: dict[str, str] = _field(
        "The form fields to send before the file, as given.",
        {
            "key": _STAGING_EXAMPLE,
            "Content-Type": "image/jpeg",
            "x-amz-meta-emulsion-collection": "holiday-2026",
            "policy": "eyJl...",
        },
    )
    expires_at: datetime = _field("When the form stops being accepted.", _TIME_EXAMPLE)


class UploadBatch(BaseModel):
    uploads: list[Upload] = _field(
        "One presigned form per file, in request order.",
        [
            {
                "upload_id": "01JDQ3F9ZK8V6N2XG4T7C5W1RB",
                "key": _STAGING_EXAMPLE,
                "asset": "IMG_0001.jpg",
                "url": "https://s3.example.com/emulsion",
                "fields": {"key": _STAGING_EXAMPLE},
                "expires_at": _TIME_EXAMPLE,
            }
        ],
    )


# Either key layout: a key of the old one (no collection) is answered like a missing
# upload, never ingested.
StagingKey = Annotated[
    str, Field(max_length=keys.STAGING_KEY_MAX, pattern=f"^{keys.ANY_STAGING_KEY_PATTERN}$")
]


class PresentRequest(Request):
    keys: Annotated[
        list[StagingKey],
        _field(
            "Staging keys to look for. A key of a collection the token may not use is "
            "reported as not present, whether or not it exists.",
            [_STAGING_EXAMPLE],
            min_length=1,
        ),
    ]


class Present(BaseModel):
    present: list[str] = _field(
        "The keys asked about that hold an upload not yet ingested, of collections the "
        "token may use.",
        [_STAGING_EXAMPLE],
    )


class IngestItem(Request):
    upload_key: Annotated[
        str,
        _field(
            "A key returned by `POST /v1/uploads` for this request's collection "
            "(staging/<collection>/<upload-id>/<name>), at most once per request. A key "
            "of another collection, or one already ingested, is answered like a missing "
            "upload (`upload_missing`).",
            _STAGING_EXAMPLE,
            max_length=keys.STAGING_KEY_MAX,
            pattern=f"^{keys.ANY_STAGING_KEY_PATTERN}$",
        ),
    ]
    asset: Annotated[
        AssetName | None,
        _field(
            "Name inside the collection (Unicode, kept as given in NFC); defaults to the "
            "base name of the file named in `POST /v1/uploads`.",
            "Strand bei Nacht.jpg",
        ),
    ] = None


class IngestRequest(Request):
    collection: Annotated[
        str,
        _field(
            "The collection the assets go into.",
            "holiday-2026",
            max_length=keys.COLLECTION_MAX,
            pattern=f"^{keys.COLLECTION_PATTERN}$",
        ),
    ]
    items: Annotated[
        list[IngestItem],
        _field(
            "1 to the configured maximum (default 10,000). Requests over "
            f"{crd.MAX_ITEMS} items become several IngestJobs with one batch id.",
            [{"upload_key": _STAGING_EXAMPLE}],
            min_length=1,
        ),
    ]
    profile: Annotated[
        str,
        _field(
            "The processing profile (`GET /v1/profiles` lists them).",
            DEFAULT_PROFILE_NAME,
            max_length=63,
            pattern=PROFILE_PATTERN,
        ),
    ] = DEFAULT_PROFILE_NAME
    priority: Annotated[
        wire.Lane | None,
        _field(
            "Which lane the work waits in. `interactive` is taken before bulk work, whatever "
            "the request's size: only a token whose limits allow it may ask for it "
            "(`403 priority_not_allowed` otherwise). `bulk` waits behind interactive work "
            "(with a share of the processors kept for it); any token may ask for it. "
            "Absent: interactive for a small job (20 items by default), bulk otherwise.",
            "bulk",
        ),
    ] = None


class AcceptedItem(BaseModel):
    index: int = _field("Position in the request.", 0)
    job: str = _field("The IngestJob that makes this item.", _JOB_EXAMPLE)
    job_index: int = _field("Position inside that job.", 0)
    upload_key: str = _field("The item's staging key.", _STAGING_EXAMPLE)
    asset: str = _field("The asset the item makes.", "IMG_0001.jpg")


class IngestAccepted(BaseModel):
    name: str = _field("The IngestJob's name, or the batch id when split.", _JOB_EXAMPLE)
    status_url: str = _field(
        "Where to follow the request: the ingest's or the batch's URL.",
        f"/v1/ingests/{_JOB_EXAMPLE}",
    )
    batch: str | None = _field(
        "The batch id when the request was split, else null.", None, default=None
    )
    jobs: list[str] = _field("The IngestJobs made, in item order.", [_JOB_EXAMPLE])
    items: list[AcceptedItem] = _field(
        "Every item with the job and position that makes it.",
        [
            {
                "index": 0,
                "job": _JOB_EXAMPLE,
                "job_index": 0,
                "upload_key": _STAGING_EXAMPLE,
                "asset": "IMG_0001.jpg",
            }
        ],
    )


class Failure(BaseModel):
    index: int = _field("The failed item's position in its job.", 3)
    asset: str | None = _field(
        "The item's asset, exactly as named in the request (when known).",
        "IMG_0004.jpg",
        default=None,
    )
    reason: FailureReason = _field("Why it failed (a stable name).", FailureReason.NOT_AN_IMAGE)
    message: str | None = _field(
        "What happened, for people (at most 1,024 characters).",
        "cannot identify image file",
        default=None,
    )
    attempts: int | None = _field(
        "How many deliveries the item had before it failed (1 when it failed at once; "
        "more after crashes or transient trouble). Null where not recorded.",
        1,
        default=None,
    )

    @classmethod
    def of(cls, detail: FailureDetail) -> Failure:
        """An item's failure as the controller recorded it (emulsion_contracts.jobrecords)."""
        return cls(
            index=detail.index,
            asset=detail.asset,
            reason=FailureReason.parse(detail.reason),
            message=detail.message,
            attempts=detail.attempts,
        )


class FailurePage(BaseModel):
    name: str = _field("The IngestJob's name.", _JOB_EXAMPLE)
    items: list[Failure] = _field(
        "Failed items in index order, each with its whole message.",
        [
            {
                "index": 3,
                "asset": "IMG_0004.jpg",
                "reason": "NotAnImage",
                "message": "cannot identify image file",
            }
        ],
    )
    next_cursor: str | None = _field(
        "Pass as `cursor` for the next page (the last index of this one); null at the end.",
        None,
        default=None,
    )


class BatchFailureEntry(Failure):
    job: str = _field("The part (IngestJob) the item is in.", _JOB_EXAMPLE)


class BatchFailurePage(BaseModel):
    batch: str = _field("The batch id.", _JOB_EXAMPLE)
    items: list[BatchFailureEntry] = _field(
        "Failed items, part after part, each part's in index order.",
        [
            {
                "job": _JOB_EXAMPLE,
                "index": 3,
                "asset": "IMG_0004.jpg",
                "reason": "NotAnImage",
                "message": "cannot identify image file",
            }
        ],
    )
    next_cursor: str | None = _field(
        "Pass as `cursor` for the next page; null at the end.", None, default=None
    )


class MadeAsset(BaseModel):
    index: int = _field("The item's position in its job.", 0)
    asset: str = _field("The asset it made (exactly as named).", "IMG_0001.jpg")


class ExpiredIngest(BaseModel):
    """What is still known of an ingest its TTL removed from the cluster (the records are
    kept `EMULSION_RECORDS_RETENTION_SECONDS`, 7 days by default)."""

    name: str = _field("The IngestJob's name.", _JOB_EXAMPLE)
    collection: str = _field("The collection its assets went into.", "holiday-2026")
    phase: crd.Phase | None = _field(
        "How it ended; null when it was removed before it finished.",
        crd.Phase.PARTIALLY_FAILED,
        default=None,
    )
    total: int | None = _field("Items in the job, when known.", 120, default=None)
    succeeded: int | None = _field("Items made.", 119, default=None)
    failed: int | None = _field("Items that failed.", 1, default=None)
    version: str | None = _field(
        "The job's version ULID.", "01JDQ3G2M4P8R6T0V2X4Z6B8D0", default=None
    )
    started_at: datetime | None = _field("When it was dispatched.", _TIME_EXAMPLE, default=None)
    completed_at: datetime | None = _field("When it finished.", _TIME_EXAMPLE, default=None)
    reasons: dict[str, int] = _field(
        "Failed items counted by reason.", {"NotAnImage": 1}, default={}
    )
    failures_url: str = _field(
        "Where every failure is listed, while the records are kept.",
        f"/v1/ingests/{_JOB_EXAMPLE}/failures",
    )
    assets_total: int = _field("How many assets it made (of those known).", 119)
    asset_offset: int = _field("Position of the first entry of `assets` in that list.", 0)
    assets: list[MadeAsset] = _field(
        "A page of the assets it made (`item_offset`, `item_limit`), in item order; their "
        "current state is at /v1/assets (a later upload may have replaced one).",
        [{"index": 0, "asset": "IMG_0001.jpg"}],
    )


class ExpiredIngestProblem(Problem):
    """410 `ingest_expired`: a Problem with what is still known of the ingest."""

    ingest: ExpiredIngest = _field(
        "The ingest's summary and the assets it made.",
        {
            "name": _JOB_EXAMPLE,
            "collection": "holiday-2026",
            "phase": "PartiallyFailed",
            "total": 120,
            "succeeded": 119,
            "failed": 1,
            "reasons": {"NotAnImage": 1},
            "failures_url": f"/v1/ingests/{_JOB_EXAMPLE}/failures",
            "assets_total": 119,
            "asset_offset": 0,
            "assets": [{"index": 0, "asset": "IMG_0001.jpg"}],
        },
    )


class RenderingInfo(BaseModel):
    format: OutputFormat = _field("The encoding.", "avif")
    url: str = _field(
        "Where to download it (presigned or under the public base URL).",
        "https://cdn.example.com/derivatives/holiday-2026/IMG_0001.jpg/"
        "01JDQ3G2M4P8R6T0V2X4Z6B8D0-00000/thumb.avif",
    )
    bytes: int = _field("Size in bytes.", 2113)
    content_type: str = _field("The file's media type.", "image/avif")


class Output(BaseModel):
    style: str = _field("The style's name in the profile.", "thumb")
    url: str = _field(
        "Where to download it (presigned or under the public base URL): the style's first "
        "rendering.",
        _DOWNLOAD_EXAMPLE,
    )
    width: int = _field("Width in pixels.", 100)
    height: int = _field("Height in pixels.", 100)
    bytes: int = _field("Size in bytes (of the first rendering).", 4711)
    content_type: str = _field("The file's media type (of the first rendering).", "image/jpeg")
    renderings: list[RenderingInfo] = _field(
        "Every encoding of a style with several `formats`, in the style's order (the first "
        "is `url`); empty for a style of one format. "
        "`GET /v1/assets/{collection}/{asset}/styles/{style}` picks one by `Accept`.",
        [],
        default=[],
    )


class Original(BaseModel):
    url: str = _field("Where to download the original.", _DOWNLOAD_EXAMPLE)
    filename: str = _field(
        "The file name it was uploaded as, exactly as the client gave it when the upload "
        "was presigned (Unicode, without its directories); for an upload presigned before "
        "names were recorded, or put by other means, the stored name (`stored_filename`).",
        "写真.JPG",
    )
    stored_filename: str = _field(
        "The safe ASCII name the original is stored under (the last part of its URL's "
        "path): the uploaded name folded to ASCII.",
        "file.jpg",
    )
    content_type: str = _field("Its media type.", "image/jpeg")
    bytes: int = _field("Size in bytes.", 2_483_012)
    width: int = _field("Width in pixels.", 4032)
    height: int = _field("Height in pixels.", 3024)
    sha256: str | None = _field(
        "SHA-256 of the file as uploaded (64 hex digits), to match against the client's "
        "own. A profile that strips metadata from originals stores other bytes, so the "
        "download then differs. Null for assets ingested before it was recorded.",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        default=None,
    )


class GpsBody(BaseModel):
    latitude: float = _field("Degrees north (negative: south), WGS 84.", 35.6751389)
    longitude: float = _field("Degrees east (negative: west), WGS 84.", 139.75)
    altitude: float | None = _field(
        "Metres above sea level (negative: below); null when the photo does not say.",
        40.5,
        default=None,
    )


class PhotoMetadataBody(BaseModel):
    """What the photo's own Exif says; each field null when the photo does not say it (or
    says something unreadable). A photo with no Exif at all has every field null."""

    # A string, not `date-time`: RFC 3339 requires an offset, and most cameras write none.
    taken_at: str | None = _field(
        "When the photo was taken (Exif DateTimeOriginal, else DateTime), ISO 8601. With "
        "its UTC offset when the photo gives one (OffsetTimeOriginal); without one the "
        "time is the camera's local time of an unknown zone, written without an offset.",
        "2026-05-04T13:14:15+09:00",
        default=None,
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$",
    )
    camera_make: str | None = _field("The camera's maker (Exif Make).", "Canon", default=None)
    camera_model: str | None = _field(
        "The camera's model (Exif Model).", "Canon EOS R5", default=None
    )
    lens: str | None = _field(
        "The lens (Exif LensModel, after LensMake when the model does not name it).",
        "RF50mm F1.8 STM",
        default=None,
    )
    iso: int | None = _field("The ISO sensitivity.", 400, default=None)
    exposure_time: float | None = _field(
        "The exposure time in seconds (0.004 is 1/250 s).", 0.004, default=None
    )
    aperture: float | None = _field("The f-number (2.8 is f/2.8).", 2.8, default=None)
    focal_length: float | None = _field(
        "The focal length in millimetres, as the lens gives it (not the 35 mm equivalent).",
        50.0,
        default=None,
    )
    artist: str | None = _field(
        "Who took it (Exif Artist, else Windows' XPAuthor), Unicode as the file has it.",
        "写真家 Zoë",
        default=None,
    )
    copyright: str | None = _field(
        "The copyright notice (Exif Copyright).", "© 2026 Zoë", default=None
    )
    orientation: int | None = _field(
        "The Exif orientation (1-8) the styles were turned upright by; `width` and "
        "`height` of the original are already the upright ones.",
        6,
        default=None,
    )
    gps: GpsBody | None = _field(
        "Where it was taken; only when the asset's profile keeps GPS in originals (a "
        "profile stripping `gps` records none), and null when the photo does not say.",
        {"latitude": 35.6751389, "longitude": 139.75, "altitude": 40.5},
        default=None,
    )


class PlaceholderBody(BaseModel):
    thumbhash: str = _field(
        "The ThumbHash (https://evanw.github.io/thumbhash/) of the photo, base64: a "
        "blurred ~32 px preview with its aspect ratio and transparency, for a page to "
        "paint before the image arrives (`thumbHashToDataURL` in the reference library).",
        "1QcSHQRnh493V4dIh4eXh1h4kJUI",
    )
    dominant_color: str = _field(
        "The most common colour of the photo's opaque pixels, `#rrggbb`: a background "
        "for where the image will be.",
        "#c8a078",
    )


_OUTPUTS_EXAMPLE = [
    {
        "style": "thumb",
        "url": _DOWNLOAD_EXAMPLE,
        "width": 100,
        "height": 100,
        "bytes": 4711,
        "content_type": "image/jpeg",
    }
]
_ORIGINAL_EXAMPLE = {
    "url": _DOWNLOAD_EXAMPLE,
    "filename": "IMG_0001.jpg",
    "stored_filename": "IMG_0001.jpg",
    "content_type": "image/jpeg",
    "bytes": 2483012,
    "width": 4032,
    "height": 3024,
}


class ItemStatus(BaseModel):
    index: int = _field("Position in the job.", 0)
    asset: str = _field("The asset the item makes.", "IMG_0001.jpg")
    upload_key: str = _field("The item's staging key.", _STAGING_EXAMPLE)
    state: ItemState = _field("Whether the item is done, and how.", "succeeded")
    version: str | None = _field(
        "The asset version this item writes (<job version>-<index>).",
        _VERSION_EXAMPLE,
        default=None,
    )
    live: bool | None = _field(
        "For succeeded items: whether this version is still the asset's live one.",
        True,
        default=None,
    )
    reason: FailureReason | None = _field(
        "For failed items: why (a stable name).", FailureReason.NOT_AN_IMAGE, default=None
    )
    attempts: int | None = _field(
        "For failed items: how many deliveries it had (null where not recorded; a "
        "succeeded item's count is not kept).",
        None,
        default=None,
    )
    original: Original | None = _field(
        "For live items: the original, with its download URL.", _ORIGINAL_EXAMPLE, default=None
    )
    outputs: list[Output] = _field(
        "For live items: every style made.", _OUTPUTS_EXAMPLE, default=[]
    )
    placeholder: PlaceholderBody | None = _field(
        "For live items: what to paint before the thumbnail arrives (as on the asset); "
        "null for assets ingested before it was recorded.",
        {"thumbhash": "1QcSHQRnh493V4dIh4eXh1h4kJUI", "dominant_color": "#c8a078"},
        default=None,
    )


class JobSummary(BaseModel):
    name: str = _field("The IngestJob's name.", _JOB_EXAMPLE)
    status_url: str = _field("This job's status URL.", f"/v1/ingests/{_JOB_EXAMPLE}")
    collection: str = _field("The collection its assets go into.", "holiday-2026")
    profile: str = _field("The processing profile.", DEFAULT_PROFILE_NAME)
    batch: str | None = _field(
        "The batch it is part of, if the request was split.", None, default=None
    )
    phase: crd.Phase = _field("Where the job is in its life.", crd.Phase.PROCESSING)
    finished: bool = _field("Whether the phase is final.", False)
    total: int = _field("Items in the job.", 120)
    succeeded: int = _field("Items made.", 80)
    failed: int = _field("Items that failed.", 1)
    progress: str = _field("Finished items over all items.", "81/120")
    version: str | None = _field(
        "The job's version ULID (its items' versions are <version>-<index>).",
        "01JDQ3G2M4P8R6T0V2X4Z6B8D0",
        default=None,
    )
    created_at: datetime | None = _field("When the job was created.", _TIME_EXAMPLE, default=None)
    started_at: datetime | None = _field(
        "When the controller dispatched it.", _TIME_EXAMPLE, default=None
    )
    completed_at: datetime | None = _field("When it finished.", None, default=None)
    duration: str | None = _field("How long it ran, once finished.", "42s", default=None)
    failures: list[Failure] = _field(
        "The first failures, with their reasons.",
        [{"index": 3, "asset": "IMG_0004.jpg", "reason": "NotAnImage", "message": None}],
        default=[],
    )
    cancelled_at: datetime | None = _field(
        "When a cancel was asked for (`DELETE /v1/ingests/{name}`); null if never.",
        None,
        default=None,
    )
    cancelled: int = _field(
        "Items that ended Cancelled (counted in `failed`, reason `Cancelled`).", 0, default=0
    )
    retry_of: str | None = _field(
        "For a job made by `POST /v1/ingests/{name}/retry`: the job it retries.",
        None,
        default=None,
    )


class IngestStatus(JobSummary):
    item_offset: int = _field("Position of the first item in `items`.", 0, default=0)
    items: list[ItemStatus] = _field(
        "A page of items (see `item_offset` and `item_limit`).",
        [
            {
                "index": 0,
                "asset": "IMG_0001.jpg",
                "upload_key": _STAGING_EXAMPLE,
                "state": "pending",
            }
        ],
        default=[],
    )


class IngestList(BaseModel):
    items: list[JobSummary] = _field(
        "A page of IngestJobs, oldest first (the apiserver's order). It may hold fewer "
        "than `limit` entries while `next_cursor` is set: jobs outside the token's "
        "scopes are left out after listing.",
        [],
    )
    next_cursor: str | None = _field(
        "Pass as `cursor` for the next page; null on the last page.", None, default=None
    )


class BatchStatus(BaseModel):
    batch: str = _field("The batch id.", _JOB_EXAMPLE)
    status_url: str = _field("This batch's status URL.", f"/v1/batches/{_JOB_EXAMPLE}")
    phase: crd.Phase = _field("Over all parts: running while any runs.", crd.Phase.PROCESSING)
    finished: bool = _field("Whether every part has finished.", False)
    total: int = _field("Items over all parts.", 2500)
    succeeded: int = _field("Items made over all parts.", 1800)
    failed: int = _field("Items failed over all parts.", 0)
    progress: str = _field("Finished items over all items.", "1800/2500")
    jobs: list[JobSummary] = _field("Each part's summary, in item order.", [])


class FocalPointBody(Request):
    x: float = _field(
        "From the left edge of the upright image, as a fraction of its width (0 to 1).",
        0.3,
        ge=0,
        le=1,
        allow_inf_nan=False,
    )
    y: float = _field(
        "From the top edge of the upright image, as a fraction of its height (0 to 1).",
        0.25,
        ge=0,
        le=1,
        allow_inf_nan=False,
    )


class AssetPatch(Request):
    focal_point: FocalPointBody | None = _field(
        "The point every crop style of the asset keeps (its thumbnails are cut around it), "
        "or null to clear it (each style's own gravity again). Kept for later versions, a "
        "new upload's included, until changed.",
        {"x": 0.3, "y": 0.25},
    )


class AssetPatched(BaseModel):
    collection: str = _field("The asset's collection.", "holiday-2026")
    asset: str = _field("The asset's name.", "IMG_0001.jpg")
    version: str = _field(
        "The live version whose crops are made again (the new version replaces it).",
        _VERSION_EXAMPLE,
    )
    focal_point: FocalPointBody | None = _field("The focal point asked for.", {"x": 0.3, "y": 0.25})
    styles: list[str] = _field("The crop styles made again.", ["thumb", "tiny"])
    job: str = _field("The IngestJob that re-renders them (one item).", _JOB_EXAMPLE)
    status_url: str = _field("Where to follow it.", f"/v1/ingests/{_JOB_EXAMPLE}")


class Asset(BaseModel):
    collection: str = _field("The asset's collection.", "holiday-2026")
    asset: str = _field("The asset's name.", "IMG_0001.jpg")
    version: str = _field("The live version (also the `ETag`).", _VERSION_EXAMPLE)
    job: str = _field("The IngestJob that made this version.", _JOB_EXAMPLE)
    index: int = _field("The item's position in that job.", 0)
    committed_at: datetime = _field("When this version went live.", _TIME_EXAMPLE)
    original: Original = _field("The original, with its download URL.", _ORIGINAL_EXAMPLE)
    outputs: list[Output] = _field("Every style made, with download URLs.", _OUTPUTS_EXAMPLE)
    focal_point: FocalPointBody | None = _field(
        "The point every crop keeps (`PATCH` sets it); null: each style's gravity.",
        {"x": 0.3, "y": 0.25},
        default=None,
    )
    metadata: PhotoMetadataBody | None = _field(
        "What the photo's Exif says (capture time, camera, lens, exposure, author, GPS "
        "when the profile keeps it); null for assets ingested before it was recorded.",
        {"taken_at": "2026-05-04T13:14:15+09:00", "camera_make": "Canon", "iso": 400},
        default=None,
    )
    placeholder: PlaceholderBody | None = _field(
        "What to paint before the image arrives; null for assets ingested before it was recorded.",
        {"thumbhash": "1QcSHQRnh493V4dIh4eXh1h4kJUI", "dominant_color": "#c8a078"},
        default=None,
    )
    processing: bool = _field(
        "Whether a new version of this asset is being made now (an unfinished ingest has "
        "it as an item without an outcome yet); this answer is the earlier version, "
        "live until the new one commits. May be a second late.",
        False,
        default=False,
    )
    processing_ingest: str | None = _field(
        "The ingest making it, while `processing`.", None, default=None
    )


class AssetProcessing(BaseModel):
    """An asset with no version yet whose first is being made."""

    collection: str = _field("The asset's collection.", "holiday-2026")
    asset: str = _field("The asset's name.", "IMG_0001.jpg")
    processing: bool = _field("Always true: its styles are being made.", True)
    processing_ingest: str = _field("The ingest making it.", _JOB_EXAMPLE)
    status_url: str = _field("That ingest's status URL.", f"/v1/ingests/{_JOB_EXAMPLE}")


class AssetEntry(BaseModel):
    collection: str = _field("The asset's collection.", "holiday-2026")
    asset: str = _field("The asset's name.", "IMG_0001.jpg")
    url: str = _field(
        "The asset's own URL in this API (percent-encoded name).",
        "/v1/assets/holiday-2026/IMG_0001.jpg",
    )
    state: AssetState = _field("`live`, or `deleted` for a tombstone.", "live")
    version: str = _field(
        "The live version, or the deleting version of a tombstone.", _VERSION_EXAMPLE
    )
    updated_at: datetime = _field(
        "When the manifest was last written (committed or deleted): the default list "
        "order. In an `order=taken_at` list, when the live version was committed.",
        _TIME_EXAMPLE,
    )
    committed_at: datetime = _field("When this version was committed.", _TIME_EXAMPLE)
    deleted_at: datetime | None = _field(
        "When it was deleted; null while live.", None, default=None
    )
    original: Original | None = _field(
        "The original with its download URL; null for a tombstone.", _ORIGINAL_EXAMPLE, default=None
    )
    outputs: list[Output] = _field(
        "Every style with its download URL (a gallery's thumbnails); empty for a tombstone.",
        _OUTPUTS_EXAMPLE,
    )
    metadata: PhotoMetadataBody | None = _field(
        "What the photo's Exif says, as on the asset itself; null for a tombstone and "
        "for assets ingested before it was recorded.",
        {"taken_at": "2026-05-04T13:14:15+09:00", "camera_make": "Canon"},
        default=None,
    )
    placeholder: PlaceholderBody | None = _field(
        "What to paint before the thumbnail arrives, as on the asset itself; null for a "
        "tombstone and for assets ingested before it was recorded.",
        {"thumbhash": "1QcSHQRnh493V4dIh4eXh1h4kJUI", "dominant_color": "#c8a078"},
        default=None,
    )


class AssetList(BaseModel):
    items: list[AssetEntry] = _field(
        "A page of assets: newest first, or in capture order with `order=taken_at`.", []
    )
    next_cursor: str | None = _field(
        "Pass as `cursor` for the next page; null on the last page.", None, default=None
    )


class StyleInfo(BaseModel):
    name: str = _field("The style's name: the `style` of an asset's outputs.", "thumb")
    width: int = _field("The box's width in pixels.", 100)
    height: int = _field("The box's height in pixels.", 100)
    fit: Literal["fit", "crop"] = _field(
        "`fit`: scaled to fit inside the box; `crop`: scaled and cropped to fill it.", "crop"
    )
    format: OutputFormat = _field(
        "The encoding of this style's files (its first, when it has several).", "jpeg"
    )
    formats: list[OutputFormat] = _field(
        "Every encoding this style is written in, first the one a client without a "
        "preference gets.",
        ["jpeg"],
    )
    gravity: Literal["center", "smart", "faces"] | None = _field(
        "Where a crop cuts: `center`, `smart` (the most detail) or `faces`; null for `fit`. "
        "An asset's focal point wins over it.",
        "center",
        default=None,
    )
    watermarked: bool = _field("Whether the profile's watermark is drawn on it.", False)


class ProfileInfo(BaseModel):
    name: str = _field("The profile's name, for `profile` in `POST /v1/ingests`.", "default")
    format: OutputFormat = _field("The profile's default encoding.", "jpeg")
    quality: int = _field("The profile's default encoder quality (1-100).", 82)
    styles: list[StyleInfo] = _field(
        "The styles an ingest with this profile makes.",
        [{"name": "thumb", "width": 100, "height": 100, "fit": "crop", "format": "jpeg"}],
    )


class ProfileList(BaseModel):
    items: list[ProfileInfo] = _field("Every profile, by name.", [])


class Deleted(BaseModel):
    collection: str = _field("The asset's collection.", "holiday-2026")
    asset: str = _field("The asset's name.", "IMG_0001.jpg")
    version: str = _field("The version that stopped being live.", _VERSION_EXAMPLE)
    keys: int = _field("How many objects were handed to the janitor.", 6)
    not_before: datetime = _field("The janitor deletes them no earlier than this.", _TIME_EXAMPLE)


class JobDeletedEvent(BaseModel):
    """The `deleted` event of an event stream: the job is gone."""

    name: str = _field("The IngestJob's name.", _JOB_EXAMPLE)


class StreamErrorEvent(BaseModel):
    """The `error` event of an event stream: it cannot go on (the stream then ends)."""

    code: str = _field("The stable error code, as in a problem.", "unavailable")
    detail: str = _field("What happened, for people.", "the Kubernetes apiserver is unavailable")


class Health(BaseModel):
    status: Literal["ok", "unavailable"] = _field("`ok` when every check passed.", "ok")
    checks: dict[str, bool] = _field(
        "Each backend checked and whether it answered.",
        {"apiserver": True, "object_store": True},
        default={},
    )


class IngestCancel(BaseModel):
    """What a cancel did: the items already done when it was asked, and those it stops."""

    name: str = _field("The IngestJob's name.", _JOB_EXAMPLE)
    status_url: str = _field("This job's status URL.", f"/v1/ingests/{_JOB_EXAMPLE}")
    cancelled_at: datetime | None = _field(
        "When the cancel was first asked for (a repeat keeps the first time); null for a "
        "job that had finished before any cancel: nothing was cancelled.",
        _TIME_EXAMPLE,
    )
    phase: crd.Phase = _field("The job's phase as answered.", crd.Phase.PROCESSING)
    finished: bool = _field("Whether the job has ended: then every count below is final.", False)
    total: int = _field("Items in the job.", 120)
    succeeded: int = _field("Items made (already done, or finished while stopping).", 80)
    failed: int = _field("Items that failed for another reason than the cancel.", 1)
    cancelled: int = _field("Items that ended Cancelled so far.", 0)
    stopping: int = _field(
        "Items without an outcome yet: waiting or being processed. Each ends Cancelled, "
        "except one a processor was already committing, which ends succeeded; no item is "
        "half made.",
        39,
    )


RetrySkip = Literal["upload_gone", "deterministic"]


class RetrySkipped(BaseModel):
    index: int = _field("The failed item's position in the original job.", 3)
    asset: str | None = _field("Its asset.", "IMG_0004.jpg", default=None)
    reason: FailureReason = _field("Why it failed.", FailureReason.NOT_AN_IMAGE)
    skipped: RetrySkip = _field(
        "Why it is not retried: `upload_gone` (its upload is no longer in the staging "
        "area: upload the file again), `deterministic` (the image itself failed, and "
        "would fail again: retried only with `include_deterministic`).",
        "deterministic",
    )


class RetryItem(BaseModel):
    index: int = _field("Position in the retry job.", 0)
    original_index: int = _field("The item's position in the original job.", 3)
    asset: str = _field("Its asset.", "IMG_0004.jpg")
    upload_key: str = _field("Its upload, as in the original job.", _STAGING_EXAMPLE)
    reason: FailureReason = _field("Why it failed the first time.", FailureReason.RETRIES_EXHAUSTED)
    attempts: int | None = _field("Deliveries it had in the original job.", 3, default=None)


class RetryRequest(Request):
    include_deterministic: bool = _field(
        "Also retry items whose image failed in a way that repeats (NotAnImage, "
        "Truncated, DecompressionBomb...): useful only after a processor's limits or "
        "formats changed. By default only items that failed for a reason outside the "
        "image (Cancelled, RetriesExhausted, ResultLost, Unknown) are retried.",
        False,
        default=False,
    )


class RetryAccepted(BaseModel):
    retry_of: str = _field("The job retried.", _JOB_EXAMPLE)
    name: str | None = _field(
        "The retry job (an IngestJob like any other, labelled with the job it retries); "
        "null when no item could be retried.",
        "01jdq4a7c2e9g1j3l5n7q9s1u3",
    )
    status_url: str | None = _field(
        "The retry job's status URL.", "/v1/ingests/01jdq4a7c2e9g1j3l5n7q9s1u3"
    )
    items: list[RetryItem] = _field("The items retried.", [], default=[])
    skipped: list[RetrySkipped] = _field("The failed items not retried, and why.", [], default=[])
