"""`make bench-nats`: what JetStream's durability costs, measured side by side in one run.

Three NATS setups, each on a local stack of its own, take the same load: `--messages`
work-sized messages (`--bytes` each, a work item's size) published to the work stream the
way the controller publishes (each awaits its acknowledgement, `--in-flight` at a time),
then fetched and acknowledged the way processors do. The setups:

- `R1`: one server, JetStream's default `sync_interval` (fsync every two minutes);
- `R3`: a cluster of three (`make up NATS=3`), every stream at R3, default sync;
- `R3 sync always`: the same, each write fsynced before it is acknowledged — the
  documented answer to Jepsen's NATS 2.12.1 finding (acknowledged writes lost when a
  node's OS crashes while others pause or partition).

Reported per setup: messages/s, the servers' CPU per message (all of the setup's
nats-server processes, from /proc), and both as a ratio to R1. A photo costs about three
such messages (its work item, its result, an acknowledgement's GC request), so the CPU per
photo is three times the figure here. Results go to bench/results/<date>-nats.{json,md}.

    uv run python -m emulsion_bench.nats_durability [--messages 5000] [--bytes 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulsion_bench.procstat import cpu_seconds
from emulsion_contracts import wire
from emulsion_devstack.stack import Endpoints, LocalStack

RESULTS = Path(__file__).resolve().parents[2] / "results"
SETUPS = (("R1", 1, False), ("R3", 3, False), ("R3 sync always", 3, True))


@dataclass(frozen=True)
class Figures:
    setup: str
    messages: int
    publish_seconds: float
    consume_seconds: float
    server_cpu_seconds: float

    @property
    def messages_per_second(self) -> float:
        return self.messages / (self.publish_seconds + self.consume_seconds)

    @property
    def cpu_ms_per_message(self) -> float:
        return 1000 * self.server_cpu_seconds / self.messages


async def load(
    endpoints: Endpoints, messages: int, size: int, in_flight: int
) -> tuple[float, float]:
    """Publish then consume `messages`; the seconds each took."""
    connection = await endpoints.nats_connect()
    try:
        js = connection.jetstream()
        subject = wire.work_subject("bench", "durability")
        body = b"x" * size
        window = asyncio.Semaphore(in_flight)

        async def publish(index: int) -> None:
            async with window:
                await js.publish(
                    subject, body, headers={wire.HEADER_MSG_ID: f"bench/{index}"}, timeout=30
                )

        began = time.monotonic()
        await asyncio.gather(*(publish(i) for i in range(messages)))
        published = time.monotonic()
        consumer = await js.pull_subscribe_bind(durable=wire.PROCESSORS, stream=wire.WORK_STREAM)
        taken = 0
        while taken < messages:
            for message in await consumer.fetch(min(100, messages - taken), timeout=30):
                await message.ack_sync()
                taken += 1
        return published - began, time.monotonic() - published
    finally:
        await connection.drain()


def measure(name: str, servers: int, sync_always: bool, args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory(prefix="emulsion-bench-nats-") as state:
        stack = LocalStack(
            Path(state),
            say=lambda line: None,
            nats_servers=servers,
            nats_sync_always=sync_always,
        )
        try:
            endpoints = stack.up()
            pids = [r.pid for r in stack.processes() if r.name.startswith("nats-server")]
            before = sum(cpu_seconds(pid) for pid in pids)
            publish, consume = asyncio.run(
                load(endpoints, args.messages, args.bytes, args.in_flight)
            )
            used = sum(cpu_seconds(pid) for pid in pids) - before
        finally:
            stack.down()
    return Figures(name, args.messages, publish, consume, used)


def table(figures: list[Figures]) -> str:
    base = figures[0]
    lines = [
        "| setup | messages/s | vs R1 | servers' CPU per message | vs R1 |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        rate = f.messages_per_second / base.messages_per_second
        cpu = f.cpu_ms_per_message / base.cpu_ms_per_message
        lines.append(
            f"| {f.setup} | {f.messages_per_second:,.0f} | {rate:.2f}x | "
            f"{f.cpu_ms_per_message:.3f} ms | {cpu:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulsion_bench.nats_durability")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--bytes", type=int, default=600, help="a work item's size")
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args(argv)
    figures = []
    for name, servers, sync_always in SETUPS:
        print(f"  {name}: {args.messages} messages ...", flush=True)
        figures.append(measure(name, servers, sync_always, args))
    report = table(figures)
    print(report)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    RESULTS.mkdir(exist_ok=True)
    document: dict[str, Any] = {
        "args": vars(args),
        "figures": [
            {
                **asdict(f),
                "messages_per_second": f.messages_per_second,
                "cpu_ms_per_message": f.cpu_ms_per_message,
            }
            for f in figures
        ],
    }
    (RESULTS / f"{stamp}-nats.json").write_text(json.dumps(document, indent=2) + "\n")
    (RESULTS / f"{stamp}-nats.md").write_text(
        f"# make bench-nats, {stamp}\n\n{report}\n\nArguments: {vars(args)}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
