"""The chart against the real local kube-apiserver (v1.36): validation, install, upgrade,
uninstall, and the RBAC of its ServiceAccounts as the apiserver enforces it.

No kubelet or controller-manager runs, so Pods never start: everything here is what the
apiserver itself checks and stores.
"""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from emulsion_contracts import crd
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import Endpoints, LocalStack
from tests.jobmaking import create_job

from .conftest import CHART, REPO_ROOT, Tools, template

UPLOAD = "01JDZ8Q6W1B2C3D4E5F6G7H8J9"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# A job of one item, as the tests below make it in the chart's namespace.
SPEC = {
    "collection": "gallery-42",
    "items": [{"source": f"staging/gallery-42/{UPLOAD}/IMG_0001.jpg", "asset": "IMG_0001.jpg"}],
}


@pytest.fixture
def namespace(tools: Tools, stack: Endpoints) -> Iterator[str]:
    name = unique("chart")
    tools.kubectl_("create", "namespace", name, kubeconfig=stack.kubeconfig)
    yield name
    # No namespace controller runs, so a deleted namespace would stay Terminating; the
    # objects in it are harmless and the stack is thrown away with the session.


def apply_dry_run(tools: Tools, stack: Endpoints, namespace: str, manifest: str) -> str:
    return tools.kubectl_(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--field-manager=chart-test",
        "--namespace",
        namespace,
        "-f",
        "-",
        kubeconfig=stack.kubeconfig,
        stdin=manifest,
    )


# The Kubernetes parts of the operations values (the Prometheus Operator's and the Gateway
# API's CRDs are not installed here: test_render.py checks those objects' structure).
OPERATIONS = {
    "ingress.enabled": True,
    "ingress.hosts": ["photos.example.com"],
    "ingress.tls": [{"hosts": ["photos.example.com"], "secretName": "photos-tls"}],
    "monitoring.dashboard.enabled": True,
    "components.processor.image.digest": "sha256:" + "0" * 64,
    "components.processor.affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {
                            "matchLabels": {"app.kubernetes.io/component": "processor"}
                        },
                    },
                }
            ]
        }
    },
    "components.api.topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "api"}},
        }
    ],
    "components.api.env": {
        "EMULSION_PUBLIC_BASE_URL": {
            "valueFrom": {"configMapKeyRef": {"name": "cdn", "key": "url"}}
        }
    },
    "components.api.envFrom": [{"secretRef": {"name": "api-extra", "optional": True}}],
}


@pytest.mark.parametrize(
    "values",
    [{}, {"keda.enabled": False}, {"keda.enabled": True}, OPERATIONS],
    ids=["default", "hpa", "keda", "operations"],
)
def test_rendered_objects_pass_the_apiservers_validation(
    tools: Tools, stack: Endpoints, namespace: str, values: dict[str, Any]
) -> None:
    objects = [
        doc
        for doc in yaml.safe_load_all(template(tools, values, namespace=namespace).stdout)
        if doc
    ]
    # KEDA's CRD is not installed here; test_render.py checks the ScaledObject with KEDA's
    # own models instead.
    checked = [o for o in objects if o["kind"] != "ScaledObject"]
    assert len(checked) == len(objects) - (1 if values.get("keda.enabled") else 0)
    # As JSON documents: PyYAML writes the string "y" bare, which YAML 1.1 readers (Go's,
    # kubectl's) take for true (the focal point's y).
    documents = "\n---\n".join(json.dumps(o) for o in checked)
    output = apply_dry_run(tools, stack, namespace, documents)
    # Strict field validation: an unknown or misplaced field would have failed the apply.
    assert output.count("(server dry run)") == len(checked)
    kinds = {o["kind"] for o in checked}
    assert ("HorizontalPodAutoscaler" in kinds) is not bool(values.get("keda.enabled"))
    assert "Pod" in kinds  # the `helm test` hook
    assert ("Ingress" in kinds) is bool(values.get("ingress.enabled"))


