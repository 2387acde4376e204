"""The IngestJob a focal point PATCH creates: one item whose source is the asset's live
original, so a processor re-renders the crop styles of that version from it (see
emulsion_processor.rerender) and nothing is uploaded again.

A job like any ingest's, so it is dispatched, signed, followed (`GET /v1/ingests/{name}`)
and expired as they are; the API never publishes work itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from emulsion_api import jobs
from emulsion_contracts import crd
from emulsion_contracts.ingestjob import IngestJob, IngestJobSpec, JobItem, ObjectMeta
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import FocalPoint


def job(
    namespace: str,
    manifest: AssetManifest,
    profile: str,
    focal_point: FocalPoint | None,
    version: str,
    trace_headers: Mapping[str, str],
    ttl_seconds_after_finished: int | None,
) -> jobs.Job:
    """The one-item job re-rendering `manifest`'s version with `focal_point`."""
    annotations: dict[str, str] = {}
    if "traceparent" in trace_headers:
        annotations[crd.ANNOTATION_TRACEPARENT] = trace_headers["traceparent"]
    if trace_headers.get("tracestate"):
        annotations[crd.ANNOTATION_TRACESTATE] = trace_headers["tracestate"]
    return IngestJob(
        metadata=ObjectMeta(
            name=jobs.job_name(version),
            namespace=namespace,
            labels={
                crd.LABEL_MANAGED_BY: jobs.MANAGED_BY,
                crd.LABEL_COLLECTION: jobs.collection_label(manifest.collection),
            },
            annotations=annotations,
            finalizers=(crd.FINALIZER,),
        ),
        spec=IngestJobSpec(
            collection=manifest.collection,
            profile=profile,
            version=version,
            items=(
                JobItem(
                    source=manifest.original.key,
                    asset=manifest.asset,
                    focal_point=focal_point,
                ),
            ),
            ttl_seconds_after_finished=ttl_seconds_after_finished,
        ),
    ).to_body()
