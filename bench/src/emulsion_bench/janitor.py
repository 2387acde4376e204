"""`make bench-janitor`: the safety-net sweep over many keys on a local stack of its own.

Writes N keys laid out as Emulsion writes them (half of them versions of assets, one live
and one superseded each; half staging uploads, a tenth of them leased), sweeps once (which
deletes the superseded versions and abandoned uploads) and once more (nothing left to
delete: the steady-state cost), printing wall time and keys per second; then sweeps a second
such bucket with tracemalloc on, for the Python heap's peak (tracing slows it down).

    uv run python -m emulsion_bench.janitor [--keys 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from emulsion_bench.janitor_bulk import (
    Population,
    count,
    measured_sweep,
    populate,
    release,
    settings_for,
)
from emulsion_devstack.stack import Endpoints, LocalStack, s3_client


def fill(stack: Endpoints, assets: int, uploads: int) -> Population:
    began = time.perf_counter()
    population = populate(
        stack, f"bench-{uuid.uuid4().hex[:12]}", assets, uploads, leased=uploads // 10
    )
    print(
        f"wrote {population.total} objects ({assets} assets x 2 versions + manifests,"
        f" {uploads} staging uploads) in {time.perf_counter() - began:.1f} s"
    )
    return population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", type=int, default=20_000, help="keys to sweep (default 20000)")
    args = parser.parse_args()
    uploads = args.keys // 2
    assets = (args.keys - uploads) // 10

    with tempfile.TemporaryDirectory(prefix="janitor-bench-") as state:
        local = LocalStack(Path(state), say=lambda line: None)
        stack = local.up()
        try:
            s3 = s3_client(stack)
            timed = fill(stack, assets, uploads)
            traced = fill(stack, assets, uploads)
            try:
                for label, population, trace_memory in (
                    ("sweep", timed, False),
                    ("sweep again", timed, False),
                    ("sweep traced", traced, True),
                ):
                    settings = settings_for(stack, population.bucket)
                    measured = asyncio.run(
                        measured_sweep(stack, s3, settings, trace_memory=trace_memory)
                    )
                    report = measured.report
                    memory = (
                        f", peak Python heap {measured.peak_mib:.1f} MiB" if trace_memory else ""
                    )
                    print(
                        f"{label:<13} {report.scanned:>7} keys listed,"
                        f" {report.deletion.deleted:>6} deleted in {measured.seconds:6.1f} s"
                        f" ({report.scanned / measured.seconds:,.0f} keys/s){memory}"
                    )
            finally:
                release(stack, timed)
                release(stack, traced)
            for population in (timed, traced):
                left = count(s3, population.bucket)
                print(f"{population.bucket}: left {left} objects (expected {population.kept})")
        finally:
            local.down()


if __name__ == "__main__":
    main()
