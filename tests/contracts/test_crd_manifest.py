"""The CRD file and the contracts library must describe the same resource."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from emulsion_contracts import crd, keys
from tests.jobmaking import create_job

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "ingestjob.yaml"


def load() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return document


def schema() -> dict[str, Any]:
    root: dict[str, Any] = load()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    properties: dict[str, Any] = root["properties"]
    return properties


def test_names_match_the_contracts() -> None:
    document = load()
    assert document["metadata"]["name"] == crd.CRD_NAME
    names = document["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (
        crd.KIND,
        crd.PLURAL,
        crd.SINGULAR,
    )
    assert names["shortNames"] == [crd.SHORT_NAME]
    assert names["categories"] == [crd.CATEGORY]
    assert document["spec"]["group"] == crd.GROUP
    assert [v["name"] for v in document["spec"]["versions"]] == [crd.VERSION]


def test_limits_and_patterns_match_the_key_layout() -> None:
    items = schema()["spec"]["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (1, crd.MAX_ITEMS)
    item = items["items"]["properties"]
    assert item["source"]["pattern"] == f"^{keys.SOURCE_KEY_PATTERN}$"
    assert item["source"]["maxLength"] == keys.SOURCE_KEY_MAX
    assert item["asset"]["pattern"] == keys.ASSET_NAME_SCHEMA_PATTERN
    assert (item["asset"]["minLength"], item["asset"]["maxLength"]) == (1, keys.ASSET_NAME_MAX)
    rule = item["asset"]["x-kubernetes-validations"][0]["rule"]
    assert "'.'" in rule and "'..'" in rule and f"<= {keys.ASSET_NAME_MAX}" in rule
    failure = schema()["status"]["properties"]["failures"]["items"]["properties"]
    assert failure["asset"]["maxLength"] == keys.ASSET_NAME_MAX
    spec = schema()["spec"]["properties"]
    assert spec["collection"]["pattern"] == f"^{keys.COLLECTION_PATTERN}$"
    assert spec["version"]["pattern"] == f"^{keys.ULID_PATTERN}$"
    assert spec["styles"]["items"]["properties"]["name"]["pattern"] == f"^{keys.STYLE_PATTERN}$"
    status = schema()["status"]["properties"]
    assert status["phase"]["enum"] == [p.value for p in crd.Phase]
    assert status["conditions"]["items"]["properties"]["type"]["enum"] == [
        c.value for c in crd.ConditionType
    ]
    assert status["failures"]["maxItems"] == crd.MAX_FAILURES_LISTED


def undescribed(node: dict[str, Any], path: str) -> list[str]:
    """Every field under `node` (itself included) whose schema has no description."""
    missing = [] if str(node.get("description", "")).strip() else [path]
    for name, child in (node.get("properties") or {}).items():
        missing += undescribed(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        missing += undescribed(node["items"], f"{path}[]")
    return missing


def test_every_field_of_the_schema_is_described() -> None:
    """`kubectl explain ingestjob.<field>` has something to say about every field.
    `metadata` is the exception the apiserver makes: a CRD may not describe it (its
    documentation is ObjectMeta's)."""
    root = load()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert undescribed(root, "ingestjob") == ["ingestjob.metadata"]


def test_a_field_without_a_description_is_found_however_deep() -> None:
    node = {
        "description": "root",
        "properties": {
            "a": {"description": "a", "items": {"properties": {"b": {"type": "string"}}}},
        },
    }
    assert undescribed(node, "x") == ["x.a[]", "x.a[].b"]


def test_worst_case_job_fits_etcd() -> None:
    """A full job (2,000 items of the longest source and asset name) and its status must
    stay under etcd's 1.5 MiB. The controller's kopf diff base leaves `spec.items` out
    (services/controller operator.py), so the items are stored once; the status (bounded
    failures, index ranges, kopf's bookkeeping) gets a generous 400 kB. A source under
    originals/ (up to 458 bytes) is only valid in a job of one item (a CEL rule)."""
    longest_source = (
        "staging/" + "c" * keys.COLLECTION_MAX + "/" + "0" * 26 + "/" + "n" * keys.SAFE_NAME_MAX
    )
    assert len(longest_source) == keys.STAGING_KEY_MAX
    # The apiserver stores Go's JSON, which writes UTF-8 as it is: 200 bytes at most.
    longest_asset = "日" * 66 + "xx"
    assert keys.check_asset_name(longest_asset)
    item = f'{{"source":"{longest_source}","asset":"{longest_asset}"}},'.encode()
    assert re.fullmatch(keys.STAGING_KEY_PATTERN, longest_source)
    spec_bytes = len(item) * crd.MAX_ITEMS
    assert spec_bytes + 400_000 < 1.5 * 1024 * 1024


def test_printer_columns_are_the_designed_ones() -> None:
    columns = load()["spec"]["versions"][0]["additionalPrinterColumns"]
    main = [c["name"] for c in columns if c.get("priority", 0) == 0]
    detail = [c["name"] for c in columns if c.get("priority", 0) == 1]
    assert main == ["Phase", "Collection", "Progress", "Failed", "Age"]
    # A cancel's time shows with -o wide: most jobs are never cancelled.
    assert detail == ["Duration", "Cancelled", "Profile", "Batch"]


def _create_job(kube: Any, asset: str) -> None:
    create_job(
        client.CustomObjectsApi(kube),
        keys.new_ulid().lower(),
        {
            "collection": "crd-names",
            "items": [
                {
                    "source": keys.staging_key("crd-names", keys.new_ulid(), "x.jpg"),
                    "asset": asset,
                }
            ],
        },
    )


@pytest.mark.parametrize(
    "name",
    ["日本.jpg", "Фото 1.jpg", "photo 1.JPG", ".hidden", "a..b", "日" * 66 + "xx", "x" * 200],
)
def test_the_apiserver_accepts_every_kind_of_valid_asset_name(kube: Any, name: str) -> None:
    assert keys.check_asset_name(name) == name
    _create_job(kube, name)


@pytest.mark.parametrize(
    "name",
    [".", "..", "a/b", "a\\b", " lead", "trail ", "a\x00b", "bidi\u202e", "x" * 201, "日" * 67],
)
def test_the_apiserver_refuses_what_the_asset_rule_refuses(kube: Any, name: str) -> None:
    with pytest.raises(ApiException) as refused:
        _create_job(kube, name)
    assert refused.value.status == 422
    assert "spec.items[0].asset" in str(refused.value.body)
