"""Scale-out on one Postgres: 2 gunicorn web processes and 3 delivery workers take 50,000 events
while Metronome fails in bursts, rate-limits, one worker is SIGKILLed mid-batch and another is
restarted with SIGTERM. Afterwards every event is at Metronome exactly once by transaction_id,
nothing is left behind, and the metrics agree with what the sandbox saw."""
import re
import threading
import time
from collections import Counter

import pytest
import requests

from conftest import WRITE_KEY, machine_clock, requires_postgres, wait_until


@pytest.fixture
def clock():
    return machine_clock()  # this module starts processes that keep real time

from test_paas import base_env, cue, listening, procfile, start, stop

TOTAL = 50_000
BATCH = 100
FIRST = 1_000  # sent before the other workers start, while one worker is killed mid-batch


def events(start_index: int, count: int) -> list[dict]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return [{"type": "track", "event": "llm_request", "messageId": f"so-{i:05d}", "userId": f"cust_{i % 97}",
             "timestamp": now, "properties": {"input_tokens": i % 1000, "model": "m"}}
            for i in range(start_index, start_index + count)]


class Feeder:
    """Posts 100-event batches from several threads, like a CDP with concurrency, and counts answers."""

    def __init__(self, url: str, first: int, last: int, threads: int = 4):
        self.url = url + "/v1/events"
        self.batches = list(range(first, last, BATCH))
        self.lock = threading.Lock()
        self.sent = 0
        self.statuses: Counter = Counter()
        self.threads = [threading.Thread(target=self._run, args=(i, threads)) for i in range(threads)]

    def _run(self, slot: int, stride: int):
        with requests.Session() as session:
            session.auth = (WRITE_KEY, "")
            for start_index in self.batches[slot::stride]:
                response = session.post(self.url, json=events(start_index, BATCH), timeout=60)
                with self.lock:
                    self.statuses[response.status_code] += 1
                    self.sent += BATCH if response.status_code == 200 else 0

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def join(self):
        for thread in self.threads:
            thread.join(600)


def scrape(url: str) -> dict:
    """{(name, labels): value} from a Prometheus text page."""
    samples = {}
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        match = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if match:
            samples[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return samples


@requires_postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_two_web_processes_and_three_workers_deliver_50000_events_exactly_once(settings, sandbox, tmp_path):
    env = base_env(settings, sandbox, tmp_path, WEB_CONCURRENCY="2", LEASE_SECONDS="10", RETRY_BASE_SECONDS="0.05",
                   RETRY_CAP_SECONDS="2", LOG_LEVEL="WARNING")
    url = f"http://127.0.0.1:{env['PORT']}"
    web = start(procfile()["web"], env, tmp_path / "web.log")
    workers = {}

    def worker(name: str, **extra):
        workers[name] = start(procfile()["worker"], {**env, **extra}, tmp_path / f"{name}.log")

    try:
        wait_until(listening(url), timeout=30, message="web")
        # 1. One worker takes a batch, Metronome holds the answer, and the worker is SIGKILLed.
        # It sends one batch at a time, so exactly one answer is lost (the later workers send four).
        cue(sandbox, hang_s=120)
        worker("w1", SENDS_IN_FLIGHT="1")
        first = Feeder(url, 0, FIRST).start()
        first.join()
        assert first.statuses == {200: FIRST // BATCH}
        assert sandbox.state.hung.wait(30), "no worker sent a batch"
        workers["w1"].kill()
        assert workers["w1"].wait(10) == -9
        killed_batch = list(sandbox.state.requests[0]["transaction_ids"])
        assert len(killed_batch) == BATCH
        cue(sandbox, hang_s=0)
        # 2. Three workers from now on; Metronome fails in a 5xx burst as the load starts.
        cue(sandbox, script=[{"status": 500}] * 10 + [{"status": 503}] * 10)
        for name in ("w1b", "w2", "w3"):
            worker(name)
        rest = Feeder(url, FIRST, TOTAL).start()
        # 3. A 429 storm with Retry-After once a quarter is in.
        wait_until(lambda: rest.sent >= TOTAL // 4, timeout=300, message="a quarter of the load")
        cue(sandbox, script=[{"status": 429, "headers": {"Retry-After": "1"}}] * 8)
        # 4. Halfway, one worker is restarted the way a deploy does it: SIGTERM, then a new one.
        wait_until(lambda: rest.sent >= TOTAL // 2, timeout=300, message="half the load")
        assert stop(workers["w2"]) == 0
        worker("w2b")
        rest.join()
        assert rest.statuses == {200: (TOTAL - FIRST) // BATCH}, "every request was accepted first time"
        wait_until(lambda: len(sandbox.state.events) >= TOTAL, timeout=300, interval=0.5,
                   message="all 50,000 at Metronome")
        wait_until(lambda: scrape(url)[("destination_queue_depth", "")] == 0, timeout=60, message="the last acks")
        metrics = scrape(url)
    finally:
        for process in workers.values():
            if process.poll() is None:
                assert stop(process) == 0
        assert stop(web) == 0

    # Exactly once by transaction_id, nothing lost, nothing extra.
    expected = {f"so-{i:05d}" for i in range(TOTAL)}
    assert set(sandbox.state.events) == expected
    statuses = Counter(r["status"] for r in sandbox.state.requests)
    sent_ids = Counter(tid for r in sandbox.state.requests if r["status"] == 200 for tid in r["transaction_ids"])
    assert sum(sent_ids.values()) - TOTAL == sandbox.state.duplicates  # every resend was absorbed by dedup
    assert set(killed_batch) <= {tid for tid, n in sent_ids.items() if n > 1}  # the killed batch was resent
    assert statuses[500] == 10 and statuses[503] == 10 and statuses[429] == 8

    # The metrics agree with the counts.
    value = lambda name, labels="": metrics.get((name, labels), 0.0)
    assert value("destination_events_received_total", '{source="cdp"}') == TOTAL
    assert value("destination_events_accepted_total", '{source="cdp"}') == TOTAL
    assert value("destination_events_delivered_total") == TOTAL
    assert value("destination_dead_letters") == 0 and value("destination_queue_depth") == 0
    for status in (500, 503, 429):
        assert value("destination_metronome_responses_total", f'{{status="{status}"}}') == statuses[status]
        assert value("destination_delivery_retries_total", f'{{status="{status}"}}') == statuses[status]
    # The SIGKILLed worker's request reached Metronome but the worker never saw the answer.
    assert value("destination_metronome_responses_total", '{status="200"}') == statuses[200] - 1
    print(f"\nscale-out: {len(sandbox.state.requests)} requests to Metronome, {sandbox.state.duplicates} "
          f"duplicates absorbed, statuses {dict(statuses)}")
