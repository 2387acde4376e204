"""Prometheus text exposition, read as numbers a benchmark subtracts: snapshots and deltas.

`make bench-controlplane` reads etcd's and the kube-apiserver's own /metrics before and
after each case; everything it reports is a difference of two snapshots, summed over the
samples whose labels match. Kept apart from the bench so it is tested without a stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# One sample: its full name (with _total, _sum, _bucket ...) and its labels, sorted.
Key = tuple[str, tuple[tuple[str, str], ...]]

# The apiserver's request verbs that change what etcd stores (`apiserver_request_total`
# spells them in upper case; WATCH, GET, LIST are reads).
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION")
VERB_NAMES = {
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
    "DELETECOLLECTION": "deletecollection",
}


@dataclass(frozen=True)
class Snapshot:
    samples: Mapping[Key, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        samples: dict[Key, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = float(sample.value)
        return cls(samples)

    def total(self, name: str, **match: str) -> float:
        """The sum of `name`'s samples whose labels include every `match` (0 if none)."""
        return sum(
            value
            for (sample, labels), value in self.samples.items()
            if sample == name and _matches(labels, match)
        )

    def series(self, name: str, by: Iterable[str], **match: str) -> dict[tuple[str, ...], float]:
        """`name`'s matching samples summed per value of the labels `by`."""
        keys = tuple(by)
        grouped: dict[tuple[str, ...], float] = {}
        for (sample, labels), value in self.samples.items():
            if sample != name or not _matches(labels, match):
                continue
            found = dict(labels)
            group = tuple(found.get(k, "") for k in keys)
            grouped[group] = grouped.get(group, 0.0) + value
        return grouped

    def __sub__(self, earlier: Snapshot) -> Snapshot:
        """What happened between `earlier` and this snapshot, sample by sample.

        A sample absent before counts from zero (a counter's first increment creates
        it); gauges subtract the same way, so a gauge's delta is its change.
        """
        return Snapshot(
            {key: value - earlier.samples.get(key, 0.0) for key, value in self.samples.items()}
        )


def _matches(labels: tuple[tuple[str, str], ...], match: Mapping[str, str]) -> bool:
    found = dict(labels)
    return all(found.get(name) == value for name, value in match.items())


def apiserver_writes(delta: Snapshot, resource: str, group: str) -> dict[str, int]:
    """Write requests the apiserver answered for one resource, by verb and subresource,
    e.g. `{"create": 1, "patch status": 40}` (every answer counted, errors included)."""
    writes: dict[str, int] = {}
    for (verb, subresource), value in delta.series(
        "apiserver_request_total", ("verb", "subresource"), resource=resource, group=group
    ).items():
        if verb not in WRITE_VERBS or value == 0:
            continue
        label = VERB_NAMES[verb] + (f" {subresource}" if subresource else "")
        writes[label] = writes.get(label, 0) + round(value)
    return dict(sorted(writes.items()))


def etcd_writes_by_resource(delta: Snapshot) -> dict[str, int]:
    """The apiserver's own count of etcd write operations, per resource (create, update
    (GuaranteedUpdate) and delete; gets and lists are reads)."""
    counted: dict[str, int] = {}
    for (resource, operation), value in delta.series(
        "etcd_requests_total", ("resource", "operation")
    ).items():
        if operation in ("create", "update", "delete") and value:
            counted[resource] = counted.get(resource, 0) + round(value)
    return dict(sorted(counted.items()))
