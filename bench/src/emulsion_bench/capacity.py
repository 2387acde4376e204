"""`make capacity`: the capacity model of docs/capacity.md, computed from the benches'
results files, never typed in by hand.

Every input is a `Cited` figure: its value, and where it came from — a results file and
the figure in it (*measured*), a line of code whose calls were counted (*counted*), a
chart or settings default (*default*), or a stated guess (*assumption*, *estimate*). The
model turns them into one row per daily volume (1, 10 and 100 million photos) for two
designs of the IngestJob: *before* (items in the spec, per-item outcomes in status;
measured by `make bench-controlplane --label before`) and *after* (the small IngestJob: items in
the JetStream object store EMULSION_INGESTS, outcomes and failures in the KV bucket
EMULSION_JOB_RECORDS, status compact). The after column reads
`bench/results/*-controlplane-after.json` as soon as the lead has run that bench; until
then it is an estimate, and the document says so.

    uv run python -m emulsion_bench.capacity            # print the table, rewrite the doc
    uv run python -m emulsion_bench.capacity --check    # exit 1 if docs/capacity.md is stale
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from emulsion_cli.ingest import PRESIGN_BATCH
from emulsion_janitor.store import MAX_BATCH

RESULTS: Final = Path(__file__).resolve().parents[2] / "results"
REPO_ROOT: Final = Path(__file__).resolve().parents[3]
DOC: Final = REPO_ROOT / "docs" / "capacity.md"
VALUES: Final = REPO_ROOT / "charts" / "emulsion" / "values.yaml"
BEGIN: Final = "<!-- capacity:begin (make capacity writes what follows; edit the module) -->"
END: Final = "<!-- capacity:end -->"

DAY: Final = 86_400.0
HOUR: Final = 3_600.0
VOLUMES: Final = (1_000_000, 10_000_000, 100_000_000)
DESIGNS: Final = ("before", "after")
Design = Literal["before", "after"]

Kind = Literal["measured", "counted", "default", "assumption", "estimate"]


@dataclass(frozen=True)
class Cited:
    """One input of the model and where it comes from."""

    value: float
    unit: str
    kind: Kind
    source: str

    def __float__(self) -> float:
        return float(self.value)

    def __int__(self) -> int:
        return int(self.value)


# S3 request classes as the table shows them (a POST upload and DeleteObjects are
# requests of their own, counted with the class whose limits and prices they share).
S3_CLASSES: Final = ("PUT", "COPY", "GET", "LIST", "DELETE", "HEAD")
# Amazon S3's documented per-prefix rate (Best practices design patterns: optimizing
# Amazon S3 performance): 3,500 PUT/COPY/POST/DELETE per second per partitioned prefix
# (and 5,500 GET/HEAD, which a photo's three reads never reach first).
S3_WRITE_PER_PREFIX: Final = 3_500.0
# Kubernetes' scale targets for custom resources (the CRD GA KEP's SLIs): objects of
# 10-25 KB, about 600 per namespace and 4,000 in the cluster.
K8S_OBJECTS_PER_NAMESPACE: Final = 600.0
K8S_OBJECTS_PER_CLUSTER: Final = 4_000.0
# etcd's default backend quota; past it etcd refuses every write (NOSPACE alarm).
ETCD_QUOTA_BYTES: Final = 2 * 1024**3
# kube-apiserver compacts etcd every 5 minutes (--etcd-compaction-interval): until then
# every revision written stays in the database.
COMPACTION_SECONDS: Final = 300.0
# The small IngestJob's bound (docs/architecture.md, "A small IngestJob"): the whole
# object at most 4 KB.
AFTER_OBJECT_BOUND_BYTES: Final = 4_096.0
# JetStream's object store chunk size (nats-py, nats.go): an object is its chunks plus
# one meta message.
OBJECT_CHUNK_BYTES: Final = 128 * 1024


# A new photo's requests by part, as the code makes them (a new asset, the default
# profile, nothing stripped, succeeding). The processor's and the janitor's are checked
# on the real stack (tests/services/{processor,janitor}/test_capacity_counts.py).
def processor_s3(styles: int) -> dict[str, int]:
    """The manifest read that decides (a 404 for a new asset) and the download; the claim,
    one PUT per style, the capture-order index entry and the manifest; the original's
    server-side copy."""
    return {"GET": 2, "PUT": 1 + styles + 1 + 1, "COPY": 1}


# The ItemResult and the promoted upload's GC request; the EMULSION_CANCELLED read before
# the commit; the work message's ack.
PROCESSOR_NATS: Final = {"publish": 2, "kv": 1, "ack": 1}
# The promoted upload's GC request: a stat of the upload, one DeleteObjects.
JANITOR_S3: Final = {"HEAD": 1, "DELETE": 1}
# Its lease check (KvLeases.held): the lease stream's subjects for the upload, a get of
# the job's released lease (a delete marker) and one of the legacy key.
JANITOR_NATS: Final = {"stream info": 1, "kv": 2}
# The sweep deletes in batches of this many keys, one DeleteObjects each.
SWEEP_BATCH: Final = MAX_BATCH
# The upload itself (a presigned POST is a PUT-class request).
CLIENT_S3: Final = {"PUT": 1}
# The work message; the upload's lease put and delete; the result's ack.
CONTROLLER_NATS: Final = {"publish": 1, "kv": 2, "ack": 1}


@dataclass(frozen=True)
class Assumptions:
    """What no bench measures; each stated in the document with its reason."""

    items_per_job: Cited = Cited(
        PRESIGN_BATCH,
        "items",
        "default",
        "clients/cli/src/emulsion_cli/ingest.py PRESIGN_BATCH (the CLI's batch:"
        " one POST /v1/ingests, one IngestJob, per batch)",
    )
    peak_to_mean: Cited = Cited(
        3.0,
        "x",
        "assumption",
        "a diurnal day: the busiest hour carries 3x the mean rate; size for the peak",
    )
    failed_fraction: Cited = Cited(
        0.01, "of items", "assumption", "1 % of items fail (each one FailureDetail record)"
    )
    item_seconds: Cited = Cited(
        2.0,
        "s",
        "assumption",
        "wall time an item is in flight at a processor (download, render, five PUTs)",
    )

    def with_items_per_job(self, items: int) -> Assumptions:
        return replace(self, items_per_job=replace(self.items_per_job, value=items))


@dataclass(frozen=True)
class JobFigures:
    """One job's control-plane cost (of the `items_per_job` case)."""

    put_bytes: Cited  # etcd bytes written (net of the idle stack)
    ingestjob_writes: Cited  # IngestJob creates + status patches at the apiserver
    event_writes: Cited  # core Events created
    stored_bytes: Cited  # the IngestJob as stored at the end
    status_writes: Cited  # status patches alone (the after design's KV CAS count)


