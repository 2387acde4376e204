"""The processors autoscale on the real node: a 1,361-item backlog
scales them from minReplicas up through KEDA (its operator reads the `processors`
consumer's lag, its adapter serves it to the HPA as an external metric) and back down
once the queue drains, every item reaching exactly one outcome; and with KEDA off the
chart's CPU HPA gets real utilisation from metrics-server and acts on it.

The replica curve is recorded at each poll and printed (pytest -s shows it; on a
failure it is in the captured output and in `curve.txt` under the test's tmp dir)."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_devstack import release
from emulsion_devstack.processes import wait_for

from .conftest import Cluster
from .workload import (
    assert_committed_once,
    enable_versioning,
    finished_items,
    start_ingest,
    wait_succeeded,
    work_lag,
)

pytestmark = pytest.mark.timeout(900)

ITEMS = 1361
# Tiny images: the backlog's length, not the render, is what scales.
TINY = GalleryParams(count=ITEMS, seed=1503, min_megapixels=0.01, max_megapixels=0.02)
# Seconds of render work for one processor, so its CPU stays high across several of
# metrics-server's 15 s windows and the HPA's 15 s syncs.
BUSY = GalleryParams(count=48, seed=1504, min_megapixels=6.0, max_megapixels=9.0)
PROCESSOR = f"{release.RELEASE}-processor"
KEDA_HPA = f"keda-hpa-{PROCESSOR}"
# Short windows for these releases only: down 15 s after the last higher
# recommendation (one HPA sync), KEDA's scaler checked every 2 s.
STABILIZATION = 15
QUICK = {"scaleDownStabilizationSeconds": STABILIZATION}
KEDA_RELEASE = {
    "keda": {"enabled": True, "pollingInterval": 2},
    "components": {"processor": {"autoscaling": QUICK}},
}
CPU_TARGET = 50
CPU_RELEASE = {
    "keda": {"enabled": False},
    "components": {
        "processor": {"autoscaling": {**QUICK, "targetCPUUtilizationPercentage": CPU_TARGET}}
    },
}


@dataclass
class Sample:
    at: float
    replicas: int
    ready: int
    desired: int | None
    metric: str
    lag: int
    finished: int | None


class Curve:
    """The processors' replicas over time: a thread reads them once a second while the
    test runs its ingest and its waits (which look only at the latest reading)."""

    def __init__(self, read: Callable[[], Sample]) -> None:
        self.read = read
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()

    @contextlib.contextmanager
    def recording(self) -> Iterator[Curve]:
        thread = threading.Thread(target=self._record, name="curve", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)

    def _record(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.read())
            except Exception as error:  # a reading missed is a gap in the curve
                self.errors.append(repr(error))
            self._stop.wait(1.0)  # the sampling period

    def holds(self, condition: Callable[[Sample], bool]) -> bool:
        return bool(self.samples) and condition(self.samples[-1])

    def table(self) -> str:
        """One line per change of replicas, ready pods or desired count, and one every
        10 s in between (the lag draining)."""
        if not self.samples:
            return "(no reading)"
        start = self.samples[0].at
        lines = ["     t  replicas  ready  desired  lag   finished  metric"]
        shown: tuple[int, int, int | None] | None = None
        last_at = -math.inf
        for sample in self.samples:
            state = (sample.replicas, sample.ready, sample.desired)
            if state != shown or sample.at - last_at >= 10 or sample is self.samples[-1]:
                lines.append(
                    f"{sample.at - start:6.1f}s {sample.replicas:8} {sample.ready:6} "
                    f"{'-' if sample.desired is None else sample.desired:>8} {sample.lag:5} "
                    f"{'-' if sample.finished is None else sample.finished:>9}  {sample.metric}"
                )
                shown, last_at = state, sample.at
        return "\n".join(lines)


def hpa(cluster: Cluster, name: str) -> Any:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        return client.AutoscalingV2Api(cluster.kube).read_namespaced_horizontal_pod_autoscaler(
            name, cluster.namespace
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def current_metric(autoscaler: Any) -> str:
    """What the HPA last read: the lag (External) or the CPU utilisation (Resource)."""
    from kubernetes.utils import parse_quantity

    for metric in (autoscaler.status.current_metrics if autoscaler else None) or ():
        if metric.type == "External" and metric.external:
            per_pod = parse_quantity(metric.external.current.average_value)
            return f"lag {per_pod:.0f} per pod"
        if metric.type == "Resource" and metric.resource:
            return f"cpu {metric.resource.current.average_utilization}%"
    return "<unknown>"


def reader(cluster: Cluster, hpa_name: str, jobs: list[str]) -> Callable[[], Sample]:
    from kubernetes import client

    apps: Any = client.AppsV1Api(cluster.kube)

    def read() -> Sample:
        deployment = apps.read_namespaced_deployment(PROCESSOR, cluster.namespace)
        autoscaler = hpa(cluster, hpa_name)
        return Sample(
            at=time.monotonic(),
            replicas=int(deployment.spec.replicas or 0),
            ready=int(deployment.status.ready_replicas or 0),
            desired=autoscaler.status.desired_replicas if autoscaler else None,
            metric=current_metric(autoscaler),
            lag=work_lag(cluster),
            # The CLI names the jobs when its upload ends; the lag tells the story before.
            finished=finished_items(cluster, jobs) if jobs else None,
        )

    return read


def node_allocatable(cluster: Cluster) -> tuple[int, int]:
    """(millicores, MiB) the node offers its pods."""
    from kubernetes import client
    from kubernetes.utils import parse_quantity

    core: Any = client.CoreV1Api(cluster.kube)
    (node,) = core.list_node().items
    allocatable = node.status.allocatable
    return (
        int(parse_quantity(allocatable["cpu"]) * 1000),
        int(parse_quantity(allocatable["memory"]) / 2**20),
    )


def requested(cluster: Cluster, replicas: dict[str, int]) -> tuple[int, int]:
    """(millicores, MiB) the release's Deployments request at the given replicas."""
    from kubernetes import client
    from kubernetes.utils import parse_quantity

    apps: Any = client.AppsV1Api(cluster.kube)
    cpu = memory = 0.0
    for deployment in apps.list_namespaced_deployment(cluster.namespace).items:
        count = replicas.get(deployment.metadata.name, deployment.spec.replicas or 0)
        for container in deployment.spec.template.spec.containers:
            requests = container.resources.requests or {}
            cpu += count * float(parse_quantity(requests.get("cpu", "0")))
            memory += count * float(parse_quantity(requests.get("memory", "0")))
    return int(cpu * 1000), int(memory / 2**20)


