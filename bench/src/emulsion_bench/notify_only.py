"""`make bench-notify`: `make bench`'s two notify phases alone, on the same full stack.

Phases 2 and 4 of `make bench` (see `emulsion_bench.__main__` and `notify`): the open
loop at 1 and 32 clients on an idle stack, then again while a second CLI ingests the
cached bench gallery (stopped once the notify runs end, so a run takes about a minute
and a half instead of `make bench`'s many). Prints each run's p50/p99, the load average
at each phase's start and the API's CPU seconds; writes nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from emulsion_bench import inputs, notify, procstat, targets
from emulsion_bench.__main__ import (
    NotifyPlan,
    Phases,
    notify_runs,
    say,
    settle_notify_jobs,
    stack_roots,
    start_gallery_cli,
)
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_devstack.processes import wait_for
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import LocalStack, s3_client


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench-notify", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1361, help="the busy gallery's size")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each notify run")
    parser.add_argument("--single-rate", type=float, default=10.0, help="requests/s, one client")
    parser.add_argument("--client-rate", type=float, default=1.0, help="requests/s per client")
    parser.add_argument("--idle-only", action="store_true", help="skip the during-gallery runs")
    return parser.parse_args(argv)


def summary(name: str, figures: dict[str, object]) -> None:
    processes = figures["processes"]
    assert isinstance(processes, dict)
    api = processes.get("api", {})
    say(
        f"  [{name}] load average at start {figures['load_average_at_start']}; "
        f"API CPU {api.get('cpu_seconds')} s, peak RSS {api.get('peak_rss_mb')} MB"
    )
    cpu = ", ".join(f"{process} {use['cpu_seconds']:.2f}" for process, use in processes.items())
    say(f"  [{name}] CPU seconds by process: {cpu}")
    jobs = figures.get("jobs")
    if isinstance(jobs, list):
        # Fewer jobs than requests: the API's group commit put requests together.
        say(f"  [{name}] {figures['requests']} requests made {len(set(jobs))} IngestJobs")


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    gallery = ensure_gallery(GalleryParams(count=args.images))
    sources = inputs.images_in(gallery)
    with tempfile.TemporaryDirectory(prefix="emulsion-bench-notify-") as state:
        stack = LocalStack(Path(state), services=tuple(SERVICES), say=lambda line: None)
        try:
            endpoints = stack.up()
            environment = stack.client_environment()
            plan = NotifyPlan(
                loads=(
                    notify.Load(1, args.single_rate, args.seconds),
                    notify.Load(targets.NOTIFY_CLIENTS, args.client_rate, args.seconds),
                ),
                api_url=environment["EMULSION_API_URL"],
                token=environment["EMULSION_TOKEN"],
                s3=s3_client(endpoints),
                bucket=endpoints.bucket,
            )
            phases = Phases([], stack_roots(stack))
            say("notify on an idle stack (open loop) …")
            figures = phases.run("notify_idle", lambda: notify_runs(plan, "idle"))
            summary("idle", figures)
            settle_notify_jobs(plan, figures)
            if args.idle_only:
                return 0
            say(f"notify during a gallery ({len(sources)} images, stopped after the runs) …")
            log = Path(endpoints.data_dir) / "logs" / "bench-gallery-cli.log"
            processor = phases.roots["processor"]
            before = procstat.cpu_seconds(processor)
            busy = start_gallery_cli(gallery, environment, log)
            try:
                wait_for(
                    "the gallery to reach the processor",
                    lambda: (
                        procstat.tree_cpu_seconds(processor) - before > 1.0
                        or busy.poll() is not None
                    ),
                    timeout=600,
                )
                figures = phases.run(
                    "notify_gallery",
                    lambda: notify_runs(plan, "gallery", lambda: busy.poll() is None),
                    {"gallery cli": busy.pid},
                )
                summary("gallery", figures)
            finally:
                busy.terminate()
                busy.wait(timeout=60)
        except BaseException:
            # The servers' logs go with the stack's temporary directory: show the API's.
            for record in stack.processes():
                if record.name == "api":
                    say(Path(record.log).read_text(errors="replace")[-6000:])
            raise
        finally:
            stack.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
