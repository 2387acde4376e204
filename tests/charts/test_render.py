"""The chart as rendered by `helm lint` and `helm template`, without a cluster.

What the apiserver itself accepts is in test_apiserver.py; here: the shape the chart
promises (one loop, least privilege, hardening), the schema's strictness, the KEDA/HPA
switch, the guards that refuse unsafe values, and the CRD copy staying in step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from emulsion_api.limits import TokenLimits, parse_limits
from emulsion_contracts import crd, stripping, wire
from emulsion_contracts.profiles import load_profiles

from .conftest import CHART, COMPONENTS, REPO_ROOT, Tools, by_kind, component_of, render, template


@pytest.fixture(scope="module")
def default(tools: Tools) -> list[dict[str, Any]]:
    return render(tools)


def deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component_of(d): d for d in by_kind(objects, "Deployment").values()}


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(deployment)["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_helm_lint_is_clean_in_strict_mode(tools: Tools) -> None:
    output = tools.helm_("lint", "--strict", str(CHART), "--set", "apiTokens.allowAdminTokens=true")
    assert "1 chart(s) linted, 0 chart(s) failed" in output


def test_default_render_has_each_component_once(default: list[dict[str, Any]]) -> None:
    for kind in ("Deployment", "ServiceAccount", "Service", "PodDisruptionBudget", "NetworkPolicy"):
        assert sorted(component_of(o) for o in by_kind(default, kind).values()) == list(
            COMPONENTS
        ), kind
    # Only the processor autoscales by default, with a CPU HPA while KEDA is off.
    assert [component_of(h) for h in by_kind(default, "HorizontalPodAutoscaler").values()] == [
        "processor"
    ]
    assert "replicas" not in deployments(default)["processor"]["spec"]
    assert not by_kind(default, "ScaledObject")


def test_every_container_is_hardened_probed_and_bounded(default: list[dict[str, Any]]) -> None:
    for name, deployment in deployments(default).items():
        pod = pod_spec(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert "memory" in container["resources"]["limits"], name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == (
            {"http": 8080, "metrics": 9090} if name in ("api", "controller") else {"http": 8080}
        )
        # The API checks its backends on its own port; its ops port serves only metrics.
        ready_port = container["readinessProbe"]["httpGet"]["port"]
        assert ready_port == ("metrics" if name == "controller" else "http"), name


def test_services_reach_each_components_metrics(default: list[dict[str, Any]]) -> None:
    for service in by_kind(default, "Service").values():
        name = component_of(service)
        ports = {port["name"]: port for port in service["spec"]["ports"]}
        if name == "api":
            # The public API, and its ops port apart, named for a ServiceMonitor.
            assert {n: (p["port"], p["targetPort"]) for n, p in ports.items()} == {
                "http": (80, "http"),
                "metrics": (9090, "metrics"),
            }
            continue
        (port,) = ports.values()
        # kopf's liveness endpoint owns the controller's http port; metrics have their own.
        assert port["targetPort"] == ("metrics" if name == "controller" else "http"), name
        selector = service["spec"]["selector"]
        assert selector["app.kubernetes.io/component"] == name


def test_shared_environment_and_service_names(tools: Tools) -> None:
    objects = render(
        tools,
        {
            "s3": {
                "bucket": "photos",
                "region": "eu-west-1",
                "endpointUrl": "http://minio:9000",
                "ports": [9000],
                "credentials": {
                    "existingSecret": "s3-creds",
                    "accessKeyIdKey": "id",
                    "secretAccessKeyKey": "secret",
                },
            },
            "otel": {
                "endpoint": "http://collector:4318",
                "port": 4318,
                "sampler": "parentbased_traceidratio",
                "samplerArg": "0.25",
                "resourceAttributes": "deployment.environment=prod",
            },
            "nats": {
                "url": "nats://nats.messaging:4222",
                "port": 4222,
                "jetstream": {"replicas": 3},
            },
        },
    )
    found = deployments(objects)
    for name, deployment in found.items():
        env = env_of(deployment)
        assert env["OTEL_SERVICE_NAME"] == f"emulsion-{name}"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
        assert "deployment.environment=prod" in env["OTEL_RESOURCE_ATTRIBUTES"]
        assert env["NATS_URL"] == "nats://nats.messaging:4222"
        assert env["EMULSION_JETSTREAM_REPLICAS"] == "3"
        assert env["EMULSION_BUCKET"] == "photos"
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["EMULSION_PROFILES_FILE"].endswith("profiles.yaml")
        # S3 credentials only where S3 is used: the controller never touches objects.
        has_credentials = "AWS_SECRET_ACCESS_KEY" in env
        assert has_credentials == (name != "controller"), name
        if has_credentials:
            assert env["AWS_SECRET_ACCESS_KEY"] == {
                "secretKeyRef": {"name": "s3-creds", "key": "secret"}
            }
    assert "EMULSION_API_TOKENS_FILE" in env_of(found["api"])
    assert env_of(found["api"])["EMULSION_NAMESPACE"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert "EMULSION_SCRATCH_DIR" in env_of(found["processor"])
    controller = env_of(found["controller"])
    assert controller["EMULSION_NAMESPACES"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert controller["EMULSION_CONTROLLER_PEERING"] == "emulsion.t-emulsion-controller"


def test_without_static_credentials_no_secret_is_referenced(default: list[dict[str, Any]]) -> None:
    # IRSA / pod identity: the SDK's default chain finds credentials by itself.
    for deployment in deployments(default).values():
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env_of(deployment))
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env_of(deployment)


def test_only_api_and_controller_get_a_token_and_a_role(default: list[dict[str, Any]]) -> None:
    for name, deployment in deployments(default).items():
        wants_api = name in ("api", "controller")
        assert pod_spec(deployment)["automountServiceAccountToken"] is wants_api, name
    for account in by_kind(default, "ServiceAccount").values():
        wants_api = component_of(account) in ("api", "controller")
        assert account["automountServiceAccountToken"] is wants_api
    roles = {component_of(r): r["rules"] for r in by_kind(default, "Role").values()}
    assert set(roles) == {"api", "controller"}
    # delete: the API takes back the jobs of a request that failed half-way (its code
    # calls it); patch: it annotates a cancel (the spec is immutable); never status.
    assert roles["api"] == [
        {
            "apiGroups": [crd.GROUP],
            "resources": [crd.PLURAL],
            "verbs": ["create", "get", "list", "watch", "patch", "delete"],
        }
    ]
    controller = {(r["apiGroups"][0], r["resources"][0]): r["verbs"] for r in roles["controller"]}
    assert controller == {
        (crd.GROUP, crd.PLURAL): ["get", "list", "watch", "patch", "delete"],
        (crd.GROUP, f"{crd.PLURAL}/status"): ["get", "patch"],
        ("", "events"): ["create"],
    }
    # The cluster-scoped grants, for the controller only: kopf's ClusterKopfPeering, and
    # reading which CRDs and namespaces exist (kopf's observation of the cluster).
    (cluster_role,) = by_kind(default, "ClusterRole").values()
    assert component_of(cluster_role) == "controller"
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["kopf.dev"],
            "resources": ["clusterkopfpeerings"],
            "verbs": ["create", "get", "list", "watch", "patch"],
        },
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]
    (cluster_binding,) = by_kind(default, "ClusterRoleBinding").values()
    assert cluster_binding["subjects"][0]["name"] == "t-emulsion-controller"
    for binding in by_kind(default, "RoleBinding").values():
        assert binding["subjects"][0]["name"] == binding["roleRef"]["name"]


def test_controller_is_a_recreated_singleton(default: list[dict[str, Any]], tools: Tools) -> None:
    controller = deployments(default)["controller"]
    assert controller["spec"]["replicas"] == 1
    assert controller["spec"]["strategy"] == {"type": "Recreate"}
    for values in (
        {"components.controller.replicas": 2},
        {"components.controller.autoscaling.enabled": True},
    ):
        result = template(tools, values, check=False)
        assert result.returncode != 0
        assert "exactly one active replica" in result.stderr


def test_processor_grace_period_must_outlast_the_longest_item(tools: Tools) -> None:
    processor = deployments(render(tools, {"processing.longestItemSeconds": 100}))["processor"]
    assert pod_spec(processor)["terminationGracePeriodSeconds"] == 660
    assert env_of(processor)["EMULSION_DRAIN_SECONDS"] == "100"
    result = template(tools, {"processing.longestItemSeconds": 660}, check=False)
    assert result.returncode != 0
    assert "must exceed processing.longestItemSeconds" in result.stderr


def test_processor_scratch_is_a_generic_ephemeral_volume(tools: Tools) -> None:
    objects = render(tools, {"scratch": {"size": "25Gi", "storageClassName": "fast-local"}})
    volumes = {v["name"]: v for v in pod_spec(deployments(objects)["processor"])["volumes"]}
    claim = volumes["scratch"]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "25Gi"
    assert claim["storageClassName"] == "fast-local"
    others = [d for n, d in deployments(objects).items() if n != "processor"]
    assert all("scratch" not in {v["name"] for v in pod_spec(d)["volumes"]} for d in others)


def test_keda_replaces_the_processor_hpa_with_a_valid_scaled_object(tools: Tools) -> None:
    objects = render(
        tools,
        {"keda": {"enabled": True, "natsMonitoringEndpoint": "nats.messaging:8222"}},
    )
    assert not by_kind(objects, "HorizontalPodAutoscaler")
    (scaled,) = by_kind(objects, "ScaledObject").values()
    # A trigger per work consumer (lane), their lag added up: the total backlog scales.
    triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
    assert set(triggers) == {str(lane) for lane in wire.Lane}
    for lane, durable in wire.WORK_CONSUMERS.items():
        trigger = triggers[str(lane)]
        assert trigger["type"] == "nats-jetstream"
        assert trigger["metadata"]["stream"] == wire.WORK_STREAM
        assert trigger["metadata"]["consumer"] == durable
        assert trigger["metadata"]["natsServerMonitoringEndpoint"] == "nats.messaging:8222"
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == "bulk + interactive"
    assert modifiers["metricType"] == "AverageValue"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "t-emulsion-processor"
    assert "replicas" not in deployments(objects)["processor"]["spec"]
    assert validate_with_keda_models(scaled) == scaled


@pytest.mark.parametrize("keda", [False, True], ids=["hpa", "keda"])
def test_the_scale_down_window_reaches_the_hpa_either_way(tools: Tools, keda: bool) -> None:
    window = "components.processor.autoscaling.scaleDownStabilizationSeconds"
    objects = render(tools, {"keda.enabled": keda, window: 15})
    if keda:
        (scaled,) = by_kind(objects, "ScaledObject").values()
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    else:
        (hpa,) = by_kind(objects, "HorizontalPodAutoscaler").values()
        behavior = hpa["spec"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 15}}


# No package ships KEDA's CRD YAML; cloudcoil-models-keda ships models generated from it.
# It runs in a throwaway environment because cloudcoil registers a pytest plugin that
# needs extras this workspace does not have.
KEDA_MODELS = ("cloudcoil-models-keda==2.16.1.0", "cloudcoil==0.6.0")
KEDA_ROUND_TRIP = """
import json, sys
from cloudcoil.models.keda.v1alpha1 import ScaledObject
model = ScaledObject.model_validate(json.load(sys.stdin))
print(json.dumps(model.model_dump(by_alias=True, exclude_unset=True, mode="json")))
"""


def validate_with_keda_models(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` after KEDA's models; they ignore unknown fields, so a dropped field is one
    KEDA's apiserver schema would prune, and a wrong type fails validation."""
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to run KEDA's models"
    withs = [arg for model in KEDA_MODELS for arg in ("--with", model)]
    result = subprocess.run(
        [uv, "run", "--no-project", *withs, "python", "-c", KEDA_ROUND_TRIP],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    round_tripped: dict[str, Any] = json.loads(result.stdout)
    return round_tripped


def test_keda_models_catch_a_misspelt_field() -> None:
    # The check above can fail: a field KEDA does not know is dropped.
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "p"},
        "spec": {"scaleTargetRef": {"name": "p"}, "minReplicas": 1, "triggers": []},
    }
    assert "minReplicas" not in validate_with_keda_models(scaled)["spec"]


