"""`helm upgrade` to a rebuilt image while an ingest runs: every pod
rolls, the rollout never takes a Deployment below what its PodDisruptionBudget allows,
no item is lost or done twice, and there is never more than one active controller."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_devstack import release
from emulsion_devstack.node import Node

from .conftest import Cluster
from .workload import (
    assert_committed_once,
    assert_derivatives_written_once,
    deliveries,
    enable_versioning,
    finished_items,
    pods,
    ready,
    redeliveries,
    start_ingest,
    wait_succeeded,
)

pytestmark = pytest.mark.timeout(1200)

COMPONENTS = ("api", "controller", "processor", "janitor")
# Served throughout by a RollingUpdate with maxUnavailable 0.
ALWAYS_SERVING = ("api", "processor")
ITEMS = 40


def upgrade_values(tag: str) -> dict[str, Any]:
    """The rebuilt images; the processors at a fixed 2 replicas, so the CPU HPA's own
    scaling (pods not yet Ready count as unhealthy) does not blur the budgets' reading."""
    fixed = {"autoscaling": {"enabled": False}, "replicas": 2}
    return {"image": {"tag": tag}, "components": {"processor": fixed}}


def retag_images(cluster: Cluster, suffix: str) -> str:
    """The same images under a new tag: to the kubelet a new image, so every pod rolls."""
    registry, tag = (cluster.stack.state_dir / "images").read_text().split()
    node = Node(cluster.stack).running()
    assert node is not None
    ctr = ["ctr", "--address", node.containerd_socket, "--namespace", "k8s.io"]
    new_tag = f"{tag}-{suffix}"
    for component in COMPONENTS:
        source = f"{registry}/emulsion-{component}:{tag}"
        subprocess.run(
            [
                *ctr,
                "images",
                "tag",
                "--force",
                source,
                f"{registry}/emulsion-{component}:{new_tag}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    return new_tag


def live_peers(status: dict[str, Any], now: datetime) -> list[str]:
    """Peers of the controllers' ClusterKopfPeering whose record has not expired."""
    live = []
    for peer, info in status.items():
        if not isinstance(info, dict):
            continue
        lastseen = info.get("lastseen")
        seen = datetime.fromisoformat(str(lastseen)) if lastseen else now
        seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
        if seen + timedelta(seconds=int(info.get("lifetime", 60))) > now:
            live.append(peer)
    return live


@dataclass
class RolloutWatch:
    """Polls the namespace while the upgrade runs and keeps every breach it sees."""

    cluster: Cluster
    peering: str
    breaches: list[str] = field(default_factory=list)
    most_controllers: int = 0
    most_live_peers: int = 0
    peers_seen: set[str] = field(default_factory=set)
    observations: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.observe()
            self.stop.wait(0.2)  # the polling period, not a wait for an outcome

    def observe(self) -> None:
        from kubernetes import client

        self.observations += 1
        for component in ALWAYS_SERVING:
            if not any(ready(pod) for pod in pods(self.cluster, component)):
                self.breaches.append(f"no Ready {component} pod")
        policy: Any = client.PolicyV1Api(self.cluster.kube)
        for budget in policy.list_namespaced_pod_disruption_budget(self.cluster.namespace).items:
            status = budget.status
            if status and (status.current_healthy or 0) < (status.desired_healthy or 0):
                self.breaches.append(
                    f"{budget.metadata.name}: {status.current_healthy} healthy "
                    f"< {status.desired_healthy} desired"
                )
        running = [
            pod.metadata.name
            for pod in pods(self.cluster, "controller")
            if any(s.state and s.state.running for s in pod.status.container_statuses or ())
        ]
        self.most_controllers = max(self.most_controllers, len(running))
        if len(running) > 1:
            self.breaches.append(f"two controllers running: {running}")
        custom: Any = client.CustomObjectsApi(self.cluster.kube)
        body = custom.get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", self.peering
        )
        peers = live_peers(body.get("status") or {}, datetime.now(UTC))
        self.peers_seen.update(peers)
        self.most_live_peers = max(self.most_live_peers, len(peers))
        if len(peers) > 1:
            self.breaches.append(f"two live controller peers: {peers}")


def live_pods(cluster: Cluster, component: str) -> list[Any]:
    """Pods that run or are about to: not ended (Succeeded/Failed), not being deleted."""
    return [
        pod
        for pod in pods(cluster, component)
        if pod.status.phase in ("Pending", "Running") and pod.metadata.deletion_timestamp is None
    ]


def controller_peering(cluster: Cluster) -> str:
    (pod,) = pods(cluster, "controller")
    (container,) = pod.spec.containers
    environment = {variable.name: variable.value for variable in container.env or ()}
    return str(environment["EMULSION_CONTROLLER_PEERING"])


def test_helm_upgrade_during_an_ingest_loses_nothing_and_keeps_one_controller(
    cluster: Cluster, tmp_path: Path
) -> None:
    enable_versioning(cluster)
    gallery = ensure_gallery(
        GalleryParams(count=ITEMS, seed=1504, min_megapixels=4, max_megapixels=8)
    )
    old_pods = {
        component: {p.metadata.name for p in live_pods(cluster, component)}
        for component in COMPONENTS
    }
    watch = RolloutWatch(cluster, controller_peering(cluster))
    delivered_before = deliveries(cluster)
    jobs = start_ingest(cluster, gallery, "node-upgrade")
    new_tag = retag_images(cluster, "rebuilt")
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    finished_at_upgrade = finished_items(cluster, jobs)
    try:
        release.install(cluster.stack, overrides=upgrade_values(new_tag), say=lambda line: None)
        finished_after_rollout = finished_items(cluster, jobs)
    finally:
        watch.stop.set()
        thread.join(timeout=30)
    wait_succeeded(cluster, jobs, timeout=300)

    assert finished_at_upgrade < ITEMS, "the ingest ended before the upgrade began"
    for component in COMPONENTS:
        current = live_pods(cluster, component)
        assert current and not {p.metadata.name for p in current} & old_pods[component], component
        for pod in current:
            (container,) = pod.spec.containers
            assert container.image.endswith(f":{new_tag}"), (component, container.image)
    assert watch.observations > 10, watch.observations
    assert not watch.breaches, watch.breaches[:20]
    assert watch.most_controllers == 1, watch.most_controllers
    assert watch.peers_seen, "the controllers' peering never named a live controller"
    assert_committed_once(cluster, "node-upgrade", assets=ITEMS)
    assert_derivatives_written_once(cluster, "node-upgrade")
    assert redeliveries(delivered_before, deliveries(cluster)) == 0
    print(
        f"finished items: {finished_at_upgrade} at the upgrade, {finished_after_rollout} after"
        f" the rollout; controllers seen {sorted(watch.peers_seen)};"
        f" {watch.observations} observations"
    )
