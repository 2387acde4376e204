"""What the fault and upgrade tests share: an ingest started through the API's pod, its
jobs followed on the apiserver (the API may be rolling), and the evidence that every
item had exactly one outcome and every object was written once (S3 object versions)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from emulsion_bench.cli import ingest_command
from emulsion_contracts import wire
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import s3_client

from .conftest import Cluster

GROUP, VERSION, PLURAL = "emulsion.dev", "v1alpha1", "ingestjobs"
FINISHED = {"Succeeded", "PartiallyFailed", "Failed"}


def pods(cluster: Cluster, component: str) -> list[Any]:
    from kubernetes import client

    core: Any = client.CoreV1Api(cluster.kube)
    selector = f"app.kubernetes.io/component={component}"
    return list(core.list_namespaced_pod(cluster.namespace, label_selector=selector).items)


def ready(pod: Any) -> bool:
    statuses = pod.status.container_statuses or []
    return (
        pod.metadata.deletion_timestamp is None
        and bool(statuses)
        and all(status.ready for status in statuses)
    )


def ready_pods(cluster: Cluster, component: str) -> list[Any]:
    return [pod for pod in pods(cluster, component) if ready(pod)]


def start_ingest(cluster: Cluster, directory: Path, collection: str) -> list[str]:
    """Upload and create the jobs through the API's pod; return without waiting."""
    result = subprocess.run(
        ingest_command(directory, collection, "--no-wait"),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **cluster.client_environment()},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = list(json.loads(result.stdout)["jobs"])
    assert jobs, result.stdout
    return jobs


def job_statuses(cluster: Cluster, names: list[str]) -> dict[str, dict[str, Any]]:
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(cluster.kube)
    return {
        name: custom.get_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, PLURAL, name
        ).get("status")
        or {}
        for name in names
    }


def finished_items(cluster: Cluster, names: list[str]) -> int:
    return sum(
        int(status.get("succeeded", 0)) + int(status.get("failed", 0))
        for status in job_statuses(cluster, names).values()
    )


def wait_succeeded(cluster: Cluster, names: list[str], timeout: float) -> dict[str, Any]:
    """Wait for every job to finish, and require each item to have succeeded."""
    wait_for(
        f"the jobs {names} to finish",
        lambda: all(s.get("phase") in FINISHED for s in job_statuses(cluster, names).values()),
        timeout=timeout,
    )
    statuses = job_statuses(cluster, names)
    for name, status in statuses.items():
        assert status["phase"] == "Succeeded", (name, status)
        assert status["succeeded"] == status["total"] and status["failed"] == 0, (name, status)
    return statuses


def enable_versioning(cluster: Cluster) -> None:
    """Every PUT then keeps a version of its own, so a second write of a key shows."""
    s3 = s3_client(cluster.endpoints)
    s3.put_bucket_versioning(
        Bucket=cluster.endpoints.bucket, VersioningConfiguration={"Status": "Enabled"}
    )


def object_versions(cluster: Cluster, prefix: str) -> Counter[str]:
    s3 = s3_client(cluster.endpoints)
    counts: Counter[str] = Counter()
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=cluster.endpoints.bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            counts[version["Key"]] += 1
    return counts


def assert_committed_once(cluster: Cluster, collection: str, assets: int) -> None:
    """Each asset's manifest was written exactly once: no item was committed twice."""
    manifests = object_versions(cluster, f"assets/{collection}/")
    assert len(manifests) == assets, sorted(manifests)
    assert set(manifests.values()) == {1}, {k: n for k, n in manifests.items() if n != 1}


def assert_derivatives_written_once(cluster: Cluster, collection: str) -> int:
    derivatives = object_versions(cluster, f"derivatives/{collection}/")
    assert derivatives, f"no derivatives under derivatives/{collection}/"
    twice = {key: n for key, n in derivatives.items() if n != 1}
    assert not twice, f"derivatives written more than once: {twice}"
    return len(derivatives)


def work_consumers(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Both lanes' work durables' state (`processors`, `processors-interactive`), from the
    NATS monitoring endpoint, by name."""
    answer = httpx.get(
        f"{cluster.endpoints.nats_monitor_url}/jsz", params={"consumers": "true"}, timeout=5
    ).json()
    wanted = set(wire.WORK_CONSUMERS.values())
    found: dict[str, dict[str, Any]] = {}
    for account in answer.get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] != wire.WORK_STREAM:
                continue
            for consumer in stream.get("consumer_detail", []):
                if consumer["name"] in wanted:
                    found[consumer["name"]] = dict(consumer)
    missing = wanted - set(found)
    assert not missing, f"no {sorted(missing)} consumer on {wire.WORK_STREAM}"
    return found


def work_lag(cluster: Cluster) -> int:
    """Work waiting or in hand, in either lane."""
    return sum(
        int(c.get("num_pending", 0)) + int(c.get("num_ack_pending", 0))
        for c in work_consumers(cluster).values()
    )


def items_in_hand(cluster: Cluster) -> int:
    """Work messages delivered to a processor and not yet acknowledged, in either lane."""
    return sum(int(c.get("num_ack_pending", 0)) for c in work_consumers(cluster).values())


def deliveries(cluster: Cluster) -> tuple[int, int]:
    """(deliveries made by both lanes' durables, last stream sequence delivered): between
    two readings, once every message is delivered, the first grows by the second's growth
    plus one for each redelivery (each message of the stream goes to exactly one lane)."""
    consumers = work_consumers(cluster).values()
    made = sum(int(c["delivered"]["consumer_seq"]) for c in consumers)
    return made, max(int(c["delivered"]["stream_seq"]) for c in consumers)


def redeliveries(before: tuple[int, int], after: tuple[int, int]) -> int:
    return (after[0] - before[0]) - (after[1] - before[1])