def test_network_policies_allow_only_the_designed_egress(tools: Tools) -> None:
    objects = render(
        tools,
        {"otel": {"endpoint": "http://collector:4318", "port": 4318}, "s3": {"ports": [9000]}},
    )
    expected = {
        "api": {53, 4222, 9000, 443, 6443, 4318},
        "controller": {53, 4222, 443, 6443, 4318},
        "processor": {53, 4222, 9000, 4318},
        "janitor": {53, 4222, 9000, 4318},
    }
    for policy in by_kind(objects, "NetworkPolicy").values():
        name = component_of(policy)
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert ports == expected[name], name
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        ingress_ports = {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]}
        # kopf's liveness endpoint owns the controller's http port; it is scraped on metrics.
        expected_ingress = {"controller": {"metrics"}, "api": {"metrics", "http"}}
        assert ingress_ports == expected_ingress.get(name, {"http"}), name


def test_network_policy_peers_come_from_values(tools: Tools) -> None:
    nats_peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "nats"}}}
    objects = render(tools, {"networkPolicy.natsTo": [nats_peer]})
    for policy in by_kind(objects, "NetworkPolicy").values():
        nats_rules = [r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 4222]
        assert nats_rules == [{"ports": [{"port": 4222, "protocol": "TCP"}], "to": [nats_peer]}]