@dataclass(frozen=True)
class Inputs:
    files: tuple[str, ...]
    # make bench: CPU per image of each process (ms), the processor's tree included.
    cpu_ms: Mapping[str, Cited]
    # make bench's server-counted NATS messages per photo (in + out), when it recorded
    # them: a check of the counted operations' size, not an input of the model.
    nats_server_per_photo: Cited | None
    s3_per_photo: Mapping[str, Cited]
    s3_per_job: Mapping[str, Cited]
    nats_per_photo: Mapping[str, Cited]
    nats_per_job: Mapping[str, Cited]
    nats_after_per_job: Mapping[str, Cited]
    nats_after_per_failed_item: Cited
    jobs: Mapping[Design, JobFigures]
    after_measured: bool
    item_spec_bytes: Cited
    failure_record_bytes: Cited
    records_per_job_bytes: Cited
    janitor_hour: Mapping[str, Cited]
    janitor_keys_per_second: Cited
    staging_keys_per_second: Cited
    deletion_cap: Cited
    janitor_replicas: Cited
    full_pass_pace: Cited
    full_pass_interval: Cited
    keys_per_photo: Cited
    staging_keys_per_photo: Cited
    upload_ttl: Cited
    job_ttl: Cited
    records_retention: Cited
    processor_cpu_request: Cited
    processor_target_utilisation: Cited
    processor_max_replicas: Cited
    processor_max_ack_pending: Cited
    controller_replicas: Cited


def _latest(results: Path, pattern: str) -> Path | None:
    found = sorted(results.glob(pattern))
    return found[-1] if found else None


def _bench_file(results: Path) -> Path:
    """The newest `make bench` results: YYYY-MM-DD.json with per-process CPU per image."""
    candidates = [
        path
        for path in sorted(results.glob("*.json"))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", path.stem)
        and "processes" in json.loads(path.read_text()).get("phases", {}).get("emulsion", {})
    ]
    if not candidates:
        raise FileNotFoundError(f"no make bench results with per-process CPU in {results}")
    return candidates[-1]


def _case(figures: Mapping[str, Any], items: int) -> Mapping[str, Any]:
    for case in figures["cases"]:
        if case["items"] == items and case["outcome"] == "succeeded":
            return dict(case)
    measured = sorted({c["items"] for c in figures["cases"]})
    raise ValueError(f"no {items}-item case measured (cases: {measured}); pick one of those")


def job_figures(path: Path, items: int) -> JobFigures:
    """The measured per-job cost of the `items`-item, all-succeeded case of `path`."""
    figures = json.loads(path.read_text())
    case = _case(figures, items)
    name, where = path.name, f"cases[items={items}, succeeded]"
    writes = case["apiserver"]["ingestjob_writes"]
    return JobFigures(
        put_bytes=Cited(
            case["etcd"]["put_bytes_per_job"],
            "B",
            "measured",
            f"{name} {where}.etcd.put_bytes_per_job",
        ),
        ingestjob_writes=Cited(
            case["apiserver"]["ingestjob_writes_per_job"],
            "writes",
            "measured",
            f"{name} {where}.apiserver.ingestjob_writes_per_job",
        ),
        event_writes=Cited(
            sum(case["apiserver"]["event_writes"].values()),
            "writes",
            "measured",
            f"{name} {where}.apiserver.event_writes",
        ),
        stored_bytes=Cited(case["stored_bytes"], "B", "measured", f"{name} {where}.stored_bytes"),
        status_writes=Cited(
            writes.get("patch status", 0),
            "writes",
            "measured",
            f"{name} {where}.apiserver.ingestjob_writes['patch status']",
        ),
    )


def estimated_after(before: JobFigures) -> JobFigures:
    """The after design, until its bench is run: the same writes (the write interval is
    unchanged, and it sets how many), each storing at most the 4 KB bound instead of
    the whole spec and status."""
    note = "estimate until *-controlplane-after.json exists"
    writes = float(before.ingestjob_writes) + float(before.event_writes)
    return JobFigures(
        put_bytes=Cited(
            writes * AFTER_OBJECT_BOUND_BYTES,
            "B",
            "estimate",
            f"{note}: (IngestJob writes + Events) before x the 4,096 B bound",
        ),
        ingestjob_writes=replace(
            before.ingestjob_writes, kind="estimate", source=f"{note}: as before"
        ),
        event_writes=replace(before.event_writes, kind="estimate", source=f"{note}: as before"),
        stored_bytes=Cited(
            AFTER_OBJECT_BOUND_BYTES, "B", "estimate", f"{note}: the small IngestJob's bound"
        ),
        status_writes=replace(before.status_writes, kind="estimate", source=f"{note}: as before"),
    )


