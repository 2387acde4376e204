"""Why an item (or a whole job) failed: the stable, machine-readable reasons of the contract.

They travel in `ItemResult.reason`, are stored in an IngestJob's `status.failures[].reason`
(and, for a job refused as a whole, its Failed condition), and are shown by the API. A
reason a reader does not know (written by a newer processor during a rollout) is read as
`UNKNOWN` and logged, never refused: a result must not be lost over its wording.
"""

from __future__ import annotations

import logging
from enum import StrEnum

log = logging.getLogger(__name__)


class FailureReason(StrEnum):
    # -- Permanent: the item is bad; a redelivery would fail the same way. --------------
    SOURCE_MISSING = "SourceMissing"
    """The staging object does not exist (never uploaded, or already gone)."""
    EMPTY_FILE = "EmptyFile"
    """The source has zero bytes."""
    SOURCE_TOO_LARGE = "SourceTooLarge"
    """The source is larger than the processor's `EMULSION_MAX_SOURCE_BYTES`."""
    NOT_AN_IMAGE = "NotAnImage"
    """The bytes are no image format at all (e.g. text named `.jpg`)."""
    UNSUPPORTED_FORMAT = "UnsupportedFormat"
    """A real image format outside the allow-list (PDF, EPS, PSD, TIFF...)."""
    TRUNCATED = "Truncated"
    """The image data ends early."""
    CORRUPT_IMAGE = "CorruptImage"
    """The image data cannot be decoded for another reason."""
    DECOMPRESSION_BOMB = "DecompressionBomb"
    """More pixels than the processor's `EMULSION_MAX_PIXELS`."""
    TOO_MANY_FRAMES = "TooManyFrames"
    """An animation with more frames than the processor's `EMULSION_MAX_FRAMES`."""
    UNKNOWN_PROFILE = "UnknownProfile"
    """The item names a profile the processor does not know."""
    INVALID_STYLES = "InvalidStyles"
    """The item's styles repeat a name (two outputs would share a key)."""
    RENDER_FAILED = "RenderFailed"
    """Rendering failed in a way that is not a decoding problem and would fail the same
    way again (a Pillow error, a defect); the message names the error."""
    TOO_LARGE_FOR_MEMORY = "TooLargeForMemory"
    """Decoding the image needs more memory than the processor's whole budget
    (`EMULSION_MEMORY_BUDGET_BYTES`), so it could never be admitted."""
    UPLOAD_NOT_IN_COLLECTION = "UploadNotInCollection"
    """The upload was not presigned for the item's collection: its key is not under
    `staging/<collection>/` (or is of the old layout), or its recorded collection
    (`emulsion-collection` metadata) is another. Nothing of it was read into the asset."""
    UPLOAD_ALREADY_INGESTED = "UploadAlreadyIngested"
    """Another job (or another item) already claimed this upload: an upload becomes one
    asset version once."""
    SOURCE_CHANGED = "SourceChanged"
    """The staging object was replaced (a replayed upload form) between the download that
    was checked and rendered and its promotion; other bytes are never stored."""
    INVALID_KEY = "InvalidKey"
    """The object store refused a key the item writes or reads (e.g. MinIO's
    `XMinioInvalidObjectName`, S3's `KeyTooLongError`); the message gives the store's code.
    Keys are built to fit every store, so this means a store stricter than S3 and MinIO."""
    INVALID_MESSAGE = "InvalidMessage"
    """The work message itself cannot be read (an unknown schema version, bad JSON); its
    job and index came from its subject and `Nats-Msg-Id` header."""

    # -- Final, but not about the image. -------------------------------------------------
    CANCELLED = "Cancelled"
    """The job was deleted while the item ran; nothing was committed."""
    RETRIES_EXHAUSTED = "RetriesExhausted"
    """Transient trouble (storage, messaging, scratch space) outlasted the processor's
    outage budget, the item's render process died on every delivery, or its work message
    ran out of deliveries (the controller folds that advisory)."""
    RESULT_LOST = "ResultLost"
    """The work was taken but no result arrived, even after the controller re-dispatched
    it (`EMULSION_REDISPATCH_ROUNDS` times)."""

    # -- The whole job. --------------------------------------------------------------------
    INVALID_SPEC = "InvalidSpec"
    """The job's spec cannot become work messages (the apiserver took it, the contracts
    refuse it): the job is Failed as a whole and no item runs. The reason of its
    Complete/Failed conditions, not of an item."""
    STATUS_UNWRITABLE = "StatusUnwritable"
    """The apiserver refused the job's status as such (422, 413): the job is Failed as a
    whole with what could be written, its results are acknowledged and no longer held.
    The reason of its Complete/Failed conditions, not of an item."""

    # -- A reader's fallback. --------------------------------------------------------------
    UNKNOWN = "Unknown"
    """A failed result without a reason, or a reason this reader does not know."""

    @classmethod
    def parse(cls, value: object) -> FailureReason:
        """`value` as a reason; an unknown one is `UNKNOWN`, logged (never an error)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value))
        except ValueError:
            log.warning("unknown failure reason %r read as %s", str(value)[:64], cls.UNKNOWN)
            return cls.UNKNOWN
