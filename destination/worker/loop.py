"""The delivery worker: claim -> batch -> send -> decide -> ack | retry later | split | dead letter.

Requests go out in a continuous window: a batch leaves as soon as a slot frees, claims are made
ahead on another thread, and acks are committed on a third (acks.py), so no round trip waits on
the database. The window's size comes from a pure controller (concurrency.py). The clock, the
random source and the sender are passed in, so tests drive it without mocks. Pause and halt
states live in the queue's shared state, so a 429 or a bad token seen by one process stops every
process that delivers from the same database, and when the pause ends one process probes.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque

from destination.ops import metrics
from destination.payload.validate import outside_window, window_reason
from destination.queue import senders
from destination.queue.halt import PROBE, paused_until
from destination.queue.outbox import ClaimedEvent, Queue
from destination.queue.owners import owner_is_dead, process_identity
from destination.worker import batch as batching
from destination.worker import concurrency
from destination.worker.acks import Acker
from destination.worker.retry import RetryPolicy
from destination.worker.round import PROBE_WAIT_S, Round
from destination.worker.threads import Threads

log = logging.getLogger("destination.worker")
BILLING_STOP_S = 10  # how long stopping waits for the billing thread's step (a Metronome read) to end

PRUNE_EVERY_S = 600
BILLING_PROBLEMS_KEPT_MS = 8 * 86_400_000  # the Billing view shows up to a week


class Worker:
    def __init__(self, queue: Queue, sender, *, policy: RetryPolicy | None = None, lease_s: float = 60,
                 claim_size: int = 1000, sends_in_flight: int = 1, max_sends_in_flight: int | None = None,
                 adaptive: bool = True, idle_s: float = 0.5, max_events: int = batching.MAX_EVENTS,
                 max_bytes: int = batching.MAX_BYTES, log_retention_s: float = 7 * 86400, clock=time.time,
                 rng: random.Random | None = None, billing=None, probe_ttl_s: float = 60):
        self.queue = queue
        self.billing = billing  # billing's Background: told what was delivered, run on a thread beside delivery
        self.sender = sender
        self.policy = policy or RetryPolicy()
        self.lease_ms = int(lease_s * 1000)
        self.claim_size = claim_size
        ceiling = max(max_sends_in_flight or sends_in_flight, sends_in_flight)
        self.window = concurrency.start(sends_in_flight, ceiling, adaptive)
        self.idle_s = idle_s
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_held_events = max(claim_size, 2 * ceiling * max_events)
        self.clock = clock
        self.rng = rng or random.Random()
        self.log_retention_ms = int(log_retention_s * 1000)
        self.probe_ttl_ms = int(probe_ttl_s * 1000)  # a prober that dies hands the probe on after this
        self.stats: Counter = Counter()
        self._held: dict[str, set[int]] = {}  # claimed, not yet acked, retried or released: owner -> ids
        self._held_lock = threading.Lock()  # release_claim may run on another thread at shutdown
        self._acker = Acker(queue, self._acked)
        self._threads = Threads("send")  # start on first use, in the process that delivers
        self._claims = Threads("claim")  # one claim at a time: one thread (one SQLite connection)
        # Failures in a row, whatever the batch: during an outage each probe takes a fresh batch
        # (attempt 0), so the pause must grow with this count or the worker would probe every second.
        self._failures = 0
        self._starts: deque[float] = deque()  # when recent requests started, for the sent rate
        self._admitted: deque[float] = deque()  # when recent requests that got a 2xx started
        self._last_start = float("-inf")
        self._sending_since = 0.0
        self._pruned_at = 0.0
        self._peak_in_flight = 0  # the most requests out at once since the last report (queue/senders.py)
        self._reported_at = float("-inf")
        self.process = process_identity()  # as claims name it (owners.py); set again where delivery runs

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; the batches in flight finish, the rest goes back."""
        billing = None
        if self.billing is not None:  # Metronome's read API is slow and rate-limited: never on the send path
            billing = threading.Thread(target=self.billing.run, args=(stop,), name="billing-catalog", daemon=True)
            billing.start()
        try:
            self._deliver_until(stop)
        finally:
            if billing is not None:  # it must not outlive delivery: the store may be closed next
                billing.join(BILLING_STOP_S)

    def _deliver_until(self, stop: threading.Event) -> None:
        self.process = process_identity()
        metrics.SEND_WINDOW.set(self.window.size)  # here, in the process that delivers; then as it changes
        while not stop.is_set():
            try:
                self._prune_log()
                wait = self.step(stop)
                self._report_sending()
            except Exception:  # the database blinked: log, wait, go on; nothing is lost by waiting
                log.exception("delivery step failed")
                wait = self.idle_s
            if wait:
                stop.wait(wait)
        try:
            senders.leave(self.queue, self.process)
            self.queue.drop_lease(PROBE, self.probe_owner)  # if this process was to probe, another will
        except Exception:  # the store is gone at shutdown: the report goes stale, the lease runs out
            log.warning("could not withdraw this process's sending report", exc_info=True)

    def _report_sending(self) -> None:
        now_s = self.clock()
        if now_s - self._reported_at >= senders.BEAT_S:
            self._reported_at = now_s
            senders.report(self.queue, self.process, self._peak_in_flight, int(now_s * 1000))
            self._peak_in_flight = 0

    def release_claim(self, why: str = "released at shutdown") -> None:
        """Ack what was delivered, and hand back at once everything else this worker holds.

        Used at shutdown when a request outlived the grace period, and after a step that failed
        part-way. Only rows still leased to their claim's owner move: acked ones are gone,
        retried ones are no longer ours. Metronome dedups on transaction_id, so if a hung request
        lands after all, the copy another worker sends is absorbed and nothing is billed twice."""
        self._acker.flush()
        with self._held_lock:
            held, self._held = self._held, {}
        for owner, ids in held.items():
            if ids:
                self.queue.retry_later(owner, sorted(ids), self._now_ms(), why, count_attempt=False)

    def step(self, stop: threading.Event | None = None) -> float:
        """Deliver what can be claimed now; return how long to wait before the next step (0: at once)."""
        with self._held_lock:
            stranded = any(self._held.values())
        if stranded or self._acker.pending():
            # The last step stopped part-way: the database could not be written (a full disk, a
            # restart). Ack what was delivered and hand back the rest now, rather than leave it
            # leased to this live process until the lease runs out.
            self.release_claim("released after the database could not be written")
        now_ms = self._now_ms()
        until = paused_until(self.queue)
        if until is not None and until > now_ms:
            return min((until - now_ms) / 1000, self.policy.halt_probe_s)
        if until is not None and not self._take_probe(now_ms):
            return PROBE_WAIT_S  # the pause is over and another process probes: wait for its answer
        return Round(self, stop, probing=until is not None).run()

    def _take_probe(self, now_ms: int) -> bool:
        """Take the lease to send the one probe after a pause. A holder that died on this host
        (kill -9, a recycled web process) is not waited out: its lease is dropped at once."""
        held = self.queue.lease(PROBE)  # read first: processes waiting on a probe poll, and a read is cheaper
        if held and held[1] != self.probe_owner:
            until_ms, holder = held
            if owner_is_dead(holder):
                log.warning("the process probing Metronome (%s) no longer runs; this one takes over", holder)
                self.queue.drop_lease(PROBE, holder)
            elif until_ms > now_ms:
                return False
        return self.queue.take_lease(PROBE, self.probe_owner, self.probe_ttl_ms, now_ms)

    @property
    def probe_owner(self) -> str:
        return f"{self.process}/probe"  # owners.py's form, so another process can tell if it died

    def _recovered(self, now_ms: int) -> None:
        """A probe got through after failures: Metronome is back, so what waits on a backoff goes
        now, for every process. After 30 answers of 500 the delays had reached their 300 s cap,
        and the last event arrived 256 s after the first post, the sink healthy since second 13."""
        due = self.queue.make_due(now_ms)
        if due:
            log.info("Metronome answers again: %d events waiting on a retry delay are due now", due)

    def _set_aside_stale(self, owner: str, events: list[ClaimedEvent], now_ms: int) -> list[ClaimedEvent]:
        """Dead-letter events Metronome's 34-day window would drop; return the rest."""
        stale = [e for e in events if outside_window(e.timestamp_ms, now_ms)]
        if stale:
            self.queue.dead_letter(owner, [(e.id, "timestamp_too_old", window_reason(e.timestamp_ms, now_ms)) for e in stale], now_ms)
            metrics.DEAD_LETTERED.labels("delivery", "timestamp_too_old").inc(len(stale))
            self.stats["dead_lettered"] += len(stale)
            stale_ids = {e.id for e in stale}
            events = [e for e in events if e.id not in stale_ids]
        return events

    def _prune_log(self) -> None:
        """Drop delivery-log rows past their retention, and billing problems past a week, every few minutes."""
        now_s = self.clock()
        if now_s - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now_s
            self.queue.prune_delivery_log(int(now_s * 1000) - self.log_retention_ms)
            self.queue.prune_billing_problems(int(now_s * 1000) - BILLING_PROBLEMS_KEPT_MS)
            senders.forget_stopped(self.queue, int(now_s * 1000))

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _acked(self, items: list[tuple], removed: list[int]) -> None:
        """After the acker's commit: count what it removed, and tell billing what was delivered."""
        for (_, events, note), acked in zip(items, removed):
            if self.billing is not None:
                self.billing.delivered(events, note.at_ms)
            # Count the rows the ack removed: if our lease ran out and another worker sent the same
            # events too, Metronome's dedup kept one copy and only one ack counts them.
            metrics.record_delivered(acked, [e.received_at_ms for e in events], note.at_ms)
            self.stats["delivered"] += acked

    def hold(self, owner: str, ids) -> None:
        with self._held_lock:
            self._held.setdefault(owner, set()).update(ids)

    def settle(self, owner: str, ids) -> None:
        with self._held_lock:
            held = self._held.get(owner)
            if held is not None:
                held.difference_update(ids)
                if not held:
                    del self._held[owner]
