"""Removing a real node from the host: its processes (the kubelet first), everything in
its cgroups, the cgroups, its network (bridge, iptables), the host paths' new entries,
its directory and its claim on the machine. For node.py's `down`, and for the stack's
`down` (a node goes before the apiserver it serves), which does not need the node's
API objects or the apiserver's old flags back."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulsion_devstack import node_cgroups, node_network
from emulsion_devstack.node_namespace import remove_new_entries
from emulsion_devstack.processes import ProcessRecord, stop_all
from emulsion_devstack.state import node_state, release_machine


def remove(
    directory: Path, before_paths: Callable[[dict[str, Any]], None] | None = None
) -> list[str]:
    """Remove everything the node of `directory` made; idempotent, and tolerant of a
    half-made node. `before_paths(made)` runs once the host's processes and network are
    gone, before its paths are. The names of the processes that were still alive."""
    state = node_state(directory).read()
    if state is None:
        return []
    records = [ProcessRecord.from_json(raw) for raw in reversed(state.get("processes", []))]
    stopped = [r.name for r in records if r.alive()]
    # The kubelet first, so nothing restarts containers while they are killed.
    stop_all([r for r in records if r.name == "kubelet"], grace=10)
    node_cgroups.kill_all()
    stop_all(records, grace=10)
    node_cgroups.remove()
    made = state.get("made", {})
    if made.get("nat_chain"):
        node_network.remove_nat_chain()
    if made.get("bridge"):
        node_network.remove_bridge()
    if "kube_chains" in made:
        # kubelet's chains (KUBE-FIREWALL, KUBE-IPTABLES-HINT, its canaries) and the
        # jumps to them, where the host had none before the node.
        node_network.remove_new_kube_chains(made["kube_chains"])
    if before_paths is not None:
        before_paths(made)
    for path, before in (made.get("host_paths") or {}).items():
        remove_new_entries(Path(path), before)
    shutil.rmtree(directory, ignore_errors=True)
    release_machine(directory)
    return stopped
