"""`make capacity`'s arithmetic: docs/capacity.md matches the results files, every input
names where it came from, the after column switches to the measured file when there is
one, and the model behaves as a capacity model must (more photos never need less; each
limit is reached exactly at the volume it is listed at)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_bench import capacity
from emulsion_bench.capacity import DESIGNS, RESULTS, Assumptions, Inputs, Row, model

INPUTS = capacity.load()
ASSUMPTIONS = Assumptions()
VOLUME = st.floats(min_value=1e3, max_value=1e10, allow_nan=False, allow_infinity=False)


def figures(row: Row) -> dict[str, float]:
    """Every number of a row, flattened by name."""
    out: dict[str, float] = {}
    for item in dataclasses.fields(row):
        value = getattr(row, item.name)
        if isinstance(value, dict):
            out.update({f"{item.name}.{k}": float(v) for k, v in value.items()})
        elif isinstance(value, int | float):
            out[item.name] = float(value)
    return out


def test_the_document_is_generated_from_the_results() -> None:
    assert capacity.main(["--check"]) == 0, "docs/capacity.md is stale: run `make capacity`"


def test_every_input_says_where_it_came_from() -> None:
    rows = capacity.inputs_table(INPUTS, ASSUMPTIONS).splitlines()[2:]
    # Each row: input, value, kind, source; none left blank.
    assert len(rows) > 40
    assert all(all(cell.strip() for cell in row.strip("|").split(" | ")) for row in rows)
    for cited in walk_cited(INPUTS):
        assert cited.source.strip(), cited
        assert cited.kind in ("measured", "counted", "default", "assumption", "estimate")
        if cited.kind == "measured":
            named = cited.source.split()[0]
            assert (RESULTS / named).is_file(), f"{cited.source} names no results file"


def walk_cited(inputs: Inputs) -> list[capacity.Cited]:
    found: list[capacity.Cited] = []
    for item in dataclasses.fields(inputs):
        value = getattr(inputs, item.name)
        values = value.values() if isinstance(value, dict) else [value]
        for one in values:
            if isinstance(one, capacity.Cited):
                found.append(one)
            elif isinstance(one, capacity.JobFigures):
                found.extend(getattr(one, f.name) for f in dataclasses.fields(one))
    return found


def test_measured_inputs_are_the_figures_of_their_files() -> None:
    # The newest of each bench's files.
    bench = json.loads(capacity._bench_file(RESULTS).read_text())
    processes = bench["phases"]["emulsion"]["processes"]
    assert float(INPUTS.cpu_ms["processor"]) == processes["processor"]["cpu_per_image_ms"]
    before_path = capacity._latest(RESULTS, "*-controlplane-before.json")
    assert before_path is not None
    before = json.loads(before_path.read_text())
    case = next(c for c in before["cases"] if c["items"] == 200 and c["outcome"] == "succeeded")
    job = INPUTS.jobs["before"]
    assert float(job.put_bytes) == case["etcd"]["put_bytes_per_job"]
    assert float(job.ingestjob_writes) == case["apiserver"]["ingestjob_writes_per_job"]
    assert float(job.stored_bytes) == case["stored_bytes"]


def results_without_after(into: Path) -> Path:
    for path in RESULTS.glob("*.json"):
        if "controlplane-after" not in path.name:
            shutil.copy(path, into / path.name)
    return into


def test_without_an_after_file_the_after_column_is_an_estimate_and_says_so(
    tmp_path: Path,
) -> None:
    inputs = capacity.load(results_without_after(tmp_path))
    assert not inputs.after_measured
    assert all(
        getattr(inputs.jobs["after"], f.name).kind == "estimate"
        for f in dataclasses.fields(capacity.JobFigures)
    )
    text = capacity.section(inputs, ASSUMPTIONS)
    assert "columns are pending" in text
    assert "after (est.)" in text
    # The estimate: the 4 KB bound per write.
    assert float(inputs.jobs["after"].stored_bytes) == capacity.AFTER_OBJECT_BOUND_BYTES


def test_the_after_column_switches_to_the_measured_file(tmp_path: Path) -> None:
    before_path = capacity._latest(results_without_after(tmp_path), "*-controlplane-before.json")
    assert before_path is not None
    after = json.loads(before_path.read_text())
    after["label"] = "after"
    for case in after["cases"]:
        case["stored_bytes"] = 3_000
        case["etcd"]["put_bytes_per_job"] = 40_000
    (tmp_path / "2099-12-08-controlplane-after.json").write_text(json.dumps(after))
    inputs = capacity.load(tmp_path)
    assert inputs.after_measured
    job = inputs.jobs["after"]
    assert float(job.stored_bytes) == 3_000 and float(job.put_bytes) == 40_000
    assert job.put_bytes.kind == "measured"
    assert "2099-12-08-controlplane-after.json" in job.put_bytes.source
    text = capacity.section(inputs, ASSUMPTIONS)
    assert "columns are pending" not in text and "(est.)" not in text
    assert "are **measured**" in text


def test_a_job_size_no_bench_measured_is_refused() -> None:
    with pytest.raises(ValueError, match="no 50-item case"):
        capacity.load(assumptions=ASSUMPTIONS.with_items_per_job(50))


@pytest.mark.parametrize("items", [20, 200, 2000])
def test_every_measured_job_size_can_be_modelled(items: int) -> None:
    assumptions = ASSUMPTIONS.with_items_per_job(items)
    inputs = capacity.load(assumptions=assumptions)
    row = model(1e6, inputs, "before", assumptions)
    assert row.jobs_per_day == pytest.approx(1e6 / items)


@given(VOLUME, VOLUME)
def test_more_photos_never_need_less(a: float, b: float) -> None:
    low, high = sorted((a, b))
    for design in DESIGNS:
        smaller = figures(model(low, INPUTS, design, ASSUMPTIONS))
        larger = figures(model(high, INPUTS, design, ASSUMPTIONS))
        for name, value in smaller.items():
            if name == "days_to_quota_without_ttl":
                assert larger[name] <= value  # sooner, the more photos
                continue
            assert larger[name] >= value, (design, name, low, high)


@given(VOLUME, st.integers(min_value=2, max_value=1000))
def test_rates_and_bytes_scale_with_the_volume(volume: float, factor: int) -> None:
    for design in DESIGNS:
        one = figures(model(volume, INPUTS, design, ASSUMPTIONS))
        many = figures(model(volume * factor, INPUTS, design, ASSUMPTIONS))
        for name, value in one.items():
            if name in ("processor_pods", "namespaces_for_target"):
                continue  # whole pods and namespaces: rounded up
            if name == "days_to_quota_without_ttl":
                assert many[name] == pytest.approx(value / factor, rel=1e-9)
                continue
            assert many[name] == pytest.approx(value * factor, rel=1e-9), name


@given(VOLUME)
def test_pods_cover_the_peak_at_the_hpa_target(volume: float) -> None:
    row = model(volume, INPUTS, "before", ASSUMPTIONS)
    per_pod = float(INPUTS.processor_cpu_request) * float(INPUTS.processor_target_utilisation)
    assert row.processor_pods * per_pod >= row.cores["processor"]
    assert (row.processor_pods - 1) * per_pod < row.cores["processor"]


@given(VOLUME)
def test_the_after_design_never_costs_etcd_more(volume: float) -> None:
    before = model(volume, INPUTS, "before", ASSUMPTIONS)
    after = model(volume, INPUTS, "after", ASSUMPTIONS)
    assert after.etcd_written_per_day <= before.etcd_written_per_day
    assert after.etcd_held <= before.etcd_held
    # ... and moves what it saves to JetStream, and adds NATS operations for it.
    assert after.records_held > 0 == before.records_held
    assert after.nats_ops_per_second > before.nats_ops_per_second


def test_the_job_records_cost_a_cas_per_status_write_and_a_summary_per_job() -> None:
    items = float(ASSUMPTIONS.items_per_job)
    added = capacity.nats_per_photo_total(
        INPUTS, "after", ASSUMPTIONS
    ) - capacity.nats_per_photo_total(INPUTS, "before", ASSUMPTIONS)
    per_job = INPUTS.nats_after_per_job
    expected = (
        float(per_job["object put"])
        + float(per_job["object get"])
        + float(INPUTS.jobs["after"].status_writes)  # one CAS per status write
        + 1  # the summary
    ) / items + float(ASSUMPTIONS.failed_fraction)  # one put per failed item
    assert added == pytest.approx(expected)


def test_each_limit_is_reached_at_the_volume_it_lists() -> None:
    found = {limit.what: limit for limit in capacity.limits(INPUTS, ASSUMPTIONS)}

    def at(fragment: str, design: capacity.Design = "before") -> Row:
        (limit,) = [v for k, v in found.items() if fragment in k]
        return model(limit.photos_per_day[design], INPUTS, design, ASSUMPTIONS)

    assert at("staging/").sweep_seconds == pytest.approx(capacity.HOUR)
    per_pod = float(INPUTS.processor_cpu_request) * float(INPUTS.processor_target_utilisation)
    assert at("maxReplicas").cores["processor"] == pytest.approx(
        float(INPUTS.processor_max_replicas) * per_pod
    )
    assert at("IngestJobs alive").jobs_alive == pytest.approx(capacity.K8S_OBJECTS_PER_CLUSTER)
    assert at("in flight").in_flight == pytest.approx(float(INPUTS.processor_max_ack_pending))
    assert at("controller").cores["controller"] == pytest.approx(1.0)
    assert at("janitor (one process)").janitor_cpu_per_hour == pytest.approx(capacity.HOUR)
    capped = at("deletion cap")
    # At the mean rate, an hour's promoted uploads are the cap's worth.
    hourly = capped.photos_per_day / 24 * capacity.JANITOR_S3["DELETE"]
    assert hourly == pytest.approx(float(INPUTS.deletion_cap) * float(INPUTS.janitor_replicas))
    for design in DESIGNS:
        assert at("etcd", design).etcd_held == pytest.approx(capacity.ETCD_QUOTA_BYTES)
    row = at("per prefix")
    writes = sum(row.s3_per_second[c] for c in ("PUT", "COPY", "DELETE"))
    # The per-job LIST is no write; the per-photo writes reach the prefix's rate.
    assert writes == pytest.approx(capacity.S3_WRITE_PER_PREFIX)


def test_limits_come_first_reached_first() -> None:
    reached = [min(limit.photos_per_day.values()) for limit in capacity.limits(INPUTS, ASSUMPTIONS)]
    assert reached == sorted(reached)
    assert all(math.isfinite(value) and value > 0 for value in reached)


def test_the_section_replaces_only_what_is_between_the_markers() -> None:
    document = f"head\n{capacity.BEGIN}\nold table\n{capacity.END}\ntail\n"
    rendered = capacity.render(document, "new table")
    assert rendered.startswith(f"head\n{capacity.BEGIN}")
    assert rendered.endswith(f"{capacity.END}\ntail\n")
    assert "new table" in rendered and "old table" not in rendered
    assert capacity.render(rendered, "new table") == rendered


def test_the_servers_nats_count_is_shown_as_a_check_once_make_bench_records_it(
    tmp_path: Path,
) -> None:
    results = results_without_after(tmp_path)
    bench = capacity._bench_file(results)
    figures = json.loads(bench.read_text())
    figures["phases"]["emulsion"].pop("nats", None)
    bench.write_text(json.dumps(figures))
    assert capacity.load(results).nats_server_per_photo is None
    assert "| — | pending |" in capacity.inputs_table(capacity.load(results), ASSUMPTIONS)
    figures["phases"]["emulsion"]["nats"] = {"in_msgs_per_image": 12.5, "out_msgs_per_image": 9.5}
    bench.write_text(json.dumps(figures))
    inputs = capacity.load(results)
    assert inputs.nats_server_per_photo is not None
    assert float(inputs.nats_server_per_photo) == 22.0
    assert inputs.nats_server_per_photo.kind == "measured"
    assert "22 messages/photo | measured" in capacity.inputs_table(inputs, ASSUMPTIONS)
