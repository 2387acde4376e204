"""Per-token limits through the API on the real stack (limits.py): 429 with Retry-After
and a problem naming the limit, one token's limit never another's, an unauthenticated
client refused before any bookkeeping, and list pages read a few jobs at a time."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulsion_api.jobs import LABEL_OWNER
from emulsion_api.scopes import token_digest
from emulsion_contracts import crd, keys
from emulsion_devstack.processes import stop_all
from emulsion_devstack.stack import Endpoints, LocalStack

from ..conftest import ApiProcess, get_job, metrics_url_of, patch_status, wait_for

Stage = Callable[..., list[str]]

# A: tight rates and one open follow; B: one open follow, default rates; C: 3 items in flight.
TOKEN_A = secrets.token_urlsafe(24)
TOKEN_B = secrets.token_urlsafe(24)
TOKEN_C = secrets.token_urlsafe(24)
# D may ask for priority interactive; E has the defaults (it may not).
TOKEN_D = secrets.token_urlsafe(24)
TOKEN_E = secrets.token_urlsafe(24)
LIMITS = {
    "default": {},
    "tokens": {
        token_digest(TOKEN_A): {
            "presignsPerSecond": 0.5,
            "presignBurst": 3,
            "notifiesPerSecond": 0.5,
            "notifyBurst": 2,
            "watches": 1,
        },
        token_digest(TOKEN_B): {"watches": 1},
        token_digest(TOKEN_C): {"itemsInFlight": 3},
        token_digest(TOKEN_D): {"interactive": True},
    },
}
PROBLEM = "application/problem+json"


def owner(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def collection(prefix: str) -> str:
    return f"{prefix}{keys.new_ulid().lower()[-10:]}"


@pytest.fixture(scope="module")
def limited(stack: Endpoints, stack_state_dir: Path) -> Iterator[ApiProcess]:
    local = LocalStack(stack_state_dir, say=lambda line: None)
    scopes = {
        token_digest(stack.api_token): ["*"],
        token_digest(TOKEN_A): ["lim-a-*"],
        token_digest(TOKEN_B): ["lim-b-*"],
        token_digest(TOKEN_C): ["lim-c-*"],
        token_digest(TOKEN_D): ["lim-d-*"],
        token_digest(TOKEN_E): ["lim-e-*"],
    }
    record = local.start_service(
        "api",
        {
            "EMULSION_API_TOKENS": ",".join(
                (stack.api_token, TOKEN_A, TOKEN_B, TOKEN_C, TOKEN_D, TOKEN_E)
            ),
            "EMULSION_API_TOKEN_SCOPES": json.dumps(scopes),
            "EMULSION_API_TOKEN_LIMITS": json.dumps(LIMITS),
        },
    )
    try:
        yield ApiProcess(
            LocalStack.service_url(record), stack.api_token, record, metrics_url_of(record)
        )
    finally:
        stop_all([record])


def files(count: int) -> list[dict[str, Any]]:
    return [
        {"filename": f"IMG_{n}.jpg", "content_type": "image/jpeg", "size": 10} for n in range(count)
    ]


def assert_limited(response: httpx.Response, limit: str) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    assert re.fullmatch(r"[1-9][0-9]*", response.headers["Retry-After"])
    problem: dict[str, Any] = response.json()
    assert (problem["code"], problem["limit"], problem["status"]) == ("rate_limited", limit, 429)
    assert problem["type"] == "urn:emulsion:problem:rate_limited"
    return problem


def throttled_samples(process: ApiProcess) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in httpx.get(process.metrics_url).text.splitlines():
        if line.startswith("emulsion_api_throttled_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            found[labels] = float(value)
    return found


def test_presigns_over_the_tokens_rate_are_429_naming_the_limit_and_another_token_goes_on(
    limited: ApiProcess,
) -> None:
    with limited.client(TOKEN_A) as a, limited.client(TOKEN_B) as b:
        mine = collection("lim-a-")
        first = a.post("/v1/uploads", json={"collection": mine, "files": files(3)})
        assert first.status_code == 201, first.text

        refused = a.post("/v1/uploads", json={"collection": mine, "files": files(1)})

        problem = assert_limited(refused, "presigns_per_second")
        assert "0.5 files a second" in problem["detail"]
        # B's bucket is its own: a whole batch passes while A waits.
        theirs = collection("lim-b-")
        batch = b.post("/v1/uploads", json={"collection": theirs, "files": files(50)})
        assert batch.status_code == 201, batch.text
        # Told when to come back, A is served again.
        wait_for(
            "A's presign after its Retry-After",
            lambda: (
                a.post("/v1/uploads", json={"collection": mine, "files": files(1)}).status_code
                == 201
            ),
            timeout=10,
        )
    sample = (
        "emulsion_api_throttled_requests_total"
        f'{{limit="presigns_per_second",token="{owner(TOKEN_A)}"}}'
    )
    assert throttled_samples(limited).get(sample, 0) >= 1


def test_ingests_over_the_tokens_rate_are_429_naming_the_limit(limited: ApiProcess) -> None:
    mine = collection("lim-a-")
    # Never uploaded: each request is a 422 after the limiter let it through.
    body = {
        "collection": mine,
        "items": [{"upload_key": keys.staging_key(mine, keys.new_ulid(), "a.jpg")}],
    }
    with limited.client(TOKEN_A) as a, limited.client(TOKEN_B) as b:
        answers = [a.post("/v1/ingests", json=body) for _ in range(3)]

        assert [answer.status_code for answer in answers[:2]] == [422, 422]
        assert_limited(answers[2], "notifies_per_second")
        theirs = collection("lim-b-")
        other = {
            "collection": theirs,
            "items": [{"upload_key": keys.staging_key(theirs, keys.new_ulid(), "b.jpg")}],
        }
        assert [b.post("/v1/ingests", json=other).status_code for _ in range(5)] == [422] * 5


def test_an_unauthenticated_client_is_refused_before_any_limit_is_counted(
    limited: ApiProcess,
) -> None:
    before = throttled_samples(limited)
    body = {"collection": "lim-a-x", "files": files(3)}
    for token in (None, "not-a-token", TOKEN_A + "x"):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=limited.url, headers=headers) as anyone:
            answers = [anyone.post("/v1/uploads", json=body) for _ in range(8)]
            answers += [anyone.get("/v1/ingests/some-job?wait=5") for _ in range(3)]
        assert {answer.status_code for answer in answers} == {401}
        assert all(answer.json()["code"] == "unauthorized" for answer in answers)
    # No bucket was touched, no throttling counted: only a token that authenticates is.
    assert throttled_samples(limited) == before


def test_items_in_flight_are_the_tokens_unfinished_jobs_and_free_up_when_they_finish(
    limited: ApiProcess, stage: Stage, custom: Any
) -> None:
    mine = collection("lim-c-")
    with limited.client(TOKEN_C) as c:
        first = c.post(
            "/v1/ingests",
            json={"collection": mine, "items": [{"upload_key": k} for k in stage(3, mine)]},
        )
        assert first.status_code == 202, first.text
        name = first.json()["name"]
        assert get_job(custom, name)["metadata"]["labels"][LABEL_OWNER] == owner(TOKEN_C)
        more = {"collection": mine, "items": [{"upload_key": k} for k in stage(1, mine)]}

        problem = assert_limited(c.post("/v1/ingests", json=more), "items_in_flight")

        assert "3 items in flight" in problem["detail"]
        # The admin token's items are its own: not counted against C.
        with limited.client() as admin:
            assert admin.post("/v1/ingests", json=more).status_code == 202
        more = {"collection": mine, "items": [{"upload_key": k} for k in stage(1, mine)]}
        patch_status(custom, name, {"phase": "Succeeded", "total": 3, "succeeded": 3})
        wait_for(
            "C's ingest once its job finished",
            lambda: c.post("/v1/ingests", json=more).status_code == 202,
            timeout=15,
        )


def test_a_tokens_follows_are_its_own_and_cannot_take_another_tokens(
    limited: ApiProcess, stage: Stage
) -> None:
    jobs: dict[str, str] = {}
    with limited.client() as admin:
        for prefix in ("lim-a-", "lim-b-"):
            where = collection(prefix)
            made = admin.post(
                "/v1/ingests",
                json={"collection": where, "items": [{"upload_key": k} for k in stage(1, where)]},
            )
            assert made.status_code == 202, made.text
            jobs[prefix] = made.json()["name"]
    a_job, b_job = jobs["lim-a-"], jobs["lim-b-"]
    with limited.client(TOKEN_A) as a, limited.client(TOKEN_B) as b:
        with a.stream("GET", f"/v1/ingests/{a_job}/events") as stream:
            assert stream.status_code == 200
            # A's one follow is held by the open stream, for as long as it is open.
            assert_limited(a.get(f"/v1/ingests/{a_job}?wait=2"), "watches")
            assert_limited(a.get(f"/v1/ingests/{a_job}/events"), "watches")
            # B follows its own job as usual.
            assert b.get(f"/v1/ingests/{b_job}?wait=1").status_code == 200
            with b.stream("GET", f"/v1/ingests/{b_job}/events") as theirs:
                assert theirs.status_code == 200
        # A's stream closed, its follow comes back.
        wait_for(
            "A's long poll after its stream closed",
            lambda: a.get(f"/v1/ingests/{a_job}?wait=0.5").status_code == 200,
            timeout=20,
        )
        # A reading without waiting never needs a follow.
        assert a.get(f"/v1/ingests/{a_job}").status_code == 200


def test_a_page_of_jobs_is_read_in_chunks_and_pages_on_exactly(
    limited: ApiProcess, stage: Stage
) -> None:
    where = collection("lim-b-")
    names: list[str] = []
    with limited.client() as admin:
        for key in stage(23, where):
            made = admin.post(
                "/v1/ingests",
                json={"collection": where, "items": [{"upload_key": key}]},
                headers={"Idempotency-Key": key[-20:]},
            )
            assert made.status_code == 202, made.text
            names.append(made.json()["name"])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    with limited.client(TOKEN_B) as b:
        while True:
            params: dict[str, Any] = {"collection": where, "limit": 15}
            if cursor:
                params["cursor"] = cursor
            page = b.get("/v1/ingests", params=params)
            assert page.status_code == 200, page.text
            listed = page.json()
            assert len(listed["items"]) <= 15
            seen += [item["name"] for item in listed["items"]]
            pages += 1
            cursor = listed["next_cursor"]
            if not cursor:
                break
    assert seen == sorted(names)
    assert pages == 2


def test_priority_interactive_is_a_tokens_only_when_its_limits_allow_it_and_bulk_is_anyones(
    limited: ApiProcess, stage: Stage, custom: Any
) -> None:
    """Every job the API makes carries its token's tenant; `interactive` is refused (403,
    a problem) to a token not allowed it, `bulk` never is. Another tenant's token and an
    unauthenticated client are refused exactly as without a priority: they learn nothing
    of whether the token may ask for it."""

    def ingest(client: httpx.Client, where: str, priority: str | None) -> httpx.Response:
        body: dict[str, Any] = {
            "collection": where,
            "items": [{"upload_key": key} for key in stage(1, where)],
        }
        if priority is not None:
            body["priority"] = priority
        return client.post("/v1/ingests", json=body)

    d_where, e_where = collection("lim-d-"), collection("lim-e-")
    with limited.client(TOKEN_D) as d, limited.client(TOKEN_E) as e:
        refused = ingest(e, e_where, "interactive")
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == PROBLEM
        problem = refused.json()
        assert (problem["code"], problem["status"]) == ("priority_not_allowed", 403)
        assert problem["type"] == "urn:emulsion:problem:priority_not_allowed"

        made: dict[str, tuple[str, str | None]] = {}
        for client, token, where, priority in (
            (e, TOKEN_E, e_where, "bulk"),
            (e, TOKEN_E, e_where, None),
            (d, TOKEN_D, d_where, "interactive"),
        ):
            answer = ingest(client, where, priority)
            assert answer.status_code == 202, answer.text
            made[answer.json()["name"]] = (owner(token), priority)
        for name, (tenant, priority) in made.items():
            job = get_job(custom, name)
            assert job["metadata"]["labels"][crd.LABEL_TENANT] == tenant
            assert job["spec"].get("priority") == priority

        # Another tenant's collection: the same 403 as without a priority, for either.
        def problem_of(answer: httpx.Response) -> dict[str, Any]:
            return {k: v for k, v in answer.json().items() if k != "trace_id"}

        plain = ingest(e, d_where, None)
        assert plain.status_code == 403 and plain.json()["code"] == "forbidden"
        for priority in ("interactive", "bulk"):
            other = ingest(e, d_where, priority)
            assert (other.status_code, problem_of(other)) == (403, problem_of(plain))
        invalid = ingest(d, d_where, "urgent")
        assert invalid.status_code == 422, invalid.text
    for bearer in (None, "not-a-token"):
        headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
        with httpx.Client(base_url=limited.url, headers=headers) as anyone:
            answer = ingest(anyone, d_where, "interactive")
            assert answer.status_code == 401
            assert answer.json()["code"] == "unauthorized"
