"""The worker against a loopback Metronome that fails on cue."""
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT, TOKEN, machine_clock, store_env, track, wait_until
from destination.queue.halt import halt_state


@pytest.fixture
def clock():
    return machine_clock()  # this module starts processes that keep real time


def cue(sandbox, **faults):
    requests.post(sandbox.url + "/sandbox/faults", json=faults, timeout=5).raise_for_status()


def delivered_ids(sandbox):
    return [e["transaction_id"] for e in requests.get(sandbox.url + "/sandbox/events", timeout=5).json()["events"]]


def held_events(sandbox) -> int:
    """Events in the requests the sandbox has taken so far (with its lock: a request reads its events under it)."""
    with sandbox.state.lock:
        return sum(len(r["transaction_ids"]) for r in sandbox.state.requests)


def statuses(sandbox):
    return [r["status"] for r in sandbox.state.requests]


def test_500_three_times_then_200_is_delivered_once(service, sandbox, clock):
    cue(sandbox, script=[{"status": 500}] * 3)
    service.post(track("once", clock.iso()))
    wait_until(lambda: delivered_ids(sandbox) == ["once"], message="delivery after three 500s")
    wait_until(lambda: service.queue.depth() == 0, message="the ack")
    assert statuses(sandbox) == [500, 500, 500, 200]
    assert sandbox.state.duplicates == 0


def test_429_with_retry_after_2_sends_nothing_for_2_seconds(service, sandbox, clock):
    cue(sandbox, script=[{"status": 429, "headers": {"Retry-After": "2"}}])
    service.post([track("a", clock.iso())])
    wait_until(lambda: delivered_ids(sandbox) == ["a"], message="delivery after the 429")
    first, second = sandbox.state.requests[:2]
    assert (first["status"], second["status"]) == (429, 200)
    assert second["at"] - first["at"] >= 2.0


def test_a_second_429_after_a_probe_got_through_pauses_again(service, sandbox, clock):
    """The first pause ends with a probe's 200, which clears it; the next 429 must start a new one."""
    cue(sandbox, script=[{"status": 429, "headers": {"Retry-After": "1"}}, {"status": 200},
                         {"status": 429, "headers": {"Retry-After": "1"}}])
    service.post([track("first", clock.iso())])
    wait_until(lambda: delivered_ids(sandbox) == ["first"], message="the first event, after its pause")
    service.post([track("second", clock.iso())])
    wait_until(lambda: sorted(delivered_ids(sandbox)) == ["first", "second"], message="the second, after its own pause")
    answers = sandbox.state.requests
    assert [a["status"] for a in answers] == [429, 200, 429, 200]
    assert answers[1]["at"] - answers[0]["at"] >= 1.0 and answers[3]["at"] - answers[2]["at"] >= 1.0


def test_a_429_pauses_every_batch_not_just_the_one_refused(service, sandbox, clock, settings):
    """The batches sent together with the refused one land; no batch starts until the pause ends."""
    cue(sandbox, script=[{"status": 429, "headers": {"Retry-After": "1"}}])
    service.post([track(f"e{i:04d}", clock.iso()) for i in range(1000)])  # ten batches: several rounds
    wait_until(lambda: len(delivered_ids(sandbox)) == 1000, message="all 1000 delivered")
    requests_seen = sandbox.state.requests
    assert len(requests_seen) == 11 and sandbox.state.duplicates == 0
    rejected_at, in_flight = requests_seen[0]["at"], settings.sends_in_flight
    assert in_flight > 1 and [r["status"] for r in requests_seen[:in_flight]] == [429] + [200] * (in_flight - 1)
    assert all(r["at"] - rejected_at >= 1.0 for r in requests_seen[in_flight:])


