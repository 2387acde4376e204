"""The chart's NATS identities, rendered by `helm template`, against the table in
emulsion_contracts.natsauth: each component connects as its own user with its own
password only, and the NATS server's `authorization` snippet is the table exactly."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulsion_contracts import natsauth
from emulsion_devstack import natsauth as devstack_nats
from emulsion_devstack import release
from emulsion_devstack.node import NodeInfo
from emulsion_devstack.stack import Endpoints

from .conftest import CHART, COMPONENTS, Tools, by_kind, component_of, render, template

BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


def deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component_of(d): d for d in by_kind(objects, "Deployment").values()}


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_of(deployment)["env"]}


def volumes_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}


def mounts_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container_of(deployment)["volumeMounts"]}


def expected_users() -> list[dict[str, Any]]:
    return [
        {"user": identity.name, "permissions": natsauth.permissions(identity)}
        for identity in natsauth.IDENTITIES.values()
    ]


@pytest.fixture(scope="module")
def default(tools: Tools) -> list[dict[str, Any]]:
    return render(tools)


def test_the_table_names_the_charts_components() -> None:
    assert set(natsauth.IDENTITIES) == set(COMPONENTS)


def test_each_component_connects_as_itself_with_only_its_own_password(
    default: list[dict[str, Any]],
) -> None:
    secret_name = "t-emulsion-nats-credentials"
    for name, deployment in deployments(default).items():
        env = env_of(deployment)
        assert env["NATS_USER"] == name
        assert env["NATS_PASSWORD_FILE"] == "/etc/emulsion/nats/password"
        assert "NATS_PASSWORD" not in env and "NATS_CA_FILE" not in env
        volume = volumes_of(deployment)["nats-password"]["secret"]
        assert volume["secretName"] == secret_name
        assert volume["items"] == [{"key": name, "path": "password"}]
        assert mounts_of(deployment)["nats-password"] == "/etc/emulsion/nats"
    secret = by_kind(default, "Secret")[secret_name]
    passwords = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(passwords) == set(COMPONENTS)
    assert all(len(p) == 32 for p in passwords.values())
    assert len(set(passwords.values())) == len(passwords)


def test_the_server_snippet_is_the_table_with_bcrypt_hashes(
    default: list[dict[str, Any]],
) -> None:
    snippet = by_kind(default, "Secret")["t-emulsion-nats-authorization"]["stringData"]
    merged = yaml.safe_load(snippet["merge.yaml"])["authorization"]["users"]
    conf = snippet["authorization.conf"]
    assert conf.startswith("authorization: ")
    included = json.loads(conf.removeprefix("authorization: "))["users"]
    for users in (merged, included):
        assert [{"user": u["user"], "permissions": u["permissions"]} for u in users] == (
            expected_users()
        )
        assert all(BCRYPT.match(u["password"]) for u in users), [u["password"] for u in users]
    # The hashes, never the passwords themselves.
    secret = by_kind(default, "Secret")["t-emulsion-nats-credentials"]
    for password in (base64.b64decode(v).decode() for v in secret["data"].values()):
        assert password not in snippet["merge.yaml"] and password not in conf


def test_an_existing_secret_is_used_and_nothing_is_generated(tools: Tools) -> None:
    objects = render(tools, {"nats.auth.existingSecret": "ops-nats"})
    secrets = by_kind(objects, "Secret")
    assert "t-emulsion-nats-credentials" not in secrets
    # helm template cannot read the Secret's passwords: no snippet with made-up ones.
    assert "t-emulsion-nats-authorization" not in secrets
    for name, deployment in deployments(objects).items():
        volume = volumes_of(deployment)["nats-password"]["secret"]
        assert (volume["secretName"], volume["items"]) == (
            "ops-nats",
            [{"key": name, "path": "password"}],
        )


def test_a_ca_secret_makes_every_component_verify_the_server_against_it(tools: Tools) -> None:
    objects = render(
        tools,
        {"nats.url": "tls://nats:4222", "nats.tls": {"caSecret": "nats-ca", "caKey": "root.pem"}},
    )
    for name, deployment in deployments(objects).items():
        env = env_of(deployment)
        assert env["NATS_URL"] == "tls://nats:4222", name
        assert env["NATS_CA_FILE"] == "/etc/emulsion/nats-ca/ca.crt", name
        volume = volumes_of(deployment)["nats-ca"]["secret"]
        assert (volume["secretName"], volume["items"]) == (
            "nats-ca",
            [{"key": "root.pem", "path": "ca.crt"}],
        )
        assert mounts_of(deployment)["nats-ca"] == "/etc/emulsion/nats-ca"


def test_without_auth_no_credentials_are_rendered_or_mounted(tools: Tools) -> None:
    objects = render(tools, {"nats.auth.enabled": False})
    assert not [n for n in by_kind(objects, "Secret") if "nats" in n]
    for deployment in deployments(objects).values():
        assert not {"NATS_USER", "NATS_PASSWORD_FILE"} & set(env_of(deployment))
        assert "nats-password" not in volumes_of(deployment)


@pytest.mark.parametrize(
    "values",
    [
        {"nats.auth.user": "admin"},
        {"nats.tls.certSecret": "x"},
        {"nats.auth.enabled": "yes"},
        {"nats.tls.caKey": ""},
    ],
)
def test_the_schema_rejects_unknown_or_bad_nats_values(
    tools: Tools, values: dict[str, Any]
) -> None:
    result = template(tools, values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


def test_the_real_node_release_connects_each_pod_as_itself_over_tls(
    tools: Tools, tmp_path: Path
) -> None:
    """`make cluster-install`'s values (release.py), rendered: the stack's NATS through the
    relay, each component with the stack's password for its identity, the stack's CA."""
    auth = devstack_nats.make(tmp_path / "nats", ("127.0.0.1",))
    fields: dict[str, Any] = {
        f.name: "" for f in dataclasses.fields(Endpoints) if f.default is dataclasses.MISSING
    }
    endpoints = Endpoints(
        **{
            **fields,
            "nats_url": "tls://127.0.0.1:4222",
            "bucket": "emulsion",
            "nats_ca_file": str(auth.ca_file),
            "nats_auth_dir": str(auth.directory),
        }
    )
    node = NodeInfo(
        name="n",
        bridge_address="10.244.0.1",
        containerd_socket="/run/c.sock",
        apiserver="10.244.0.1:6443",
        nats="10.244.0.1:4222",
        nats_monitor="10.244.0.1:8222",
        s3="10.244.0.1:9000",
    )
    values = release.release_values(endpoints, node, "localhost/emulsion", "dev")
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    output = tools.run(
        "helm", "template", "emulsion", str(CHART), "-n", "emulsion", "--values", str(file)
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(output) if doc]
    assert not [n for n in by_kind(objects, "Secret") if "nats" in n]
    secrets = release.nats_secrets(endpoints)
    assert set(secrets[release.NATS_SECRET]) == set(COMPONENTS)
    assert secrets[release.NATS_CA_SECRET]["ca.crt"] == auth.ca_file.read_text()
    for name, deployment in deployments(objects).items():
        env = env_of(deployment)
        assert env["NATS_URL"] == "tls://10.244.0.1:4222"
        assert (env["NATS_USER"], env["NATS_CA_FILE"]) == (name, "/etc/emulsion/nats-ca/ca.crt")
        volumes = volumes_of(deployment)
        assert volumes["nats-password"]["secret"]["secretName"] == release.NATS_SECRET
        assert volumes["nats-ca"]["secret"]["secretName"] == release.NATS_CA_SECRET