def _cpu(path: Path) -> dict[str, Cited]:
    processes = json.loads(path.read_text())["phases"]["emulsion"]["processes"]
    return {
        name: Cited(
            processes[name]["cpu_per_image_ms"],
            "ms/photo",
            "measured",
            f"{path.name} phases.emulsion.processes.{name}.cpu_per_image_ms",
        )
        for name in ("processor", "controller", "api", "kube-apiserver", "etcd", "nats")
    }


def _nats_server(path: Path) -> Cited | None:
    nats = json.loads(path.read_text())["phases"]["emulsion"].get("nats")
    if not nats:
        return None
    return Cited(
        nats["in_msgs_per_image"] + nats["out_msgs_per_image"],
        "messages/photo",
        "measured",
        f"{path.name} phases.emulsion.nats.in_msgs_per_image + .out_msgs_per_image"
        " (the server's /varz, every message: deliveries, API replies, heartbeats)",
    )


def _values() -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES.read_text()))


def load(results: Path = RESULTS, assumptions: Assumptions | None = None) -> Inputs:
    """Every input, read from the results files, the chart's values and the code."""
    from emulsion_contracts import wire
    from emulsion_contracts.profiles import DEFAULT_PROFILE
    from emulsion_runtime import messaging

    assumptions = assumptions or Assumptions()
    items = int(assumptions.items_per_job.value)
    bench = _bench_file(results)
    before_path = _latest(results, "*-controlplane-before.json")
    janitor_path = _latest(results, "*-janitor.json")
    if before_path is None or janitor_path is None:
        raise FileNotFoundError(
            f"bench-controlplane (before) and bench-janitor results in {results}"
        )
    after_path = _latest(results, "*-controlplane-after.json")
    before = job_figures(before_path, items)
    before_raw = _case(json.loads(before_path.read_text()), 2000)
    spec_bytes = Cited(
        round(before_raw["apiserver"]["ingestjob_body_bytes"]["create"] / 2000, 1),
        "B/item",
        "measured",
        f"{before_path.name} cases[items=2000, succeeded].apiserver.ingestjob_body_bytes"
        ".create / 2,000 (the spec is the item list; short bench names)",
    )
    after = job_figures(after_path, items) if after_path else estimated_after(before)

    janitor = json.loads(janitor_path.read_text())
    largest = max(janitor["sizes"], key=int)
    size = janitor["sizes"][largest]
    jname = f"{janitor_path.name} sizes[{largest}]"
    hour = {
        "cpu_seconds": Cited(
            size["hour"]["cpu_seconds"], "CPU s/h", "measured", f"{jname}.hour.cpu_seconds"
        ),
        "s3_requests": Cited(
            size["hour"]["s3_requests"], "requests/h", "measured", f"{jname}.hour.s3_requests"
        ),
        "writes_per_hour": Cited(
            janitor["writes_per_hour"],
            "writes/h",
            "measured",
            f"{janitor_path.name} writes_per_hour",
        ),
        "staging_listed": Cited(
            size["hour"]["staging_listed"], "keys", "measured", f"{jname}.hour.staging_listed"
        ),
        "staging_lists": Cited(
            size["hour"]["s3_requests_by_operation"].get("ListObjectsV2", 0),
            "LIST",
            "measured",
            f"{jname}.hour.s3_requests_by_operation.ListObjectsV2",
        ),
    }
    # The slower of the sizes' listing rates: what the janitor keeps up with for sure.
    slowest = min(janitor["sizes"].values(), key=lambda s: s["full_pass"]["keys_per_second"])
    slowest_size = next(k for k, v in janitor["sizes"].items() if v is slowest)
    keys_per_second = Cited(
        slowest["full_pass"]["keys_per_second"],
        "keys/s",
        "measured",
        f"{janitor_path.name} sizes[{slowest_size}].full_pass.keys_per_second (the slower size)",
    )
    staging_rate = Cited(
        round(size["hour"]["staging_listed"] / size["hour"]["wall_seconds"]),
        "keys/s",
        "measured",
        f"{jname}.hour.staging_listed / .hour.wall_seconds (a lower bound: that hour also"
        " carried out its GC requests)",
    )
    pace = Cited(
        size["full_pass"]["default_pace_keys_per_second"],
        "keys/s",
        "default",
        f"{jname}.full_pass.default_pace_keys_per_second"
        " (EMULSION_JANITOR_FULL_PASS_KEYS_PER_SECOND)",
    )

    from emulsion_janitor.settings import JanitorSettings

    janitor_defaults = JanitorSettings.model_fields
    values = _values()
    controller = values["components"]["controller"]
    work = next(c for c in messaging.CONSUMERS if c.durable == wire.PROCESSORS)
    styles = len(DEFAULT_PROFILE.styles)

    checked = "checked by tests/services/{}/test_capacity_counts.py"
    s3_parts = (CLIENT_S3, processor_s3(styles), JANITOR_S3)
    s3_why = {
        "PUT": f"the upload (a presigned POST); the claim, {styles} derivatives"
        " (DEFAULT_PROFILE), the capture-order index entry and the manifest (processor)",
        "COPY": "the original out of staging (processor)",
        "GET": "the manifest read that decides (a 404 for a new photo) and the download"
        " (processor)",
        "DELETE": "the promoted upload's GC request: one DeleteObjects (janitor)",
        "HEAD": "the janitor's stat of the promoted upload before deleting it",
        "LIST": "per job and per sweep instead (below)",
    }
    s3_per_photo = {
        cls: Cited(
            sum(part.get(cls, 0) for part in s3_parts),
            "requests",
            "counted",
            s3_why[cls]
            + (
                f"; {checked.format('processor')}"
                if cls in processor_s3(styles)
                else f"; {checked.format('janitor')}"
                if cls in JANITOR_S3
                else ""
            ),
        )
        for cls in S3_CLASSES
    }
    s3_per_job = {
        "LIST": Cited(
            1,
            "requests",
            "counted",
            "the API's check of a large request's uploads: one listing of their key range"
            " (services/api/src/emulsion_api/store.py)",
        ),
    }
    nats_per_photo = {
        "publish": Cited(
            CONTROLLER_NATS["publish"] + PROCESSOR_NATS["publish"],
            "ops",
            "counted",
            "the work message (controller); the ItemResult and the promoted GC request"
            f" (processor, {checked.format('processor')})",
        ),
        "deliver": Cited(
            4,
            "ops",
            "counted",
            "work to a processor, the result to the controller, the GC request to the janitor"
            " twice (first before its grace has passed: a nak with the time left)",
        ),
        "ack": Cited(
            CONTROLLER_NATS["ack"] + PROCESSOR_NATS["ack"] + 2,
            "ops",
            "counted",
            f"the work's ack_sync (processor, {checked.format('processor')}), the result's"
            " ack (controller), the janitor's nak until due and its ack",
        ),
        "kv": Cited(
            CONTROLLER_NATS["kv"] + PROCESSOR_NATS["kv"] + 2 * sum(JANITOR_NATS.values()),
            "ops",
            "counted",
            "the upload's lease put and delete (controller bus.lease/release); the"
            f" EMULSION_CANCELLED get before the commit ({checked.format('processor')}); the"
            " janitor's lease check: the lease stream's info for the upload, a get of the"
            f" released lease and of the legacy key ({checked.format('janitor')}), and the"
            " same check again when the hourly sweep deletes the upload's claim marker",
        ),
    }
    nats_per_job = {
        "kv": Cited(
            1, "ops", "counted", "the version clock's compare-and-set (API bus.mint_versions)"
        ),
    }
    object_messages = 1 + math.ceil(items * float(spec_bytes) / OBJECT_CHUNK_BYTES)
    nats_after_per_job = {
        "object put": Cited(
            object_messages,
            "ops",
            "counted",
            f"EMULSION_INGESTS: the item list in {object_messages - 1} chunk(s) of 128 KiB"
            " and its meta message (the API writes it)",
        ),
        "object get": Cited(
            object_messages, "ops", "counted", "the controller reads it back to dispatch"
        ),
        "outcomes CAS": replace(
            after.status_writes,
            unit="ops",
            source=after.status_writes.source + " (one KV compare-and-set per status write)",
        ),
        "summary": Cited(1, "ops", "counted", "the JobSummaryRecord at the end"),
    }
    return Inputs(
        files=tuple(
            p.name for p in (bench, before_path, janitor_path, after_path) if p is not None
        ),
        cpu_ms=_cpu(bench),
        nats_server_per_photo=_nats_server(bench),
        s3_per_photo=s3_per_photo,
        s3_per_job=s3_per_job,
        nats_per_photo=nats_per_photo,
        nats_per_job=nats_per_job,
        nats_after_per_job=nats_after_per_job,
        nats_after_per_failed_item=Cited(
            1, "ops", "counted", "one FailureDetail KV put per failed item"
        ),
        jobs={"before": before, "after": after},
        after_measured=after_path is not None,
        item_spec_bytes=spec_bytes,
        failure_record_bytes=Cited(
            600,
            "B",
            "estimate",
            "a FailureDetail: uid, index, asset and reason, a message of a few hundred bytes",
        ),
        records_per_job_bytes=Cited(
            2 * 1024,
            "B",
            "estimate",
            "the OutcomeRecord (index ranges, reasons) and the JobSummaryRecord of a job",
        ),
        janitor_hour=hour,
        janitor_keys_per_second=keys_per_second,
        staging_keys_per_second=staging_rate,
        deletion_cap=Cited(
            float(janitor_defaults["max_deletions_per_sweep"].default),
            "keys/h",
            "default",
            "EMULSION_JANITOR_MAX_DELETIONS_PER_SWEEP, per sweep and per sweep interval (an"
            " hour) on the fast path, per janitor",
        ),
        janitor_replicas=_chart_default(values, "components.janitor.replicas", "pods"),
        full_pass_pace=pace,
        full_pass_interval=_chart_default(values, "janitor.fullPassSeconds", "s", float),
        keys_per_photo=Cited(
            1 + styles + 1,
            "keys",
            "counted",
            f"the original, {styles} derivatives and the manifest"
            " (docs/architecture.md key layout)",
        ),
        staging_keys_per_photo=Cited(
            1,
            "keys",
            "counted",
            "the .claim marker, kept the upload TTL (the upload itself goes after the GC grace)",
        ),
        upload_ttl=Cited(
            float(janitor_defaults["upload_ttl"].default),
            "s",
            "default",
            "EMULSION_UPLOAD_TTL_SECONDS",
        ),
        job_ttl=_chart_default(values, "jobs.ttlSecondsAfterFinished", "s", float),
        # The chart's value when it has one; until then the records' default retention.
        records_retention=Cited(
            float(values["jobs"].get("recordsRetentionSeconds", 7 * DAY)),
            "s",
            "default",
            "charts/emulsion/values.yaml jobs.recordsRetentionSeconds"
            if "recordsRetentionSeconds" in values["jobs"]
            else "EMULSION_RECORDS_RETENTION_SECONDS (default 7 days; not yet in the chart)",
        ),
        processor_cpu_request=_chart_default(
            values, "components.processor.resources.requests.cpu", "cores", _cores
        ),
        processor_target_utilisation=_chart_default(
            values,
            "components.processor.autoscaling.targetCPUUtilizationPercentage",
            "",
            lambda percent: percent / 100,
        ),
        processor_max_replicas=_chart_default(
            values, "components.processor.autoscaling.maxReplicas", "pods"
        ),
        processor_max_ack_pending=Cited(
            work.max_ack_pending,
            "items",
            "default",
            "emulsion_runtime.messaging CONSUMERS[processors].max_ack_pending",
        ),
        controller_replicas=Cited(
            controller["replicas"],
            "pods",
            "default",
            "charts/emulsion/values.yaml components.controller.replicas (one active: kopf peering)",
        ),
    )


