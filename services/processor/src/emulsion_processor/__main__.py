"""`python -m emulsion_processor` and the `emulsion-processor` console script."""

from __future__ import annotations

import asyncio

from emulsion_processor import settings as settings_module
from emulsion_processor.service import run
from emulsion_runtime import allocator, telemetry


def main() -> None:
    # Before any thread starts: sixteen I/O threads and the renders share one arena.
    allocator.limit_arenas()
    settings = settings_module.load()
    telemetry.setup("emulsion-processor", settings.log_level)
    try:
        asyncio.run(run(settings))
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
