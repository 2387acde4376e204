"""The real services, run the way the chart deploys them, against the real apiserver.

A release is installed; then, standing in for the kubelet (none runs here), each
component's container is started as a process from its Deployment as the apiserver
stores it: the environment with its fieldRefs and secretKeyRefs resolved, the ConfigMap
and Secret volumes written out under a local root, and the ServiceAccount's token minted
with the TokenRequest API (none for the processor and janitor, as
automountServiceAccountToken: false gives them none). An image is then ingested through
the API, and the audit log shows which identity made each IngestJob write.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from PIL import Image

from emulsion_contracts import crd, keys, wire
from emulsion_devstack import release
from emulsion_devstack.processes import ProcessRecord, log_tail, stop, wait_for
from emulsion_devstack.stack import Endpoints, LocalStack
from tests.uploading import uploaded

from .conftest import CHART, COMPONENTS, Tools

RELEASE = "live"
API_TOKEN = "chart-test-token"
S3_SECRET = "s3-credentials"
# The ports are the stack's to choose: several services share one loopback here.
PORTS = ("EMULSION_HTTP_PORT", "EMULSION_METRICS_PORT")


@dataclass(frozen=True)
class Pod:
    """What the kubelet would hand one component's container."""

    component: str
    environment: dict[str, str]
    service_account: str
    automount_token: bool


def resolve_env(
    entries: list[Any], namespace: str, pod_name: str, secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    fields = {"metadata.namespace": namespace, "metadata.name": pod_name}
    environment: dict[str, str] = {}
    for entry in entries:
        source = entry.value_from
        if source is None:
            value = entry.value or ""
        elif source.field_ref is not None:
            assert source.field_ref.field_path in fields, entry.name
            value = fields[source.field_ref.field_path]
        else:
            reference = source.secret_key_ref
            assert reference is not None, f"{entry.name}: unsupported valueFrom"
            value = secrets[reference.name][reference.key]
        environment[entry.name] = value
    return environment


def materialise_volumes(
    pod_spec: Any,
    core: Any,
    namespace: str,
    secrets: dict[str, dict[str, str]],
    root: Path,
) -> dict[str, Path]:
    """Write the pod's volumes under `root`; returns mount path -> local directory."""
    (container,) = pod_spec.containers
    volumes = {v.name: v for v in pod_spec.volumes}
    mounts: dict[str, Path] = {}
    for mount in container.volume_mounts:
        local = root / mount.mount_path.lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount.name]
        files: dict[str, str] = {}
        if volume.config_map is not None:
            config_map = core.read_namespaced_config_map(volume.config_map.name, namespace)
            files = dict(config_map.data or {})
        elif volume.secret is not None:
            data = secrets[volume.secret.secret_name]
            items = volume.secret.items or [client.V1KeyToPath(key=k, path=k) for k in data]
            files = {item.path: data[item.key] for item in items}
        elif volume.projected is not None:
            # The API's tokens (a Secret) and their scopes (a ConfigMap) in one directory.
            for source in volume.projected.sources:
                if source.secret is not None:
                    data, items = secrets[source.secret.name], source.secret.items
                else:
                    read = core.read_namespaced_config_map(source.config_map.name, namespace)
                    data, items = dict(read.data or {}), source.config_map.items
                items = items or [client.V1KeyToPath(key=k, path=k) for k in data]
                files.update({item.path: data[item.key] for item in items})
        else:
            # emptyDir and the generic ephemeral scratch volume: an empty writable dir.
            assert volume.empty_dir is not None or volume.ephemeral is not None, mount.name
        for name, content in files.items():
            (local / name).write_text(content)
        mounts[mount.mount_path] = local
    return mounts


def relocate(environment: dict[str, str], mounts: dict[str, Path]) -> dict[str, str]:
    """Point every variable that names a file in a mounted volume at the local copy."""
    relocated = {}
    for name, value in environment.items():
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                value = str(local / Path(value).relative_to(mount_path))
                break
        else:
            assert not value.startswith("/"), f"{name}={value} is on no volume of the pod"
        relocated[name] = value
    return relocated


def read_secrets(core: Any, namespace: str) -> dict[str, dict[str, str]]:
    return {
        s.metadata.name: {k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}
        for s in core.list_namespaced_secret(namespace).items
    }


