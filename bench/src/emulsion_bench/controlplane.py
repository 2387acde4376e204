"""`make bench-controlplane`: what IngestJobs cost the Kubernetes control plane.

On a stack of its own (etcd, kube-apiserver, NATS, MinIO and the four services), makes
jobs of 20, 200 and 2,000 items through `POST /v1/ingests`, one after another, each from
tiny staged uploads: once with real JPEGs (every item succeeds) and once with bytes that
are no image (every item fails, which grows today's status). Each runs to its outcome.
From etcd's and the apiserver's own /metrics before and after each job it reports the
bytes etcd stored (puts, WAL), the apiserver's writes to the IngestJob by verb, the
Events, and the IngestJob's stored size at the end, read from etcd itself.

Then, with the services stopped, it fills the namespace up to `--finished-jobs` finished
IngestJobs, each a copy of the finished 20-item job this run made (spec, labels,
annotations, finalizers and status as the system wrote them; only the name differs), and
times `kubectl get ij -A`. Copies are written directly (a create and a status update
each) because 5,000 jobs through the services would take most of an hour here and the
list's cost depends on the objects, not on how they came to be.

Writes bench/results/<date>-controlplane[-<label>].json and .md.

    uv run python -m emulsion_bench.controlplane [--items 20,200,2000] [--label before]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
from kubernetes import client, config

from emulsion_bench import controlplane_figures, machine, notify
from emulsion_bench.controlplane_figures import Background, case_figures, latency_figures
from emulsion_bench.promtext import Snapshot
from emulsion_contracts import crd
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.processes import stop_all
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import Endpoints, LocalStack, s3_client

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
NAMESPACE = "default"  # where the API creates its jobs (EMULSION_NAMESPACE's default)
NOT_AN_IMAGE = b"these bytes are no image; the processor fails the item for good\n"
# After a job has finished, its writes have stopped once the apiserver has seen none to
# IngestJobs or Events for this long (the controller's last patch and Event follow the
# phase change by a moment).
QUIET_SECONDS = 3.0
POLL_SECONDS = 0.5
IDLE_PUTS = 6
IDLE_WITHIN = 90.0


def say(line: str) -> None:
    print(line, flush=True)


class ControlPlane:
    """Reads etcd's and the apiserver's /metrics, and etcd's stored values."""

    def __init__(self, endpoints: Endpoints) -> None:
        pki = Path(endpoints.data_dir) / "pki"
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.endpoints = endpoints

    def _get(self, url: str, context: ssl.SSLContext | None = None) -> str:
        with urllib.request.urlopen(url, timeout=30, context=context) as response:  # noqa: S310
            return str(response.read().decode())

    def etcd(self) -> Snapshot:
        return Snapshot.parse(self._get(f"{self.endpoints.etcd_url}/metrics"))

    def apiserver(self) -> Snapshot:
        return Snapshot.parse(self._get(f"{self.endpoints.apiserver_url}/metrics", self.context))

    def both(self) -> tuple[Snapshot, Snapshot, float]:
        return self.etcd(), self.apiserver(), time.monotonic()

    def stored(self, prefix: str) -> list[int]:
        """The sizes of the values etcd holds under `prefix` (its v3 JSON gateway)."""
        start = prefix.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        body = {
            "key": base64.b64encode(start).decode(),
            "range_end": base64.b64encode(end).decode(),
        }
        request = urllib.request.Request(  # noqa: S310 - the stack's own etcd URL
            f"{self.endpoints.etcd_url}/v3/kv/range",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            answer = json.loads(response.read())
        return [len(base64.b64decode(kv.get("value", ""))) for kv in answer.get("kvs", [])]


def ingestjob_key(namespace: str, name: str = "") -> str:
    return f"/registry/{crd.GROUP}/{crd.PLURAL}/{namespace}/{name}"


def read_job(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    job = custom.get_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name)
    return cast(dict[str, Any], job)


def wait(what: str, check: Callable[[], bool], within: float) -> None:
    """Poll `check` until it holds; past `within` seconds, fail the bench with `what`."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {within:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)  # a poll interval; the deadline above bounds the wait


def control_plane_writes(plane: ControlPlane) -> float:
    """IngestJob and Event writes the apiserver has answered so far."""
    snapshot = plane.apiserver()
    return sum(
        snapshot.total("apiserver_request_total", verb=verb, resource=resource)
        for verb in ("POST", "PUT", "PATCH", "DELETE")
        for resource in (crd.PLURAL, "events")
    )


class Quiet:
    """True once no IngestJob or Event write has happened for QUIET_SECONDS."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.count = control_plane_writes(plane)
        self.since = time.monotonic()

    def __call__(self) -> bool:
        count = control_plane_writes(self.plane)
        if count != self.count:
            self.count, self.since = count, time.monotonic()
        return time.monotonic() - self.since >= QUIET_SECONDS


def run_case(
    plane: ControlPlane,
    api: httpx.Client,
    custom: client.CustomObjectsApi,
    uploads: list[str],
    outcome: str,
    background: Background,
    within: float,
) -> dict[str, Any]:
    items = len(uploads)
    body = {
        "collection": case_collection(items, outcome),
        "items": [
            {"upload_key": key, "asset": f"img-{i:05d}.jpg"} for i, key in enumerate(uploads)
        ],
    }
    load = machine.load_average()
    etcd_before, apiserver_before, began = plane.both()
    response = api.post("/v1/ingests", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"POST /v1/ingests: {response.status_code} {response.text[:500]}")
    jobs: list[str] = response.json()["jobs"]

    def phases() -> list[dict[str, Any]]:
        return [read_job(custom, name).get("status") or {} for name in jobs]

    def finished() -> bool:
        return all(
            status.get("phase") and crd.Phase.parse(status["phase"]).finished for status in phases()
        )

    wait(f"{items}-item job(s) {', '.join(jobs)} to finish", finished, within)
    finished_at = time.monotonic()
    wait("the job's last writes", Quiet(plane), 120)
    etcd_after, apiserver_after, ended = plane.both()
    figures = case_figures(
        items=items,
        outcome=outcome,
        jobs=len(jobs),
        # The writes of the case, for the background correction: until the last one.
        seconds=ended - began,
        etcd=etcd_after - etcd_before,
        apiserver=apiserver_after - apiserver_before,
        background=background,
        resource=crd.PLURAL,
        group=crd.GROUP,
    )
    figures["seconds"] = round(finished_at - began, 2)
    figures["measured_seconds"] = round(ended - began, 2)
    figures["load_average_at_start"] = load
    figures["job_names"] = jobs
    figures["phases"] = [status.get("phase") for status in phases()]
    figures["stored_bytes"] = sum(
        size for name in jobs for size in plane.stored(ingestjob_key(NAMESPACE, name))
    )
    return figures


def clone_finished(
    custom: client.CustomObjectsApi, template: dict[str, Any], count: int, threads: int
) -> float:
    """`count` copies of a finished job (a create and a status update each); seconds taken."""
    metadata = template["metadata"]
    kept = {k: metadata[k] for k in ("labels", "annotations", "finalizers") if k in metadata}

    def one(number: int) -> None:
        body = {
            "apiVersion": template["apiVersion"],
            "kind": template["kind"],
            "metadata": {**kept, "name": f"finished-{number:05d}", "namespace": NAMESPACE},
            "spec": template["spec"],
        }
        created = cast(
            dict[str, Any],
            custom.create_namespaced_custom_object(
                crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, body
            ),
        )
        created["status"] = template["status"]
        custom.replace_namespaced_custom_object_status(
            crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, created["metadata"]["name"], created
        )

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - began


def time_listing(kubeconfig: str, runs: int) -> tuple[list[float], int]:
    """Wall seconds of `kubectl get ij -A` (after one warm-up run), and the rows it printed."""
    kubectl = str(ensure_binary("kubectl"))
    environment = {**os.environ, "KUBECONFIG": kubeconfig}
    command = [kubectl, "get", crd.PLURAL, "-A", "--no-headers"]
    seconds: list[float] = []
    rows = 0
    for run in range(runs + 1):
        began = time.perf_counter()
        done = subprocess.run(command, env=environment, capture_output=True, check=True)
        elapsed = time.perf_counter() - began
        rows = done.stdout.count(b"\n")
        if run:
            seconds.append(elapsed)
    return seconds, rows


def case_collection(items: int, outcome: str) -> str:
    """The collection of one case: its uploads are presigned for it, its job ingests them."""
    return f"cp-{items}-{outcome}"


def measure(args: argparse.Namespace, local: LocalStack, endpoints: Endpoints) -> dict[str, Any]:
    plane = ControlPlane(endpoints)
    api_client = config.new_client_from_config(config_file=endpoints.kubeconfig)
    custom = client.CustomObjectsApi(api_client)
    api_url = LocalStack.service_url(local.record("api"))
    s3 = s3_client(endpoints)

    sizes = [int(n) for n in args.items.split(",")]
    plan = [(n, outcome) for outcome in ("succeeded", "failed") for n in sizes]
    # Staging the uploads is the idle stack's background window: only MinIO works.
    etcd_idle, _, idle_began = plane.both()
    say(f"staging {sum(n for n, _ in plan):,} tiny uploads ...")
    jpeg = notify.tiny_jpeg()

    def stage(case: tuple[int, str]) -> list[str]:
        n, outcome = case
        collection = case_collection(n, outcome)
        if outcome == "succeeded":
            return notify.stage_uploads(s3, endpoints.bucket, n, collection, jpeg, "tiny.jpg")
        return notify.stage_uploads(
            s3, endpoints.bucket, n, collection, NOT_AN_IMAGE, "notimage.jpg"
        )

    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        staged = list(pool.map(stage, plan))
    # A rate needs a few of the idle writes (leases renew every 10 s or so): the window
    # lasts until etcd has taken IDLE_PUTS puts, or IDLE_WITHIN seconds at most.
    idle_puts = etcd_idle.total(controlplane_figures.PUTS) + IDLE_PUTS
    with contextlib.suppress(TimeoutError):
        wait(
            f"{IDLE_PUTS} puts on the idle stack",
            lambda: plane.etcd().total(controlplane_figures.PUTS) >= idle_puts,
            IDLE_WITHIN,
        )
    etcd_idle_end, _, idle_ended = plane.both()
    background = Background.between(etcd_idle_end - etcd_idle, idle_ended - idle_began)
    say(
        f"idle stack: {background.rate(background.put_bytes):.0f} B/s of etcd puts over "
        f"{background.seconds:.0f} s"
    )

    cases = []
    headers = {"Authorization": f"Bearer {endpoints.api_token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=120.0) as api:
        for (n, outcome), uploads in zip(plan, staged, strict=True):
            say(f"job of {n:,} items, all {outcome} ...")
            case = run_case(plane, api, custom, uploads, outcome, background, args.timeout)
            cases.append(case)
            etcd = case["etcd"]
            say(
                f"  {case['seconds']:.1f} s, phase {case['phases']}, etcd puts "
                f"{etcd['put_bytes_net']:,} B net ({etcd['put_bytes_per_item']:,} B/item), "
                f"IngestJob writes {case['apiserver']['ingestjob_writes']}, "
                f"stored {case['stored_bytes']:,} B"
            )

    listing = None
    if args.finished_jobs:
        listing = measure_listing(args, local, endpoints, plane, custom, cases)
    return {
        "cases": cases,
        "background": background.as_dict(),
        "list": listing,
    }


def measure_listing(
    args: argparse.Namespace,
    local: LocalStack,
    endpoints: Endpoints,
    plane: ControlPlane,
    custom: client.CustomObjectsApi,
    cases: list[dict[str, Any]],
) -> dict[str, Any]:
    # The services go first: a copy of a finished job must stay as it is written (the
    # controller would otherwise take each as new work).
    stop_all([local.record(name) for name in SERVICES])
    template_case = next(
        c for c in cases if c["items"] == args.list_template and c["outcome"] == "succeeded"
    )
    [template_name] = template_case["job_names"][:1]
    template = read_job(custom, template_name)
    present = len(plane.stored(ingestjob_key(NAMESPACE)))
    missing = max(0, args.finished_jobs - present)
    say(f"writing {missing:,} copies of the finished {args.list_template}-item job ...")
    seconds = clone_finished(custom, template, missing, args.threads)
    sizes = plane.stored(ingestjob_key(NAMESPACE))
    say(f"  {missing:,} in {seconds:.0f} s; timing kubectl get ij -A x {args.list_runs} ...")
    runs, rows = time_listing(endpoints.kubeconfig, args.list_runs)
    figures = latency_figures(runs)
    figures.update(
        {
            "jobs_present": len(sizes),
            "rows_printed": rows,
            "how": (
                f"copies of this run's finished {args.list_template}-item job, "
                f"{template_case['stored_bytes']:,} B each, written directly"
            ),
            "copy_seconds": round(seconds, 1),
            "ingestjob_bytes": sum(sizes),
            "etcd_db_bytes": round(plane.etcd().total(controlplane_figures.DB_SIZE)),
        }
    )
    say(f"  p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, {rows} rows")
    return figures


def write(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = f"-{results['label']}" if results["label"] else ""
    stem = f"{results['date'][:10]}-controlplane{suffix}"
    paths = [directory / f"{stem}.json", directory / f"{stem}.md"]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(controlplane_figures.markdown(results))
    return paths


def command(arguments: list[str]) -> str:
    """How to run this bench again with the same arguments."""
    if not arguments:
        return "make bench-controlplane"
    return f"make bench-controlplane BENCH_CONTROLPLANE_ARGS={shlex.quote(' '.join(arguments))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", default="20,200,2000", help="items per job, comma-separated")
    parser.add_argument(
        "--finished-jobs", type=int, default=5000, help="finished jobs present for the listing"
    )
    parser.add_argument("--list-runs", type=int, default=20, help="timed kubectl get runs")
    parser.add_argument(
        "--list-template", type=int, default=20, help="items of the job the listing copies"
    )
    parser.add_argument("--threads", type=int, default=8, help="concurrent copy writes")
    parser.add_argument("--timeout", type=float, default=1200, help="most seconds a job may take")
    parser.add_argument("--label", default="", help="names the results, e.g. before")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where results go")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render", type=Path, help="only write the Markdown of a results JSON again"
    )
    args = parser.parse_args()
    if args.render:
        rendered = args.render.with_suffix(".md")
        rendered.write_text(controlplane_figures.markdown(json.loads(args.render.read_text())))
        say(f"wrote {rendered}")
        return
    if args.finished_jobs and args.list_template not in {int(n) for n in args.items.split(",")}:
        parser.error("--list-template must be one of --items")

    began = time.monotonic()
    load = machine.load_average()
    with tempfile.TemporaryDirectory(prefix="bench-controlplane-") as state:
        local = LocalStack(Path(state), services=tuple(SERVICES), say=lambda line: None)
        say("starting a stack of its own ...")
        endpoints = local.up()
        try:
            measured = measure(args, local, endpoints)
        finally:
            local.down()
    info = machine.describe()
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "command": command(sys.argv[1:]),
        "machine": info,
        "machine_headline": machine.headline(info),
        "load_average_at_start": load,
        "wall_seconds": round(time.monotonic() - began, 1),
        **measured,
    }
    print()
    print(controlplane_figures.markdown(results))
    if not args.no_write:
        for path in write(results, args.results):
            say(f"wrote {path}")


if __name__ == "__main__":
    main()