def upgraded_to(cluster: Cluster, overrides: Any) -> Iterator[None]:
    """The release with `overrides` for one test, then back to the suite's own."""
    release.install(cluster.stack, overrides=overrides, say=lambda line: None)
    try:
        yield
    finally:
        release.install(cluster.stack, say=lambda line: None)


@pytest.fixture
def keda_release(cluster: Cluster) -> Iterator[None]:
    yield from upgraded_to(cluster, KEDA_RELEASE)


@pytest.fixture
def cpu_release(cluster: Cluster) -> Iterator[None]:
    yield from upgraded_to(cluster, CPU_RELEASE)


def show(curve: Curve, tmp_path: Path, title: str) -> None:
    gaps = (
        f"\n{len(curve.errors)} readings failed, the last: {curve.errors[-1]}"
        if curve.errors
        else ""
    )
    text = f"{title}\n{curve.table()}{gaps}\n"
    (tmp_path / "curve.txt").write_text(text)
    print(f"\n{text}")


def test_a_1361_item_backlog_scales_the_processors_up_with_keda_and_back_down(
    cluster: Cluster, keda_release: None, tmp_path: Path
) -> None:
    from kubernetes import client

    custom: Any = client.CustomObjectsApi(cluster.kube)
    scaled = custom.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", cluster.namespace, "scaledobjects", PROCESSOR
    )
    low = int(scaled["spec"]["minReplicaCount"])
    high = int(scaled["spec"]["maxReplicaCount"])
    assert high == release.MAX_PROCESSORS > low
    # The ceiling fits the node: every pod at once, the processors at their most.
    cpu, memory = node_allocatable(cluster)
    wanted_cpu, wanted_memory = requested(cluster, {PROCESSOR: high})
    assert wanted_cpu <= cpu and wanted_memory <= memory, (wanted_cpu, cpu, wanted_memory, memory)

    def keda_ready() -> bool:
        current = custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", cluster.namespace, "scaledobjects", PROCESSOR
        )
        status = current.get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        made = hpa(cluster, KEDA_HPA)
        return conditions.get("Ready") == "True" and made is not None

    wait_for("KEDA's ScaledObject Ready with its HPA", keda_ready, timeout=120)
    (metric,) = hpa(cluster, KEDA_HPA).spec.metrics
    assert metric.type == "External", metric
    with Curve(reader(cluster, KEDA_HPA, [])).recording() as idle:
        wait_for(
            f"the processors idle at {low}",
            lambda: idle.holds(lambda s: s.replicas == s.ready == low and s.lag == 0),
            timeout=180,
        )

    enable_versioning(cluster)
    gallery = ensure_gallery(TINY)
    jobs: list[str] = []
    curve = Curve(reader(cluster, KEDA_HPA, jobs))
    started = time.monotonic()
    try:
        with curve.recording():
            # The CLI's upload and the processing overlap: record from before it.
            jobs += start_ingest(cluster, gallery, "node-autoscale")
            wait_for(
                f"all {ITEMS} items finished",
                lambda: curve.holds(lambda s: s.finished == ITEMS),
                timeout=420,
            )
            wait_for(
                f"the processors back at {low}",
                lambda: curve.holds(lambda s: s.replicas == s.ready == low),
                timeout=STABILIZATION + 120,
            )
    finally:
        show(curve, tmp_path, f"KEDA: {ITEMS} items, processors {low}..{high}")
    print(f"uploaded, scaled, drained and back at {low} in {time.monotonic() - started:.0f}s")
    assert curve.samples[0].replicas == low
    peak = max(sample.replicas for sample in curve.samples)
    assert low < peak <= high, peak
    # The lag drove it: KEDA's HPA read a backlog, then none.
    assert any(sample.metric.startswith("lag ") for sample in curve.samples)
    assert curve.samples[-1].lag == 0
    wait_succeeded(cluster, jobs, timeout=60)
    assert_committed_once(cluster, "node-autoscale", assets=ITEMS)