def _chart_default(
    values: dict[str, Any],
    path: str,
    unit: str,
    convert: Callable[[Any], float] = lambda value: value,
) -> Cited:
    """The chart's default at the dotted `path` of its values.yaml, cited there."""
    value: Any = values
    for part in path.split("."):
        value = value[part]
    return Cited(convert(value), unit, "default", f"charts/emulsion/values.yaml {path}")


def _cores(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """The model at one daily volume, for one design."""

    photos_per_day: float
    design: Design
    mean_per_second: float
    peak_per_second: float
    jobs_per_day: float
    processor_pods: int
    cores: dict[str, float]
    nats_ops_per_second: float
    s3_per_second: dict[str, float]
    apiserver_writes_per_second: float
    etcd_written_per_day: float
    jobs_alive: float
    namespaces_for_target: int
    etcd_held: float
    # Without a TTL (the default before the small IngestJob): every finished job stays.
    days_to_quota_without_ttl: float
    records_held: float
    in_flight: float
    sweep_seconds: float
    gc_deletions_per_hour: float
    janitor_cpu_per_hour: float
    full_pass_days_after_a_year: float


def s3_per_photo_total(inputs: Inputs, items_per_job: float) -> dict[str, float]:
    """S3 requests per photo by class, the per-job and per-sweep ones spread over photos."""
    per = {cls: float(inputs.s3_per_photo[cls]) for cls in S3_CLASSES}
    for cls, cited in inputs.s3_per_job.items():
        per[cls] += float(cited) / items_per_job
    # The hourly sweep lists staging/ whole: its keys (a marker per photo of the upload
    # TTL) every hour, at the measured keys per LIST request.
    keys_per_list = float(inputs.janitor_hour["staging_listed"]) / max(
        float(inputs.janitor_hour["staging_lists"]), 1.0
    )
    lists_per_photo_day = (
        float(inputs.staging_keys_per_photo)
        * (float(inputs.upload_ttl) / DAY)
        * (DAY / HOUR)
        / keys_per_list
    )
    per["LIST"] += lists_per_photo_day
    # The sweep deletes each claim marker once, a DeleteObjects per batch.
    per["DELETE"] += float(inputs.staging_keys_per_photo) / SWEEP_BATCH
    return per


def nats_per_photo_total(inputs: Inputs, design: Design, assumptions: Assumptions) -> float:
    """NATS operations per photo: publishes, deliveries, acks and KV/object operations."""
    items = float(assumptions.items_per_job)
    per = sum(float(c) for c in inputs.nats_per_photo.values())
    per += sum(float(c) for c in inputs.nats_per_job.values()) / items
    if design == "after":
        per += sum(float(c) for c in inputs.nats_after_per_job.values()) / items
        per += float(inputs.nats_after_per_failed_item) * float(assumptions.failed_fraction)
    return per


def etcd_held_per_photo_day(inputs: Inputs, design: Design, assumptions: Assumptions) -> float:
    """etcd bytes held per (photo/day) of volume, at the peak hour: the jobs alive (the
    TTL's worth) as stored, plus the revisions written since the last compaction."""
    jobs = inputs.jobs[design]
    peak_jobs_per_second = float(assumptions.peak_to_mean) / DAY / float(assumptions.items_per_job)
    return peak_jobs_per_second * (
        float(inputs.job_ttl) * float(jobs.stored_bytes)
        + COMPACTION_SECONDS * float(jobs.put_bytes)
    )


def model(photos_per_day: float, inputs: Inputs, design: Design, assumptions: Assumptions) -> Row:
    items = float(assumptions.items_per_job)
    peak_factor = float(assumptions.peak_to_mean)
    mean = photos_per_day / DAY
    peak = mean * peak_factor
    jobs_per_day = photos_per_day / items
    peak_jobs = peak / items
    job = inputs.jobs[design]
    cores = {name: peak * float(ms) / 1000 for name, ms in inputs.cpu_ms.items()}
    pod_cores = float(inputs.processor_cpu_request) * float(inputs.processor_target_utilisation)
    pods = math.ceil(cores["processor"] / pod_cores) if photos_per_day > 0 else 0
    s3 = {cls: peak * n for cls, n in s3_per_photo_total(inputs, items).items()}
    alive = peak_jobs * float(inputs.job_ttl)
    staging_keys = (
        photos_per_day * float(inputs.staging_keys_per_photo) * float(inputs.upload_ttl) / DAY
    )
    records = 0.0
    if design == "after":
        retention = float(inputs.records_retention) / DAY
        per_job = items * float(inputs.item_spec_bytes) + float(inputs.records_per_job_bytes)
        per_failed = float(inputs.failure_record_bytes)
        records = retention * (
            jobs_per_day * per_job
            + photos_per_day * float(assumptions.failed_fraction) * per_failed
        )
    hour = inputs.janitor_hour
    janitor_scale = (photos_per_day / 24) / float(hour["writes_per_hour"])
    stored_after_a_year = photos_per_day * 365 * float(inputs.keys_per_photo)
    return Row(
        photos_per_day=photos_per_day,
        design=design,
        mean_per_second=mean,
        peak_per_second=peak,
        jobs_per_day=jobs_per_day,
        processor_pods=pods,
        cores=cores,
        nats_ops_per_second=peak * nats_per_photo_total(inputs, design, assumptions),
        s3_per_second=s3,
        apiserver_writes_per_second=peak_jobs
        * (float(job.ingestjob_writes) + float(job.event_writes)),
        etcd_written_per_day=jobs_per_day * float(job.put_bytes),
        jobs_alive=alive,
        namespaces_for_target=max(1, math.ceil(alive / K8S_OBJECTS_PER_NAMESPACE)),
        etcd_held=photos_per_day * etcd_held_per_photo_day(inputs, design, assumptions),
        days_to_quota_without_ttl=ETCD_QUOTA_BYTES / (jobs_per_day * float(job.stored_bytes)),
        records_held=records,
        in_flight=peak * float(assumptions.item_seconds),
        sweep_seconds=staging_keys / float(inputs.staging_keys_per_second),
        gc_deletions_per_hour=peak * HOUR * JANITOR_S3["DELETE"],
        janitor_cpu_per_hour=float(hour["cpu_seconds"]) * janitor_scale,
        full_pass_days_after_a_year=stored_after_a_year / float(inputs.full_pass_pace) / DAY,
    )


@dataclass(frozen=True)
class Limit:
    """A limit the volume reaches: the photos per day at which it is reached."""

    what: str
    photos_per_day: dict[Design, float]
    action: str


def limits(inputs: Inputs, assumptions: Assumptions) -> list[Limit]:
    """Every limit as the daily volume that reaches it (linear figures solved for the
    volume), first reached first."""
    items = float(assumptions.items_per_job)
    peak_per_day = float(assumptions.peak_to_mean) / DAY  # peak photos/s per photo/day
    processor_s = float(inputs.cpu_ms["processor"]) / 1000
    pod_cores = float(inputs.processor_cpu_request) * float(inputs.processor_target_utilisation)
    per_photo = s3_per_photo_total(inputs, items)
    put_class = sum(per_photo[c] for c in ("PUT", "COPY", "DELETE"))
    staging_per_photo_day = float(inputs.staging_keys_per_photo) * float(inputs.upload_ttl) / DAY

    def same(value: float) -> dict[Design, float]:
        return {"before": value, "after": value}

    found = [
        Limit(
            f"processor pods reach the chart's maxReplicas ({int(inputs.processor_max_replicas)})",
            same(float(inputs.processor_max_replicas) * pod_cores / processor_s / peak_per_day),
            "raise `components.processor.autoscaling.maxReplicas` (and the node pool); each pod"
            " is one core at the HPA's target",
        ),
        Limit(
            "the one active controller needs a whole core",
            same(1000 / float(inputs.cpu_ms["controller"]) / peak_per_day),
            "shard by namespace: a controller release per namespace set (`EMULSION_NAMESPACES`)"
            " — which needs a `controller` durable per shard filtered on"
            " `emulsion.events.<ns>.>` (not built: today every controller shares one)",
        ),
        Limit(
            f"items in flight reach the processors' max_ack_pending"
            f" ({int(inputs.processor_max_ack_pending)})",
            same(
                float(inputs.processor_max_ack_pending)
                / float(assumptions.item_seconds)
                / peak_per_day
            ),
            "raise `max_ack_pending` of the `processors` durable (emulsion_runtime.messaging);"
            " past it more pods only wait",
        ),
        Limit(
            "the hourly sweep of staging/ no longer fits its hour",
            same(HOUR * float(inputs.staging_keys_per_second) / staging_per_photo_day),
            "shorten `EMULSION_UPLOAD_TTL_SECONDS` (claim markers stay that long; it must exceed"
            " the upload forms' 15 min), or lengthen `EMULSION_JANITOR_SWEEP_SECONDS`",
        ),
        Limit(
            f"the janitor's deletion cap ({float(inputs.deletion_cap):,.0f} keys an hour):"
            " promoted uploads' GC requests wait, and at the mean rate never catch up",
            same(
                float(inputs.deletion_cap)
                * float(inputs.janitor_replicas)
                * DAY
                / HOUR
                / JANITOR_S3["DELETE"]
            ),
            "raise `EMULSION_JANITOR_MAX_DELETIONS_PER_SWEEP` (janitor.env) to a few times the"
            " peak hour's deletions: it is a brake against a bug emptying the bucket, not a"
            " rate; a second janitor shares the fast path (and has a cap of its own)",
        ),
        Limit(
            "the janitor (one process) needs a whole core",
            same(
                HOUR
                / float(inputs.janitor_hour["cpu_seconds"])
                * float(inputs.janitor_hour["writes_per_hour"])
                * 24
            ),
            "a second replica shares the GC requests, but each replica sweeps on its own"
            " (the sweep is not split between replicas: not built)",
        ),
        Limit(
            f"IngestJobs alive pass Kubernetes' {int(K8S_OBJECTS_PER_CLUSTER):,} per cluster",
            same(K8S_OBJECTS_PER_CLUSTER / float(inputs.job_ttl) * items / peak_per_day),
            "shorten `jobs.ttlSecondsAfterFinished` (the job's records outlive the job,"
            " so a short TTL costs only the Idempotency-Key window); bigger jobs (group commit)",
        ),
        Limit(
            "etcd holds its 2 GiB quota (jobs alive + revisions until compaction)",
            {
                d: ETCD_QUOTA_BYTES / etcd_held_per_photo_day(inputs, d, assumptions)
                for d in DESIGNS
            },
            "a shorter TTL; `--quota-backend-bytes` up to 8 GiB; a dedicated etcd for events",
        ),
        Limit(
            f"one collection's writes pass S3's {int(S3_WRITE_PER_PREFIX):,} PUT/COPY/DELETE/s"
            " per prefix",
            same(S3_WRITE_PER_PREFIX / put_class / peak_per_day),
            "spread over collections (keys begin `<area>/<collection>/`), or ask the provider"
            " to pre-partition; S3 answers 503 SlowDown while it splits a hot prefix",
        ),
    ]
    return sorted(found, key=lambda limit: min(limit.photos_per_day.values()))


# --- the document ------------------------------------------------------------------------


def _si(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}".replace(" ", "\u202f")
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _bytes(value: float) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:,.0f} B"


