"""What the real node hands each of its add-ons (node_local_path.py,
node_metrics_server.py, node_keda.py) to start with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emulsion_devstack.endpoints import Endpoints
from emulsion_devstack.state import NodeState


@dataclass(frozen=True)
class AddOnHost:
    """The node's state (an add-on records what it starts and makes there), its directory
    (for logs, configuration and certificates), the stack's endpoints, where to say what
    started, and how long a process may take to answer."""

    state: NodeState
    node_dir: Path
    endpoints: Endpoints
    say: Callable[[str], None]
    timeout: float