def pods_of_release(core: Any, apps: Any, namespace: str, root: Path) -> dict[str, Pod]:
    secrets = read_secrets(core, namespace)
    pods = {}
    for deployment in apps.list_namespaced_deployment(namespace).items:
        component = deployment.metadata.labels["app.kubernetes.io/component"]
        spec = deployment.spec.template.spec
        mounts = materialise_volumes(spec, core, namespace, secrets, root / component)
        (container,) = spec.containers
        pod_name = f"{deployment.metadata.name}-0"
        environment = resolve_env(container.env, namespace, pod_name, secrets)
        pods[component] = Pod(
            component=component,
            environment={k: v for k, v in relocate(environment, mounts).items() if k not in PORTS},
            service_account=spec.service_account_name,
            automount_token=bool(spec.automount_service_account_token),
        )
    return pods


def kubeconfig_with_token(stack: Endpoints, token: str, namespace: str, path: Path) -> Path:
    """The stack's cluster and CA, authenticated by the ServiceAccount's token alone."""
    config = yaml.safe_load(Path(stack.kubeconfig).read_text())
    config["users"] = [{"name": "service-account", "user": {"token": token}}]
    context = config["contexts"][0]["context"]
    context.update(user="service-account", namespace=namespace)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def jpeg(width: int = 640, height: int = 480) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (180, 90, 30)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def audit_writes(stack: Endpoints, namespace: str, job: str) -> set[tuple[str, str, str]]:
    """(verb, subresource, user) of every successful write to the job, from the audit log."""
    found = set()
    for line in Path(stack.audit_log).read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef", {})
        if (
            ref.get("namespace") == namespace
            and ref.get("name") == job
            and event.get("stage") == "ResponseComplete"
            and event.get("responseStatus", {}).get("code", 0) < 300
        ):
            found.add((event["verb"], ref.get("subresource", ""), event["user"]["username"]))
    return found


@pytest.fixture
def release_namespace(tools: Tools, stack: Endpoints, kube: Any) -> Iterator[str]:
    """A namespace with the chart installed as RELEASE, pointed at the stack's servers."""
    core: Any = client.CoreV1Api(kube)
    namespace = f"live-{keys.new_ulid().lower()[-8:]}"
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": S3_SECRET},
            "stringData": {
                "AWS_ACCESS_KEY_ID": stack.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": stack.s3_secret_key,
            },
        },
    )
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": f"{RELEASE}-emulsion-api-tokens"},
            "stringData": {"tokens": API_TOKEN},
        },
    )
    # The stack's NATS identities and CA, as the operator's Secrets: the services below
    # then connect with exactly what the chart mounts (a user each, TLS against the CA).
    for name, data in release.nats_secrets(stack).items():
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})
    port = int(stack.nats_url.rsplit(":", 1)[1])
    values = {
        "crds.enabled": False,
        "nats": release.nats_values(stack, f"127.0.0.1:{port}", port),
        "s3.bucket": stack.bucket,
        "s3.endpointUrl": stack.s3_endpoint_url,
        "s3.credentials.existingSecret": S3_SECRET,
        "gcGraceSeconds": 5,
        # The API reads its token's scopes from the ConfigMap the chart mounts.
        "apiTokens.scopes": {hashlib.sha256(API_TOKEN.encode()).hexdigest(): ["*"]},
    }
    overrides = [arg for k, v in values.items() for arg in ("--set-json", f"{k}={json.dumps(v)}")]
    tools.helm_(
        "install", RELEASE, str(CHART), "-n", namespace, *overrides, kubeconfig=stack.kubeconfig
    )
    yield namespace


@dataclass
class Running:
    records: dict[str, ProcessRecord]

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{log_tail(record.log, 40)}" for name, record in self.records.items()
        )


async def purge_streams(stack: Endpoints) -> None:
    connection = await stack.nats_connect()
    try:
        for stream in (
            wire.WORK_STREAM,
            wire.EVENTS_STREAM,
            wire.ADVISORIES_STREAM,
        ):
            await connection.jetstream().purge_stream(stream)
    finally:
        await connection.close()


