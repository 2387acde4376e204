"""`make bench-cli`: what the client itself costs, in figures.

- gallery generation (fresh, in a temporary directory): images/s, megapixels/s, MB/s;
- discovery (magic bytes and SHA-256 of every file): MB/s;
- with EMULSION_API_URL and EMULSION_TOKEN set (a running `make up`): one ingest of the
  gallery into a new collection — upload MB/s, images/s end to end, wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from emulsion_cli.api import Api
from emulsion_cli.config import load_config
from emulsion_cli.discovery import discover
from emulsion_cli.gallery import GalleryParams, ensure_gallery, plan
from emulsion_cli.ingest import Options, SilentReporter, Tally, ingest


def ingest_command(directory: Path, collection: str, *options: str) -> list[str]:
    """The command line of `emulsion ingest` run as a child of this Python, with --json."""
    command = [sys.executable, "-m", "emulsion_cli", "ingest", str(directory)]
    return [*command, "--collection", collection, *options, "--json"]


def _figure(name: str, value: float, unit: str) -> None:
    print(f"{name:<34} {value:>10.2f} {unit}")


def bench_gallery(params: GalleryParams, root: Path) -> Path:
    started = time.perf_counter()
    directory = ensure_gallery(params, root)
    seconds = time.perf_counter() - started
    megapixels = sum(spec.megapixels for spec in plan(params))
    size = sum(path.stat().st_size for path in directory.iterdir()) / 1e6
    print(
        f"gallery: {params.count} images, {megapixels:.0f} MP, {size:.0f} MB, "
        f"{os.cpu_count()} worker(s)"
    )
    _figure("generation", params.count / seconds, "images/s")
    _figure("generation", megapixels / seconds, "MP/s")
    _figure("generation", size / seconds, "MB/s")
    return directory


def bench_discovery(directory: Path) -> None:
    started = time.perf_counter()
    found = discover(directory)
    seconds = time.perf_counter() - started
    _figure("discovery (sniff + sha256)", found.total_bytes / 1e6 / seconds, "MB/s")


def bench_ingest(directory: Path, concurrency: int) -> int:
    config = load_config()
    collection = f"bench-{int(time.time())}"
    tally = Tally()

    async def run() -> None:
        async with Api(config) as api:
            with tempfile.TemporaryDirectory() as state:
                options = Options(
                    directory, collection, concurrency=concurrency, state_dir=Path(state)
                )
                await ingest(api, options, SilentReporter(), tally)

    asyncio.run(run())
    print(f"ingest into {collection} at {config.api_url}, concurrency {concurrency}")
    _figure("upload", tally.upload_mb_per_second, "MB/s")
    _figure("end to end", tally.images_per_second, "images/s")
    _figure("wall time", tally.wall_seconds, "s")
    print(f"{'succeeded':<34} {tally.succeeded:>7} of {tally.found}")
    return 0 if not tally.failures else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulsion_bench.cli", description=__doc__)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emulsion-bench-cli-") as root:
        directory = bench_gallery(GalleryParams(count=args.count, seed=args.seed), Path(root))
        bench_discovery(directory)
        if not (os.environ.get("EMULSION_API_URL") and os.environ.get("EMULSION_TOKEN")):
            print(
                "ingest: skipped (no EMULSION_API_URL/EMULSION_TOKEN; `make up` and "
                "`source .emulsion/env` first)"
            )
            return 0
        return bench_ingest(directory, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