def test_the_apiserver_rejects_what_the_chart_must_not_render(
    tools: Tools, stack: Endpoints, namespace: str
) -> None:
    # The dry run above can fail: a misplaced field is refused, not silently dropped.
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "readOnlyRoot": True}]},
            },
        },
    }
    result = tools.run(
        "kubectl",
        "apply",
        "--server-side",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        kubeconfig=stack.kubeconfig,
        stdin=json.dumps(broken),
        check=False,
    )
    assert result.returncode != 0
    assert "readOnlyRoot" in result.stderr


@pytest.fixture
def chartless_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """A stack of its own without Emulsion's CRDs, as a first install finds a cluster (the
    stack bootstraps them, and Helm refuses to adopt objects it did not make). Not the
    session's: deleting a CRD deletes every IngestJob of it and waits on their finalizers,
    which would take the jobs of whatever tests share the session stack with this one."""
    local = LocalStack(tmp_path_factory.mktemp("chart-stack"), services=(), say=lambda line: None)
    try:
        endpoints = local.up()
        extensions: Any = client.ApiextensionsV1Api(
            config.new_client_from_config(config_file=endpoints.kubeconfig)
        )
        names = [
            yaml.safe_load(p.read_text())["metadata"]["name"]
            for p in (REPO_ROOT / "crds").glob("*.yaml")
        ]
        for name in names:
            extensions.delete_custom_resource_definition(name)

        def gone() -> bool:
            present = {c.metadata.name for c in extensions.list_custom_resource_definition().items}
            return not present & set(names)

        wait_for("the stack's CRDs to be deleted", gone)
        yield endpoints
    finally:
        local.down()


def chart_with_extra_printer_column(tmp_path: Path) -> Path:
    copy = tmp_path / "emulsion"
    shutil.copytree(CHART, copy)
    path = copy / "files" / "crds" / "ingestjob.yaml"
    definition = yaml.safe_load(path.read_text())
    (version,) = definition["spec"]["versions"]
    version["additionalPrinterColumns"].insert(
        4, {"name": "Items", "type": "integer", "jsonPath": ".status.total"}
    )
    path.write_text(json.dumps(definition, indent=1))  # JSON: see above, the bare y
    return copy


def release_objects(tools: Tools, stack: Endpoints, release: str, namespace: str) -> list[str]:
    manifest = tools.helm_("get", "manifest", release, "-n", namespace, kubeconfig=stack.kubeconfig)
    return [
        f"{doc['kind']}/{doc['metadata']['name']}"
        for doc in yaml.safe_load_all(manifest)
        if doc and doc["kind"] != "CustomResourceDefinition"
    ]


def resource_versions(
    tools: Tools, stack: Endpoints, namespace: str, objects: list[str]
) -> dict[str, str]:
    versions: dict[str, str] = {}
    for ref in objects:
        output = tools.kubectl_(
            "get", ref, "-n", namespace, "-o", "jsonpath={.metadata.resourceVersion}",
            kubeconfig=stack.kubeconfig,
        )  # fmt: skip
        versions[ref] = output
    return versions


