"""What `emulsion cancel` and `emulsion retry` print for people, from the API's answers."""

from __future__ import annotations

from emulsion_cli.__main__ import cancel_line, retry_text

ANSWER = {
    "name": "j1",
    "status_url": "/v1/ingests/j1",
    "cancelled_at": "2026-12-07T14:00:00Z",
    "phase": "Processing",
    "finished": False,
    "total": 10,
    "succeeded": 3,
    "failed": 1,
    "cancelled": 2,
    "stopping": 4,
}


def test_a_cancel_under_way_says_what_was_done_and_what_is_stopping() -> None:
    line = cancel_line(ANSWER)
    assert line.startswith("cancelling j1: 3 succeeded, 1 failed already")
    assert "2 cancelled, 4 stopping" in line


def test_a_finished_cancel_and_a_job_that_had_ended_say_so() -> None:
    done = {**ANSWER, "finished": True, "cancelled": 6, "stopping": 0}
    assert cancel_line(done) == "j1 was cancelled: 3 succeeded, 1 failed, 6 cancelled"
    ended = {**done, "cancelled_at": None, "cancelled": 0}
    assert (
        cancel_line(ended) == "j1 had already finished (3 succeeded, 1 failed); nothing to cancel"
    )


def test_a_retry_names_its_job_and_every_item_not_retried() -> None:
    answer = {
        "retry_of": "j1",
        "name": "j2",
        "status_url": "/v1/ingests/j2",
        "items": [{"index": 0}],
        "skipped": [
            {"index": 3, "asset": "a.jpg", "reason": "NotAnImage", "skipped": "deterministic"},
            {"index": 4, "asset": "b.jpg", "reason": "Cancelled", "skipped": "upload_gone"},
        ],
    }
    lines = retry_text(answer).splitlines()
    assert lines[0] == "retrying 1 item(s) of j1 as j2 (emulsion status j2)"
    assert "--include-deterministic" in lines[1] and "a.jpg" in lines[1]
    assert "upload it again" in lines[2] and "b.jpg" in lines[2]
    nothing = retry_text({**answer, "name": None, "items": [], "skipped": []})
    assert nothing == "nothing of j1 to retry"
