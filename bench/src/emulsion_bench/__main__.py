"""`make bench`: Emulsion against the pure-Pillow limit and two synchronous baselines, in
one run on one generated gallery, each phase metered the same way.

Phases, in order, on one local stack (etcd, kube-apiserver, NATS, MinIO and the four
services as processes):

1. limit: the processor's own `imaging.render` over every image on every core, no network;
2. notify, idle stack: `POST /v1/ingests` open loop (see `notify`) at 1 and 32 clients;
3. emulsion: the CLI ingests the gallery: presign, direct upload, notify, follow. The
   end-to-end clock runs from the first upload (its presign) to the last item's
   outcome; the CLI's own head (finding and hashing the files) and tail (the final
   listing of every item) are reported beside it;
4. notify during a gallery: the same open loop while a second CLI (a process of its
   own) ingests the gallery again and the processor is busy;
5. naive baseline: the seeds' synchronous endpoint (full decode, every style from the
   full image, in the request), the upload in the same request;
6. fair baseline: a synchronous endpoint calling the processor's own `render`.

Before each timed phase every input file is read once (warm page cache); each phase
records the load average at its start, and the CPU seconds (user + system) and peak
RSS of every process: this process (the CLI and the load generators), each server,
each service, and the baseline. Writes `bench/results/<date>.json`, `<date>.md` and
PNG plots, and prints the table with the performance targets marked met or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from emulsion_bench import inputs, limit, machine, natsstat, notify, procstat, report, targets
from emulsion_bench.cli import ingest_command
from emulsion_bench.stats import percentile
from emulsion_cli.api import Api
from emulsion_cli.config import Config
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_cli.ingest import Options, Tally, ingest
from emulsion_devstack.processes import ProcessRecord, free_port, spawn, stop, wait_for, wait_until
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import LocalStack, s3_client

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
# The name each process has in the results; this process runs the CLI and load generators.
BENCH_PROCESS = "cli"
PROCESS_NAMES = {"nats-server": "nats"}


def say(line: str) -> None:
    print(line, flush=True)


# -- phases -------------------------------------------------------------------------------


@dataclass
class Phases:
    """Runs each phase the same way: warm the inputs, note the load, meter every process."""

    sources: list[Path]
    roots: dict[str, int]
    results: dict[str, Any] = field(default_factory=dict)
    # NATS's monitoring URL: each phase also records the server's message counts.
    nats_monitor_url: str | None = None

    def run(
        self,
        name: str,
        body: Callable[[], dict[str, Any]],
        extra_roots: Mapping[str, int] | None = None,
        bench_as: str = BENCH_PROCESS,
    ) -> dict[str, Any]:
        """`bench_as` names this process in the phase (the limit's render pool is its child)."""
        inputs.warm(self.sources)
        load = machine.load_average()
        roots = {**self.roots, **(extra_roots or {})}
        roots[bench_as] = roots.pop(BENCH_PROCESS)
        meter = procstat.PhaseMeter(roots)
        nats_before = natsstat.read(self.nats_monitor_url) if self.nats_monitor_url else None
        meter.start()
        figures = body()
        used = meter.stop()
        count = int(figures.get("images") or figures.get("requests") or 0)
        if nats_before is not None and self.nats_monitor_url:
            nats_after = natsstat.read(self.nats_monitor_url)
            figures["nats"] = natsstat.figures(nats_before, nats_after, count)
        figures["load_average_at_start"] = load
        figures["processes"] = {
            process: {
                "cpu_seconds": round(use.cpu_seconds, 3),
                "cpu_per_image_ms": round(1000 * use.cpu_seconds / count, 2) if count else 0.0,
                "peak_rss_mb": round(use.peak_rss_mb, 1),
            }
            for process, use in used.items()
        }
        self.results[name] = figures
        return figures


def stack_roots(stack: LocalStack) -> dict[str, int]:
    roots = {BENCH_PROCESS: os.getpid()}
    for record in stack.processes():
        roots[PROCESS_NAMES.get(record.name, record.name)] = record.pid
    return roots


# -- 1. the limit ---------------------------------------------------------------------------


def limit_phase(sources: list[Path]) -> dict[str, Any]:
    measured = limit.measure(sources)
    return {
        "images": measured.images,
        "workers": measured.workers,
        "seconds": measured.seconds,
        "images_per_second": measured.images_per_second,
        "cpu_per_image_ms": 1000 * measured.cpu_per_image,
    }


# -- 3. Emulsion end to end -----------------------------------------------------------------


@dataclass
class Clock:
    """The CLI's progress as it reports it: when uploading began, uploads and outcomes."""

    began: float = field(default_factory=time.monotonic)
    first_upload: float | None = None
    last_outcome: float | None = None
    planned: int | None = None
    uploads: list[tuple[float, int]] = field(default_factory=list)
    outcomes: list[tuple[float, int]] = field(default_factory=list)

    def since_first_upload(self, moment: float) -> float:
        return moment - (self.first_upload or self.began)


class ClockReporter:
    """The CLI's reporter, recording times instead of drawing progress bars."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def note(self, message: str) -> None:
        pass

    def uploads_planned(self, files: int, total_bytes: int) -> None:
        # Called just before the first presign: the upload's first step.
        self.clock.first_upload = self.clock.first_upload or time.monotonic()

    def uploaded(self, size: int) -> None:
        self.clock.uploads.append((time.monotonic(), len(self.clock.uploads) + 1))

    def processing_planned(self, items: int) -> None:
        self.clock.planned = items

    def processed(self, done: int) -> None:
        now = time.monotonic()
        self.clock.outcomes.append((now, done))
        if self.clock.planned is not None and done >= self.clock.planned:
            self.clock.last_outcome = self.clock.last_outcome or now


async def run_emulsion(config: Config, gallery: Path, concurrency: int) -> dict[str, Any]:
    clock = Clock()
    tally = Tally()
    with tempfile.TemporaryDirectory() as resume_dir:
        options = Options(
            root=gallery,
            collection=f"bench-{int(time.time())}",
            concurrency=concurrency,
            state_dir=Path(resume_dir),
        )
        async with Api(config) as api:
            await ingest(api, options, ClockReporter(clock), tally)
    finished = tally.finished or time.monotonic()
    first_upload = clock.first_upload or tally.started
    last_outcome = clock.last_outcome or finished
    end_to_end = last_outcome - first_upload
    done = tally.succeeded + len(tally.failures)
    return {
        "images": tally.items,
        "succeeded": tally.succeeded,
        "failed": len(tally.failures),
        "failures": [asdict(failure) for failure in tally.failures][:20],
        "end_to_end_seconds": end_to_end,
        "images_per_second": done / end_to_end if end_to_end > 0 else 0.0,
        "cli_head_seconds": first_upload - tally.started,
        "cli_tail_seconds": finished - last_outcome,
        "cli_wall_seconds": tally.wall_seconds,
        "upload_seconds": tally.upload_seconds,
        "upload_mb_per_second": tally.upload_mb_per_second,
        "uploads_timeline": [(clock.since_first_upload(t), n) for t, n in clock.uploads],
        "timeline": [(clock.since_first_upload(t), n) for t, n in clock.outcomes],
    }


# -- 2 and 4. notify ------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyPlan:
    loads: tuple[notify.Load, ...]
    api_url: str
    token: str
    s3: Any
    bucket: str


def notify_runs(
    plan: NotifyPlan, label: str, still_busy: Callable[[], bool] | None = None
) -> dict[str, Any]:
    runs = []
    for load in plan.loads:
        collection = f"notify-{label}-{load.clients}"
        keys = notify.stage_uploads(plan.s3, plan.bucket, load.requests, collection)
        row = asyncio.run(notify.open_loop(plan.api_url, plan.token, load, keys, collection))
        if still_busy is not None:
            row["gallery_running_at_end"] = still_busy()
        runs.append(row)
        say(
            f"  {load.clients:>2} client(s) x {load.rate_per_client:g}/s: "
            f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
            f"max {row['max_ms']:.0f} ms, {row['errors']} errors"
        )
    jobs = [job for row in runs for job in row.pop("jobs")]
    return {"requests": sum(row["requests"] for row in runs), "runs": runs, "jobs": jobs}


def settle_notify_jobs(plan: NotifyPlan, figures: dict[str, Any]) -> None:
    """Let the notify jobs' items finish, so they do not load the next phase."""
    left = asyncio.run(
        notify.wait_finished(plan.api_url, plan.token, figures.pop("jobs"), within=300)
    )
    if left:
        say(f"  !! {left} notify job(s) still unfinished after 300 s")


def start_gallery_cli(
    gallery: Path, environment: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            ingest_command(gallery, f"busy-{int(time.time())}"),
            env={**os.environ, **environment},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


# -- 5 and 6. the synchronous baselines ---------------------------------------------------


async def drive_baseline(
    url: str, mode: str, sources: list[Path], concurrency: int
) -> dict[str, Any]:
    began = time.perf_counter()
    done: list[tuple[float, int]] = []
    latencies: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for source in sources:
        queue.put_nowait(source)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=600.0) as http:
            while not queue.empty():
                source = queue.get_nowait()
                body = await asyncio.to_thread(source.read_bytes)
                sent = time.perf_counter()
                response = await http.post(f"/{mode}/{source.name}", content=body)
                latencies.append(time.perf_counter() - sent)
                if response.status_code != 200:
                    errors.append(f"{source.name}: {response.status_code} {response.text[:200]}")
                done.append((time.perf_counter() - began, len(done) + 1))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - began
    return {
        "images": len(sources),
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": seconds,
        "images_per_second": len(sources) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "latencies_ms": [round(latency * 1000, 1) for latency in latencies],
        "timeline": done,
    }


def baseline_phase(url: str, mode: str, sources: list[Path], concurrency: int) -> dict[str, Any]:
    return asyncio.run(drive_baseline(url, mode, sources, concurrency))


def start_baseline(
    stack: LocalStack, environment: dict[str, str], log_dir: Path
) -> tuple[ProcessRecord, str]:
    port = free_port()
    record = spawn(
        "baseline",
        [sys.executable, "-m", "emulsion_bench.baseline", "--port", str(port)],
        log_dir / "baseline.log",
        env=environment,
    )
    # Recorded with the stack at once, so a signal or `down` stops it too.
    stack.track(record)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(record, healthy, 60.0)
    return record, url


# -- the run --------------------------------------------------------------------------------


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1361, help="gallery size (default 1361)")
    parser.add_argument("--concurrency", type=int, default=8, help="upload/request concurrency")
    parser.add_argument(
        "--notify-seconds", type=float, default=15.0, help="length of each notify run"
    )
    parser.add_argument(
        "--notify-single-rate", type=float, default=10.0, help="requests/s of the one client"
    )
    parser.add_argument(
        "--notify-client-rate", type=float, default=1.0, help="requests/s of each of 32 clients"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    say(f"gallery: {args.images} images (generated once, then cached)")
    gallery = ensure_gallery(GalleryParams(count=args.images))
    sources = inputs.images_in(gallery)
    megapixels = _total_megapixels(sources)
    gallery_mb = sum(p.stat().st_size for p in sources) / 1e6
    say(f"  {len(sources)} files, {gallery_mb:.0f} MB, {megapixels:.0f} MP in {gallery}")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "gallery": {"images": len(sources), "megabytes": gallery_mb, "megapixels": megapixels},
        "concurrency": args.concurrency,
        "units": "seconds, ms, MB = 10^6 bytes; CPU = user + system; RSS = peak resident set",
    }
    say(f"machine: {machine.headline(results['machine'])}")
    with tempfile.TemporaryDirectory(prefix="emulsion-bench-") as state:
        stack = LocalStack(Path(state), services=tuple(SERVICES), say=lambda line: None)
        try:
            results["phases"] = run_phases(args, stack, gallery, sources)
        finally:
            stack.down()
    results["targets"] = targets.evaluate(results)
    paths = report.write(results, args.out)
    say("")
    say(report.markdown(results))
    say("")
    for path in paths:
        say(f"wrote {path}")
    return 0


