"""The IngestJob models and the CRD describe the same resource, field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from emulsion_contracts import crd, keys
from emulsion_contracts.ingestjob import (
    IngestJob,
    IngestJobSpec,
    IngestJobStatus,
    InvalidSpec,
    JobItem,
    JobOutline,
    ObjectMeta,
    format_time,
    parse_time,
)
from emulsion_contracts.messages import JobRef
from emulsion_contracts.reasons import FailureReason

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "ingestjob.yaml"

# Where model and CRD differ on purpose, and why.
KOPF_BOOKKEEPING = "status.kopf"  # kopf's own (x-kubernetes-preserve-unknown-fields)
# A free string in the CRD: a reason newer than the controller must never make the
# apiserver refuse a status write. The model reads an unknown one as Unknown.
STRING_IN_CRD_ENUM_IN_MODEL = {"status.failures[].reason"}


def crd_schema(part: str) -> dict[str, Any]:
    document = yaml.safe_load(CRD_FILE.read_text())
    root = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema: dict[str, Any] = root["properties"][part]
    return schema


def model_schema(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return schema, schema.get("$defs", {})


def resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A model schema node without its reference and its `| None`."""
    if "anyOf" in node:
        [node] = [option for option in node["anyOf"] if option.get("type") != "null"]
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    if "const" in node:  # a one-value Literal
        node = {**node, "enum": [node["const"]]}
    return node


def compare(path: str, ours: dict[str, Any], theirs: dict[str, Any], defs: dict[str, Any]) -> None:
    """Every property on both sides, with the same required-ness and enums, recursively."""
    ours = resolve(ours, defs)
    if theirs.get("type") == "array":
        compare(f"{path}[]", ours["items"], theirs["items"], defs)
        return
    if path in STRING_IN_CRD_ENUM_IN_MODEL:
        assert "enum" not in theirs and theirs["type"] == "string", path
        assert all(len(value) <= theirs["maxLength"] for value in ours["enum"]), path
        return
    assert ours.get("enum") == theirs.get("enum"), path
    if theirs.get("type") != "object":
        return
    if "properties" not in theirs:  # a map: its values' schema on both sides
        compare(f"{path}{{}}", ours["additionalProperties"], theirs["additionalProperties"], defs)
        return
    crd_fields = {name for name in theirs["properties"] if f"{path}.{name}" != KOPF_BOOKKEEPING}
    assert set(ours["properties"]) == crd_fields, path
    assert set(ours.get("required", ())) == set(theirs.get("required", ())), path
    for name in crd_fields:
        compare(f"{path}.{name}", ours["properties"][name], theirs["properties"][name], defs)


@pytest.mark.parametrize(("part", "model"), [("spec", IngestJobSpec), ("status", IngestJobStatus)])
def test_every_crd_field_has_a_model_field_and_back(part: str, model: type[BaseModel]) -> None:
    ours, defs = model_schema(model)
    compare(part, ours, crd_schema(part), defs)


def test_the_outline_is_the_spec_without_its_items() -> None:
    outline = set(JobOutline.model_fields["spec"].annotation.model_fields)  # type: ignore[union-attr]
    assert outline == set(IngestJobSpec.model_fields) - {"items"}


def test_the_defaults_are_the_crds() -> None:
    spec = crd_schema("spec")["properties"]
    assert IngestJobSpec.model_fields["profile"].default == spec["profile"]["default"]
    fit = spec["styles"]["items"]["properties"]["fit"]["default"]
    assert model_schema(IngestJobSpec)[1]["StyleSpec"]["properties"]["fit"]["default"] == fit


def test_a_job_built_by_the_api_reads_back_the_same() -> None:
    version = keys.new_ulid()
    job = IngestJob(
        metadata=ObjectMeta(name=version.lower(), namespace="ns", labels={"a": "b"}),
        spec=IngestJobSpec(
            collection="gallery",
            version=version,
            items=(
                JobItem(
                    source=keys.staging_key("gallery", keys.new_ulid(), "a.jpg"), asset="日本.jpg"
                ),
            ),
            ttl_seconds_after_finished=60,
        ),
    )
    body = job.to_body()
    assert body["apiVersion"] == crd.API_VERSION and body["kind"] == crd.KIND
    assert "status" not in body and "styles" not in body["spec"]
    assert body["spec"]["ttlSecondsAfterFinished"] == 60
    assert body["spec"]["profile"] == "default"
    assert IngestJob.read(body) == job


def test_an_item_the_contracts_refuse_is_invalid_with_its_path() -> None:
    spec = IngestJobSpec(
        collection="gallery",
        items=(
            JobItem(
                source=keys.staging_key("gallery", keys.new_ulid(), "a.jpg"), asset="../escape"
            ),
        ),
    )
    job = JobRef(namespace="ns", name="job", uid="uid")
    with pytest.raises(InvalidSpec, match=r"^spec\.items\[0\]: asset: "):
        spec.work_item(job, 0, keys.new_ulid())
    no_source = {"metadata": {"name": "x"}, "spec": {"collection": "c", "items": [{"asset": "a"}]}}
    assert JobOutline.read(no_source).spec.collection == "c"  # the outline skips the items
    with pytest.raises(InvalidSpec, match=r"^spec\.items\[0\]\.source: Field required"):
        IngestJob.read(no_source)


def test_an_unknown_phase_reads_as_pending_and_an_unknown_reason_as_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status = IngestJobStatus.model_validate(
        {"phase": "Hibernating", "failures": [{"index": 0, "reason": "SomethingNew"}]}
    )
    assert status.phase is crd.Phase.PENDING
    assert status.failures[0].reason is FailureReason.UNKNOWN
    assert "unknown job phase 'Hibernating'" in caplog.text
    assert "unknown failure reason 'SomethingNew'" in caplog.text
    assert IngestJobStatus.of({}).phase is crd.Phase.PENDING


def test_every_failure_reason_is_documented_and_fits_the_status() -> None:
    source = Path(FailureReason.__module__.replace(".", "/") + ".py")
    text = (Path(__file__).resolve().parents[2] / "libs/contracts/src" / source).read_text()
    for reason in FailureReason:
        assert f'= "{reason.value}"\n    """' in text, f"{reason.name} has no docstring"
        assert len(reason.value) <= 64


@given(st.datetimes(timezones=st.timezones(), min_value=datetime(1971, 1, 2)))
def test_kubernetes_time_is_utc_to_the_second(moment: datetime) -> None:
    text = format_time(moment)
    assert text.endswith("Z") and len(text) == len("2026-01-02T03:04:05Z")
    parsed = parse_time(text)
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)
    assert timedelta(0) <= moment - parsed < timedelta(seconds=1)
    assert parse_time(text) == parse_time(text.replace("Z", "+00:00"))


def test_a_time_without_a_zone_is_utc() -> None:
    assert parse_time("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