def test_one_bad_event_in_100_is_dead_lettered_and_99_delivered(service, sandbox, clock):
    events = [track(f"b{i:03d}", clock.iso(), bytes=i) for i in range(100)]
    cue(sandbox, reject_transaction_ids=["b057"])
    assert service.post(events).json()["accepted"] == 100
    wait_until(lambda: service.queue.depth() == 0, message="the batch to be split and settled")
    assert sorted(delivered_ids(sandbox)) == sorted(e["messageId"] for e in events if e["messageId"] != "b057")
    [letter] = service.queue.list_dead_letters()
    assert letter["transaction_id"] == "b057"
    assert letter["code"] == "metronome_400"
    assert letter["reason"] == "event 0: customer_id 'cust_1' is not allowed for this event (sandbox rejection)"


def test_403_keeps_everything_queued_and_resumes_when_the_token_works(service, sandbox, clock):
    cue(sandbox, tokens=["rotated-elsewhere"])
    service.post([track(f"h{i}", clock.iso()) for i in range(30)])
    wait_until(lambda: halt_state(service.queue), message="the worker to halt on 403")
    wait_until(lambda: statuses(sandbox).count(403) >= 3, message="several probes while the token is bad")
    assert service.queue.depth() == 30
    assert service.queue.dead_letter_count() == 0
    assert halt_state(service.queue)["code"] == "metronome_auth"
    cue(sandbox, tokens=[TOKEN])
    wait_until(lambda: len(delivered_ids(sandbox)) == 30, message="delivery to resume by itself")
    wait_until(lambda: halt_state(service.queue) is None, message="the halt to clear")
    assert service.queue.dead_letter_count() == 0


def test_events_past_the_window_before_delivery_are_dead_lettered(app, queue, settings, clock, sandbox):
    from destination.worker.build import build_worker

    client = app.test_client()
    client.post("/v1/events", json=track("ageing", clock.iso(-33 * 86400)), auth=("test-write-key", ""))
    later = lambda: clock() + 2 * 86400  # the worker first runs two days later (say, after an outage)
    worker = build_worker(settings, queue, clock=later)
    worker.step()
    assert delivered_ids(sandbox) == []
    [letter] = queue.list_dead_letters()
    assert (letter["transaction_id"], letter["code"]) == ("ageing", "timestamp_too_old")


def _worker_process(settings, sandbox, log_path, **extra):
    env = {**os.environ, **store_env(settings), "METRONOME_BASE_URL": sandbox.url,
           "METRONOME_API_TOKEN": TOKEN, "LEASE_SECONDS": "1", "POLL_INTERVAL_SECONDS": "0.05",
           "MAPPINGS_PATH": settings.mappings_path, **extra}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "destination", "worker"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def test_worker_killed_between_claim_and_ack_redelivers_with_the_same_transaction_ids(app, settings, queue, sandbox,
                                                                                      tmp_path, clock):
    client = app.test_client()
    # The app's clock, not the machine's: the app refuses times more than a day past its own now.
    events = [track(f"k{i:03d}", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock() - 60))) for i in range(150)]
    assert client.post("/v1/events", json=events, auth=("test-write-key", "")).json["accepted"] == 150
    cue(sandbox, hang_s=60)  # accept the batches, then hold the answers: the worker waits for its ack
    first = _worker_process(settings, sandbox, tmp_path / "worker.log")
    try:
        assert sandbox.state.hung.wait(20), "the worker never sent a batch"
        # Held means taken whole: a request is listed as it arrives, and its events as it reads them.
        wait_until(lambda: len(sandbox.state.requests) == 2 and held_events(sandbox) == 150, message="both batches in flight")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    first_batch = [tid for r in sandbox.state.requests[:2] for tid in r["transaction_ids"]]
    assert len(first_batch) == 150 and queue.depth() == 150  # sent, never acked
    cue(sandbox, hang_s=0)
    second = _worker_process(settings, sandbox, tmp_path / "worker.log")
    try:
        wait_until(lambda: queue.depth() == 0, timeout=30, message="the restarted worker to deliver everything")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        second.kill()
    resent = [tid for r in sandbox.state.requests[2:] for tid in r["transaction_ids"]]
    assert set(first_batch) <= set(resent)  # redelivered, with the very same transaction_ids
    assert sorted(delivered_ids(sandbox)) == sorted(e["messageId"] for e in events)
    assert sandbox.state.duplicates == len(first_batch)  # Metronome's dedup absorbed the resend