@pytest.fixture
def services(
    release_namespace: str,
    tools: Tools,
    stack: Endpoints,
    stack_state_dir: Path,
    kube: Any,
    tmp_path: Path,
) -> Iterator[Running]:
    namespace = release_namespace
    core: Any = client.CoreV1Api(kube)
    apps: Any = client.AppsV1Api(kube)
    pods = pods_of_release(core, apps, namespace, tmp_path / "pods")
    assert set(pods) == set(COMPONENTS)
    local = LocalStack(stack_state_dir, say=lambda line: None)
    running = Running({})
    # The streams are shared by the stack's tests: work and results other tests left for
    # jobs in their namespaces would reach this release's processor and controller, whose
    # RBAC (rightly) refuses them those jobs.
    asyncio.run(purge_streams(stack))
    try:
        # The controller first: the API's jobs must find it already watching.
        for component in ("controller", "processor", "janitor", "api"):
            pod = pods[component]
            environment = dict(pod.environment)
            if pod.automount_token:
                token = tools.kubectl_(
                    "create", "token", pod.service_account, "-n", namespace,
                    "--duration", "1h", kubeconfig=stack.kubeconfig,
                ).strip()  # fmt: skip
                path = tmp_path / f"{component}.kubeconfig"
                environment["KUBECONFIG"] = str(
                    kubeconfig_with_token(stack, token, namespace, path)
                )
            else:
                # No token is mounted: no credentials for the apiserver at all.
                environment["KUBECONFIG"] = str(tmp_path / "no-credentials")
            if component == "api":
                # The stack's own token must not let anyone in: only the mounted file's.
                environment["EMULSION_API_TOKENS"] = ""
            running.records[component] = local.start_service(component, environment)
        yield running
    finally:
        if "controller" in running.records:
            # Jobs carry the controller's finalizer; let it release them before it stops.
            custom: Any = client.CustomObjectsApi(kube)
            for job in custom.list_namespaced_custom_object(
                crd.GROUP, crd.VERSION, namespace, crd.PLURAL
            )["items"]:
                custom.delete_namespaced_custom_object(
                    crd.GROUP, crd.VERSION, namespace, crd.PLURAL, job["metadata"]["name"]
                )
            wait_for(
                "the controller to release the test's jobs",
                lambda: (
                    not custom.list_namespaced_custom_object(
                        crd.GROUP, crd.VERSION, namespace, crd.PLURAL
                    )["items"]
                ),
            )
        for record in reversed(running.records.values()):
            stop(record)


def test_an_image_is_ingested_by_services_holding_only_the_charts_identities(
    services: Running, release_namespace: str, stack: Endpoints, s3: Any, kube: Any
) -> None:
    namespace = release_namespace
    api_url = LocalStack.service_url(services.records["api"])
    image = jpeg()
    collection = f"gallery-{keys.new_ulid().lower()[-10:]}"
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60.0) as api:
        assert api.get("/v1/ingests/nope", headers={"Authorization": "Bearer x"}).status_code == 401
        staged = uploaded(api, collection, "IMG_0001.jpg", image)["key"]
        accepted = api.post(
            "/v1/ingests",
            json={"collection": collection, "items": [{"upload_key": staged}]},
        )
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()["name"]

        def finished() -> dict[str, Any] | None:
            answer = api.get(f"/v1/ingests/{job}", params={"wait": 5})
            assert answer.status_code == 200, answer.text
            status: dict[str, Any] = answer.json()
            return status if status["finished"] else None

        try:
            status = wait_for(f"IngestJob {job} to finish", finished, 120)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{services.logs()}") from None
    assert status["phase"] == "Succeeded", (status, services.logs())
    assert status["succeeded"] == 1
    manifest = s3.get_object(Bucket=stack.bucket, Key=keys.manifest_key(collection, "IMG_0001.jpg"))
    assert manifest["ContentLength"] > 0

    # Each write to the job was made by the identity the chart gave its component.
    prefix = f"system:serviceaccount:{namespace}:{RELEASE}-emulsion"
    writes = audit_writes(stack, namespace, job)
    assert ("create", "", f"{prefix}-api") in writes, writes
    assert ("patch", "status", f"{prefix}-controller") in writes, writes
    writers = {user for _verb, _sub, user in writes}
    assert writers <= {f"{prefix}-api", f"{prefix}-controller"}, writers
    # The Role lets the controller post the job's Events in the namespace it serves.
    core = client.CoreV1Api(kube)

    def completed_event() -> list[Any]:
        listed = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={job}")
        return [e for e in listed.items if e.reason == "Completed"]

    (event,) = wait_for(f"a Completed Event of {job}", completed_event, timeout=30)
    assert event.reporting_component == "emulsion.dev/controller"
    # And neither process was refused anything it tried (kopf logs a refusal and retries).
    for component in ("api", "controller"):
        log = Path(services.records[component].log).read_text()
        assert "forbidden" not in log.lower(), services.logs()
