"""charts/emulsion/files/nats-permissions.json: each NATS identity's permissions, from the
table in emulsion_contracts.natsauth, for the chart's `authorization` snippet.

The chart cannot import Python, so it reads this copy; tests/charts checks the copy and
the chart's rendering against the table.

    python tools/nats_permissions.py          # rewrite the chart's copy
    python tools/nats_permissions.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generated_file import write_or_check

from emulsion_contracts import natsauth

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT = REPO_ROOT / "charts" / "emulsion" / "files" / "nats-permissions.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the copy is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    wanted = natsauth.permissions_document()
    return write_or_check(args.output, wanted, args.check, "make chart-nats")


if __name__ == "__main__":
    sys.exit(main())