def test_without_keda_a_cpu_hpa_reads_metrics_server_and_scales_on_render_load(
    cluster: Cluster, cpu_release: None, tmp_path: Path
) -> None:
    autoscaler = wait_for("the chart's CPU HPA", lambda: hpa(cluster, PROCESSOR), timeout=60)
    (metric,) = autoscaler.spec.metrics
    assert (metric.type, metric.resource.name) == ("Resource", "cpu"), metric
    low, high = autoscaler.spec.min_replicas, autoscaler.spec.max_replicas
    # KEDA's HPA went with its ScaledObject: one autoscaler per Deployment.
    wait_for("KEDA's HPA gone", lambda: hpa(cluster, KEDA_HPA) is None, timeout=120)
    # metrics-server's reading of the idle pods, through metrics.k8s.io: not <unknown>.
    with Curve(reader(cluster, PROCESSOR, [])).recording() as idle:
        wait_for(
            "a CPU utilisation on the HPA",
            lambda: idle.holds(lambda s: s.metric.startswith("cpu ") and s.replicas == low),
            timeout=120,
        )
    print(f"idle: {idle.samples[-1].metric}")

    gallery = ensure_gallery(BUSY)
    jobs: list[str] = []
    curve = Curve(reader(cluster, PROCESSOR, jobs))
    try:
        with curve.recording():
            jobs += start_ingest(cluster, gallery, "node-cpu-hpa")
            wait_for(
                f"the CPU HPA to scale the processors above {low}",
                lambda: curve.holds(lambda s: s.replicas > low),
                timeout=300,
            )
            wait_succeeded(cluster, jobs, timeout=420)
            wait_for(
                f"the processors back at {low} once idle",
                lambda: curve.holds(lambda s: s.replicas == s.ready == low),
                timeout=STABILIZATION + 180,
            )
    finally:
        show(curve, tmp_path, f"CPU HPA: {BUSY.count} busy items, processors {low}..{high}")
    readings = [s.metric for s in curve.samples if s.metric.startswith("cpu ")]
    busiest = max((int(reading.split()[1].rstrip("%")) for reading in readings), default=0)
    assert busiest > CPU_TARGET, busiest
    assert low < max(sample.replicas for sample in curve.samples) <= high