class CountingQueue:
    """The real queue, with its ack transactions counted."""

    def __init__(self, queue):
        self.queue, self.ack_calls = queue, []

    def ack_many(self, owner, batches):
        self.ack_calls.append(len(batches))
        return self.queue.ack_many(owner, batches)

    def __getattr__(self, name):
        return getattr(self.queue, name)


def test_a_thousand_delivered_events_are_acked_in_one_transaction(settings, queue, sandbox, app, clock):
    """The acker commits once it holds acks.EVERY_EVENTS (1,000), here before its timer could."""
    from destination.worker.build import build_worker

    answer = app.test_client().post("/v1/events", json=[track(f"b{i:04d}", clock.iso()) for i in range(1000)],
                                    auth=("test-write-key", ""))
    assert answer.json["accepted"] == 1000
    counting = CountingQueue(queue)
    worker = build_worker(settings, counting, clock=clock)
    worker._acker.wait_s = 60
    worker.step()
    assert (len(sandbox.state.requests), counting.ack_calls, queue.depth()) == (10, [10], 0)
    assert len(queue.search_deliveries(customer_id="cust_1", limit=2000)) == 1000  # each attempt still logged


def test_a_round_of_batches_is_in_flight_at_once(settings, queue, sandbox, app, clock):
    """Four batches reach Metronome while every answer is still held: round trips overlap."""
    import threading

    from destination.worker.build import build_worker

    app.test_client().post("/v1/events", json=[track(f"r{i:03d}", clock.iso()) for i in range(400)],
                           auth=("test-write-key", ""))
    counting = CountingQueue(queue)
    worker = build_worker(settings.replace(sends_in_flight=4), counting, clock=clock)
    cue(sandbox, hang_s=60)
    step = threading.Thread(target=worker.step)
    step.start()
    try:
        wait_until(lambda: len(sandbox.state.requests) == 4, message="four requests held by the sandbox at once")
    finally:
        cue(sandbox, hang_s=0)
        step.join(30)
    assert (queue.depth(), counting.ack_calls, sandbox.state.duplicates) == (0, [4], 0)
    assert sorted(delivered_ids(sandbox)) == [f"r{i:03d}" for i in range(400)]


def test_a_503_sets_its_batch_aside_and_the_others_are_delivered_and_acked(settings, queue, sandbox, app, clock):
    from destination.worker.build import build_worker

    cue(sandbox, script=[{"status": 200}, {"status": 200}, {"status": 503}])
    app.test_client().post("/v1/events", json=[track(f"f{i:03d}", clock.iso()) for i in range(500)],
                           auth=("test-write-key", ""))
    counting = CountingQueue(queue)
    build_worker(settings.replace(sends_in_flight=1), counting, clock=clock).step()
    assert statuses(sandbox) == [200, 200, 503, 200, 200]  # a 503 sets one batch aside; the rest go on
    assert sum(counting.ack_calls) == 4 and queue.depth() == 100
    log = queue.search_deliveries(customer_id="cust_1", limit=1000)
    assert sorted(row["outcome"] for row in log) == ["delivered"] * 400 + ["retry"] * 100
    retried = {row["transaction_id"] for row in log if row["outcome"] == "retry"}
    assert len(retried) == 100 and not retried & set(delivered_ids(sandbox))  # the refused batch, still queued


