"""`python -m emulsion_processor` and the `emulsion-processor` console script."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from emulsion_processor import backfill
from emulsion_processor import settings as settings_module
from emulsion_processor.service import run
from emulsion_runtime import allocator, storage, telemetry


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="emulsion-processor")
    parser.add_argument(
        "--index-existing",
        metavar="COLLECTION",
        nargs="?",
        const="",
        default=None,
        help=(
            "write the capture-order index entry of every live asset (of COLLECTION, or "
            "all) committed before the index existed, then exit"
        ),
    )
    arguments = parser.parse_args(argv)
    # Before any thread starts: sixteen I/O threads and the renders share one arena.
    allocator.limit_arenas()
    settings = settings_module.load()
    telemetry.setup("emulsion-processor", settings.log_level)
    try:
        if arguments.index_existing is not None:
            backfill.index_existing(
                storage.s3_client(settings),
                settings.bucket,
                arguments.index_existing or None,
            )
            return
        asyncio.run(run(settings))
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