@pytest.mark.parametrize(
    "values",
    [
        {"bogus": 1},
        {"components.api.bogus": 1},
        {"components.queue": {"enabled": True}},
        {"components.api.resources.requests.gpu": "1"},
        {"components.processor.autoscaling.target": 50},
        {"keda.lag": 5},
        {"networkPolicy.natsTo": [{"namespace": "nats"}]},
        {"profiles": [{"name": "web", "styles": [{"name": "a", "width": 1, "height": 1, "x": 1}]}]},
        {"logLevel": "LOUD"},
        {"s3.credentials.existingSecret": 5},
        {"cors.allowedOrigins": ["https://gallery.example.com/path"]},
    ],
    ids=lambda values: next(iter(values)),
)
def test_schema_rejects_unknown_keys_and_bad_values(tools: Tools, values: dict[str, Any]) -> None:
    result = template(tools, values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


def walk_schema(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for key, child in node.items():
            yield from walk_schema(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from walk_schema(child, f"{path}[{index}]")


def test_schema_closes_every_object_and_describes_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = list(walk_schema(schema))
    assert len(objects) > 30
    for path, node in objects:
        closed = node.get("additionalProperties")
        if "properties" in node:
            assert closed is False, f"{path} accepts unknown keys"
        else:
            # Free-keyed maps (labels, annotations, env) still constrain their values.
            assert isinstance(closed, dict) and closed.get("type"), f"{path} is unconstrained"
        for key, child in node.get("properties", {}).items():
            assert child.get("description"), f"{path}.{key} is not described"


def test_values_file_matches_the_schema_exactly(tools: Tools) -> None:
    # Every key of values.yaml is in the schema (else lint fails) and every top-level key
    # of the schema has a default in values.yaml, so nothing is configurable unseen.
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"])
    component = schema["$defs"]["component"]["properties"]
    for name, entry in values["components"].items():
        assert set(entry) == set(component), name


def test_example_profiles_are_valid_for_the_services(tools: Tools, tmp_path: Any) -> None:
    profile = {
        "name": "web",
        "format": "webp",
        "quality": 80,
        "watermark": {"text": "(c) studio", "opacity": 0.3, "position": "bottom-right"},
        "styles": [{"name": "large", "width": 1600, "height": 1600, "fit": "fit"}],
        "original": {"strip": ["gps", "xmp", "MakerNote"]},
    }
    objects = render(tools, {"profiles": [profile]})
    (config_map,) = [
        c for c in by_kind(objects, "ConfigMap").values() if "profiles.yaml" in c["data"]
    ]
    path = tmp_path / "profiles.yaml"
    path.write_text(config_map["data"]["profiles.yaml"])
    profiles = load_profiles(path)
    assert set(profiles) == {"default", "web"}
    assert profiles["web"].styles[0].width == 1600
    assert profiles["web"].original.strip == ("gps", "xmp", "MakerNote")


def test_the_schema_knows_exactly_the_strippable_metadata_names() -> None:
    # The chart refuses a typo at install, before any pod reads the profiles and stops.
    schema = json.loads((CHART / "values.schema.json").read_text())
    profile = schema["properties"]["profiles"]["items"]["properties"]
    assert set(profile["original"]["properties"]["strip"]["items"]["enum"]) == stripping.NAMES


def test_crd_is_rendered_from_the_one_source_and_kept(default: list[dict[str, Any]]) -> None:
    rendered = by_kind(default, "CustomResourceDefinition")
    sources = [yaml.safe_load(p.read_text()) for p in (REPO_ROOT / "crds").glob("*.yaml")]
    assert crd.CRD_NAME in rendered
    assert set(rendered) == {source["metadata"]["name"] for source in sources}
    for source in sources:
        copy = rendered[source["metadata"]["name"]]
        assert copy["spec"] == source["spec"]
        assert copy["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_crd_copy_in_the_chart_has_not_drifted() -> None:
    # `make chart-crds` makes the copy; CI fails here until it is re-run after a CRD change.
    source = {p.name: p.read_bytes() for p in (REPO_ROOT / "crds").glob("*.yaml")}
    copy = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert copy == source, "charts/emulsion/files/crds differs from crds/: run `make chart-crds`"


def test_crd_switches(tools: Tools) -> None:
    assert not by_kind(render(tools, {"crds.enabled": False}), "CustomResourceDefinition")
    unkept = by_kind(render(tools, {"crds.keep": False}), "CustomResourceDefinition")
    assert crd.CRD_NAME in unkept
    for definition in unkept.values():
        assert "helm.sh/resource-policy" not in definition["metadata"].get("annotations", {})


def test_each_component_can_have_its_own_storage_identity(tools: Tools) -> None:
    """The API, the processors and the janitor each hold only their own S3
    policy: a Secret each (or the shared one), or an IAM role on their ServiceAccount."""
    role = "eks.amazonaws.com/role-arn"
    objects = render(
        tools,
        {
            "s3.credentials.existingSecret": "shared-s3",
            "s3.identities.api.existingSecret": "api-s3",
            "s3.identities.processor.existingSecret": "processor-s3",
            "s3.identities.janitor.serviceAccountAnnotations": {role: "arn:aws:iam::1:role/j"},
            "serviceAccount.annotations": {role: "arn:aws:iam::1:role/all", "team": "photos"},
        },
    )
    found = deployments(objects)
    expected = {"api": "api-s3", "processor": "processor-s3", "janitor": "shared-s3"}
    for name, secret in expected.items():
        env = env_of(found[name])
        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[variable]["secretKeyRef"]["name"] == secret, (name, variable)
    assert "AWS_ACCESS_KEY_ID" not in env_of(found["controller"])
    accounts = {
        component_of(a): a["metadata"]["annotations"]
        for a in by_kind(objects, "ServiceAccount").values()
    }
    # The component's own role wins over the shared one; other annotations are kept.
    assert accounts["janitor"] == {role: "arn:aws:iam::1:role/j", "team": "photos"}
    for name in ("api", "processor", "controller"):
        assert accounts[name] == {role: "arn:aws:iam::1:role/all", "team": "photos"}, name
    # The controller never touches S3: it has no identity to give.
    refused = template(tools, {"s3.identities.controller": {"existingSecret": "x"}}, check=False)
    assert "additional properties 'controller' not allowed" in refused.stderr


def test_token_limits_reach_the_api_as_a_file_it_rereads_and_are_checked_by_the_schema(
    tools: Tools,
) -> None:
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    admin: dict[str, Any] = {"apiTokens.allowAdminTokens": True}
    objects = render(
        tools,
        {
            **admin,
            "apiTokens.limits.tokens": {digest: {"notifiesPerSecond": 2, "interactive": True}},
        },
    )

    path = env_of(deployments(objects)["api"])["EMULSION_API_TOKEN_LIMITS_FILE"]
    assert path.endswith("/limits.json")
    written = json.loads(
        by_kind(objects, "ConfigMap")["t-emulsion-api-token-scopes"]["data"]["limits.json"]
    )
    # The limits the API parses: the chart's defaults, and the token's override.
    table = parse_limits(json.dumps(written))
    assert table.default == TokenLimits()
    assert table.of(digest).notifies_per_second == 2
    assert table.of(digest).watches == TokenLimits().watches
    # Only a token allowed it may ask for priority interactive.
    assert (table.default.interactive, table.of(digest).interactive) == (False, True)
    for values in (
        {**admin, "apiTokens.limits.tokens": {"short": {"watches": 1}}},
        {**admin, "apiTokens.limits.default.watches": 0},
        {**admin, "apiTokens.limits.default.perHour": 1},
        {**admin, "apiTokens.limits.default.interactive": "yes"},
    ):
        assert template(tools, values, check=False).returncode != 0


def test_token_scopes_reach_the_api_only_and_are_checked_by_the_schema(tools: Tools) -> None:
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    scopes = {digest: ["acme-*", "shared"], "a" * 64: ["*"]}

    objects = render(tools, {"apiTokens": {"scopes": scopes}})
    found = deployments(objects)

    # A file the API re-reads, beside the tokens in one projected volume (no subPath, so
    # the kubelet updates both in place): a change of scopes needs no restart.
    path = env_of(found["api"])["EMULSION_API_TOKEN_SCOPES_FILE"]
    config_map = by_kind(objects, "ConfigMap")["t-emulsion-api-token-scopes"]
    assert json.loads(config_map["data"]["scopes.json"]) == scopes
    spec = found["api"]["spec"]["template"]["spec"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "api-tokens"]
    assert path == f"{mount['mountPath']}/scopes.json" and "subPath" not in mount
    (volume,) = [v for v in spec["volumes"] if v["name"] == "api-tokens"]
    sources = volume["projected"]["sources"]
    assert sources[1]["configMap"] == {
        "name": "t-emulsion-api-token-scopes",
        "items": [
            {"key": "scopes.json", "path": "scopes.json"},
            {"key": "limits.json", "path": "limits.json"},
        ],
    }
    assert sources[0]["secret"]["items"][0]["path"] == "tokens"
    for name, deployment in found.items():
        env = env_of(deployment)
        assert name == "api" or not {
            "EMULSION_API_TOKEN_SCOPES_FILE",
            "EMULSION_API_TOKEN_SCOPES",
        } & set(env)
    one_tenant = render(tools, {"apiTokens.allowAdminTokens": True})
    assert "EMULSION_API_TOKEN_SCOPES_FILE" not in env_of(deployments(one_tenant)["api"])
    # One tenant: no scopes, the limits alone.
    assert set(by_kind(one_tenant, "ConfigMap")["t-emulsion-api-token-scopes"]["data"]) == {
        "limits.json"
    }
    malformed: list[dict[str, Any]] = [
        {"not-a-digest": ["*"]},
        {digest: ["a/b"]},
        {digest: []},
        {digest: "*"},
        # A prefix must say where it ends: `acme*` also covered `acmecorp`.
        {digest: ["acme*"]},
    ]
    for bad in malformed:
        refused = template(tools, {"apiTokens": {"scopes": bad}}, check=False)
        assert refused.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in refused.stderr


def test_an_install_without_scopes_is_refused_unless_admin_tokens_are_allowed(
    tools: Tools,
) -> None:
    """Without scopes every token is an admin; the chart says so and refuses."""
    for values in ({}, {"apiTokens.allowAdminTokens": False}):
        refused = template(tools, {"apiTokens.scopes": {}, **values}, check=False)
        assert refused.returncode != 0
        assert "apiTokens.scopes is empty" in refused.stderr
        assert "apiTokens.allowAdminTokens: true" in refused.stderr
    # Without the API there are no tokens to scope.
    assert template(tools, {"apiTokens.scopes": {}, "components.api.enabled": False}).stdout
    unknown = template(tools, {"apiTokens.allowAdminToken": True}, check=False)
    assert "additional properties 'allowAdminToken' not allowed" in unknown.stderr


def test_the_work_signing_key_is_mounted_into_the_controller_and_processor_only(
    default: list[dict[str, Any]], tools: Tools
) -> None:
    [secret] = [
        o for o in by_kind(default, "Secret").values() if "work-signing" in o["metadata"]["name"]
    ]
    key_field = secret["data"]["key"]
    assert len(key_field) >= 44  # base64 of a generated key of 64 characters
    for name, deployment in deployments(default).items():
        env = env_of(deployment)
        volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
        if name in ("controller", "processor"):
            assert env["EMULSION_WORK_SIGNING_KEY_FILE"] == "/etc/emulsion/work-signing/key"
            assert volumes["work-signing"]["secret"]["secretName"] == secret["metadata"]["name"]
        else:
            assert "EMULSION_WORK_SIGNING_KEY_FILE" not in env, name
            assert "work-signing" not in volumes, name
    own = render(tools, {"workSigning": {"existingSecret": "signing", "key": "hmac"}})
    assert not [
        o for o in by_kind(own, "Secret").values() if "work-signing" in o["metadata"]["name"]
    ]
    for name in ("controller", "processor"):
        [volume] = [
            v for v in pod_spec(deployments(own)[name])["volumes"] if v["name"] == "work-signing"
        ]
        assert volume["secret"]["secretName"] == "signing"
        assert volume["secret"]["items"] == [{"key": "hmac", "path": "key"}]


# -- operations: monitoring, exposure, helm test, scheduling, images, env -----------------


SERVICE_SOURCES = REPO_ROOT / "services"


def exported_metric_names() -> set[str]:
    """Every metric name the services define (the first string of each Counter/Gauge/...)."""
    names: set[str] = set()
    for source in SERVICE_SOURCES.glob("*/src/*/*.py"):
        text = source.read_text()
        names |= set(
            re.findall(r'(?:Counter|Gauge|Histogram|Summary)\(\s*"(emulsion_[a-z_]+)"', text)
        )
    return names


def metric_names_in(expression: str) -> set[str]:
    names = set(re.findall(r"\b(emulsion_[a-z_]+)", expression))
    # Histograms are queried through their series, counters are exported with _total.
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


MONITORING_ON = {
    "monitoring.serviceMonitor.enabled": True,
    "monitoring.serviceMonitor.labels": {"release": "kube-prometheus-stack"},
    "monitoring.prometheusRule.enabled": True,
    "monitoring.dashboard.enabled": True,
}


def test_monitoring_is_off_by_default(default: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in default}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "Ingress", "HTTPRoute"}
    assert not [n for n in by_kind(default, "ConfigMap") if n.endswith("-dashboard")]


def test_service_monitors_scrape_the_port_each_service_names(tools: Tools) -> None:
    objects = render(tools, MONITORING_ON)
    services = {component_of(s): s for s in by_kind(objects, "Service").values()}
    monitors = {component_of(m): m for m in by_kind(objects, "ServiceMonitor").values()}
    assert sorted(monitors) == list(COMPONENTS)
    for name, monitor in monitors.items():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        service = services[name]
        assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["emulsion"]}
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["interval"] == "30s"
        # The port is named on the Service, and it is the one /metrics is served on.
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["port"] in port_names, name
        (container,) = pod_spec(deployments(objects)[name])["containers"]
        served_on = {p["name"]: p["containerPort"] for p in container["ports"]}
        expected = "metrics" if "metrics" in served_on else "http"
        assert endpoint["port"] == expected, name


def test_alerts_use_only_metrics_the_services_export(tools: Tools) -> None:
    objects = render(tools, MONITORING_ON)
    (rule,) = by_kind(objects, "PrometheusRule").values()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert {
        "EmulsionQueueLag",
        "EmulsionItemsFailing",
        "EmulsionForgedWork",
        "EmulsionControllerNotFolding",
        "EmulsionJanitorBacklog",
    } <= set(alerts)
    exported = exported_metric_names()
    assert len(exported) > 20
    for name, alert in alerts.items():
        used = metric_names_in(alert["expr"])
        assert used <= exported, f"{name} uses {used - exported}"
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        assert alert["annotations"]["summary"], name
        # Every series is this release's: the job label is the component's Service.
        for selector in re.findall(r"emulsion_[a-z_]+\{([^}]*)\}", alert["expr"]):
            assert re.search(r'job="t-emulsion-(api|controller|processor|janitor)"', selector)
    # Thresholds come from values.
    changed = render(
        tools,
        {
            **MONITORING_ON,
            "monitoring.prometheusRule.queueLagItems": 7,
            "monitoring.prometheusRule.for": "3m",
        },
    )
    (group,) = next(iter(by_kind(changed, "PrometheusRule").values()))["spec"]["groups"]
    lag = next(r for r in group["rules"] if r["alert"] == "EmulsionQueueLag")
    assert lag["expr"].rstrip().endswith("> 7")
    assert lag["for"] == "3m"


def test_tenant_starved_alert_has_a_threshold_per_lane_from_values(tools: Tools) -> None:
    objects = render(
        tools,
        {
            **MONITORING_ON,
            "monitoring.prometheusRule.tenantStarvedSeconds": {"interactive": 7, "bulk": 900},
            "monitoring.prometheusRule.tenantStarvedFor": "2m",
        },
    )
    (group,) = next(iter(by_kind(objects, "PrometheusRule").values()))["spec"]["groups"]
    starved = next(r for r in group["rules"] if r["alert"] == "EmulsionTenantStarved")
    assert starved["for"] == "2m"
    assert metric_names_in(starved["expr"]) == {"emulsion_queue_oldest_age_seconds"}
    # Each lane is compared with its own threshold, per lane and tenant.
    lanes = re.findall(
        r'max by \(lane, tenant\) \(emulsion_queue_oldest_age_seconds\{[^}]*lane="(\w+)"\}\)'
        r"\s*> (\d+)",
        starved["expr"],
    )
    assert sorted(lanes) == [("bulk", "900"), ("interactive", "7")]
    assert "$labels.tenant" in starved["annotations"]["description"]
    # The defaults: a minute for interactive work, an hour for a bulk import.
    (group,) = next(iter(by_kind(render(tools, MONITORING_ON), "PrometheusRule").values()))["spec"][
        "groups"
    ]
    starved = next(r for r in group["rules"] if r["alert"] == "EmulsionTenantStarved")
    assert re.findall(r"> (\d+)", starved["expr"]) == ["60", "3600"]
    assert starved["for"] == "5m"


def test_dashboard_ships_valid_json_on_exported_metrics(tools: Tools) -> None:
    objects = render(tools, MONITORING_ON)
    dashboard_map = by_kind(objects, "ConfigMap")["t-emulsion-dashboard"]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboard_map["data"]["emulsion.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboards" / "emulsion.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(metric_names_in(e) for e in expressions))
    assert used <= exported_metric_names(), used - exported_metric_names()
    # Each component's metrics are on the dashboard.
    for component in COMPONENTS:
        assert any(name.startswith(f"emulsion_{component}_") for name in used), component
    # Fair share: depth and oldest age per lane and per tenant, throttling per token.
    by_metric = {
        name: [e for e in expressions if name in metric_names_in(e)]
        for name in (
            "emulsion_queue_depth",
            "emulsion_queue_oldest_age_seconds",
            "emulsion_api_throttled_requests_total",
        )
    }
    for name in ("emulsion_queue_depth", "emulsion_queue_oldest_age_seconds"):
        assert any("by (lane)" in e for e in by_metric[name]), name
        assert any("by (lane, tenant)" in e for e in by_metric[name]), name
    assert any("by (token, limit)" in e for e in by_metric["emulsion_api_throttled_requests_total"])
    # Panels do not overlap on the grid.
    cells = [
        (x, y)
        for p in dashboard["panels"]
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_ingress_and_http_route_route_to_the_api_service(tools: Tools) -> None:
    objects = render(
        tools,
        {
            "ingress.enabled": True,
            "ingress.className": "nginx",
            "ingress.hosts": ["photos.example.com"],
            "ingress.tls": [{"hosts": ["photos.example.com"], "secretName": "photos-tls"}],
            "httpRoute.enabled": True,
            "httpRoute.parentRefs": [{"name": "public", "namespace": "gateways"}],
            "httpRoute.hostnames": ["photos.example.com"],
        },
    )
    api_service = by_kind(objects, "Service")["t-emulsion-api"]
    port = api_service["spec"]["ports"][0]["port"]
    ingress = by_kind(objects, "Ingress")["t-emulsion-api"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["photos.example.com"], "secretName": "photos-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "photos.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "t-emulsion-api", "port": {"number": port}}
    route = by_kind(objects, "HTTPRoute")["t-emulsion-api"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["photos.example.com"]
    (route_rule,) = route["spec"]["rules"]
    assert route_rule["backendRefs"] == [{"name": "t-emulsion-api", "port": port}]
    # Without hosts the Ingress serves every host; an HTTPRoute needs a Gateway.
    anyhost = by_kind(render(tools, {"ingress.enabled": True}), "Ingress")["t-emulsion-api"]
    assert "host" not in anyhost["spec"]["rules"][0]
    refused = template(tools, {"httpRoute.enabled": True}, check=False)
    assert refused.returncode != 0
    assert "httpRoute.parentRefs" in refused.stderr


def test_helm_test_pod_asks_the_api_service_for_healthz(default: list[dict[str, Any]]) -> None:
    (pod,) = by_kind(default, "Pod").values()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    api = deployments(default)["api"]
    (api_container,) = pod_spec(api)["containers"]
    assert container["image"] == api_container["image"]
    assert container["command"][-1] == "http://t-emulsion-api:80/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_helm_test_pod_checks_the_status(tmp_path: Any, default: list[dict[str, Any]]) -> None:
    # The Pod's script, run against a local server: 200 passes, anything else fails.
    import http.server
    import threading

    (pod,) = by_kind(default, "Pod").values()
    script = pod["spec"]["containers"][0]["command"][2]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        ok = subprocess.run([sys.executable, "-c", script, f"{base}/healthz"], check=False)
        assert ok.returncode == 0
        down = subprocess.run(
            [sys.executable, "-c", script, f"{base}/other"], check=False, capture_output=True
        )
        assert down.returncode != 0
    finally:
        server.shutdown()


def test_scheduling_image_digest_and_extra_environment(tools: Tools) -> None:
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "processor"}},
        }
    ]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cpu"]}]}
                ]
            }
        }
    }
    digest = "sha256:" + "ab" * 32
    objects = render(
        tools,
        {
            "image.registry": "registry.example.com/emulsion",
            "components.processor.affinity": affinity,
            "components.processor.topologySpreadConstraints": spread,
            "components.processor.image.digest": digest,
            "components.processor.image.tag": "ignored",
            "components.processor.env": {
                "EMULSION_MAX_PIXELS": 50_000_000,
                "EMULSION_MEMORY_BUDGET_BYTES": {
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}
                },
            },
            "components.processor.envFrom": [{"secretRef": {"name": "processor-extra"}}],
        },
    )
    processor = deployments(objects)["processor"]
    pod = pod_spec(processor)
    assert pod["affinity"] == affinity
    assert pod["topologySpreadConstraints"] == spread
    (container,) = pod["containers"]
    assert container["image"] == f"registry.example.com/emulsion/emulsion-processor@{digest}"
    env = env_of(processor)
    assert env["EMULSION_MAX_PIXELS"] == "50000000"
    assert env["EMULSION_MEMORY_BUDGET_BYTES"] == {
        "resourceFieldRef": {"resource": "limits.memory"}
    }
    assert container["envFrom"] == [{"secretRef": {"name": "processor-extra"}}]
    # Other components are untouched.
    api_pod = pod_spec(deployments(objects)["api"])
    assert "affinity" not in api_pod and "topologySpreadConstraints" not in api_pod
    assert "envFrom" not in api_pod["containers"][0]
    assert api_pod["containers"][0]["image"].endswith("/emulsion-api:0.1.0")


