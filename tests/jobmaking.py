"""IngestJobs made straight through the Kubernetes API, as `kubectl create` makes them:
past the Emulsion API and its checks, with only the CRD's schema between them and the
apiserver."""

from __future__ import annotations

from typing import Any

from emulsion_contracts import crd


def create_job(
    jobs: Any,
    name: str,
    spec: dict[str, Any],
    *,
    labels: dict[str, str] | None = None,
    namespace: str = "default",
) -> Any:
    """Create the IngestJob `name` of `spec` through `jobs` (a CustomObjectsApi); the
    apiserver's answer, the object as stored."""
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    return jobs.create_namespaced_custom_object(
        crd.GROUP,
        crd.VERSION,
        namespace,
        crd.PLURAL,
        {"apiVersion": crd.API_VERSION, "kind": crd.KIND, "metadata": metadata, "spec": spec},
    )