def run_phases(
    args: argparse.Namespace, stack: LocalStack, gallery: Path, sources: list[Path]
) -> dict[str, Any]:
    endpoints = stack.up()
    environment = stack.client_environment()
    config = Config(environment["EMULSION_API_URL"], environment["EMULSION_TOKEN"])
    phases = Phases(sources, stack_roots(stack), nats_monitor_url=endpoints.nats_monitor_url)
    log_dir = Path(endpoints.data_dir) / "logs"
    plan = NotifyPlan(
        loads=(
            notify.Load(1, args.notify_single_rate, args.notify_seconds),
            notify.Load(targets.NOTIFY_CLIENTS, args.notify_client_rate, args.notify_seconds),
        ),
        api_url=config.api_url,
        token=config.token,
        s3=s3_client(endpoints),
        bucket=endpoints.bucket,
    )

    say("1. pure-Pillow limit (the processor's render on every core, no network) …")
    figures = phases.run("limit", lambda: limit_phase(sources), bench_as="render pool")
    say(
        f"  {figures['images_per_second']:.1f} images/s on {figures['workers']} processes, "
        f"{figures['cpu_per_image_ms']:.0f} ms CPU per image"
    )

    say("2. notify on an idle stack (open loop) …")
    figures = phases.run("notify_idle", lambda: notify_runs(plan, "idle"))
    settle_notify_jobs(plan, figures)

    say("3. Emulsion end to end (CLI: presign, direct upload, notify, follow) …")
    figures = phases.run(
        "emulsion", lambda: asyncio.run(run_emulsion(config, gallery, args.concurrency))
    )
    say(
        f"  {figures['succeeded']}/{figures['images']} in {figures['end_to_end_seconds']:.1f} s "
        f"= {figures['images_per_second']:.1f} images/s (CLI head "
        f"{figures['cli_head_seconds']:.1f} s, tail {figures['cli_tail_seconds']:.1f} s)"
    )

    say("4. notify during a gallery (a second CLI ingests the gallery again) …")
    figures = notify_during_gallery(phases, plan, gallery, environment, log_dir)
    settle_notify_jobs(plan, figures)

    baseline, url = start_baseline(stack, {**os.environ, **environment}, log_dir)
    try:
        for mode, what in (
            ("naive", "full decode, every style from full size"),
            ("fair", "the processor's render"),
        ):
            say(f"{5 if mode == 'naive' else 6}. {mode} synchronous baseline ({what}) …")
            figures = phases.run(
                mode,
                functools.partial(baseline_phase, url, mode, sources, args.concurrency),
                {"baseline": baseline.pid},
            )
            say(
                f"  {figures['images']} in {figures['seconds']:.1f} s = "
                f"{figures['images_per_second']:.1f} images/s, p50 {figures['p50_ms']:.0f} ms, "
                f"{figures['errors']} errors"
            )
    finally:
        stop(baseline)
    return phases.results


def notify_during_gallery(
    phases: Phases,
    plan: NotifyPlan,
    gallery: Path,
    environment: dict[str, str],
    log_dir: Path,
) -> dict[str, Any]:
    processor = phases.roots["processor"]
    before = procstat.cpu_seconds(processor)
    busy = start_gallery_cli(gallery, environment, log_dir / "bench-gallery-cli.log")
    try:
        # The gallery has reached the processor once it has spent a CPU second on it.
        wait_for(
            "the second gallery to reach the processor",
            lambda: procstat.tree_cpu_seconds(processor) - before > 1.0 or busy.poll() is not None,
            timeout=600,
        )
        return phases.run(
            "notify_gallery",
            lambda: notify_runs(plan, "gallery", lambda: busy.poll() is None),
            {"gallery cli": busy.pid},
        )
    except BaseException:
        busy.terminate()
        raise
    finally:
        busy.wait(timeout=3600)


def _total_megapixels(sources: list[Path]) -> float:
    from PIL import Image

    total = 0
    for source in sources:
        with Image.open(source) as image:
            total += image.width * image.height
    return total / 1e6


if __name__ == "__main__":
    sys.exit(main())
