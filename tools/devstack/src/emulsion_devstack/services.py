"""Emulsion's own services as local processes, started by `make up` after the servers.

Each service registers here how it is run: `python -m <module>` with the stack's
environment, plus its own variables, and a readiness path served on
`EMULSION_HTTP_PORT`. The stack starts them in the order listed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulsion_devstack.endpoints import Endpoints


def _no_environment(endpoints: Endpoints, data_dir: Path) -> dict[str, str]:
    return {}


def _no_exports(url: str) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    # Variables beyond the stack's own (`Endpoints.environment()`), e.g. a scratch dir.
    environment: Callable[[Endpoints, Path], dict[str, str]] = field(default=_no_environment)
    ready_path: str = "/readyz"
    # Variables for clients, added to `.emulsion/env`, given the service's base URL.
    exports: Callable[[str], dict[str, str]] = field(default=_no_exports)


def _work_signing(endpoints: Endpoints) -> dict[str, str]:
    # Only the controller (signs) and the processors (verify) get the key.
    return {"EMULSION_WORK_SIGNING_KEY_FILE": endpoints.work_signing_key_file}


def _controller_environment(endpoints: Endpoints, data_dir: Path) -> dict[str, str]:
    from emulsion_devstack.processes import free_port

    # kopf's liveness endpoint takes EMULSION_HTTP_PORT; /metrics needs a port of its own.
    # POD_ID plays the pod's name: each controller started gets its own, and a restart of
    # the same process keeps it (as a container restarted in its pod does), so the
    # restarted controller resumes its peering record instead of waiting for it to expire.
    return {
        "EMULSION_METRICS_PORT": str(free_port()),
        "POD_ID": f"devstack-controller-{secrets.token_hex(3)}",
        **_work_signing(endpoints),
    }


def _api_environment(endpoints: Endpoints, data_dir: Path) -> dict[str, str]:
    from emulsion_devstack.processes import free_port

    # /metrics is served on an ops port of its own, apart from the public API.
    return {"EMULSION_API_TOKENS": endpoints.api_token, "EMULSION_METRICS_PORT": str(free_port())}


SERVICES: dict[str, ServiceSpec] = {}
SERVICES["controller"] = ServiceSpec(
    "controller",
    "emulsion_controller",
    environment=_controller_environment,
    ready_path="/healthz",
)
SERVICES["processor"] = ServiceSpec(
    "processor",
    "emulsion_processor",
    environment=lambda endpoints, data_dir: {
        "EMULSION_SCRATCH_DIR": str(data_dir / "scratch"),
        **_work_signing(endpoints),
    },
)
SERVICES["janitor"] = ServiceSpec("janitor", "emulsion_janitor")
SERVICES["api"] = ServiceSpec(
    "api",
    "emulsion_api",
    environment=_api_environment,
    ready_path="/readyz",
    exports=lambda url: {"EMULSION_API_URL": url},
)
