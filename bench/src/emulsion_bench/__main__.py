"""`make bench`: one run, side by side on the same generated gallery.

1. the pure-Pillow limit (the processor's render on every core, no network);
2. Emulsion end to end through the CLI: presign, direct upload, one notify, all items
   finished — on a real local stack with all four services as processes;
3. notify latency: `POST /v1/ingests` with one item at 1 and 32 concurrent clients;
4. the synchronous baseline of the seeds: a FastAPI endpoint that downloads, processes
   and uploads inside the request, driven with the CLI's upload concurrency;
5. peak RSS of every process involved.

Writes `bench/results/<date>.json`, `<date>.md` and PNG plots, and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from emulsion_bench import pillow_limit, report
from emulsion_cli.api import Api
from emulsion_cli.config import Config
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_cli.ingest import Options, SilentReporter, Tally, ingest
from emulsion_contracts import keys as key_layout
from emulsion_devstack.processes import ProcessRecord, free_port, spawn, stop, wait_until
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import LocalStack, s3_client

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass
class Timeline:
    """(seconds since start, items finished) as progress arrives."""

    began: float = field(default_factory=time.monotonic)
    points: list[tuple[float, int]] = field(default_factory=list)

    def mark(self, done: int) -> None:
        self.points.append((time.monotonic() - self.began, done))


class RecordingReporter(SilentReporter):
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    def processed(self, done: int) -> None:
        self.timeline.mark(done)


def say(line: str) -> None:
    print(line, flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the kernel's own high-water mark of the process's resident set."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def process_tree_rss(name: str, pid: int) -> dict[str, float]:
    peaks = {name: peak_rss_mb(pid)}
    for number, child in enumerate(descendants(pid), start=1):
        peaks[f"{name} child {number}"] = peak_rss_mb(child)
    return peaks


# -- Emulsion end to end ------------------------------------------------------------------


async def run_emulsion(config: Config, gallery: Path, concurrency: int) -> dict[str, Any]:
    timeline = Timeline()
    tally = Tally()
    with tempfile.TemporaryDirectory() as resume_dir:
        options = Options(
            root=gallery,
            collection=f"bench-{int(time.time())}",
            concurrency=concurrency,
            state_dir=Path(resume_dir),
        )
        async with Api(config) as api:
            await ingest(api, options, RecordingReporter(timeline), tally)
    wall = tally.wall_seconds
    return {
        "images": tally.items,
        "succeeded": tally.succeeded,
        "failed": len(tally.failures),
        "failures": [asdict(f) for f in tally.failures][:20],
        "wall_seconds": wall,
        "images_per_second": tally.succeeded / wall if wall else 0.0,
        "upload_seconds": tally.upload_seconds,
        "upload_mb_per_second": tally.upload_mb_per_second,
        "timeline": timeline.points,
    }


async def measure_notify(
    config: Config, upload_key: str, clients: int, requests: int
) -> dict[str, Any]:
    """`POST /v1/ingests` with one item from `clients` concurrent clients."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(requests):
        queue.put_nowait(number)
    collection = f"notify-{clients}-{int(time.time())}"

    async def client() -> None:
        async with httpx.AsyncClient(
            base_url=config.api_url,
            headers={"Authorization": f"Bearer {config.token}"},
            timeout=30.0,
        ) as http:
            while not queue.empty():
                number = queue.get_nowait()
                body = {
                    "collection": collection,
                    "items": [{"upload_key": upload_key, "asset": f"a{number}"}],
                }
                began = time.perf_counter()
                response = await http.post("/v1/ingests", json=body)
                latencies.append(time.perf_counter() - began)
                if response.status_code != 202:
                    raise RuntimeError(f"notify answered {response.status_code}: {response.text}")

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - began
    return {
        "clients": clients,
        "requests": requests,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests_per_second": requests / seconds,
        "latencies_ms": [latency * 1000 for latency in latencies],
    }


# -- the synchronous baseline -------------------------------------------------------------


def upload_for_baseline(s3: Any, bucket: str, sources: list[Path]) -> list[str]:
    """The originals sit in S3 before the baseline's requests, as in the seeds."""
    keys = [f"baseline-sources/{source.name}" for source in sources]
    with ThreadPoolExecutor(8) as pool:
        uploads = [
            pool.submit(s3.upload_file, str(source), bucket, key)
            for source, key in zip(sources, keys, strict=True)
        ]
        for upload in uploads:
            upload.result()
    return keys


async def drive_baseline(url: str, keys: list[str], concurrency: int) -> dict[str, Any]:
    timeline = Timeline()
    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)
    errors = 0

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=600.0) as http:
            while not queue.empty():
                key = queue.get_nowait()
                began = time.perf_counter()
                response = await http.post("/process", json={"key": key})
                latencies.append(time.perf_counter() - began)
                errors += response.status_code != 200
                timeline.mark(len(latencies))

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - began
    return {
        "requests": len(keys),
        "errors": errors,
        "wall_seconds": seconds,
        "requests_per_second": len(keys) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "latencies_ms": [latency * 1000 for latency in latencies],
        "timeline": timeline.points,
    }