def test_install_upgrade_and_uninstall_keep_the_crd_and_the_jobs(
    tools: Tools, chartless_stack: Endpoints, tmp_path: Path
) -> None:
    stack = chartless_stack
    kube = config.new_client_from_config(config_file=stack.kubeconfig)
    namespace = unique("chart")
    tools.kubectl_("create", "namespace", namespace, kubeconfig=stack.kubeconfig)
    release = "emulsion"
    jobs: Any = client.CustomObjectsApi(kube)
    apps: Any = client.AppsV1Api(kube)
    # One tenant: the chart refuses to install without scopes unless told so.
    helm = ["-n", namespace, "--set", "apiTokens.allowAdminTokens=true"]

    tools.helm_("install", release, str(CHART), *helm, kubeconfig=stack.kubeconfig)

    def served() -> bool:
        try:
            jobs.list_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    wait_for("the chart's CRD to be served", served)
    deployments = apps.list_namespaced_deployment(namespace).items
    assert sorted(d.metadata.name for d in deployments) == [
        "emulsion-api", "emulsion-controller", "emulsion-janitor", "emulsion-processor",
    ]  # fmt: skip
    job = unique("kept")
    create_job(jobs, job, SPEC, namespace=namespace)
    jobs.patch_namespaced_custom_object_status(
        crd.GROUP, crd.VERSION, namespace, crd.PLURAL, job, {"status": {"total": 1361}}
    )

    # Helm never upgrades CRDs from a chart's crds/ folder; this chart's are templates.
    upgraded = chart_with_extra_printer_column(tmp_path)
    tools.helm_("upgrade", release, str(upgraded), *helm, kubeconfig=stack.kubeconfig)

    def items_column_shown() -> bool:
        header, row = tools.kubectl_(
            "get", "ij", job, "-n", namespace, kubeconfig=stack.kubeconfig
        ).splitlines()
        return "ITEMS" in header.split() and "1361" in row.split()

    wait_for("the new printer column in `kubectl get ij`", items_column_shown)

    # Changed values roll out; applying the same values again changes nothing.
    changed = ["--set", "logLevel=DEBUG", "--set", "components.api.replicas=3"]
    tools.helm_("upgrade", release, str(upgraded), *helm, *changed, kubeconfig=stack.kubeconfig)
    api = apps.read_namespaced_deployment("emulsion-api", namespace)
    assert api.spec.replicas == 3
    env = {e.name: e.value for e in api.spec.template.spec.containers[0].env}
    assert env["EMULSION_LOG_LEVEL"] == "DEBUG"
    objects = release_objects(tools, stack, release, namespace)
    assert len(objects) > 20
    before = resource_versions(tools, stack, namespace, objects)
    tools.helm_("upgrade", release, str(upgraded), *helm, *changed, kubeconfig=stack.kubeconfig)
    assert resource_versions(tools, stack, namespace, objects) == before

    tools.helm_("uninstall", release, "-n", namespace, kubeconfig=stack.kubeconfig)
    assert not apps.list_namespaced_deployment(namespace).items
    extensions: Any = client.ApiextensionsV1Api(kube)
    kept = extensions.read_custom_resource_definition(crd.CRD_NAME)
    assert kept.metadata.annotations["helm.sh/resource-policy"] == "keep"
    fetched = jobs.get_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL, job)
    assert fetched["status"]["total"] == 1361


# -- RBAC, as the apiserver enforces it for tokens of the chart's own ServiceAccounts ----


def mint_token(tools: Tools, stack: Endpoints, namespace: str, account: str) -> str:
    # `kubectl create token` is the TokenRequest API: a short-lived, audience-bound token.
    return tools.kubectl_(
        "create", "token", account, "-n", namespace, "--duration", "10m",
        kubeconfig=stack.kubeconfig,
    ).strip()  # fmt: skip


def can_i(tools: Tools, stack: Endpoints, token: str, namespace: str, *request: str) -> bool:
    result = tools.run(
        "kubectl",
        "auth",
        "can-i",
        *request,
        "-n",
        namespace,
        "--token",
        token,
        kubeconfig=token_kubeconfig(stack),
        check=False,
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def token_kubeconfig(stack: Endpoints) -> str:
    """The admin kubeconfig without its client certificate, so only --token authenticates."""
    path = Path(stack.data_dir) / "token-kubeconfig.yaml"
    if not path.exists():
        config = yaml.safe_load(Path(stack.kubeconfig).read_text())
        config["users"] = [{"name": "token", "user": {}}]
        config["contexts"][0]["context"]["user"] = "token"
        path.write_text(yaml.safe_dump(config))
    return str(path)


def api_client_for(stack: Endpoints, token: str, tmp_path: Path) -> Any:
    config = yaml.safe_load(Path(stack.kubeconfig).read_text())
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]))
    configuration = client.Configuration()
    configuration.host = stack.apiserver_url
    configuration.ssl_ca_cert = str(ca)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def permissions(tools: Tools, stack: Endpoints, token: str, namespace: str) -> str:
    return tools.kubectl_(
        "auth", "can-i", "--list", "-n", namespace, "--token", token,
        kubeconfig=token_kubeconfig(stack),
    )  # fmt: skip


