"""`python -m emulsion_devstack up|down|status`: the commands behind `make up` and `make down`."""

from __future__ import annotations

import argparse
import sys

from emulsion_devstack.processes import StackError, command_failed, print_status, print_stopped
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import MINIO_LAYOUTS, LocalStack, add_state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulsion_devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    add_state_dir(parser)
    parser.add_argument(
        "--services",
        default=None,
        help="comma-separated Emulsion services to start after the servers "
        f"(default: all of {', '.join(SERVICES) or 'none registered'}; '' for none)",
    )
    parser.add_argument(
        "--nats-servers",
        type=int,
        choices=[1, 3],
        default=1,
        help="one NATS server, or a cluster of three with streams and buckets at R3",
    )
    parser.add_argument(
        "--minio-layout",
        choices=MINIO_LAYOUTS,
        default="single",
        help="one drive, or four drives erasure coded (EC:2)",
    )
    args = parser.parse_args(argv)
    services = (
        [name for name in args.services.split(",") if name]
        if args.services is not None
        else list(SERVICES)
    )
    # `up` leaves the stack running for the shell; a signal while it starts stops it.
    stack = LocalStack(
        args.state_dir,
        services=tuple(services),
        outlive=True,
        nats_servers=args.nats_servers,
        minio_layout=args.minio_layout,
    )

    if args.command == "up":
        try:
            endpoints = stack.up()
        except StackError as error:
            return command_failed("up", error)
        print(f"\nEndpoints (written to {stack.env_file}):")
        for name, value in endpoints.environment().items():
            if "SECRET" not in name:
                print(f"  {name:<22} {value}")
        print(f"  {'logs':<22} {endpoints.data_dir}/logs/")
        print(f"\nNext: source {stack.env_file} && kubectl get ingestjobs")
        return 0
    if args.command == "down":
        return print_stopped(stack.down(), "stopped {}", "nothing was running")
    return print_status(stack.processes(), 16, stack.running, "not running")


if __name__ == "__main__":
    sys.exit(main())