def start_baseline(environment: dict[str, str], log_dir: Path) -> tuple[ProcessRecord, str]:
    port = free_port()
    record = spawn(
        "baseline",
        [sys.executable, "-m", "emulsion_bench.baseline", "--port", str(port)],
        log_dir / "baseline.log",
        env=environment,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(record, healthy, 60.0)
    return record, url


# -- the run ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1361, help="gallery size (default 1361)")
    parser.add_argument("--concurrency", type=int, default=8, help="upload/request concurrency")
    parser.add_argument("--notify-requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    say(f"gallery: {args.images} images (generated once, then cached)")
    gallery = ensure_gallery(GalleryParams(count=args.images))
    sources = sorted(p for p in gallery.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    megapixels = _total_megapixels(sources)
    gallery_mb = sum(p.stat().st_size for p in sources) / 1e6
    say(f"  {len(sources)} files, {gallery_mb:.0f} MB, {megapixels:.0f} MP in {gallery}")

    say("pure-Pillow limit (processor render, all cores, no network) …")
    limit = pillow_limit.measure(sources)
    say(f"  {limit.images_per_second:.1f} images/s on {limit.workers} processes")

    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "gallery": {"images": len(sources), "megabytes": gallery_mb, "megapixels": megapixels},
        "concurrency": args.concurrency,
        "pillow_limit": {
            "images_per_second": limit.images_per_second,
            "seconds": limit.seconds,
            "workers": limit.workers,
        },
    }
    with tempfile.TemporaryDirectory(prefix="emulsion-bench-") as state:
        stack = LocalStack(Path(state), services=tuple(SERVICES), say=lambda line: None)
        try:
            endpoints = stack.up()
            environment = stack.client_environment()
            config = Config(environment["EMULSION_API_URL"], environment["EMULSION_TOKEN"])

            say("Emulsion end to end (CLI: presign, direct upload, notify, follow) …")
            emulsion = asyncio.run(run_emulsion(config, gallery, args.concurrency))
            emulsion["ratio_to_pillow_limit"] = (
                emulsion["images_per_second"] / limit.images_per_second
            )
            results["emulsion"] = emulsion
            say(
                f"  {emulsion['succeeded']}/{emulsion['images']} in "
                f"{emulsion['wall_seconds']:.1f}s = {emulsion['images_per_second']:.1f} images/s"
                f" ({emulsion['ratio_to_pillow_limit']:.2f} of the limit)"
            )

            s3 = s3_client(endpoints)
            rss: dict[str, float] = {}
            say("synchronous baseline (download, process, upload inside the request) …")
            keys = upload_for_baseline(s3, endpoints.bucket, sources)
            baseline_process, url = start_baseline(
                {**os.environ, **environment}, Path(endpoints.data_dir) / "logs"
            )
            try:
                baseline = asyncio.run(drive_baseline(url, keys, args.concurrency))
                rss.update(process_tree_rss("baseline", baseline_process.pid))
            finally:
                stop(baseline_process)
            results["baseline"] = baseline
            say(
                f"  {baseline['requests']} requests in {baseline['wall_seconds']:.1f}s = "
                f"{baseline['requests_per_second']:.1f} req/s, p50 {baseline['p50_ms']:.0f} ms, "
                f"p99 {baseline['p99_ms']:.0f} ms"
            )
            say("notify latency (POST /v1/ingests, one item) …")
            smallest = min(sources, key=lambda p: p.stat().st_size)
            sample_key = _stage_one(s3, endpoints.bucket, smallest)
            results["notify"] = [
                asyncio.run(measure_notify(config, sample_key, clients, args.notify_requests))
                for clients in (1, 32)
            ]
            for row in results["notify"]:
                say(
                    f"  {row['clients']:>2} clients: p50 {row['p50_ms']:.1f} ms, "
                    f"p99 {row['p99_ms']:.1f} ms, {row['requests_per_second']:.0f} req/s"
                )

            for record in stack.processes():
                if record.name in SERVICES:
                    rss.update(process_tree_rss(f"emulsion-{record.name}", record.pid))

            results["peak_rss_mb"] = rss
        finally:
            stack.down()

    paths = report.write(results, args.out)
    say("")
    say(report.markdown_table(results))
    say("")
    for path in paths:
        say(f"wrote {path}")
    return 0


def _total_megapixels(sources: list[Path]) -> float:
    from PIL import Image

    total = 0
    for source in sources:
        with Image.open(source) as image:
            total += image.width * image.height
    return total / 1e6


def _stage_one(s3: Any, bucket: str, source: Path) -> str:
    key = key_layout.staging_key(key_layout.new_ulid(), source.name)
    s3.upload_file(str(source), bucket, key)
    return key


def _machine() -> dict[str, Any]:
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "pillow": _pillow_version(),
        "median_note": "figures from one run; rerun for variance",
    }


def _pillow_version() -> str:
    import PIL

    return str(PIL.__version__)


if __name__ == "__main__":
    sys.exit(main())