def _volume(photos: float) -> str:
    return f"{photos / 1e6:.3g} M"


def table(inputs: Inputs, assumptions: Assumptions) -> str:
    rows = {(v, d): model(v, inputs, d, assumptions) for v in VOLUMES for d in DESIGNS}
    after = "after" if inputs.after_measured else "after (est.)"
    header = "| photos/day | " + " | ".join(
        f"{_volume(v)} {d if d == 'before' else after}" for v in VOLUMES for d in DESIGNS
    )
    lines = [header + " |", "|---" * (1 + len(VOLUMES) * len(DESIGNS)) + "|"]

    def line(label: str, show: Any) -> None:
        cells = [show(rows[(v, d)]) for v in VOLUMES for d in DESIGNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    line("photos/s, mean / peak", lambda r: f"{r.mean_per_second:,.0f} / {r.peak_per_second:,.0f}")
    line("IngestJobs/day", lambda r: _si(r.jobs_per_day))
    line("processor pods (peak)", lambda r: f"{r.processor_pods:,}")
    line("controller cores (peak)", lambda r: f"{r.cores['controller']:.2f}")
    line(
        "API / apiserver / etcd / NATS cores (peak)",
        lambda r: " / ".join(
            f"{r.cores[n]:.1f}" for n in ("api", "kube-apiserver", "etcd", "nats")
        ),
    )
    line("items in flight (peak)", lambda r: f"{r.in_flight:,.0f}")
    line("NATS operations/s (peak)", lambda r: _si(r.nats_ops_per_second))
    for cls in S3_CLASSES:
        line(f"S3 {cls}/s (peak)", lambda r, c=cls: _si(r.s3_per_second[c]))
    line("apiserver writes/s (peak)", lambda r: f"{r.apiserver_writes_per_second:,.1f}")
    line("etcd bytes written/day", lambda r: _bytes(r.etcd_written_per_day))
    line("IngestJobs alive (peak, TTL)", lambda r: f"{r.jobs_alive:,.0f}")
    line("namespaces for 600 jobs each", lambda r: f"{r.namespaces_for_target:,}")
    line("etcd bytes held (peak, TTL + compaction)", lambda r: _bytes(r.etcd_held))
    line("without a TTL: days to etcd's quota", lambda r: f"{r.days_to_quota_without_ttl:,.1f}")
    line(
        "JetStream records held (retention)",
        lambda r: _bytes(r.records_held) if r.records_held else "—",
    )
    line("janitor CPU s/hour", lambda r: f"{r.janitor_cpu_per_hour:,.0f}")
    line("GC deletions/hour (peak)", lambda r: _si(r.gc_deletions_per_hour))
    line("hourly staging sweep, s", lambda r: f"{r.sweep_seconds:,.0f}")
    line("full pass after a year, days", lambda r: f"{r.full_pass_days_after_a_year:,.0f}")
    return "\n".join(lines)


def breaks(inputs: Inputs, assumptions: Assumptions) -> str:
    lines = [
        "| # | limit | reached at photos/day (before / after) | what the operator does |",
        "|---|---|---|---|",
    ]
    for number, limit in enumerate(limits(inputs, assumptions), 1):
        before, after = limit.photos_per_day["before"], limit.photos_per_day["after"]
        reached = (
            _volume(before)
            if math.isclose(before, after)
            else f"{_volume(before)} / {_volume(after)}"
        )
        lines.append(f"| {number} | {limit.what} | {reached} | {limit.action} |")
    return "\n".join(lines)


def janitor_table(inputs: Inputs) -> str:
    hour = inputs.janitor_hour
    return "\n".join(
        [
            "| janitor, one hour of routine work | measured |",
            "|---|---|",
            f"| writes (re-ingests) and staging uploads | {float(hour['writes_per_hour']):,.0f} and"
            f" {float(hour['staging_listed']):,.0f} |",
            f"| CPU s | {float(hour['cpu_seconds']):.2f} |",
            f"| S3 requests | {float(hour['s3_requests']):,.0f} |",
            "| full pass, listing rate (slower size) |"
            f" {float(inputs.janitor_keys_per_second):,.0f} keys/s |",
        ]
    )


def inputs_table(inputs: Inputs, assumptions: Assumptions) -> str:
    rows: list[tuple[str, Cited]] = [
        *((f"CPU per photo: {name}", cited) for name, cited in inputs.cpu_ms.items()),
        *((f"S3 {cls} per photo", inputs.s3_per_photo[cls]) for cls in S3_CLASSES),
        *((f"S3 {cls} per job", cited) for cls, cited in inputs.s3_per_job.items()),
        *((f"NATS {op} per photo", cited) for op, cited in inputs.nats_per_photo.items()),
        *((f"NATS {op} per job", cited) for op, cited in inputs.nats_per_job.items()),
        *((f"after: NATS {op} per job", cited) for op, cited in inputs.nats_after_per_job.items()),
        ("after: NATS per failed item", inputs.nats_after_per_failed_item),
        *(
            (f"{design}: {name.replace('_', ' ')} per job", getattr(inputs.jobs[design], name))
            for design in DESIGNS
            for name in ("put_bytes", "ingestjob_writes", "event_writes", "stored_bytes")
        ),
        ("item list, bytes per item", inputs.item_spec_bytes),
        ("FailureDetail record", inputs.failure_record_bytes),
        ("outcomes and summary records per job", inputs.records_per_job_bytes),
        *((f"janitor hour: {k.replace('_', ' ')}", v) for k, v in inputs.janitor_hour.items()),
        ("janitor listing rate, full pass", inputs.janitor_keys_per_second),
        ("janitor listing rate, staging sweep", inputs.staging_keys_per_second),
        ("janitor deletion cap", inputs.deletion_cap),
        ("janitor replicas", inputs.janitor_replicas),
        ("full pass pace", inputs.full_pass_pace),
        ("full pass interval", inputs.full_pass_interval),
        ("stored keys per photo", inputs.keys_per_photo),
        ("staging keys per photo", inputs.staging_keys_per_photo),
        ("upload TTL", inputs.upload_ttl),
        ("job TTL", inputs.job_ttl),
        ("records retention", inputs.records_retention),
        ("processor CPU request", inputs.processor_cpu_request),
        ("processor HPA target", inputs.processor_target_utilisation),
        ("processor maxReplicas", inputs.processor_max_replicas),
        ("processors' max_ack_pending", inputs.processor_max_ack_pending),
        ("controller replicas", inputs.controller_replicas),
        ("items per job", assumptions.items_per_job),
        ("peak / mean", assumptions.peak_to_mean),
        ("failed items", assumptions.failed_fraction),
        ("item in flight", assumptions.item_seconds),
    ]
    lines = ["| input | value | kind | from |", "|---|---|---|---|"]
    for name, cited in rows:
        value = f"{cited.value:,.6g} {cited.unit}".strip()
        lines.append(f"| {name} | {value} | {cited.kind} | {cited.source} |")
    check = "check, not an input: NATS messages per photo counted by the server"
    if inputs.nats_server_per_photo is None:
        lines.append(
            f"| {check} | — | pending | `make bench` records the server's counts"
            " (phases.emulsion.nats) from its next run |"
        )
    else:
        cited = inputs.nats_server_per_photo
        lines.append(
            f"| {check} | {cited.value:,.4g} {cited.unit} | {cited.kind} | {cited.source} |"
        )
    return "\n".join(lines)


def section(inputs: Inputs, assumptions: Assumptions) -> str:
    if inputs.after_measured:
        status = "The *after* columns are **measured** (`make bench-controlplane --label after`)."
    else:
        status = (
            "**The *after* columns are pending**: no `bench/results/*-controlplane-after.json`"
            " yet, so they use an *estimate* (the measured writes per job, each storing the"
            " 4 KB bound). `make capacity` switches to the measured file once the lead has run"
            " `make bench-controlplane BENCH_CONTROLPLANE_ARGS='--label after'`."
        )
    files = ", ".join(f"`bench/results/{name}`" for name in inputs.files)
    return "\n\n".join(
        [
            f"Computed by `make capacity` (`emulsion_bench.capacity`) from {files},"
            f" {int(assumptions.items_per_job)} items per job. {status}",
            "### The table",
            table(inputs, assumptions),
            "### Where it breaks first",
            breaks(inputs, assumptions),
            "### The janitor's flat hourly cost",
            janitor_table(inputs),
            "### Inputs",
            inputs_table(inputs, assumptions),
        ]
    )


def render(document: str, generated: str) -> str:
    """`document` with the text between the markers replaced by `generated`."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n\n" + generated + "\n\n" + document[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/capacity.md is stale")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    assumptions = Assumptions()
    generated = section(load(args.results, assumptions), assumptions)
    current = DOC.read_text()
    wanted = render(current, generated)
    if args.check:
        if wanted != current:
            print("docs/capacity.md is stale: run `make capacity`", file=sys.stderr)
            return 1
        return 0
    print(generated)
    if wanted != current:
        DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