@pytest.mark.parametrize(
    "values",
    [
        {"components.api.image.digest": "sha256:short"},
        {"components.api.env": {"X": {"valueFrom": {"secretKeyRef": {"name": "s"}}}}},
        {"components.api.env": {"X": {"value": "v"}}},
        {"components.api.topologySpreadConstraints": [{"maxSkew": 1}]},
        {"components.api.envFrom": [{"secret": {"name": "s"}}]},
        {"otel.protocol": "http/json"},
        {"monitoring.prometheusRule.failingItemsRatio": 2},
        {"monitoring.prometheusRule.tenantStarvedSeconds": {"interactive": 0, "bulk": 60}},
        {"monitoring.prometheusRule.tenantStarvedFor": "a while"},
        {"monitoring.serviceMonitor.interval": "soon"},
        {"ingress.hosts": ["Not A Host"]},
        {"httpRoute.parentRefs": [{"namespace": "gateways"}]},
    ],
    ids=lambda values: next(iter(values)),
)
def test_schema_rejects_bad_operations_values(tools: Tools, values: dict[str, Any]) -> None:
    result = template(tools, values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_protocol_comes_from_values(tools: Tools, protocol: str) -> None:
    objects = render(tools, {"otel.endpoint": "http://collector:4317", "otel.protocol": protocol})
    for name, deployment in deployments(objects).items():
        env = env_of(deployment)
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == protocol, name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4317", name
        assert "OTEL_TRACES_EXPORTER" not in env, name


def test_cors_origins_reach_the_api_only(tools: Tools) -> None:
    origins = ["https://gallery.example.com", "http://localhost:5173"]
    objects = render(tools, {"cors.allowedOrigins": origins})
    for name, deployment in deployments(objects).items():
        (container,) = pod_spec(deployment)["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        if name == "api":
            assert env["EMULSION_CORS_ALLOWED_ORIGINS"] == ",".join(origins)
        else:
            assert "EMULSION_CORS_ALLOWED_ORIGINS" not in env, name
    assert "EMULSION_CORS_ALLOWED_ORIGINS" not in str(render(tools, {}))


def test_the_full_pass_schedule_and_pace_reach_the_janitor_only(tools: Tools) -> None:
    """The janitor's daily pass and its keys/s are chart values (defaults: a
    day, 200 keys/s), set on the janitor and no other component."""
    names = ("EMULSION_JANITOR_FULL_PASS_SECONDS", "EMULSION_JANITOR_FULL_PASS_KEYS_PER_SECOND")
    for overrides, expected in (
        ({}, ("86400", "200")),
        ({"janitor.fullPassSeconds": 43200, "janitor.fullPassKeysPerSecond": 50}, ("43200", "50")),
    ):
        for name, deployment in deployments(render(tools, overrides)).items():
            (container,) = pod_spec(deployment)["containers"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            if name == "janitor":
                assert tuple(env[n] for n in names) == expected
            else:
                assert not set(names) & set(env), name


def test_finished_jobs_expire_after_an_hour_by_default_and_the_value_sets_it(
    tools: Tools, default: list[dict[str, Any]]
) -> None:
    """jobs.ttlSecondsAfterFinished reaches the API alone (it sets it on every job it
    creates); by default an hour, so etcd does not keep every job ever made."""
    rendered = deployments(default)
    assert env_of(rendered["api"])["EMULSION_JOB_TTL_SECONDS"] == "3600"
    for component in set(rendered) - {"api"}:
        assert "EMULSION_JOB_TTL_SECONDS" not in env_of(rendered[component])
    longer = deployments(render(tools, {"jobs": {"ttlSecondsAfterFinished": 86400}}))
    assert env_of(longer["api"])["EMULSION_JOB_TTL_SECONDS"] == "86400"
    refused = template(tools, {"jobs": {"ttlSecondsAfterFinished": -1}}, check=False)
    assert refused.returncode != 0


def test_job_records_outlive_the_jobs_ttl_by_a_day_and_reach_the_controller(
    tools: Tools, default: list[dict[str, Any]]
) -> None:
    """jobs.recordsRetentionSeconds reaches the controller (it creates the stores); the
    chart refuses a retention that does not outlive the jobs' TTL by more than a day: the
    API answers 410 for an expired job from those records."""
    rendered = deployments(default)
    assert env_of(rendered["controller"])["EMULSION_RECORDS_RETENTION_SECONDS"] == "604800"
    for component in set(rendered) - {"controller"}:
        assert "EMULSION_RECORDS_RETENTION_SECONDS" not in env_of(rendered[component])
    longer = {"jobs": {"ttlSecondsAfterFinished": 86400, "recordsRetentionSeconds": 14 * 86400}}
    controller = deployments(render(tools, longer))["controller"]
    assert env_of(controller)["EMULSION_RECORDS_RETENTION_SECONDS"] == str(14 * 86400)
    for values in (
        {"jobs": {"ttlSecondsAfterFinished": 7 * 86400}},
        {"jobs": {"ttlSecondsAfterFinished": 3600, "recordsRetentionSeconds": 86400 + 3600}},
    ):
        refused = template(tools, values, check=False)
        assert refused.returncode != 0
        assert "must exceed jobs.ttlSecondsAfterFinished" in refused.stderr or (
            "recordsRetentionSeconds" in refused.stderr
        )


def test_the_fair_share_of_bulk_work_reaches_the_controller_and_keeps_keda_reachable(
    tools: Tools, default: list[dict[str, Any]]
) -> None:
    """jobs.fairShare reaches the controller alone; by default the high water is what KEDA
    needs in the stream to reach the processors' max replicas."""
    rendered = deployments(default)
    env = env_of(rendered["controller"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    processor = values["components"]["processor"]["autoscaling"]
    needed = values["keda"]["lagThreshold"] * processor["maxReplicas"]
    assert int(env["EMULSION_FEED_HIGH_WATER"]) >= needed
    assert env["EMULSION_FEED_MIN_WINDOW"] == "10"
    for component in set(rendered) - {"controller"}:
        assert "EMULSION_FEED_HIGH_WATER" not in env_of(rendered[component])
    tuned = {"jobs": {"fairShare": {"highWater": 500, "minWindow": 4}}}
    env = env_of(deployments(render(tools, tuned))["controller"])
    assert (env["EMULSION_FEED_HIGH_WATER"], env["EMULSION_FEED_MIN_WINDOW"]) == ("500", "4")
    refused = template(tools, {"jobs": {"fairShare": {"highWater": 0}}}, check=False)
    assert refused.returncode != 0


def test_the_nats_cluster_example_renders_r3_and_the_leader_lookup(tools: Tools) -> None:
    """charts/emulsion/examples/nats-cluster.yaml: every server in NATS_URL,
    streams created at R3, and KEDA on the headless Service, where `<server>.<host>`
    reaches a consumer's leader."""
    example = yaml.safe_load((CHART / "examples" / "nats-cluster.yaml").read_text())
    objects = render(tools, example)
    for name, deployment in deployments(objects).items():
        servers = env_of(deployment)["NATS_URL"].split(",")
        assert [s.split("//")[1].split(".")[0] for s in servers] == ["nats-0", "nats-1", "nats-2"]
        if name == "controller":
            assert env_of(deployment)["EMULSION_JETSTREAM_REPLICAS"] == "3"
    (scaled,) = by_kind(objects, "ScaledObject").values()
    endpoint = scaled["spec"]["triggers"][0]["metadata"]["natsServerMonitoringEndpoint"]
    host = endpoint.rsplit(":", 1)[0]
    assert host.startswith("nats-headless.")
    # The leader's monitoring address, as KEDA builds it, is a pod of the StatefulSet.
    assert f"nats-0.{host}".startswith("nats-0.nats-headless.nats.svc")
    assert validate_with_keda_models(scaled) == scaled
