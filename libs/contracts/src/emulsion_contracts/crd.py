"""Names and limits of the IngestJob custom resource (`crds/ingestjob.yaml` is its schema)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Final

log = logging.getLogger(__name__)

GROUP: Final = "emulsion.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "IngestJob"
PLURAL: Final = "ingestjobs"
SINGULAR: Final = "ingestjob"
SHORT_NAME: Final = "ij"
CATEGORY: Final = "emulsion"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# A job's spec must fit in etcd (1.5 MiB per object) twice over: once as the spec
# and once as the controller's diff base (kopf keeps a copy of the spec). Worst case
# per item is {"source": 199 chars, "asset": 200 bytes} ~ 425 bytes of JSON, so 2,000
# items are ~850 KB (kopf's diff base leaves the items out), leaving room for status. A seed gallery
# (1,361 images) fits in one job; the API splits anything larger into a batch.
MAX_ITEMS: Final = 2000
# Status stays small whatever a job's size: it lists the first few failures as examples
# and counts the rest per reason (status.failureReasons), never one entry per item.
MAX_FAILURES_LISTED: Final = 5

LABEL_BATCH: Final = f"{GROUP}/batch"
LABEL_COLLECTION: Final = f"{GROUP}/collection"
# Whose work a job is, for fair share between tenants: the API writes the token's owner id
# (the first 16 hex digits of its SHA-256, as on an upload's metadata); a job without it
# (made with kubectl) counts as its namespace's.
LABEL_TENANT: Final = f"{GROUP}/tenant"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
ANNOTATION_TRACEPARENT: Final = f"{GROUP}/traceparent"
ANNOTATION_TRACESTATE: Final = f"{GROUP}/tracestate"
ANNOTATION_IDEMPOTENCY_KEY: Final = f"{GROUP}/idempotency-key"
FINALIZER: Final = f"{GROUP}/cancel-items"
# A cancel asked for (`DELETE /v1/ingests/{name}`, or `kubectl annotate`): the time it was
# asked, RFC 3339. The job is kept: the controller marks it cancelled for the processors,
# which end its remaining items as failed with reason Cancelled, so it finishes with every
# item's outcome readable (docs/architecture.md, "Cancel and retry").
ANNOTATION_CANCELLED: Final = f"{GROUP}/cancelled-at"
# A job made by `POST /v1/ingests/{name}/retry`: the name of the job it retries (a label,
# so a repeated retry finds it).
LABEL_RETRY_OF: Final = f"{GROUP}/retry-of"


class Phase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    PROCESSING = "Processing"
    SUCCEEDED = "Succeeded"
    PARTIALLY_FAILED = "PartiallyFailed"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.PARTIALLY_FAILED, Phase.FAILED)

    @classmethod
    def parse(cls, value: object) -> Phase:
        """A stored phase; none yet is Pending, and so is one this reader does not know
        (a newer CRD's): not finished, so nothing acts on the job as ended. Logged."""
        if isinstance(value, cls):
            return value
        if not value:
            return cls.PENDING
        try:
            return cls(str(value))
        except ValueError:
            log.warning("unknown job phase %r read as %s", str(value)[:64], cls.PENDING)
            return cls.PENDING


class ConditionType(StrEnum):
    """See docs/ingestjob.md ("Health in Argo CD") and the controller's conditions.py.

    Complete/Failed say how the job ended, exclusively (like batch/v1 Jobs); Ready,
    Reconciling and Stalled are the summary that kstatus and Argo CD read.
    """

    DISPATCHED = "Dispatched"
    COMPLETE = "Complete"
    FAILED = "Failed"
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