def test_with_metronome_unreachable_one_batch_probes_and_the_pause_grows(settings, queue, app, clock):
    from destination.worker.build import build_worker
    from destination.queue.halt import PAUSED_UNTIL

    app.test_client().post("/v1/events", json=[track(f"u{i:03d}", clock.iso()) for i in range(500)],
                           auth=("test-write-key", ""))
    worker = build_worker(settings.replace(metronome_base_url="http://127.0.0.1:9"), queue, clock=clock)
    in_flight = settings.sends_in_flight
    for probe in (1, 2, 3):
        # Past the pause and every retry delay, which are at most the cap: on real time alone, a
        # fast machine could probe again before any batch was due, and find none to send.
        clock.advance(settings.retry_cap_seconds)
        worker.step()
        # The first round goes out whole (nothing had failed yet); after that one request per probe, not five.
        assert (worker.stats["requests"], worker._failures) == (in_flight + probe - 1, in_flight + probe - 1)
        assert queue.get_state(PAUSED_UNTIL) is not None  # every probe that fails pauses the sender again
    assert queue.depth() == 500 and queue.dead_letter_count() == 0
    log = queue.search_deliveries(customer_id="cust_1", limit=1000)
    assert len(log) == 100 * (in_flight + 2) and {row["outcome"] for row in log} == {"retry"}  # only the probed batches


def test_send_threads_are_kept_between_rounds_and_a_stuck_one_is_replaced():
    """The worker's requests run on threads that outlive a round; a thread stuck in a request
    (past the shutdown grace, say) does not hold up the next one."""
    import threading

    from destination.worker.threads import Threads

    threads = Threads()
    ran_on: list[tuple[int, int]] = []

    def run_round(args):
        done = threading.Semaphore(0)
        for arg in args:
            threads.submit(lambda arg=arg: (ran_on.append((arg, threading.get_ident())), done.release()))
        for _ in args:
            assert done.acquire(timeout=10)

    for _ in range(3):
        run_round([1, 2, 3])
    assert sorted(arg for arg, _ in ran_on) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert threads.started <= 3  # made in the first round at most, kept for the others
    assert threading.get_ident() not in {ident for _, ident in ran_on}

    kept = threads.started
    started, release = threading.Event(), threading.Event()
    threads.submit(lambda: (started.set(), release.wait(30)))
    assert started.wait(10)  # one thread is now held by a hung request
    ran_on.clear()
    run_round([1, 2, 3])
    assert sorted(arg for arg, _ in ran_on) == [1, 2, 3]
    release.set()
    assert threads.started <= kept + 1  # at most one more, for the stuck one's place