def test_service_accounts_can_do_exactly_what_their_component_needs(
    tools: Tools, stack: Endpoints, kube: Any, namespace: str, tmp_path: Path
) -> None:
    release = "rbac"
    tools.helm_(
        "install", release, str(CHART), "-n", namespace, "--set", "crds.enabled=false",
        "--set", "apiTokens.allowAdminTokens=true",
        kubeconfig=stack.kubeconfig,
    )  # fmt: skip
    core: Any = client.CoreV1Api(kube)
    accounts = core.list_namespaced_service_account(namespace).items
    chart_accounts = {
        a.metadata.labels["app.kubernetes.io/component"]: a.metadata.name
        for a in accounts
        if "app.kubernetes.io/component" in (a.metadata.labels or {})
    }
    assert set(chart_accounts) == {"api", "controller", "processor", "janitor"}
    tokens = {c: mint_token(tools, stack, namespace, a) for c, a in chart_accounts.items()}
    # An account bound to nothing: what every authenticated identity may do anyway.
    tools.kubectl_(
        "create", "serviceaccount", "nobody", "-n", namespace, kubeconfig=stack.kubeconfig
    )
    baseline = permissions(tools, stack, mint_token(tools, stack, namespace, "nobody"), namespace)

    def allowed(component: str, *request: str) -> bool:
        return can_i(tools, stack, tokens[component], namespace, *request)

    for component in ("processor", "janitor"):
        assert permissions(tools, stack, tokens[component], namespace) == baseline, component
        assert not allowed(component, "list", "ingestjobs.emulsion.dev")
        assert not allowed(component, "get", "secrets")

    assert all(
        allowed("api", verb, "ingestjobs.emulsion.dev")
        for verb in ("create", "get", "list", "watch", "patch", "delete")
    )
    assert not allowed("api", "patch", "ingestjobs.emulsion.dev", "--subresource=status")
    assert not allowed("api", "update", "ingestjobs.emulsion.dev", "--subresource=status")
    assert not allowed("api", "update", "ingestjobs.emulsion.dev")
    assert not allowed("api", "get", "secrets")
    assert not can_i(tools, stack, tokens["api"], "default", "create", "ingestjobs.emulsion.dev")

    assert allowed("controller", "patch", "ingestjobs.emulsion.dev", "--subresource=status")
    assert all(
        allowed("controller", verb, "ingestjobs.emulsion.dev")
        for verb in ("get", "list", "watch", "patch", "delete")
    )
    assert allowed("controller", "create", "events")
    assert allowed("controller", "create", "clusterkopfpeerings.kopf.dev")
    assert not allowed("controller", "create", "ingestjobs.emulsion.dev")
    assert not allowed("controller", "get", "secrets")
    # kopf may see which CRDs and namespaces exist, and change none of them.
    assert allowed("controller", "watch", "customresourcedefinitions.apiextensions.k8s.io")
    assert allowed("controller", "list", "namespaces")
    assert not allowed("controller", "patch", "customresourcedefinitions.apiextensions.k8s.io")
    assert not allowed("controller", "delete", "namespaces")
    assert not allowed("controller", "get", "configmaps")

    # Not only what SelfSubjectAccessReview says: real requests, allowed and refused.
    as_api: Any = client.CustomObjectsApi(api_client_for(stack, tokens["api"], tmp_path))
    as_controller: Any = client.CustomObjectsApi(
        api_client_for(stack, tokens["controller"], tmp_path)
    )
    as_processor: Any = client.CustomObjectsApi(
        api_client_for(stack, tokens["processor"], tmp_path)
    )
    job = unique("rbac")
    create_job(as_api, job, SPEC, namespace=namespace)
    status = {"status": {"phase": "Queued", "total": 1}}
    with pytest.raises(ApiException) as refused:
        as_api.patch_namespaced_custom_object_status(
            crd.GROUP, crd.VERSION, namespace, crd.PLURAL, job, status
        )
    assert refused.value.status == 403
    with pytest.raises(ApiException) as refused:
        as_processor.list_namespaced_custom_object(crd.GROUP, crd.VERSION, namespace, crd.PLURAL)
    assert refused.value.status == 403
    patched = as_controller.patch_namespaced_custom_object_status(
        crd.GROUP, crd.VERSION, namespace, crd.PLURAL, job, status
    )
    assert patched["status"]["phase"] == "Queued"
    as_controller.delete_namespaced_custom_object(
        crd.GROUP, crd.VERSION, namespace, crd.PLURAL, job
    )
