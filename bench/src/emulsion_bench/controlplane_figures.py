"""`make bench-controlplane`'s arithmetic and report: from two metric snapshots to the
figures of one case, and the table. No stack here, so it is tested on its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulsion_bench.promtext import Snapshot, apiserver_writes, etcd_writes_by_resource
from emulsion_bench.stats import percentile

# etcd's counters of what it stored: the values of every put (the objects themselves),
# and its write-ahead log (every raft entry: puts, deletes, lease and compaction records).
PUT_BYTES = "etcd_debugging_mvcc_total_put_size_in_bytes"
WAL_BYTES = "etcd_disk_wal_write_bytes_total"
PUTS = "etcd_mvcc_put_total"
DELETES = "etcd_mvcc_delete_total"
DB_SIZE = "etcd_mvcc_db_total_size_in_bytes"
CLIENT_BYTES = "etcd_network_client_grpc_received_bytes_total"
BODY_BYTES = "apiserver_request_body_size_bytes_sum"


@dataclass(frozen=True)
class Background:
    """What etcd writes per second with no job running (leases, the controller's peering
    record): measured on the idle stack, subtracted from each case for its duration."""

    seconds: float
    put_bytes: float
    wal_bytes: float
    puts: float

    @classmethod
    def between(cls, delta: Snapshot, seconds: float) -> Background:
        return cls(
            seconds=seconds,
            put_bytes=delta.total(PUT_BYTES),
            wal_bytes=delta.total(WAL_BYTES),
            puts=delta.total(PUTS),
        )

    def rate(self, amount: float) -> float:
        return amount / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 2),
            "put_bytes_per_second": round(self.rate(self.put_bytes), 1),
            "wal_bytes_per_second": round(self.rate(self.wal_bytes), 1),
            "puts_per_second": round(self.rate(self.puts), 3),
        }


def case_figures(
    *,
    items: int,
    outcome: str,
    jobs: int,
    seconds: float,
    etcd: Snapshot,
    apiserver: Snapshot,
    background: Background,
    resource: str,
    group: str,
) -> dict[str, Any]:
    """One case's figures from the deltas of etcd's and the apiserver's metrics over it.

    `etcd` and `apiserver` are deltas (after - before); `seconds` is the case's length,
    for the background correction (which never takes a figure below zero).
    """

    def net(name: str, rate_of: float) -> float:
        return max(0.0, etcd.total(name) - background.rate(rate_of) * seconds)

    put_bytes = net(PUT_BYTES, background.put_bytes)
    wal_bytes = net(WAL_BYTES, background.wal_bytes)
    writes = apiserver_writes(apiserver, resource, group)
    return {
        "items": items,
        "outcome": outcome,
        "jobs": jobs,
        "seconds": round(seconds, 2),
        "etcd": {
            "put_bytes": round(etcd.total(PUT_BYTES)),
            "wal_bytes": round(etcd.total(WAL_BYTES)),
            "puts": round(etcd.total(PUTS)),
            "deletes": round(etcd.total(DELETES)),
            "db_size_change_bytes": round(etcd.total(DB_SIZE)),
            "client_bytes_received": round(etcd.total(CLIENT_BYTES)),
            "put_bytes_net": round(put_bytes),
            "wal_bytes_net": round(wal_bytes),
            "put_bytes_per_job": round(put_bytes / jobs) if jobs else 0,
            "put_bytes_per_item": round(put_bytes / items) if items else 0,
            "wal_bytes_per_item": round(wal_bytes / items) if items else 0,
        },
        "apiserver": {
            "ingestjob_writes": writes,
            "ingestjob_writes_per_job": round(sum(writes.values()) / jobs, 1) if jobs else 0,
            "ingestjob_body_bytes": {
                verb: round(value)
                for (verb,), value in apiserver.series(
                    BODY_BYTES, ("verb",), resource=resource, group=group
                ).items()
                if value
            },
            "event_writes": apiserver_writes(apiserver, "events", ""),
            "etcd_writes_by_resource": etcd_writes_by_resource(apiserver),
        },
    }


def latency_figures(seconds: list[float]) -> dict[str, Any]:
    return {
        "runs": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 1),
        "p95_ms": round(percentile(seconds, 95) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "all_ms": [round(s * 1000, 1) for s in seconds],
    }


def _writes(writes: dict[str, int]) -> str:
    return ", ".join(f"{verb} {count}" for verb, count in writes.items()) or "none"


def _kib(value: float) -> str:
    return f"{value / 1024:,.1f} KiB"


def table(results: dict[str, Any]) -> list[str]:
    """The cases as a Markdown table, one row each."""
    lines = [
        "| Job | Finished in | etcd put bytes (net) | per item | etcd WAL bytes (net) "
        "| IngestJob writes (apiserver) | Event writes | IngestJob stored at the end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in results["cases"]:
        etcd, apiserver = case["etcd"], case["apiserver"]
        lines.append(
            f"| {case['items']:,} items, all {case['outcome']} | {case['seconds']:.1f} s "
            f"| {_kib(etcd['put_bytes_net'])} | {etcd['put_bytes_per_item']:,} B "
            f"| {_kib(etcd['wal_bytes_net'])} | {_writes(apiserver['ingestjob_writes'])} "
            f"| {_writes(apiserver['event_writes'])} | {case['stored_bytes']:,} B |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    background = results["background"]
    listing = results.get("list")
    lines = [
        f"# Control plane: {results['label'] or 'run'} ({results['date']})",
        "",
        f"`{results['command']}` on {results['machine_headline']}; "
        f"{results['wall_seconds']:.0f} s in all. Load average (1/5/15 min) at the start: "
        f"{' / '.join(f'{v:.2f}' for v in results['load_average_at_start'])}.",
        "",
        "Each job is made through `POST /v1/ingests` and runs to its outcome on the local "
        "stack (etcd, kube-apiserver, NATS, MinIO, the four services). Figures are the "
        "difference of etcd's and the apiserver's own /metrics before and after each job, "
        "once its IngestJob has finished and its writes have stopped. *Net* subtracts the "
        f"idle stack's own writes ({background['put_bytes_per_second']:.0f} B/s of puts, "
        f"{background['wal_bytes_per_second']:.0f} B/s of WAL, measured over "
        f"{background['seconds']:.0f} s) for the job's duration. The uploads have short "
        "names (staging keys of 43 to 47 bytes, assets like `img-00001.jpg`); longer names make "
        "a larger spec. A verb missing from *IngestJob writes* did not happen: no job was "
        "deleted within the run.",
        "",
        *table(results),
    ]
    if listing:
        lines += [
            "",
            f"`kubectl get ij -A` with {listing['jobs_present']:,} finished IngestJobs present "
            f"({listing['how']}): p50 {listing['p50_ms']:.0f} ms, p95 {listing['p95_ms']:.0f} ms, "
            f"max {listing['max_ms']:.0f} ms over {listing['runs']} runs (after one warm-up); "
            f"etcd database {_kib(listing['etcd_db_bytes'])}, "
            f"IngestJobs stored {_kib(listing['ingestjob_bytes'])} in all.",
        ]
    lines += [
        "",
        "What is timing-sensitive: *Finished in* and the `kubectl` latencies are timings, "
        "sensitive to the load of a shared machine (so is the background correction, a rate "
        "times a duration). The controller writes a running job's status at most once per "
        "status interval (`EMULSION_STATUS_INTERVAL_SECONDS`, 1 s by default), so the status "
        "patches of a job that runs longer than a few intervals, and the etcd bytes they "
        "write (each patch stores the whole object again), grow with how long it runs: a "
        "slower machine shows more of both. The create, the Events and the stored size at "
        "the end depend on the code alone.",
    ]
    return "\n".join(lines) + "\n"