def _serve_process(settings, sandbox, port: int, log_path):
    """`serve` as an operator runs it (web processes that also deliver), in its own process group
    so a kill -9 takes every one of its processes, as a machine or container stop does."""
    env = {**os.environ, **store_env(settings), "METRONOME_BASE_URL": sandbox.url, "METRONOME_API_TOKEN": TOKEN,
           "MAPPINGS_PATH": settings.mappings_path, "WRITE_KEYS": "test:test-write-key", "PORT": str(port),
           "HOST": "127.0.0.1", "POLL_INTERVAL_SECONDS": "0.05", "BILLING_CHECK": "off"}  # LEASE_SECONDS: the default, 60
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "destination", "serve"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _listening(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
    except requests.RequestException:  # refused, or accepted by a process still booting
        return False


def test_serve_killed_mid_delivery_and_restarted_resends_within_seconds_not_a_lease(settings, queue, sandbox, tmp_path,
                                                                                    clock):
    """kill -9 of `serve` while its batches wait for Metronome's answer, then a restart 0.8 s
    later: every event that got a 200 reaches Metronome within 5 s of the restart, with its
    original transaction_id, though the dead process's leases had 60 s to run."""
    from test_cli import _free_port

    port = _free_port()
    cue(sandbox, hang_s=120)  # accept the batches, then hold the answers: the sender dies waiting
    first = _serve_process(settings, sandbox, port, tmp_path / "serve.log")
    try:
        wait_until(lambda: _listening(port), timeout=30, message="serve to listen")
        events = [track(f"s{i:03d}", clock.iso(-60)) for i in range(150)]
        answer = requests.post(f"http://127.0.0.1:{port}/v1/events", json=events, auth=("test-write-key", ""), timeout=10)
        assert answer.status_code == 200 and answer.json()["accepted"] == 150
        assert sandbox.state.hung.wait(20), "serve never sent a batch"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    sent_before = len(sandbox.state.requests)
    in_flight = {tid for r in sandbox.state.requests for tid in r["transaction_ids"]}
    assert in_flight and queue.depth() == 150  # sent, never acked: leased to a dead process for another minute
    cue(sandbox, hang_s=0)
    time.sleep(0.8)  # the restart delay an operator's supervisor gives, as in the run that found this
    restarted_at = time.monotonic()
    second = _serve_process(settings, sandbox, port, tmp_path / "serve.log")
    try:
        wait_until(lambda: queue.depth() == 0, timeout=90, message="every accepted event sent again and acked")
        took = time.monotonic() - restarted_at
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(30)
    print(f"\nkill -9 and restart: every event delivered {took:.1f} s after the restart")
    assert took < 5, f"{took:.1f} s: the dead process's leases were waited out"
    resent = {tid for r in sandbox.state.requests[sent_before:] if r["status"] == 200 for tid in r["transaction_ids"]}
    assert in_flight <= resent  # the batches the dead process sent, sent again with the very same transaction_ids
    assert sorted(set(delivered_ids(sandbox))) == sorted(e["messageId"] for e in events)  # and no new ids


def test_after_a_storm_of_30_500s_every_event_arrives_within_5_s_of_the_first_healthy_answer(settings, queue, sandbox, clock):
    """Delays that grew to their cap during the storm must not outlast it: with a 300 s cap and
    delays doubling from 10 ms, the last batches of the storm wait minutes unless the first
    success makes them due. Timed by the sandbox's own clock."""
    from conftest import live_service

    cue(sandbox, script=[{"status": 500}] * 30)
    with live_service(settings, queue, clock, retry_base_seconds=0.01, retry_cap_seconds=300.0) as service:
        for start in range(0, 2000, 100):
            assert service.post([track(f"storm-{i}", clock.iso()) for i in range(start, start + 100)]).status_code == 200
        wait_until(lambda: queue.depth() == 0, timeout=60, message="every event after the storm")
    answers = sandbox.state.requests
    assert [r["status"] for r in answers[:30]] == [500] * 30 and all(r["status"] == 200 for r in answers[30:])
    first_healthy = answers[30]["at"]
    assert len(set(delivered_ids(sandbox))) == 2000
    took = max(r["at"] for r in answers) - first_healthy
    print(f"\nthe last event arrived {took:.2f} s after the first healthy answer")
    assert took < 5.0


def test_a_probe_lease_held_by_a_process_that_died_is_taken_over_at_once(settings, queue, sandbox, app, clock):
    """kill -9 of the process that was to probe must not stall every other one for the lease's
    length: a live process of the same host sees the holder is gone and probes itself."""
    from destination.queue.halt import PROBE, pause, paused_until
    from destination.queue.owners import HOST
    from destination.worker.build import build_worker

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    now_ms = int(clock() * 1000)
    assert queue.take_lease(PROBE, f"{HOST}:{gone.stdout.strip()}:1/probe", 600_000, now_ms)
    pause(queue, now_ms - 1)  # the pause is over; its probe is held by a dead process for ten minutes
    app.test_client().post("/v1/events", json=[track("after-death", clock.iso())], auth=("test-write-key", ""))
    build_worker(settings, queue, clock=clock).step()
    assert delivered_ids(sandbox) == ["after-death"]
    assert paused_until(queue) is None and queue.get_state(PROBE) is None
