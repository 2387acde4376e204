"""The CRD file and the contracts library must describe the same resource."""

import re
from pathlib import Path
from typing import Any

import yaml

from emulsion_contracts import crd, keys

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
    assert item["source"]["pattern"] == f"^{keys.STAGING_KEY_PATTERN}$"
    assert item["source"]["maxLength"] == keys.STAGING_KEY_MAX
    assert item["asset"]["pattern"] == f"^{keys.NAME_PATTERN}$"
    assert item["asset"]["maxLength"] == keys.SAFE_NAME_MAX
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


def test_worst_case_spec_fits_etcd_twice_over() -> None:
    """A full job plus the controller's copy of its spec must stay under 1.5 MiB."""
    longest_source = "staging/" + "0" * 26 + "/" + "n" * keys.SAFE_NAME_MAX
    longest_asset = "a" * keys.SAFE_NAME_MAX
    item = f'{{"source":"{longest_source}","asset":"{longest_asset}"}},'
    assert re.fullmatch(keys.STAGING_KEY_PATTERN, longest_source)
    spec_bytes = len(item) * crd.MAX_ITEMS
    assert 2 * spec_bytes + 200_000 < 1.5 * 1024 * 1024


def test_printer_columns_are_the_designed_ones() -> None:
    columns = load()["spec"]["versions"][0]["additionalPrinterColumns"]
    main = [c["name"] for c in columns if c.get("priority", 0) == 0]
    detail = [c["name"] for c in columns if c.get("priority", 0) == 1]
    assert main == ["Phase", "Collection", "Progress", "Failed", "Age"]
    assert "Duration" in detail
