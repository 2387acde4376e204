"""The feeder's policy (emulsion_controller.feeder.FairShare), pure logic: bulk work is
published round-robin across tenants, within each tenant's window, work-conserving, and
every item exactly once across results, new jobs and controller restarts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_contracts.wire import Lane
from emulsion_controller.feeder import FairShare

TENANTS = ("a", "b", "c", "d")

OPS = st.one_of(
    st.tuples(st.just("job"), st.sampled_from(TENANTS), st.integers(1, 30)),
    st.tuples(st.just("results"), st.integers(0, 1000), st.integers(1, 8)),
    st.tuples(st.just("feed"), st.booleans(), st.just(0)),
    st.tuples(st.just("restart"), st.booleans(), st.just(0)),
)


@dataclass
class Job:
    uid: str
    tenant: str
    total: int
    recorded: int = 0
    finished: set[int] = field(default_factory=set)


@dataclass
class World:
    """What is stored (recorded cursors, outcomes) and what the stream took."""

    high_water: int
    min_window: int
    policy: FairShare
    jobs: dict[str, Job] = field(default_factory=dict)
    published: Counter[tuple[str, int]] = field(default_factory=Counter)
    # Items a crashed controller published but had not recorded: published again after
    # its restart, and dropped by the stream's deduplication then.
    may_repeat: set[tuple[str, int]] = field(default_factory=set)

    def feed(self, record: bool) -> None:
        policy = self.policy
        waiting_before = {t: policy.outstanding.get(t, 0) for t in policy.outstanding}
        unpublished = Counter(
            {
                tenant: sum(policy.jobs[uid].unpublished for uid in queue)
                for tenant, queue in policy.queues.items()
            }
        )
        plan = policy.plan()
        window = policy.window()
        for uid, index in plan:
            if self.published[(uid, index)]:
                assert (uid, index) in self.may_repeat, f"{uid}/{index} published twice"
            self.published[(uid, index)] += 1
        round_robin([self.jobs[uid].tenant for uid, _ in plan], unpublished)
        # Items of a job in index order, the accounts as published.
        for uid in {uid for uid, _ in plan}:
            indexes = [i for u, i in plan if u == uid]
            assert indexes == sorted(indexes)
            assert indexes[-1] == policy.jobs[uid].cursor - 1 if uid in policy.jobs else True
        served = Counter(self.jobs[uid].tenant for uid, _ in plan)
        for tenant, count in served.items():
            outstanding = policy.outstanding.get(tenant, 0)
            assert outstanding == waiting_before.get(tenant, 0) + count
            # Never over the window.
            assert outstanding <= window, (tenant, outstanding, window)
        # Work-conserving: a tenant with items to publish is left with a full window, so
        # the tenants' shares end equal.
        for tenant in policy.queues:
            assert policy.outstanding.get(tenant, 0) >= window
        if len(policy.queues) <= 1:
            assert window == max(self.high_water, self.min_window)
        if record:
            for uid, job in self.jobs.items():
                if uid in policy.jobs:
                    job.recorded = policy.jobs[uid].cursor

    def results(self, pick: int, count: int) -> None:
        for _ in range(count):
            open_items = sorted(
                (uid, index)
                for uid, fed in self.policy.jobs.items()
                for index in fed.open
                if fed.lane is Lane.BULK
            )
            if not open_items:
                return
            uid, index = open_items[pick % len(open_items)]
            self.jobs[uid].finished.add(index)
            self.policy.result(uid, index)
            # A duplicate of the same result changes nothing.
            assert not self.policy.result(uid, index)

    def restart(self, recorded_last: bool) -> None:
        """A new process: nothing but what was recorded (cursors, outcomes)."""
        if recorded_last:
            self.feed(record=True)
        for uid, fed in self.policy.jobs.items():
            job = self.jobs[uid]
            self.may_repeat.update((uid, i) for i in range(job.recorded, fed.cursor))
        self.policy = FairShare(self.high_water, self.min_window)
        for uid, job in self.jobs.items():
            self.policy.add(uid, job.tenant, Lane.BULK, job.total, job.recorded, job.finished)


def round_robin(served: list[str], unpublished: Counter[str]) -> None:
    """Between two items of one tenant in one refill no other tenant gets two, while the
    windows stay as they are: fair within ±1 a round (across refills a tenant with room
    goes on while another's window is full, and the windows end equal: see World.feed).
    A tenant whose last item goes out stops counting, so every window grows there, and
    the rounds start afresh."""
    left = Counter(unpublished)
    last: dict[str, int] = {}
    for position, tenant in enumerate(served):
        if tenant in last:
            between = Counter(served[last[tenant] + 1 : position])
            assert max(between.values(), default=0) <= 1, (served, position)
        last[tenant] = position
        left[tenant] -= 1
        if left[tenant] == 0:
            last.clear()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 10),
    st.lists(OPS, max_size=60),
)
def test_bulk_work_is_fed_fairly_within_windows_and_exactly_once(
    high_water: int, min_window: int, ops: list[tuple[str, object, int]]
) -> None:
    world = World(high_water, min_window, FairShare(high_water, min_window))
    for number, (kind, argument, size) in enumerate(ops):
        if kind == "job":
            uid = f"job-{number}"
            job = world.jobs[uid] = Job(uid, str(argument), size)
            assert world.policy.add(uid, job.tenant, Lane.BULK, size, 0)
            assert not world.policy.add(uid, job.tenant, Lane.BULK, size, 0)  # idempotent
            world.feed(record=True)
        elif kind == "results":
            world.results(int(str(argument)), size)
            world.feed(record=True)
        elif kind == "feed":
            world.feed(record=bool(argument))
        else:
            world.restart(recorded_last=bool(argument))
    # Drain: every item of every job is published, and each job then leaves.
    for _ in range(10_000):
        if not world.policy.jobs:
            break
        world.feed(record=True)
        world.results(0, 1_000)
    assert not world.policy.jobs
    assert not world.policy.queues and not world.policy.turns
    for uid, job in world.jobs.items():
        for index in range(job.total):
            assert world.published[(uid, index)] >= 1, (uid, index)
            assert world.published[(uid, index)] == 1 or (uid, index) in world.may_repeat


def test_a_lone_tenant_gets_the_whole_high_water_and_three_share_it() -> None:
    policy = FairShare(high_water=30, min_window=4)
    policy.add("a1", "a", Lane.BULK, 100, 0)
    assert len(policy.plan()) == 30
    policy.add("b1", "b", Lane.BULK, 100, 0)
    policy.add("c1", "c", Lane.BULK, 100, 0)
    plan = policy.plan()
    # a is over its new window (10): b and c alternate up to theirs.
    assert [uid for uid, _ in plan] == ["b1", "c1"] * 10
    for index in range(25):
        policy.result("a1", index)
    assert [uid for uid, _ in policy.plan()] == ["a1"] * 5


def test_interactive_jobs_are_counted_never_fed() -> None:
    policy = FairShare(high_water=10, min_window=1)
    policy.add("i1", "a", Lane.INTERACTIVE, 3, 3, {1}, since=5.0)
    policy.add("b1", "a", Lane.BULK, 20, 0, since=7.0)
    assert len(policy.plan()) == 10
    depths = {(d.lane, d.tenant): d for d in policy.snapshot()}
    assert depths[(Lane.INTERACTIVE, "a")].waiting == 2
    assert depths[(Lane.INTERACTIVE, "a")].oldest_waiting_since == 5.0
    assert depths[(Lane.BULK, "a")].waiting == 20
    policy.result("i1", 0)
    policy.result("i1", 2)
    assert "i1" not in policy.jobs
    assert [d.lane for d in policy.snapshot()] == [Lane.BULK]


def test_a_failed_publish_is_fed_again_from_where_it_failed() -> None:
    policy = FairShare(high_water=6, min_window=1)
    policy.add("a1", "a", Lane.BULK, 4, 0)
    policy.add("b1", "b", Lane.BULK, 4, 0)
    assert policy.plan() == [("a1", 0), ("b1", 0), ("a1", 1), ("b1", 1), ("a1", 2), ("b1", 2)]
    policy.unpublish("b1", 1)
    assert policy.outstanding == {"a": 3, "b": 1}
    assert policy.plan() == [("b1", 1), ("b1", 2)]
    policy.advance("a1", 4)
    assert policy.jobs["a1"].open == {0, 1, 2, 3}
    assert "a" not in policy.queues
