"""Metric snapshots and their deltas, on fixed exposition text shaped as etcd's and the
kube-apiserver's /metrics are (names and labels copied from etcd 3.6 and Kubernetes 1.36)."""

# ruff: noqa: E501 - the exposition lines are kept whole, as the servers print them

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emulsion_bench.promtext import Snapshot, apiserver_writes, etcd_writes_by_resource

ETCD = """\
# HELP etcd_debugging_mvcc_total_put_size_in_bytes The total size of put kv pairs seen by this member.
# TYPE etcd_debugging_mvcc_total_put_size_in_bytes gauge
etcd_debugging_mvcc_total_put_size_in_bytes {put}
# HELP etcd_disk_wal_write_bytes_total Total number of bytes written in WAL.
# TYPE etcd_disk_wal_write_bytes_total gauge
etcd_disk_wal_write_bytes_total {wal}
# HELP etcd_mvcc_put_total Total number of puts seen by this member.
# TYPE etcd_mvcc_put_total counter
etcd_mvcc_put_total {puts}
# HELP etcd_mvcc_db_total_size_in_bytes Total size of the underlying database physically allocated in bytes.
# TYPE etcd_mvcc_db_total_size_in_bytes gauge
etcd_mvcc_db_total_size_in_bytes {db}
"""

APISERVER = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{{code="201",component="apiserver",dry_run="",group="emulsion.dev",resource="ingestjobs",scope="namespace",subresource="",verb="POST",version="v1alpha1"}} {creates}
apiserver_request_total{{code="200",component="apiserver",dry_run="",group="emulsion.dev",resource="ingestjobs",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"}} {patches}
apiserver_request_total{{code="409",component="apiserver",dry_run="",group="emulsion.dev",resource="ingestjobs",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"}} {conflicts}
apiserver_request_total{{code="200",component="apiserver",dry_run="",group="emulsion.dev",resource="ingestjobs",scope="resource",subresource="",verb="GET",version="v1alpha1"}} {gets}
apiserver_request_total{{code="201",component="apiserver",dry_run="",group="",resource="events",scope="namespace",subresource="",verb="POST",version="v1"}} {events}
apiserver_request_total{{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"}} {leases}
# HELP etcd_requests_total Etcd request counts for each operation and object type.
# TYPE etcd_requests_total counter
etcd_requests_total{{group="emulsion.dev",operation="create",resource="ingestjobs"}} {creates}
etcd_requests_total{{group="emulsion.dev",operation="update",resource="ingestjobs"}} {patches}
etcd_requests_total{{group="emulsion.dev",operation="get",resource="ingestjobs"}} {gets}
etcd_requests_total{{group="coordination.k8s.io",operation="update",resource="leases"}} {leases}
"""


def etcd(put: int, wal: int, puts: int, db: int) -> Snapshot:
    return Snapshot.parse(ETCD.format(put=put, wal=wal, puts=puts, db=db))


def apiserver(**counts: int) -> Snapshot:
    values = {"creates": 0, "patches": 0, "conflicts": 0, "gets": 0, "events": 0, "leases": 0}
    return Snapshot.parse(APISERVER.format(**{**values, **counts}))


def test_counters_and_gauges_subtract_sample_by_sample() -> None:
    delta = etcd(5_000, 9_000, 40, 1 << 20) - etcd(1_000, 2_000, 10, 1 << 19)
    assert delta.total("etcd_debugging_mvcc_total_put_size_in_bytes") == 4_000
    assert delta.total("etcd_disk_wal_write_bytes_total") == 7_000
    assert delta.total("etcd_mvcc_put_total") == 30
    assert delta.total("etcd_mvcc_db_total_size_in_bytes") == 1 << 19


def test_a_sample_absent_before_counts_from_zero() -> None:
    before = Snapshot.parse("# TYPE etcd_mvcc_put_total counter\netcd_mvcc_put_total 3\n")
    after = apiserver(creates=2)
    assert (after - before).total("apiserver_request_total", verb="POST") == 2


def test_an_unknown_metric_totals_zero() -> None:
    assert etcd(1, 1, 1, 1).total("etcd_no_such_metric") == 0


def test_total_matches_every_given_label() -> None:
    snapshot = apiserver(patches=7, conflicts=2, leases=5)
    assert snapshot.total("apiserver_request_total", verb="PATCH") == 9
    assert snapshot.total("apiserver_request_total", verb="PATCH", code="409") == 2
    assert snapshot.total("apiserver_request_total", resource="leases") == 5


def test_apiserver_writes_name_verbs_and_subresources_and_leave_reads_and_others_out() -> None:
    delta = apiserver(creates=3, patches=40, conflicts=2, gets=500, events=6, leases=9) - apiserver(
        creates=1, patches=10, gets=100, events=2, leases=1
    )
    assert apiserver_writes(delta, "ingestjobs", "emulsion.dev") == {
        "create": 2,
        "patch status": 32,  # answered 200 or 409: every write the apiserver took counts
    }
    assert apiserver_writes(delta, "events", "") == {"create": 4}


def test_no_writes_is_an_empty_mapping() -> None:
    same = apiserver(creates=4, gets=9)
    assert apiserver_writes(same - same, "ingestjobs", "emulsion.dev") == {}


def test_etcd_writes_by_resource_counts_creates_and_updates_not_gets() -> None:
    delta = apiserver(creates=2, patches=5, gets=70, leases=3) - apiserver()
    assert etcd_writes_by_resource(delta) == {"ingestjobs": 7, "leases": 3}


@given(
    st.lists(st.integers(0, 10**12), min_size=4, max_size=4),
    st.lists(st.integers(0, 10**12), min_size=4, max_size=4),
)
def test_delta_is_exact_for_large_byte_counts(first: list[int], second: list[int]) -> None:
    delta = etcd(*second) - etcd(*first)
    assert delta.total("etcd_debugging_mvcc_total_put_size_in_bytes") == second[0] - first[0]
    assert delta.total("etcd_mvcc_db_total_size_in_bytes") == second[3] - first[3]
