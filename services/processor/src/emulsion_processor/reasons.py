"""Why an item failed: stable, machine-readable reasons carried in `ItemResult.reason`.

Permanent (the item is bad; redelivery would fail the same way):

- ``SourceMissing``: the staging object does not exist (never uploaded, or already gone).
- ``EmptyFile``: the source has zero bytes.
- ``SourceTooLarge``: the source is larger than ``EMULSION_MAX_SOURCE_BYTES``.
- ``NotAnImage``: the bytes are no image format at all (e.g. text named ``.jpg``).
- ``UnsupportedFormat``: a real image format outside the allow-list (PDF, EPS, PSD, TIFF...).
- ``Truncated``: the image data ends early.
- ``CorruptImage``: the image data cannot be decoded for another reason.
- ``DecompressionBomb``: more pixels than ``EMULSION_MAX_PIXELS``.
- ``TooManyFrames``: an animation with more frames than ``EMULSION_MAX_FRAMES``.
- ``UnknownProfile``: the item names a profile this processor does not know.
- ``InvalidStyles``: the item's styles repeat a name (two outputs would share a key).
- ``RenderFailed``: rendering failed in a way that is not a decoding problem and would
  fail the same way again (a Pillow error, a defect); the message names the error.
- ``TooLargeForMemory``: decoding the image needs more memory than the processor's whole
  budget (``EMULSION_MEMORY_BUDGET_BYTES``), so it could never be admitted.
- ``InvalidMessage``: the work message itself cannot be read (an unknown schema version,
  bad JSON); job and index come from its subject and ``Nats-Msg-Id`` header.

Final, but not about the image:

- ``Cancelled``: the job was deleted while the item ran; nothing was committed.
- ``RetriesExhausted``: transient trouble (storage, messaging, scratch space) lasted
  longer than the outage budget (``EMULSION_OUTAGE_BUDGET_SECONDS``), or the item's
  render process died on every delivery.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    SOURCE_MISSING = "SourceMissing"
    EMPTY_FILE = "EmptyFile"
    SOURCE_TOO_LARGE = "SourceTooLarge"
    NOT_AN_IMAGE = "NotAnImage"
    UNSUPPORTED_FORMAT = "UnsupportedFormat"
    TRUNCATED = "Truncated"
    CORRUPT_IMAGE = "CorruptImage"
    DECOMPRESSION_BOMB = "DecompressionBomb"
    TOO_MANY_FRAMES = "TooManyFrames"
    UNKNOWN_PROFILE = "UnknownProfile"
    INVALID_STYLES = "InvalidStyles"
    RENDER_FAILED = "RenderFailed"
    TOO_LARGE_FOR_MEMORY = "TooLargeForMemory"
    INVALID_MESSAGE = "InvalidMessage"
    CANCELLED = "Cancelled"
    RETRIES_EXHAUSTED = "RetriesExhausted"


class ItemRejected(Exception):
    """The item ends now as failed, with `reason`; retrying cannot help."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type[ItemRejected], tuple[Reason, str]]:
        # Crosses process boundaries when rendering runs in a process pool.
        return (ItemRejected, (self.reason, self.message))


class TransientTrouble(Exception):
    """Something outside the item went wrong (storage, messaging, disk); try it again later."""
