"""kubectl against the real apiserver: `get ingestjobs` shows the designed columns and
`explain ingestjob` describes the fields."""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any

from kubernetes import client

from emulsion_contracts import crd
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.stack import Endpoints
from tests.jobmaking import create_job


def kubectl(stack: Endpoints, *args: str) -> str:
    result = subprocess.run(
        [str(ensure_binary("kubectl")), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": stack.kubeconfig},
        check=True,
    )
    return result.stdout


def test_get_ingestjobs_shows_phase_collection_progress_failed_age(
    stack: Endpoints, kube: Any
) -> None:
    name = f"columns-{uuid.uuid4().hex[:8]}"
    jobs = client.CustomObjectsApi(kube)
    create_job(
        jobs,
        name,
        {
            "collection": "gallery-42",
            "items": [
                {
                    "source": "staging/gallery-42/01JDZ8Q6W1B2C3D4E5F6G7H8J9/a.jpg",
                    "asset": "a.jpg",
                }
            ],
        },
        labels={crd.LABEL_BATCH: "b-123"},
    )
    jobs.patch_namespaced_custom_object_status(
        crd.GROUP,
        crd.VERSION,
        "default",
        crd.PLURAL,
        name,
        {
            "status": {
                "phase": "Processing",
                "total": 1361,
                "succeeded": 812,
                "failed": 1,
                "progress": "813/1361",
                "duration": "1m12s",
            }
        },
    )

    for resource in ("ingestjobs", "ij", "ingestjobs.emulsion.dev"):
        header, row = kubectl(stack, "get", resource, name).splitlines()
        assert header.split() == ["NAME", "PHASE", "COLLECTION", "PROGRESS", "FAILED", "AGE"]
        assert row.split()[:5] == [name, "Processing", "gallery-42", "813/1361", "1"]

    header, row = kubectl(stack, "get", "ij", name, "-o", "wide").splitlines()
    assert header.split()[-4:] == ["DURATION", "CANCELLED", "PROFILE", "BATCH"]
    # A job never cancelled leaves its Cancelled cell empty.
    assert row.split()[-3:] == ["1m12s", "default", "b-123"]

    assert name in kubectl(stack, "get", "emulsion", "-o", "name")


def test_kubectl_explain_describes_the_items_and_the_status(stack: Endpoints) -> None:
    items = kubectl(stack, "explain", "ingestjob.spec.items")
    assert "The images inline (1 to 2000)" in items
    assert "Key of the uploaded original in the staging area" in items  # its fields too
    status = kubectl(stack, "explain", "ingestjob.status.conditions.type")
    assert "Reconciling" in status
