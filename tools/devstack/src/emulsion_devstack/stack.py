"""The local Emulsion stack: etcd, kube-apiserver, NATS JetStream and MinIO on 127.0.0.1.

One implementation for `make up` and for the pytest fixtures. Everything a stack owns is
named in `<state_dir>/state.json` (pids, ports, the temp data directory), so `down`
stops exactly what `up` started and `up` on a running stack only reports it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import shutil
import signal
import ssl
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from emulsion_contracts import crd
from emulsion_contracts import natsauth as nats_table
from emulsion_devstack import natsauth as nats_auth
from emulsion_devstack import node_teardown, shutdown, storage_identities
from emulsion_devstack import pki as pki_module
from emulsion_devstack.binaries import ensure_binary

# Re-exported: the tests and benchmarks take Endpoints (and REGION) from here.
from emulsion_devstack.endpoints import REGION as REGION
from emulsion_devstack.endpoints import Endpoints as Endpoints
from emulsion_devstack.node_network import BRIDGE_ADDRESS
from emulsion_devstack.processes import (
    ProcessRecord,
    StackError,
    free_port,
    respawn,
    spawn,
    stop,
    stop_all,
    wait_until,
)
from emulsion_devstack.processes import kill as kill_process
from emulsion_devstack.services import SERVICES, ServiceSpec
from emulsion_devstack.state import node_dir, node_state, stack_state
from emulsion_runtime import messaging, storage
from emulsion_runtime.settings import S3Settings

REPO_ROOT = Path(__file__).resolve().parents[4]
CRD_DIR = REPO_ROOT / "crds"
DEFAULT_BUCKET = "emulsion"
SERVERS = ("etcd", "kube-apiserver", "nats-server", "minio")
# The browser uploader (served by the API at /upload, on a port chosen at start) POSTs
# straight to MinIO, so MinIO must answer cross-origin requests from the API's origin.
# MinIO's CORS is server-wide (MINIO_API_CORS_ALLOW_ORIGIN, wildcards allowed); the
# local stack allows pages on this machine only. A real bucket needs the same rule for
# the API's public origin (POST, and the ETag/Location response headers).
PAGE_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*")
START_TIMEOUT = 120.0
# A NATS cluster's servers (`make up NATS=3`) each take their own loopback address with
# the same client, route and monitoring ports, as pods of a StatefulSet do: KEDA finds a
# stream's leader at `<server name>.<monitoring host>`, and tests stop one server by name.
NATS_CLUSTER_ADDRESSES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
NATS_CLUSTER_NAME = "emulsion-local"
# MinIO's layouts: one drive (no erasure coding), or four drives in one process (erasure
# coded, EC:2: any two drives may be lost for reads, one for writes). Four processes of
# one drive each are not possible here: in a container MinIO waits for ever for a
# distributed endpoint on a loopback address to "resolve to a valid IP".
MINIO_LAYOUTS = ("single", "drives")
MINIO_ERASURE_SET = 4
WORK_SIGNING_KEY_FILE = "work-signing.key"

# Only IngestJob writes are audited: enough to count the controller's status patches
# without filling the disk with every watch and discovery call.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [{"group": crd.GROUP, "resources": [crd.PLURAL, f"{crd.PLURAL}/status"]}],
        },
        {"level": "None"},
    ],
}


class LocalStack:
    """The servers, and optionally Emulsion's services (`services`: names in SERVICES)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        bucket: str = DEFAULT_BUCKET,
        services: tuple[str, ...] = (),
        say: Callable[[str], None] = print,
        outlive: bool = False,
        nats_tls: bool = True,
        nats_servers: int = 1,
        minio_layout: str = "single",
        nats_sync_always: bool = False,
    ) -> None:
        """`outlive`: once up, the stack outlives this process (`make up`); until then,
        and always otherwise, Ctrl-C, SIGTERM, SIGHUP or the process's exit stop it.
        `nats_tls=False`: NATS still requires each identity's password, but over plain
        TCP, for the fault suite, whose proxies read and hold NATS protocol lines.
        `nats_servers=3`: a NATS cluster (NATS_CLUSTER_ADDRESSES), streams and buckets
        at R3; each server a process of its own, `nats-server-1` to `nats-server-3`.
        `minio_layout`: see MINIO_LAYOUTS (the drives: `minio_drive`).
        `nats_sync_always`: JetStream fsyncs every write (`sync_interval: always`) instead
        of every two minutes; what it costs is `make bench-nats`'s to measure."""
        if nats_servers not in (1, len(NATS_CLUSTER_ADDRESSES)):
            raise StackError(f"NATS runs as 1 or {len(NATS_CLUSTER_ADDRESSES)} servers")
        if minio_layout not in MINIO_LAYOUTS:
            raise StackError(f"MinIO's layout is one of {', '.join(MINIO_LAYOUTS)}")
        self.nats_tls = nats_tls
        self.nats_servers = nats_servers
        self.minio_layout = minio_layout
        self.nats_sync_always = nats_sync_always
        self.state_dir = state_dir.resolve()
        self.outlive = outlive
        self.bucket = bucket
        self.services = tuple(SERVICES[name] for name in services)
        self.say = say
        self._state = stack_state(self.state_dir)
        self.state_file = self._state.path
        self.env_file = self.state_dir / "env"
        self.work_signing_key_file = self.state_dir / WORK_SIGNING_KEY_FILE

    # -- public -------------------------------------------------------------------

    def up(self) -> Endpoints:
        running = self.running()
        if running is not None:
            self.say(f"stack already running (state in {self.state_dir})")
            return running
        if self.state_file.exists():
            self.say("found a stack that is not wholly running; stopping what is left of it")
            self.down()
        binaries = {name: ensure_binary(name) for name in (*SERVERS, "kubectl")}
        shutdown.own(self)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data_dir = Path(tempfile.mkdtemp(prefix="emulsion-stack-"))
        records: list[ProcessRecord] = []
        state: dict[str, Any] = {"data_dir": str(data_dir), "processes": []}

        def started(record: ProcessRecord) -> ProcessRecord:
            # Recorded before waiting on readiness, so a failed start can still be downed.
            records.append(record)
            state["processes"] = [r.to_json() for r in records]
            self._write_state(state)
            return record

        try:
            began = time.monotonic()
            etcd_url = self._start_etcd(binaries["etcd"], data_dir, started)
            apiserver_url, kubeconfig, audit_log = self._start_apiserver(
                binaries["kube-apiserver"], data_dir, etcd_url, started
            )
            nats_url, nats_monitor, auth = self._start_nats(
                binaries["nats-server"], data_dir, started
            )
            s3_url, access_key, secret_key = self._start_minio(binaries["minio"], data_dir, started)
            endpoints = Endpoints(
                kubeconfig=str(kubeconfig),
                apiserver_url=apiserver_url,
                etcd_url=etcd_url,
                nats_url=nats_url,
                nats_monitor_url=nats_monitor,
                s3_endpoint_url=s3_url,
                s3_access_key=access_key,
                s3_secret_key=secret_key,
                bucket=self.bucket,
                audit_log=str(audit_log),
                data_dir=str(data_dir),
                api_token=secrets.token_urlsafe(32),
                nats_ca_file=str(auth.ca_file) if self.nats_tls else "",
                nats_auth_dir=str(auth.directory),
                work_signing_key_file=str(self._new_work_signing_key()),
                jetstream_replicas=1 if self.nats_servers == 1 else 3,
            )
            self._bootstrap(endpoints)
            exports: dict[str, str] = {}
            for service in self.services:
                record, url = self._start_service(service, endpoints, data_dir)
                started(record)
                exports.update(service.exports(url))
        except BaseException:
            self.down()
            raise
        state["endpoints"] = asdict(endpoints)
        self._write_state(state)
        self._write_env({**endpoints.environment(), **exports})
        self.say(f"stack up in {time.monotonic() - began:.1f}s")
        if self.outlive:
            shutdown.release(self)
        return endpoints

    def down(self) -> list[str]:
        """Stop every process this stack recorded (all at once); remove its data. Idempotent."""
        shutdown.release(self)
        if node_state(node_dir(self.state_dir)).exists():
            # A real node on this stack (node.py) goes first: its kubelet and containerd
            # would otherwise outlive the apiserver they serve.
            node_teardown.remove(node_dir(self.state_dir))
        state = self._read_state()
        stopped = []
        if state:
            records = [ProcessRecord.from_json(raw) for raw in reversed(state.get("processes", []))]
            stopped = [r.name for r in records if r.alive()]
            # Clients first, then the apiserver, then what it stands on: stopped all at once,
            # the controller and the apiserver each wait out the whole grace period for a
            # peer that is already gone (15 s a stack); in this order the stack is down in ~4 s.
            clients = [r for r in records if r.name not in SERVERS]
            apiserver = [r for r in records if r.name == "kube-apiserver"]
            storage = [r for r in records if r.name in SERVERS and r not in apiserver]
            for tier in (clients, apiserver, storage):
                stop_all(tier)
            data_dir = state.get("data_dir")
            if data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
        for path in (
            self.state_file,
            self.env_file,
            self.state_dir / "kubeconfig",
            self.work_signing_key_file,
        ):
            path.unlink(missing_ok=True)
        return stopped

    def running(self) -> Endpoints | None:
        """The endpoints of this stack if all its servers are alive, else None.

        Services may be stopped and started again (tests kill them on purpose), so only
        the servers decide whether the stack as such is running.
        """
        state = self._read_state()
        if not state or "endpoints" not in state:
            return None
        records = [ProcessRecord.from_json(raw) for raw in state["processes"]]
        if not all(r.alive() for r in records if r.name in SERVERS):
            return None
        try:
            return Endpoints(**state["endpoints"])
        except TypeError:
            # Written by an older devstack (e.g. before NATS had users): `up` restarts it.
            return None

    def processes(self) -> list[ProcessRecord]:
        state = self._read_state()
        return [ProcessRecord.from_json(raw) for raw in state.get("processes", [])] if state else []

    # -- one process at a time: what a kubelet does to a pod, and what an outage does --

    def record(self, name: str) -> ProcessRecord:
        """The newest process this stack started under `name` (alive or not)."""
        for record in reversed(self.processes()):
            if record.name == name:
                return record
        raise StackError(f"this stack has no process named {name!r}")

    def kill(self, name: str, signum: int = signal.SIGKILL) -> ProcessRecord:
        """Signal `name`'s process group with no grace; for terminating signals, wait
        until it is gone. SIGSTOP and SIGCONT freeze and thaw it in place."""
        record = self.record(name)
        kill_process(record, signum)
        return record

    def stop(self, name: str, grace: float = 15.0) -> ProcessRecord:
        """Stop `name` as an operator would (SIGTERM, SIGKILL after `grace`); its ports,
        data and configuration are kept for `start`."""
        record = self.record(name)
        stop(record, grace)
        return record

    def start(self, name: str, timeout: float = START_TIMEOUT) -> ProcessRecord:
        """Start `name` again exactly as it was started (same ports, data, environment)
        and wait until it is ready; a process that is still alive is left as it is."""
        record = self.record(name)
        if record.alive():
            return record
        state = self._read_state()
        if state is None or "endpoints" not in state:
            raise StackError("the stack is not running")
        fresh = respawn(record)
        raw = state["processes"]
        position = max(i for i, r in enumerate(raw) if r["pid"] == record.pid)
        raw[position] = fresh.to_json()
        self._write_state(state)
        endpoints = Endpoints(**state["endpoints"])
        wait_until(fresh, self._readiness(fresh, endpoints, Path(state["data_dir"])), timeout)
        return fresh

    def restart(self, name: str, grace: float = 15.0) -> ProcessRecord:
        """`stop` then `start`: a rolling restart of one process."""
        self.stop(name, grace)
        return self.start(name)

    def _readiness(
        self, record: ProcessRecord, endpoints: Endpoints, data_dir: Path
    ) -> Callable[[], bool]:
        if record.name == "etcd":
            return lambda: _http_ok(f"{endpoints.etcd_url}/health")
        if record.name == "kube-apiserver":
            context = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
            context.load_cert_chain(
                str(data_dir / "pki" / "admin.crt"), str(data_dir / "pki" / "admin.key")
            )
            return lambda: _http_ok(f"{endpoints.apiserver_url}/readyz", context)
        if record.name.startswith("nats-server"):
            monitor = nats_monitor_of(record.name, endpoints.nats_monitor_url)
            return lambda: _nats_ready(monitor)
        if record.name == "minio":
            return lambda: _http_ok(f"{endpoints.s3_endpoint_url}{_minio_health(record)}")
        port = record.env.get("EMULSION_HTTP_PORT")
        if record.name not in SERVICES or port is None:
            raise StackError(f"no readiness check is known for {record.name}")
        url = f"http://127.0.0.1:{port}{SERVICES[record.name].ready_path}"
        return lambda: _http_ok(url)

    def track(self, record: ProcessRecord) -> None:
        """Record a process started beside the stack (a benchmark's baseline server), so
        `down` and a signal stop it with the stack."""
        state = self._read_state()
        if state is None:
            raise StackError("the stack is not running")
        state["processes"].append(record.to_json())
        self._write_state(state)

    # -- components -----------------------------------------------------------------

    def _start_etcd(
        self, binary: Path, data_dir: Path, started: Callable[[ProcessRecord], ProcessRecord]
    ) -> str:
        client, peer = free_port(), free_port()
        url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        record = started(
            spawn(
                "etcd",
                [
                    str(binary),
                    "--name",
                    "emulsion",
                    "--data-dir",
                    str(data_dir / "etcd"),
                    "--listen-client-urls",
                    url,
                    "--advertise-client-urls",
                    url,
                    "--listen-peer-urls",
                    peer_url,
                    "--initial-advertise-peer-urls",
                    peer_url,
                    "--initial-cluster",
                    f"emulsion={peer_url}",
                    # A throw-away store: durability costs fsyncs and buys nothing here.
                    "--unsafe-no-fsync",
                    "--log-level",
                    "warn",
                ],
                data_dir / "logs" / "etcd.log",
            )
        )
        wait_until(record, lambda: _http_ok(f"{url}/health"), START_TIMEOUT)
        self.say(f"  etcd            {url}")
        return url

    def _start_apiserver(
        self,
        binary: Path,
        data_dir: Path,
        etcd_url: str,
        started: Callable[[ProcessRecord], ProcessRecord],
    ) -> tuple[str, Path, Path]:
        certs = pki_module.make_apiserver_pki(data_dir / "pki")
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        audit_policy = data_dir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        audit_log = data_dir / "logs" / "audit.log"
        record = started(
            spawn(
                "kube-apiserver",
                [
                    str(binary),
                    "--etcd-servers",
                    etcd_url,
                    "--bind-address",
                    "127.0.0.1",
                    "--advertise-address",
                    "127.0.0.1",
                    "--secure-port",
                    str(port),
                    "--cert-dir",
                    str(data_dir / "pki"),
                    "--tls-cert-file",
                    str(certs.serving_cert),
                    "--tls-private-key-file",
                    str(certs.serving_key),
                    "--client-ca-file",
                    str(certs.ca_cert),
                    "--service-account-issuer",
                    "https://kubernetes.default.svc.cluster.local",
                    "--service-account-key-file",
                    str(certs.service_account_pub),
                    "--service-account-signing-key-file",
                    str(certs.service_account_key),
                    "--service-cluster-ip-range",
                    "10.0.0.0/24",
                    "--authorization-mode",
                    "RBAC",
                    "--allow-privileged=true",
                    # As envtest: no controller-manager runs to make service-account tokens.
                    "--disable-admission-plugins",
                    "ServiceAccount",
                    "--audit-policy-file",
                    str(audit_policy),
                    "--audit-log-path",
                    str(audit_log),
                    "--profiling=false",
                    "--v=1",
                ],
                data_dir / "logs" / "kube-apiserver.log",
            )
        )
        context = ssl.create_default_context(cafile=str(certs.ca_cert))
        context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
        wait_until(record, lambda: _http_ok(f"{url}/readyz", context), START_TIMEOUT)
        kubeconfig = self.state_dir / "kubeconfig"
        pki_module.write_kubeconfig(
            kubeconfig,
            url,
            certs.ca_cert,
            certs.admin_cert,
            certs.admin_key,
            cluster="emulsion-local",
            user="emulsion-admin",
            namespace="default",
        )
        self.say(f"  kube-apiserver  {url}")
        return url, kubeconfig, audit_log

    def _start_nats(
        self, binary: Path, data_dir: Path, started: Callable[[ProcessRecord], ProcessRecord]
    ) -> tuple[str, str, nats_auth.NatsAuth]:
        """One server on 127.0.0.1, or a cluster (see NATS_CLUSTER_ADDRESSES); the client
        URL (a list for a cluster) and the first server's monitoring URL."""
        # The real node's pods reach NATS through the relay on the bridge address, with
        # the same certificate.
        port, monitor, route = free_port(), free_port(), free_port()
        clustered = self.nats_servers > 1
        hosts = NATS_CLUSTER_ADDRESSES if clustered else ("127.0.0.1",)
        auth = nats_auth.make(
            self.state_dir / "nats", ("127.0.0.1", "localhost", BRIDGE_ADDRESS, *hosts)
        )
        scheme = "tls" if self.nats_tls else "nats"
        records = []
        for number, host in enumerate(hosts, start=1):
            name = f"nats-server-{number}" if clustered else "nats-server"
            server_config = nats_auth.server_config(
                auth,
                host=host,
                port=port,
                monitor_port=monitor,
                store_dir=data_dir / name,
                server_name=f"{NATS_CLUSTER_NAME}-{number}" if clustered else NATS_CLUSTER_NAME,
                sync_always=self.nats_sync_always,
            )
            if clustered:
                server_config["cluster"] = nats_auth.cluster_config(
                    NATS_CLUSTER_NAME, host, route, [h for h in hosts if h != host]
                )
            if not self.nats_tls:
                del server_config["tls"]
            config = nats_auth.write_config(auth.directory / f"{name}.conf", server_config)
            records.append(
                started(
                    spawn(
                        name,
                        [str(binary), "--config", str(config)],
                        data_dir / "logs" / f"{name}.log",
                    )
                )
            )
        for record, host in zip(records, hosts, strict=True):
            ready = f"http://{host}:{monitor}"
            wait_until(record, lambda url=ready: _nats_ready(url), START_TIMEOUT)  # type: ignore[misc]
        url = ",".join(f"{scheme}://{host}:{port}" for host in hosts)
        monitor_url = f"http://{hosts[0]}:{monitor}"
        kind = f"a cluster of {len(hosts)}, R3" if clustered else "one server"
        self.say(f"  nats-server     {url} (monitoring {monitor_url}; {kind}; a user per service)")
        return url, monitor_url, auth

    def _start_minio(
        self,
        binary: Path,
        data_dir: Path,
        started: Callable[[ProcessRecord], ProcessRecord],
    ) -> tuple[str, str, str]:
        access_key = f"emulsion-{secrets.token_hex(4)}"
        secret_key = secrets.token_urlsafe(24)
        environment = {
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            "MINIO_UPDATE": "off",
            "MINIO_BROWSER": "off",
            "MINIO_API_CORS_ALLOW_ORIGIN": ",".join(PAGE_ORIGINS),
        }
        if self.minio_layout != "single":
            # Erasure-coded MinIO refuses drives on the root disk ("drive not found, will
            # be retried", for ever); the stack's drives are folders of one temp dir.
            environment["MINIO_CI_CD"] = "on"
        drives = [str(data_dir / "minio")]
        if self.minio_layout == "drives":
            drives = [str(minio_drive(data_dir, n)) for n in range(1, MINIO_ERASURE_SET + 1)]
        port = free_port()
        record = started(
            spawn(
                "minio",
                [
                    str(binary),
                    "server",
                    *drives,
                    "--address",
                    f"127.0.0.1:{port}",
                    "--console-address",
                    f"127.0.0.1:{free_port()}",
                    "--quiet",
                ],
                data_dir / "logs" / "minio.log",
                env=environment,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(record, lambda: _http_ok(f"{url}{_minio_health(record)}"), START_TIMEOUT)
        layout = "one drive" if len(drives) == 1 else f"{len(drives)} drives, erasure coded"
        self.say(f"  minio           {url} ({layout})")
        return url, access_key, secret_key

    def start_service(
        self,
        name: str,
        environment: dict[str, str] | None = None,
        command_prefix: tuple[str, ...] = (),
    ) -> ProcessRecord:
        """Start one more service process on a running stack; `down` stops it too.

        `command_prefix` runs it under another command (e.g. `faketime -f +180`, a host
        clock minutes ahead); a restart keeps it."""
        endpoints = self.running()
        state = self._read_state()
        if endpoints is None or state is None:
            raise StackError("the stack is not running")
        record, _ = self._start_service(
            SERVICES[name], endpoints, Path(state["data_dir"]), environment, command_prefix
        )
        self.track(record)
        return record

    @staticmethod
    def service_url(record: ProcessRecord) -> str:
        """Where a service started here answers: the port it was given is in its environment."""
        environment = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
        port = next(v for v in environment if v.startswith(b"EMULSION_HTTP_PORT="))
        return f"http://127.0.0.1:{port.split(b'=', 1)[1].decode()}"

    def _start_service(
        self,
        service: ServiceSpec,
        endpoints: Endpoints,
        data_dir: Path,
        environment: dict[str, str] | None = None,
        command_prefix: tuple[str, ...] = (),
    ) -> tuple[ProcessRecord, str]:
        port = free_port()
        record = spawn(
            service.name,
            [*command_prefix, sys.executable, "-m", service.module],
            _fresh_log(data_dir / "logs", service.name),
            env={
                **endpoints.environment(),
                # Each service connects to NATS as its own identity, not as the admin.
                **endpoints.nats_environment(service.name),
                "OTEL_SERVICE_NAME": f"emulsion-{service.name}",
                "EMULSION_HTTP_PORT": str(port),
                # The service's own MinIO user in place of the root user (its least S3 policy).
                **storage_identities.environment(endpoints, service.name),
                **service.environment(endpoints, data_dir),
                **(environment or {}),
            },
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(record, lambda: _http_ok(url + service.ready_path), START_TIMEOUT)
        self.say(f"  {service.name:<15} {url}")
        return record, url

    # -- bootstrap ----------------------------------------------------------------------

    def _bootstrap(self, endpoints: Endpoints) -> None:
        crds = apply_crds(endpoints.kubeconfig)
        asyncio.run(_ensure_jetstream(endpoints))
        ensure_bucket(endpoints)
        storage_identities.create(endpoints)
        self.say(
            f"  bootstrapped    CRDs {', '.join(crds)}; streams "
            f"{', '.join(s.name for s in messaging.STREAMS)}, bucket {endpoints.bucket}"
        )

    # -- state ----------------------------------------------------------------------------

    def _new_work_signing_key(self) -> Path:
        """A fresh key for this stack's work messages, readable by this user only."""
        self.work_signing_key_file.unlink(missing_ok=True)
        descriptor = os.open(
            self.work_signing_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(descriptor, "w") as key:
            key.write(secrets.token_urlsafe(48) + "\n")
        return self.work_signing_key_file

    def _read_state(self) -> dict[str, Any] | None:
        return self._state.read()

    def _write_state(self, state: dict[str, Any]) -> None:
        self._state.write(state)

    def client_environment(self) -> dict[str, str]:
        """The variables `.emulsion/env` exports (endpoints, credentials, service URLs)."""
        variables = {}
        for line in self.env_file.read_text().splitlines():
            if line.startswith("export ") and not line.startswith("export PATH="):
                name, _, value = line.removeprefix("export ").partition("=")
                variables[name] = shlex.split(value)[0] if value else ""
        return variables

    def _write_env(self, variables: dict[str, str]) -> None:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in variables.items()]
        # kubectl, nats-server and the `emulsion` CLI live beside this interpreter.
        lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
        self.env_file.write_text(
            "# written by `make up`; source it in a shell\n" + "\n".join(lines) + "\n"
        )
        self.env_file.chmod(0o600)


def add_state_dir(parser: argparse.ArgumentParser) -> None:
    """The `--state-dir` option of the harness's commands: whose stack they act on."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".emulsion"),
        help="where state.json, env and kubeconfig live (default: .emulsion)",
    )


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
        return int(response.status) == 200


def apply_crds(kubeconfig: str, timeout: float = 60.0) -> list[str]:
    """Create or replace every CRD in `crds/` and wait until the apiserver serves each."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api_client = config.new_client_from_config(config_file=kubeconfig)
    extensions = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    applied = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        try:
            extensions.create_custom_resource_definition(body)
        except ApiException as error:
            if error.status != 409:
                raise
            current = extensions.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[union-attr]
            extensions.replace_custom_resource_definition(name, body)
        spec = body["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("served", True))
        deadline = time.monotonic() + timeout
        while True:
            try:
                custom.list_cluster_custom_object(
                    spec["group"], version, spec["names"]["plural"], limit=1
                )
                break
            except ApiException as error:
                if error.status != 404 or time.monotonic() > deadline:
                    raise StackError(f"CRD {name} is not served: {error.reason}") from error
            time.sleep(0.1)
        applied.append(name)
    return applied


def minio_drive(data_dir: Path, number: int) -> Path:
    """Drive `number` (from 1) of an erasure-coded MinIO."""
    return data_dir / f"minio-drive-{number}"


def _minio_health(record: ProcessRecord) -> str:
    """Ready to serve: one drive answers `ready` once up; an erasure-coded MinIO only
    once its drives are formatted and in write quorum (`ready` comes before that, and a
    first request then gets XMinioServerNotInitialized)."""
    drives = [arg for arg in record.argv if "/minio-drive-" in arg]
    return "/minio/health/cluster" if drives else "/minio/health/ready"


def nats_monitor_of(record: str, first: str) -> str:
    """The monitoring URL of the NATS server process `record` (`nats-server`, or
    `nats-server-<n>` of a cluster: same port, its own address)."""
    number = record.rsplit("-", 1)[-1]
    if not number.isdigit():
        return first
    port = first.rsplit(":", 1)[1]
    return f"http://{NATS_CLUSTER_ADDRESSES[int(number) - 1]}:{port}"


def _nats_ready(monitor_url: str) -> bool:
    """JetStream is up and, in a cluster, this server knows the meta leader (before that,
    a stream create answers "JetStream system temporarily unavailable")."""
    try:
        if not _http_ok(f"{monitor_url}/healthz?js-enabled-only=true"):
            return False
        # The stack's own http:// monitoring URL.
        with urllib.request.urlopen(f"{monitor_url}/jsz", timeout=2) as response:  # noqa: S310
            report = json.load(response)
    except (OSError, ValueError):
        return False
    meta = report.get("meta_cluster") or {}
    return "cluster_size" not in meta or bool(meta.get("leader"))


async def _ensure_jetstream(endpoints: Endpoints) -> None:
    # As the controller would at its start (the bootstrap identity): the servers are up
    # before any service, so tests that start a processor or janitor alone find their
    # durables; its own rights suffice, which this also checks at every start.
    connection = await endpoints.nats_connect(nats_table.BOOTSTRAP, connect_timeout=5)
    try:
        await messaging.ensure_jetstream(
            connection.jetstream(), replicas=endpoints.jetstream_replicas
        )
    finally:
        await connection.drain()


def s3_client(endpoints: Endpoints) -> Any:
    settings = S3Settings(
        bucket=endpoints.bucket,
        s3_endpoint_url=endpoints.s3_endpoint_url,
        s3_region=REGION,
    )
    return storage.s3_client(
        settings,
        aws_access_key_id=endpoints.s3_access_key,
        aws_secret_access_key=endpoints.s3_secret_key,
    )


def ensure_bucket(endpoints: Endpoints) -> None:
    from botocore.exceptions import ClientError

    s3 = s3_client(endpoints)
    try:
        s3.head_bucket(Bucket=endpoints.bucket)
    except ClientError:
        s3.create_bucket(Bucket=endpoints.bucket)


def _fresh_log(logs: Path, name: str) -> Path:
    """`<name>.log` for a service's first process on this stack, `<name>-2.log` and on for
    the next ones: whoever reads a process's log (a test, `log_tail` in an error) must
    not find what an earlier process of the same service wrote."""
    log = logs / f"{name}.log"
    serial = 1
    while log.exists():
        serial += 1
        log = logs / f"{name}-{serial}.log"
    return log
