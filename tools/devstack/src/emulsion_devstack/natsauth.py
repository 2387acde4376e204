"""The local NATS server's identities and TLS, made fresh at every start.

Everything is derived from the table in `emulsion_contracts.natsauth`: one user per
service identity with its permissions, a random password per user in
`<dir>/<identity>.password` (mode 0600), and a CA of NATS's own that signs the server's
certificate (127.0.0.1, localhost, and the real node's bridge address, which pods reach
it through). The server configuration (`nats.conf`, JSON, which nats-server reads as its
own format) requires TLS on the client port; the monitoring port stays plain HTTP (its
health check, KEDA's lag reads).

One more user exists here only: `ADMIN`, with every permission, for the tests and the
developer's shell (`.emulsion/env`) to inspect and change streams as an operator would.
The chart never has it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulsion_contracts import natsauth
from emulsion_devstack import pki

# The devstack's operator identity (tests, `.emulsion/env`); not a service, never in the chart.
ADMIN = "devstack-admin"


@dataclass(frozen=True)
class NatsAuth:
    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path

    def password_file(self, identity: str) -> Path:
        return self.directory / f"{identity}.password"


def make(directory: Path, server_names: tuple[str, ...]) -> NatsAuth:
    """A new CA, a serving certificate for `server_names`, and a password per identity."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = pki.make_ca(directory, "emulsion-local-nats-ca")
    cert, key = pki.issue_certificate(
        directory, "nats-server", "nats-server", server_names=server_names
    )
    auth = NatsAuth(directory, ca, cert, key)
    for identity in (*natsauth.IDENTITIES, ADMIN):
        path = auth.password_file(identity)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return auth


def server_config(
    auth: NatsAuth,
    *,
    port: int,
    monitor_port: int,
    store_dir: Path,
    server_name: str,
    host: str = "127.0.0.1",
    sync_always: bool = False,
) -> dict[str, Any]:
    """nats-server's configuration: JetStream, TLS required, and the table's users."""
    passwords = {
        identity: auth.password_file(identity).read_text().strip()
        for identity in natsauth.IDENTITIES
    }
    users = natsauth.server_users(passwords)
    users.append(
        {
            "user": ADMIN,
            "password": auth.password_file(ADMIN).read_text().strip(),
            "permissions": {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}},
        }
    )
    return {
        "listen": f"{host}:{port}",
        "http": f"{host}:{monitor_port}",
        "server_name": server_name,
        # One R1 server with JetStream's default sync_interval (2m): a crash of the
        # machine, not of the process, may lose that long of acknowledged writes.
        # Clusters use R3 (charts/emulsion/README.md, "JetStream replicas and
        # durability"); `sync_interval: always` trades throughput for no such loss.
        "jetstream": {
            "store_dir": str(store_dir),
            **({"sync_interval": "always"} if sync_always else {}),
        },
        "tls": {"cert_file": str(auth.cert_file), "key_file": str(auth.key_file), "timeout": 5},
        "authorization": {"users": users},
    }


def cluster_config(name: str, host: str, port: int, peers: list[str]) -> dict[str, Any]:
    """A server's `cluster` block: routes to its peers on the same port. Routes run on
    loopback addresses only, so they go without TLS or credentials of their own."""
    return {
        "name": name,
        "listen": f"{host}:{port}",
        "routes": [f"nats-route://{peer}:{port}" for peer in peers],
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path
