"""The processor's settings: the shared parts it uses plus scratch space, limits and concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from emulsion_processor.admission import default_budget
from emulsion_processor.imaging import PILLOW_MAX_PIXELS
from emulsion_runtime.settings import (
    NatsSettings,
    ProfilesSettings,
    S3Settings,
    ServiceSettings,
    WorkSigningSettings,
    load_settings,
)

MIB = 1024 * 1024


class ProcessorSettings(
    ServiceSettings, NatsSettings, S3Settings, ProfilesSettings, WorkSigningSettings
):
    # Sources are streamed here, never held in memory; a generic ephemeral volume in the chart.
    scratch_dir: Path = Field(validation_alias="EMULSION_SCRATCH_DIR")
    # Free space that must remain after a download, so a full volume gives work back
    # instead of failing it.
    min_free_scratch_bytes: int = Field(
        default=256 * MIB, ge=0, validation_alias="EMULSION_MIN_FREE_SCRATCH_BYTES"
    )
    # The largest original accepted; a larger one fails as SourceTooLarge.
    max_source_bytes: int = Field(
        default=200 * MIB, ge=1, validation_alias="EMULSION_MAX_SOURCE_BYTES"
    )
    # Decode + styles run on this many workers. On 2 cores `make bench-processor` found
    # threads and processes within run-to-run noise of each other (CPU per image within
    # +-9%, either way; Pillow releases the GIL in decode, resize and encode), and a
    # process pool costs ~85 MB RSS per worker more: threads are the default.
    concurrency: int = Field(default=2, ge=1, le=64, validation_alias="EMULSION_CONCURRENCY")
    # "thread" or "process" workers for decode and styles.
    executor: Literal["thread", "process"] = Field(
        default="thread", validation_alias="EMULSION_EXECUTOR"
    )
    # While both lanes have work waiting, one in this many free slots takes bulk work
    # first (the rest interactive), so bulk is never starved; a lane alone gets every slot.
    bulk_share_every: int = Field(
        default=4, ge=1, le=1000, validation_alias="EMULSION_BULK_SHARE_EVERY"
    )
    # Items in hand at once: more than `concurrency`, so downloads and uploads overlap decoding.
    max_in_flight: int | None = Field(default=None, ge=1, validation_alias="EMULSION_MAX_IN_FLIGHT")
    # Never above Pillow's own decompression-bomb limit (89.5 MP).
    max_pixels: int = Field(
        default=PILLOW_MAX_PIXELS,
        ge=1,
        le=PILLOW_MAX_PIXELS,
        validation_alias="EMULSION_MAX_PIXELS",
    )
    # Memory that concurrent decodes may take together (see admission.py); by default the
    # cgroup's memory limit (the pod's) less what the process needs besides.
    memory_budget_bytes: int = Field(
        default_factory=default_budget, ge=1, validation_alias="EMULSION_MEMORY_BUDGET_BYTES"
    )
    # Most frames an image may have; more fail as TooManyFrames.
    max_frames: int = Field(default=300, ge=1, validation_alias="EMULSION_MAX_FRAMES")
    # Must stay well under the consumer's ack_wait (30 s) so a long item is never redelivered.
    heartbeat_seconds: float = Field(
        default=10.0, gt=0, validation_alias="EMULSION_HEARTBEAT_SECONDS"
    )
    # Heartbeats stop after this long, so a wedged item goes to another worker.
    max_item_seconds: float = Field(
        default=900.0, gt=0, validation_alias="EMULSION_MAX_ITEM_SECONDS"
    )
    # Transient trouble (storage, NATS, scratch space) is waited out in-process, the
    # item kept in hand: the first wait, doubled per retry up to the cap...
    retry_delay_seconds: float = Field(
        default=1.0, ge=0, validation_alias="EMULSION_RETRY_DELAY_SECONDS"
    )
    # The cap of that doubling wait.
    retry_max_delay_seconds: float = Field(
        default=30.0, gt=0, validation_alias="EMULSION_RETRY_MAX_DELAY_SECONDS"
    )
    # ...for at most this long per item, then it fails as RetriesExhausted. Longer than
    # any outage worth riding out (a MinIO restart, a NATS failover, a node drain).
    outage_budget_seconds: float = Field(
        default=1800.0, ge=0, validation_alias="EMULSION_OUTAGE_BUDGET_SECONDS"
    )
    # On SIGTERM, how long in-flight items may run on before they are handed back.
    drain_seconds: float = Field(default=25.0, ge=0, validation_alias="EMULSION_DRAIN_SECONDS")

    @property
    def in_flight_limit(self) -> int:
        return self.max_in_flight or 2 * self.concurrency


def load() -> ProcessorSettings:
    return load_settings(ProcessorSettings)
