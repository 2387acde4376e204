"""The controller's settings: the shared parts it uses (never the object store's) plus what
only the operator needs."""

from __future__ import annotations

from typing import Final

from pydantic import Field

from emulsion_runtime.settings import (
    KubeSettings,
    NatsSettings,
    ServiceSettings,
    WorkSigningSettings,
    load_settings,
)

# Jobs of at most this many items go to the interactive lane unless they ask for one.
INTERACTIVE_MAX_ITEMS: Final = 20


class ControllerSettings(ServiceSettings, NatsSettings, KubeSettings, WorkSigningSettings):
    # No S3 part: the controller never touches the object store.
    # Comma-separated namespaces to serve; empty means the whole cluster.
    namespaces_csv: str = Field(default="", validation_alias="EMULSION_NAMESPACES")
    # Peering: of several running controllers only the highest priority acts; give each
    # replica a distinct priority so two never pause each other at the same level.
    peering_priority: int = Field(default=0, validation_alias="EMULSION_CONTROLLER_PRIORITY")
    # Name of the ClusterKopfPeering the controllers of one installation share.
    peering_name: str = Field(
        default="emulsion-controller", validation_alias="EMULSION_CONTROLLER_PEERING"
    )
    # Prometheus metrics; kopf's liveness endpoint owns EMULSION_HTTP_PORT.
    metrics_port: int = Field(
        default=9090, ge=0, le=65535, validation_alias="EMULSION_METRICS_PORT"
    )
    # Coalescing window of a running job's status patches (about one a second per job).
    status_interval: float = Field(
        default=1.0, gt=0, validation_alias="EMULSION_STATUS_INTERVAL_SECONDS"
    )
    # How often finished jobs are checked against ttlSecondsAfterFinished.
    ttl_sweep_interval: float = Field(
        default=30.0, gt=0, validation_alias="EMULSION_TTL_SWEEP_SECONDS"
    )
    # Longest pause between status retries while the apiserver fails (backoff, jittered).
    status_retry_ceiling: float = Field(
        default=30.0, gt=0, validation_alias="EMULSION_STATUS_RETRY_CEILING_SECONDS"
    )
    # Lost results (see lost_results.py): a running job that has not changed for this long is
    # checked for items with neither a result nor a work message left in the stream.
    result_deadline: float = Field(
        default=600.0, gt=0, validation_alias="EMULSION_RESULT_DEADLINE_SECONDS"
    )
    # How often running jobs are checked for lost results.
    reconcile_interval: float = Field(
        default=30.0, gt=0, validation_alias="EMULSION_RECONCILE_INTERVAL_SECONDS"
    )
    # Re-dispatches of a lost item before it is failed with reason ResultLost.
    redispatch_rounds: int = Field(default=2, ge=0, validation_alias="EMULSION_REDISPATCH_ROUNDS")
    # How often the peering object is read: for a controller of the same priority, and for
    # this one's own entry (kopf's keep-alive; see peering.py).
    peering_check_interval: float = Field(
        default=10.0, gt=0, validation_alias="EMULSION_PEERING_CHECK_SECONDS"
    )
    # A job of at most this many items (one photo, a handful) waits in the interactive
    # lane, which processors take first; larger ones in the bulk lane (unless the job
    # asks for a lane: spec.priority). See docs/architecture.md, "Two lanes".
    interactive_max_items: int = Field(
        default=INTERACTIVE_MAX_ITEMS, ge=0, validation_alias="EMULSION_INTERACTIVE_MAX_ITEMS"
    )
    # Fair share (see feeder.py): bulk work the controller keeps published at most, across
    # all tenants; each tenant with work waiting gets an equal share of it (at least
    # feed_min_window), a lone tenant all of it. KEDA sees only the stream, so this must
    # reach its lag threshold times the processors' max replicas (20 x 10 in the chart).
    feed_high_water: int = Field(default=200, ge=1, validation_alias="EMULSION_FEED_HIGH_WATER")
    # The least window of one bulk tenant, however many tenants wait: keeps each busy
    # enough to cover a result's round trip.
    feed_min_window: int = Field(default=10, ge=1, validation_alias="EMULSION_FEED_MIN_WINDOW")
    # The feeder refills on each result and each new bulk job, and also this often.
    feed_interval: float = Field(
        default=1.0, gt=0, validation_alias="EMULSION_FEED_INTERVAL_SECONDS"
    )
    # Objects handled at once by kopf; bounds memory and apiserver load under a burst.
    worker_limit: int = Field(default=64, ge=1, validation_alias="EMULSION_CONTROLLER_WORKERS")
    # Concurrent apiserver calls of the controller (connections of one async pool).
    kube_concurrency: int = Field(default=16, ge=1, validation_alias="EMULSION_KUBE_CONCURRENCY")

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(ns.strip() for ns in self.namespaces_csv.split(",") if ns.strip())


def load() -> ControllerSettings:
    return load_settings(ControllerSettings)
