"""The send window against a Metronome that throttles, and one probe per pause across processes.
Every figure is read from the sandbox's own record of the requests it received."""
import signal
from collections import Counter

import pytest
import requests

from conftest import WRITE_KEY, live_service, machine_clock, requires_postgres, track, wait_until


@pytest.fixture
def clock():
    return machine_clock()  # processes and the sandbox keep real time


def cue(sandbox, **faults):
    requests.post(sandbox.url + "/sandbox/faults", json=faults, timeout=5).raise_for_status()


def per_second(answers: list[dict], since: float) -> list[Counter]:
    """Each whole second since `since`: how many requests got each status."""
    seconds: dict[int, Counter] = {}
    for answer in answers:
        seconds.setdefault(int(answer["at"] - since), Counter())[answer["status"]] += 1
    last = max(seconds)
    return [seconds.get(i, Counter()) for i in range(last)]  # the last second may be cut short


def test_against_a_sink_admitting_50_requests_a_second_the_worker_settles_near_50_with_few_refused(settings, queue,
                                                                                                sandbox, clock):
    """A token bucket of 50 requests a second (bursts of 10), 429 beyond it with Retry-After and
    retry-after-ms, and each answer held 20 ms. 10-event batches, so 15,000 events last 30 s."""
    cue(sandbox, rate_limit={"per_s": 50, "burst": 10}, latency_s=0.02)
    with live_service(settings, queue, clock, batch_max_events=10, claim_size=200) as service:
        for start in range(0, 15_000, 1000):
            body = [track(f"r-{i}", clock.iso()) for i in range(start, start + 1000)]
            assert service.post(body).json()["accepted"] == 1000
        wait_until(lambda: queue.depth() == 0, timeout=90, message="every event delivered")
    answers = sandbox.state.requests
    seconds = per_second(answers, answers[0]["at"])
    settled_at = next(i for i in range(len(seconds)) if all(40 <= s[200] <= 60 for s in seconds[i:]))
    after = sum(seconds[settled_at:], Counter())
    refused_share = after[429] / (after[200] + after[429])
    print(f"\nadmitted a second: {[s[200] for s in seconds]}; refused: {[s[429] for s in seconds]}; "
          f"settled at {settled_at} s; refused after: {refused_share:.1%}")
    assert settled_at <= 10
    assert refused_share < 0.05
    assert len({tid for a in answers for tid in a["transaction_ids"]}) == 15_000 and sandbox.state.duplicates == 0
    assert queue.dead_letter_count() == 0


@requires_postgres
def test_ten_429s_with_retry_after_3_meet_no_request_inside_any_window_from_four_processes(settings, sandbox,
                                                                                            tmp_path, clock):
    """`serve` (two web processes delivering) and two `worker` processes on one Postgres. The
    first 429 meets a lone batch; the next 2,000 events arrive during the pause, and all four
    processes hold them. Each pause's end is probed by one request from one process."""
    from test_paas import base_env, listening, start, stop

    env = base_env(settings, sandbox, tmp_path, WEB_CONCURRENCY="2", POLL_INTERVAL_SECONDS="0.02",
                   RETRY_BASE_SECONDS="0.05", BILLING_CHECK="off")
    url = f"http://127.0.0.1:{env['PORT']}"
    cue(sandbox, script=[{"status": 429, "headers": {"Retry-After": "3"}}] * 10)
    processes = [start("exec metronome-destination serve", env, tmp_path / "serve.log")]
    processes += [start("exec metronome-destination worker", env, tmp_path / f"worker{i}.log") for i in (1, 2)]
    try:
        wait_until(listening(url), timeout=30, message="serve to listen")
        post = lambda body: requests.post(url + "/v1/events", json=body, auth=(WRITE_KEY, ""), timeout=10)
        assert post([track("lone-0", clock.iso())]).json()["accepted"] == 1
        wait_until(lambda: len(sandbox.state.requests) >= 1, message="the first 429")
        for start_at in range(0, 2000, 100):
            assert post([track(f"p-{i}", clock.iso()) for i in range(start_at, start_at + 100)]).status_code == 200
        wait_until(lambda: len(sandbox.state.events) == 2001, timeout=90, message="every event after ten pauses")
    finally:
        codes = [stop(process) for process in processes]
    answers = sandbox.state.requests
    refused = [a for a in answers if a["status"] == 429]
    assert len(refused) == 10
    inside = [(r["at"], a["at"]) for r in refused for a in answers if r["at"] < a["at"] < r["at"] + 3]
    gaps = [round(b["at"] - a["at"], 3) for a, b in zip(answers, answers[1:11])]
    print(f"\nseconds between the first 11 requests: {gaps}")
    assert inside == []
    assert answers[10]["status"] == 200 and answers[10]["at"] - refused[-1]["at"] >= 3
    assert sandbox.state.duplicates == 0 and codes == [0, 0, 0]


def test_a_worker_killed_with_30_batches_in_flight_delivers_every_event_exactly_once(settings, queue, sandbox, app,
                                                                                      tmp_path, clock):
    """The sandbox takes each batch and holds its answer; with 30 requests out the worker is
    SIGKILLed. The restarted worker sends those 3,000 events again, with the same
    transaction_ids: Metronome keeps each once."""
    from test_worker_faults import _worker_process, held_events

    client = app.test_client()
    events = [track(f"x{i:04d}", clock.iso(-60)) for i in range(3000)]
    for start_at in range(0, 3000, 1000):
        answer = client.post("/v1/events", json=events[start_at:start_at + 1000], auth=(WRITE_KEY, ""))
        assert answer.json["accepted"] == 1000
    cue(sandbox, hang_s=60)
    first = _worker_process(settings, sandbox, tmp_path / "worker.log", SENDS_IN_FLIGHT="30", CLAIM_SIZE="3000",
                            LEASE_SECONDS="60")
    try:
        wait_until(lambda: len(sandbox.state.requests) == 30 and held_events(sandbox) == 3000, timeout=30,
                   message="30 batches in flight at once, each taken whole")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    sent = [tid for r in sandbox.state.requests for tid in r["transaction_ids"]]
    assert len(sent) == len(set(sent)) == 3000 and queue.depth() == 3000  # all out, none acked
    cue(sandbox, hang_s=0)
    second = _worker_process(settings, sandbox, tmp_path / "worker.log")
    try:
        wait_until(lambda: queue.depth() == 0, timeout=60, message="the restarted worker to deliver everything")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    resent = [tid for r in sandbox.state.requests[30:] for tid in r["transaction_ids"]]
    print(f"\n{len(sent)} events in 30 requests out at the kill; resent {len(resent)}, "
          f"{len(set(resent) & set(sent))} with their first transaction_id; duplicates {sandbox.state.duplicates}")
    assert sorted(resent) == sorted(sent)  # every one sent again, with the same transaction_id, once
    assert sorted(sandbox.state.events) == sorted(e["messageId"] for e in events)
    assert sandbox.state.duplicates == 3000 and queue.dead_letter_count() == 0
