"""How clients reach a running stack (`Endpoints`): what `make up` writes to
`<state_dir>/env`, what the tests' fixtures hand out, and what the node, the services'
environments and the MinIO identities are made from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulsion_devstack import natsauth as nats_auth
from emulsion_runtime import messaging
from emulsion_runtime.settings import NatsSettings

REGION = "us-east-1"


@dataclass(frozen=True)
class Endpoints:
    """How clients reach a running stack; written to `<state_dir>/env` as shell exports."""

    kubeconfig: str
    apiserver_url: str
    etcd_url: str
    nats_url: str
    nats_monitor_url: str
    s3_endpoint_url: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str
    audit_log: str
    data_dir: str
    # The bearer token the local API accepts and clients send (EMULSION_TOKEN).
    api_token: str
    # The CA NATS's certificate is signed by ("" when the stack runs NATS without TLS),
    # and the folder of each NATS identity's password file (`<identity>.password`: the
    # services' and the devstack's admin).
    nats_ca_file: str
    nats_auth_dir: str
    # The key work messages are signed with: a file in the state directory, given to the
    # controller and the processors only (services.py), never exported to clients.
    work_signing_key_file: str = ""
    # Replicas of the streams and buckets: 3 on a NATS cluster (`make up NATS=3`).
    jetstream_replicas: int = 1

    def work_signing_key(self) -> bytes:
        """The key, for a test or benchmark that publishes work as the controller does."""
        return Path(self.work_signing_key_file).read_text().strip().encode()

    def environment(self) -> dict[str, str]:
        """What `.emulsion/env` exports; NATS as the devstack's admin identity (each
        service process gets its own identity instead, `nats_environment`)."""
        return {
            "KUBECONFIG": self.kubeconfig,
            **self.nats_environment(nats_auth.ADMIN),
            "AWS_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_REGION": REGION,
            "EMULSION_BUCKET": self.bucket,
            "EMULSION_TOKEN": self.api_token,
        }

    def nats_environment(self, identity: str) -> dict[str, str]:
        """NATS_* for a process connecting as `identity` (a service's, or ADMIN)."""
        return {
            "NATS_URL": self.nats_url,
            "EMULSION_JETSTREAM_REPLICAS": str(self.jetstream_replicas),
            **({"NATS_CA_FILE": self.nats_ca_file} if self.nats_ca_file else {}),
            "NATS_USER": identity,
            "NATS_PASSWORD_FILE": str(Path(self.nats_auth_dir) / f"{identity}.password"),
        }

    def nats_fields(self, identity: str = nats_auth.ADMIN) -> dict[str, Any]:
        """NatsSettings' fields for `identity`, to build any service's settings with."""
        return {
            "nats_url": self.nats_url,
            "nats_user": identity,
            "nats_password_file": Path(self.nats_auth_dir) / f"{identity}.password",
            "nats_ca_file": Path(self.nats_ca_file) if self.nats_ca_file else None,
        }

    def nats_settings(self, identity: str = nats_auth.ADMIN) -> NatsSettings:
        return NatsSettings(**self.nats_fields(identity))

    async def nats_connect(self, identity: str = nats_auth.ADMIN, **options: Any) -> Any:
        """A nats-py client connected as `identity` (the admin by default) over TLS."""
        import nats

        settings = self.nats_settings(identity)
        return await nats.connect(**messaging.connect_options(settings), **options)
