"""The harness's state files, with one owner: their names, their format (JSON, replaced
atomically), and the one change a node makes to its stack's.

* `<state_dir>/state.json`: everything a stack owns (stack.py);
* `<state_dir>/node/node.json`: everything a real node on that stack made (node.py),
  written as it is made (`NodeState`), so a half-made node's `down` removes it too;
* `/run/emulsion-node.owner`: which state dir's node holds this machine (one node per
  machine: the bridge, the pod range and the cgroup names are fixed).

The node restarts the stack's apiserver with flags of its own; it records them in the
stack's file through `set_argv`, so the stack's `start` starts it as it now runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emulsion_devstack.processes import ProcessRecord, StackError

STACK_STATE = "state.json"
NODE_DIR = "node"
NODE_STATE = "node.json"
MACHINE_CLAIM = Path("/run/emulsion-node.owner")


class StateFile:
    """One JSON state file; a reader never sees a half-written one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, Any] | None:
        """The state, or None where there is none (or none that parses)."""
        try:
            loaded: dict[str, Any] = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return loaded

    def write(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        temporary.replace(self.path)


def stack_state(state_dir: Path) -> StateFile:
    return StateFile(state_dir / STACK_STATE)


def node_dir(state_dir: Path) -> Path:
    """Where the node on the stack of `state_dir` keeps its state, logs and files."""
    return state_dir / NODE_DIR


def node_state(directory: Path) -> StateFile:
    """The state file of the node whose directory is `directory` (see `node_dir`)."""
    return StateFile(directory / NODE_STATE)


def set_argv(state_dir: Path, name: str, argv: list[str]) -> None:
    """Record `argv` as how the stack starts its process `name` from now on."""
    file = stack_state(state_dir)
    state = file.read()
    if state is None:
        raise StackError("the stack is not running")
    for raw in state["processes"]:
        if raw["name"] == name:
            raw["argv"] = argv
    file.write(state)


class NodeState:
    """node.json while a node is made: each process recorded as it starts, each thing on
    the host recorded (`made`) when it is made, each write at once."""

    def __init__(self, file: StateFile, host_sysctls: dict[str, str]) -> None:
        self.file = file
        self.data: dict[str, Any] = {"processes": [], "host_sysctls": host_sysctls, "made": {}}
        self.file.write(self.data)

    @property
    def host_sysctls(self) -> dict[str, str]:
        return dict(self.data["host_sysctls"])

    def started(self, record: ProcessRecord) -> ProcessRecord:
        self.data["processes"].append(record.to_json())
        self.file.write(self.data)
        return record

    def made(self, **what: Any) -> None:
        self.data["made"].update(what)
        self.file.write(self.data)

    def finish(self, info: dict[str, Any]) -> None:
        """The node is up: what its clients need (NodeInfo) marks it running."""
        self.data["info"] = info
        self.file.write(self.data)


def machine_owner() -> Path | None:
    """The directory of the node that holds this machine, if any claimed it."""
    try:
        return Path(MACHINE_CLAIM.read_text().strip())
    except FileNotFoundError:
        return None


def claim_machine(directory: Path) -> None:
    MACHINE_CLAIM.parent.mkdir(parents=True, exist_ok=True)
    MACHINE_CLAIM.write_text(f"{directory}\n")


def release_machine(directory: Path) -> None:
    """Give the machine up, if the node of `directory` holds it."""
    if machine_owner() == directory:
        MACHINE_CLAIM.unlink(missing_ok=True)
