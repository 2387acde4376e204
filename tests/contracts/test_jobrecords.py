"""The records' keys (emulsion_contracts.jobrecords): one job's never meet another's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts import jobrecords

# DNS labels and subdomains, as Kubernetes names them.
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
SUBDOMAIN = st.lists(LABEL, min_size=1, max_size=3).map(".".join)


@given(namespace=LABEL, job=SUBDOMAIN, other=SUBDOMAIN, index=st.integers(0, 1999))
def test_keys_of_two_jobs_never_meet(namespace: str, job: str, other: str, index: int) -> None:
    key = jobrecords.failure_key(namespace, job, index)
    assert jobrecords.failure_index(key) == index
    assert jobrecords.failure_index(jobrecords.outcomes_key(namespace, job)) is None
    assert jobrecords.failure_index(jobrecords.summary_key(namespace, job)) is None
    # A job's failure filter matches its own failure keys and no other job's.
    pattern = jobrecords.failures_filter(namespace, job).split(".")
    other_key = jobrecords.failure_key(namespace, other, index).split(".")
    assert len(pattern) == len(key.split("."))
    same = len(pattern) == len(other_key) and all(
        p in ("*", o) for p, o in zip(pattern, other_key, strict=True)
    )
    assert same == (job == other)
