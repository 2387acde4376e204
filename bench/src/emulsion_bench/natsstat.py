"""NATS's own counters around a bench phase: messages in and out of the server (/varz)
and JetStream API requests (/jsz: KV reads and writes, stream info, consumer fetches and
acks' API calls), from its monitoring port.

What `make capacity` compares its counted NATS operations per photo with: the server
counts every message, the client's and its own (deliveries, API replies, heartbeats), so
the two are not the same measure; the counted figure is the model's, the server's the
check that it is of the right size.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Counters:
    in_msgs: int
    out_msgs: int
    api_requests: int

    @classmethod
    def parse(cls, varz: dict[str, Any], jsz: dict[str, Any]) -> Counters:
        return cls(
            in_msgs=int(varz.get("in_msgs", 0)),
            out_msgs=int(varz.get("out_msgs", 0)),
            api_requests=int((jsz.get("api") or {}).get("total", 0)),
        )


def read(monitor_url: str) -> Counters:
    def get(path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{monitor_url}/{path}", timeout=10) as response:  # noqa: S310
            return dict(json.load(response))

    return Counters.parse(get("varz"), get("jsz"))


def figures(before: Counters, after: Counters, images: int) -> dict[str, float]:
    """The phase's counts, and per image (0 when the phase had none)."""
    deltas = {
        "in_msgs": after.in_msgs - before.in_msgs,
        "out_msgs": after.out_msgs - before.out_msgs,
        "api_requests": after.api_requests - before.api_requests,
    }
    out: dict[str, float] = dict(deltas)
    for name, value in deltas.items():
        out[f"{name}_per_image"] = round(value / images, 2) if images else 0.0
    return out
