"""The chart on a real node: installed with the locally built
images, every Deployment Available with its probes passing, pods non-root on read-only
root filesystems, the ServiceAccounts allowed their work and nothing more; then a
200-image ingest through the API's Service, each processor's scratch a generic
ephemeral volume that lives and dies with its pod.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from emulsion_bench.cli import ingest_command
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_devstack.processes import wait_for

from .conftest import Cluster
from .workload import ready

# The first test pays for the node, the images (built by `make images` before the
# suite, so normally found in the cache) and the release.
pytestmark = pytest.mark.timeout(1200)

COMPONENTS = ("api", "controller", "processor", "janitor")
SMALL = {"min_megapixels": 0.3, "max_megapixels": 1.5}


def pods(cluster: Cluster, component: str) -> list[Any]:
    from kubernetes import client

    core: Any = client.CoreV1Api(cluster.kube)
    selector = f"app.kubernetes.io/component={component}"
    return list(core.list_namespaced_pod(cluster.namespace, label_selector=selector).items)


def test_every_deployment_is_available_with_its_probes_passing(cluster: Cluster) -> None:
    from kubernetes import client

    apps: Any = client.AppsV1Api(cluster.kube)
    for component in COMPONENTS:
        deployment = apps.read_namespaced_deployment(f"emulsion-{component}", cluster.namespace)
        conditions = {c.type: c.status for c in deployment.status.conditions or ()}
        assert conditions.get("Available") == "True", (component, conditions)
        assert deployment.status.ready_replicas == deployment.spec.replicas, component
        for pod in pods(cluster, component):
            (container,) = pod.spec.containers
            assert container.readiness_probe is not None, component
            assert container.liveness_probe is not None, component
            (status,) = pod.status.container_statuses
            # Ready means the readiness probe passes; no restart means liveness does.
            assert status.ready, (component, pod.metadata.name)
            assert status.restart_count == 0, (component, pod.metadata.name)


def test_pods_run_as_non_root_on_a_read_only_root_filesystem(cluster: Cluster) -> None:
    probe = (
        "import os, sys\n"
        "try:\n"
        "    open('/written-by-the-test', 'w')\n"
        "except OSError as error:\n"
        "    print(os.getuid(), os.getgid(), error.errno)\n"
        "else:\n"
        "    print(os.getuid(), os.getgid(), 0)\n"
    )
    for component in COMPONENTS:
        pod = pods(cluster, component)[0]
        (container,) = pod.spec.containers
        assert container.security_context.read_only_root_filesystem is True, component
        result = cluster.kubectl(
            "-n", cluster.namespace, "exec", pod.metadata.name, "--", "python", "-c", probe
        )
        uid, gid, errno = (int(field) for field in result.stdout.split())
        assert uid != 0 and gid != 0, (component, uid, gid)
        assert errno == 30, f"{component}: the root filesystem is writable (errno {errno})"


@pytest.mark.parametrize(
    ("component", "verb", "resource", "allowed"),
    [
        ("api", "create", "ingestjobs.emulsion.dev", True),
        ("api", "get", "ingestjobs.emulsion.dev", True),
        ("api", "get", "secrets", False),
        ("api", "create", "pods", False),
        ("api", "patch", "ingestjobs.emulsion.dev", True),  # a cancel is an annotation
        ("api", "patch", "ingestjobs.emulsion.dev/status", False),
        ("controller", "patch", "ingestjobs.emulsion.dev/status", True),
        ("controller", "list", "ingestjobs.emulsion.dev", True),
        ("controller", "get", "secrets", False),
        ("controller", "create", "deployments.apps", False),
        ("processor", "list", "ingestjobs.emulsion.dev", False),
        ("janitor", "get", "secrets", False),
    ],
)
def test_service_accounts_may_do_their_work_and_nothing_more(
    cluster: Cluster, component: str, verb: str, resource: str, allowed: bool
) -> None:
    account = f"system:serviceaccount:{cluster.namespace}:emulsion-{component}"
    subresource = []
    if "/" in resource:
        resource, sub = resource.split("/")
        subresource = ["--subresource", sub]
    result = cluster.kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        *subresource,
        "--as",
        account,
        "-n",
        cluster.namespace,
        check=False,
    )
    assert result.stdout.strip() == ("yes" if allowed else "no"), (result.stdout, result.stderr)


def test_a_200_image_ingest_through_the_api_pod_succeeds(cluster: Cluster, tmp_path: Path) -> None:
    gallery = ensure_gallery(GalleryParams(count=200, seed=15, **SMALL))
    result = subprocess.run(
        ingest_command(gallery, "node-ingest"),
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **cluster.client_environment()},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["succeeded"] == 200, summary
    assert summary["failed"] == [], summary
    jobs = cluster.kubectl("-n", cluster.namespace, "get", "ij", "-o", "json").stdout
    phases = {
        item["metadata"]["name"]: item["status"]["phase"]
        for item in json.loads(jobs)["items"]
        if item["spec"].get("collection") == "node-ingest"
    }
    assert phases and set(phases.values()) == {"Succeeded"}, phases


def test_processor_scratch_is_a_generic_ephemeral_volume_that_dies_with_its_pod(
    cluster: Cluster,
) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(cluster.kube)
    # A Ready pod: KEDA may be scaling the processors down after the ingest above.
    pod = next(p for p in pods(cluster, "processor") if ready(p))
    claim_name = f"{pod.metadata.name}-scratch"
    claim = core.read_namespaced_persistent_volume_claim(claim_name, cluster.namespace)
    assert claim.status.phase == "Bound"
    (owner,) = claim.metadata.owner_references
    assert (owner.kind, owner.name) == ("Pod", pod.metadata.name)
    core.delete_namespaced_pod(pod.metadata.name, cluster.namespace)

    def claim_gone() -> bool:
        names = {
            c.metadata.name
            for c in core.list_namespaced_persistent_volume_claim(cluster.namespace).items
        }
        return claim_name not in names

    wait_for(f"the PVC {claim_name} to go with its pod", claim_gone, timeout=120)
    # The Deployment replaces the pod, with a claim of its own.
    wait_for(
        "a replacement processor pod, Ready",
        lambda: any(
            p.metadata.name != pod.metadata.name
            and all(s.ready for s in p.status.container_statuses or [])
            and p.status.container_statuses
            for p in pods(cluster, "processor")
        ),
        timeout=180,
    )
