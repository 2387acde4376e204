"""The janitor's settings: the shared parts it uses plus the sweep's schedule, limits and modes."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from pydantic import Field

from emulsion_contracts import wire
from emulsion_runtime import messaging
from emulsion_runtime.settings import NatsSettings, S3Settings, ServiceSettings, load_settings

HOUR = 3600.0
DAY = 24 * HOUR
WORK_MAX_AGE: Final = next(s.max_age for s in messaging.STREAMS if s.name == wire.WORK_STREAM)


class JanitorSettings(ServiceSettings, NatsSettings, S3Settings):
    # How often the routine sweep of staging/ runs (abandoned uploads). staging/ holds only
    # the uploads of the last upload TTL, so this costs what was uploaded, not what is stored.
    sweep_interval: float = Field(
        default=HOUR, gt=0, validation_alias="EMULSION_JANITOR_SWEEP_SECONDS"
    )
    # How often the full reconciliation pass starts (from the start of the last one): it
    # lists every area and catches whatever a lost GC message or a crash between a write
    # and its GC request left. Resumable: its progress is kept in the bucket, under
    # janitor/, and a restarted janitor goes on from the last page it finished.
    full_pass_interval: float = Field(
        default=DAY, gt=0, validation_alias="EMULSION_JANITOR_FULL_PASS_SECONDS"
    )
    # Keys the full pass lists per second at most (its manifest reads and deletes follow
    # from them), so it never competes with ingestion for the store: 200 keys/s lists a
    # million keys in about 1.4 hours.
    full_pass_rate: float = Field(
        default=200.0, gt=0, validation_alias="EMULSION_JANITOR_FULL_PASS_KEYS_PER_SECOND"
    )
    # A staging upload older than this that no running job leases is abandoned.
    upload_ttl: float = Field(default=DAY, ge=0, validation_alias="EMULSION_UPLOAD_TTL_SECONDS")
    # A version that no manifest points to and that is not older than the live one may
    # be an item still in flight (written, not yet committed): the sweep waits this long
    # before calling it an orphan. Superseded versions only wait for the grace period.
    orphan_age: float = Field(
        default=HOUR, ge=0, validation_alias="EMULSION_JANITOR_ORPHAN_SECONDS"
    )
    # Report what would be deleted, delete nothing.
    dry_run: bool = Field(default=False, validation_alias="EMULSION_JANITOR_DRY_RUN")
    # A bug or a wrong manifest must not empty the bucket in one go.
    max_deletions_per_sweep: int = Field(
        default=50_000, ge=0, validation_alias="EMULSION_JANITOR_MAX_DELETIONS_PER_SWEEP"
    )
    # How long a GC message naming a leased staging upload waits before it is tried again.
    lease_recheck: float = Field(
        default=300.0, gt=0, validation_alias="EMULSION_JANITOR_LEASE_RECHECK_SECONDS"
    )
    # How long a deleted asset's tombstone is kept: while it is there, no item older than
    # the delete can bring the asset back. At least the work stream's max age (a queued
    # item lives that long) plus a day for one in a processor's hands; the janitor also
    # raises it to the live stream's max age plus a day if operators lengthened that.
    tombstone_keep: float = Field(
        default=WORK_MAX_AGE + DAY, ge=0, validation_alias="EMULSION_JANITOR_TOMBSTONE_SECONDS"
    )
    # GC messages taken from the stream at once.
    fetch_batch: int = Field(default=64, ge=1, le=1000, validation_alias="EMULSION_JANITOR_FETCH")

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=self.gc_grace_seconds)

    def tombstones_kept(self, work_max_age: float | None = None) -> timedelta:
        """How long tombstones are kept, given the work stream's live max age if known."""
        if work_max_age is None:
            return timedelta(seconds=self.tombstone_keep)
        # A max age of 0 means "forever": then no tombstone may ever go.
        if work_max_age <= 0:
            return timedelta.max
        return timedelta(seconds=max(self.tombstone_keep, work_max_age + DAY))


def load() -> JanitorSettings:
    return load_settings(JanitorSettings)
