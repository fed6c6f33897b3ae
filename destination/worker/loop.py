"""The delivery worker: claim -> batch -> send -> decide -> ack | retry later | split | dead letter.

The clock, the random source and the sender are passed in, so tests drive it without mocks.
Pause and halt states live in the queue's shared state, so a 429 or a bad token seen by one
process stops every process that delivers from the same database.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from queue import SimpleQueue

from destination.ops import metrics
from destination.payload.validate import outside_window, window_reason
from destination.queue import senders
from destination.queue.halt import PAUSED_UNTIL, clear_halt, halt_state, set_halt
from destination.queue.tally import retry_reason
from destination.queue.owners import process_identity
from destination.queue.outbox import Claim, ClaimedEvent, DeliveryNote, Queue
from destination.worker import batch as batching
from destination.worker.retry import DeadLetter, Delivered, Halt, RetryLater, RetryPolicy, Split, decide

log = logging.getLogger("destination.worker")
BILLING_STOP_S = 10  # how long stopping waits for the billing thread's step (a Metronome read) to end

PRUNE_EVERY_S = 600
BILLING_PROBLEMS_KEPT_MS = 8 * 86_400_000  # the Billing view shows up to a week
# Delivered batches are acked together: at the end of each claim, before any other outcome is
# recorded, and at least every this many events. One commit per claim instead of per batch is
# most of a worker's speed. If the process dies first, those events are sent again with the same
# transaction_ids when their lease ends, and Metronome drops the repeats.
ACK_EVERY_EVENTS = 1000


class Worker:
    def __init__(self, queue: Queue, sender, *, policy: RetryPolicy | None = None, lease_s: float = 60,
                 claim_size: int = 1000, sends_in_flight: int = 1, idle_s: float = 0.5, max_events: int = batching.MAX_EVENTS,
                 max_bytes: int = batching.MAX_BYTES, log_retention_s: float = 7 * 86400, clock=time.time,
                 rng: random.Random | None = None, billing=None):
        self.queue = queue
        self.billing = billing  # billing's Background: told what was delivered, run on a thread beside delivery
        self.sender = sender
        self.policy = policy or RetryPolicy()
        self.lease_ms = int(lease_s * 1000)
        self.claim_size = claim_size
        self.sends_in_flight = sends_in_flight
        self.idle_s = idle_s
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.clock = clock
        self.rng = rng or random.Random()
        self.log_retention_ms = int(log_retention_s * 1000)
        self.stats: Counter = Counter()
        self.current: Claim | None = None  # the claim being worked through, for release at shutdown
        self._acks: list[tuple[list[ClaimedEvent], DeliveryNote]] = []  # delivered, not yet acked
        self._ack_lock = threading.Lock()  # release_claim may run on another thread at shutdown
        self._send_threads = SendThreads()  # starts its threads on first use, in the process that delivers
        # Failures in a row, whatever the batch: during an outage each probe takes a fresh batch
        # (attempt 0), so the pause must grow with this count or the worker would probe every second.
        self._failures = 0
        self._pruned_at = 0.0
        self._peak_in_flight = 0  # the most requests out at once since the last report (queue/senders.py)
        self._reported_at = float("-inf")
        self.process = ""  # as claims name it (owners.py), set when delivery starts in the process that delivers

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; the batch in flight finishes, the rest of the claim goes back."""
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
        except Exception:  # the store is gone at shutdown: the report goes stale by itself
            log.warning("could not withdraw this process's sending report", exc_info=True)

    def _report_sending(self) -> None:
        now_s = self.clock()
        if now_s - self._reported_at >= senders.BEAT_S:
            self._reported_at = now_s
            senders.report(self.queue, self.process, self._peak_in_flight, int(now_s * 1000))
            self._peak_in_flight = 0

    def release_claim(self, why: str = "released at shutdown") -> None:
        """At shutdown, hand back what this worker still holds when a request outlived the grace period.

        Only rows still leased to this claim's owner move: acked ones are gone, retried ones are
        no longer ours. Metronome dedups on transaction_id, so if the hung request lands after all,
        the copy another worker sends is absorbed and nothing is billed twice.
        """
        claim = self.current
        if claim:
            self._flush_acks(claim.owner)  # delivered ones are acked, not handed back
            self.queue.retry_later(claim.owner, [e.id for e in claim.events], self._now_ms(), why, count_attempt=False)

    def step(self, stop: threading.Event | None = None) -> float:
        """One round of work; returns how long to wait before the next (0 means go again now)."""
        if self.current is not None:
            # The last step stopped part-way: the database could not be written (a full disk, a
            # restart). Ack what was delivered and hand back the rest now, rather than leave it
            # leased to this live process until the lease runs out.
            self.release_claim("released after the database could not be written")
            self.current = None
        now_ms = self._now_ms()
        paused_until = int(self.queue.get_state(PAUSED_UNTIL) or 0)
        if paused_until > now_ms:
            return min((paused_until - now_ms) / 1000, self.policy.halt_probe_s)
        claim = self.queue.claim(self.claim_size, self.lease_ms, now_ms)
        if not claim.events:
            return self.idle_s
        self.current = claim
        fresh = self._set_aside_stale(claim.owner, claim.events, now_ms)
        work = deque(batching.batches(fresh, self.max_events, self.max_bytes))
        while work and not (stop and stop.is_set()):
            # While Metronome is failing, one batch probes at a time: an outage costs a request
            # per pause, not a round of them. Every answer of a wave is acted on, in order, even
            # after one says stop: those batches were sent, so each is acked, retried or dead-lettered.
            size = 1 if self._failures else self.sends_in_flight
            wave = [work.popleft() for _ in range(min(size, len(work)))]
            go_on = True
            for events, (outcome, seconds) in zip(wave, self._send_wave(wave)):
                go_on = self._act(claim.owner, events, outcome, seconds, work) and go_on
            if not go_on:
                break
        self._release(claim.owner, [e for b in work for e in b])
        self._flush_acks(claim.owner)
        self.current = None
        return 0

    def _flush_acks(self, owner: str) -> None:
        """Ack every delivered batch not yet acked, in one transaction, then count them."""
        with self._ack_lock:
            pending, self._acks = self._acks, []
        if not pending:
            return
        try:
            removed = self.queue.ack_many(owner, [([e.id for e in events], note) for events, note in pending])
        except Exception:
            with self._ack_lock:  # not acked: kept for the next try, or they would go out a second time
                self._acks = pending + self._acks
            raise
        if self.billing is not None:
            for events, note in pending:
                self.billing.delivered(events, note.at_ms)
        for (events, note), acked in zip(pending, removed):
            # Count the rows the ack removed: if our lease ran out and another worker sent the same
            # events too, Metronome's dedup kept one copy and only one ack counts them.
            metrics.record_delivered(acked, [e.received_at_ms for e in events], note.at_ms)
            self.stats["delivered"] += acked
        if halt_state(self.queue):
            log.info("delivery resumed: Metronome accepted a batch again")
            clear_halt(self.queue)

    def _send_wave(self, wave: list[list[ClaimedEvent]]) -> list[tuple]:
        """Send the batches at once, one thread each, and return each (outcome, seconds) in order.

        Metronome answers in tens of milliseconds over the internet, and one request at a time
        caps a worker at 100 events a round trip (bench: 1,820 events/s at 50 ms, 5,150-5,290 with
        four in flight). The first batch goes on this thread, the others on the worker's send
        threads (SendThreads)."""
        results: list = [None] * len(wave)
        self._peak_in_flight = max(self._peak_in_flight, len(wave))

        def send(index: int) -> None:
            try:
                started = time.perf_counter()
                outcome = self.sender.send(batching.body(wave[index]))
                results[index] = (outcome, time.perf_counter() - started)
            except BaseException as exc:  # raised again below, on the worker's own thread
                results[index] = exc

        self._send_threads.run(send, range(1, len(wave)), then=lambda: send(0))
        for result in results:
            if isinstance(result, BaseException):
                raise result  # the step fails; the claim's lease hands every unacked event back
        return results

    def _act(self, owner: str, events: list[ClaimedEvent], outcome, seconds: float, work: deque) -> bool:
        """Act on one batch's answer; False means stop sending for now."""
        ids = [e.id for e in events]
        metrics.record_response(outcome.status, seconds)
        self.stats["requests"] += 1
        now_s = self.clock()
        note = DeliveryNote(int(now_s * 1000), outcome.status, outcome.message)
        attempt = max(max(e.attempts for e in events), self._failures)
        action = decide(outcome, len(events), attempt, self.policy, self.rng, now_s)
        if isinstance(action, Delivered):
            if self._failures:
                self._recovered(int(now_s * 1000))
            self._failures = 0
        elif isinstance(action, (RetryLater, Halt)):
            self._failures += 1
        if isinstance(action, Delivered):
            with self._ack_lock:
                self._acks.append((events, note))
                due = sum(len(batch) for batch, _ in self._acks) >= ACK_EVERY_EVENTS
            if due:
                self._flush_acks(owner)
            return True
        # Ack what was delivered before recording anything else: a flush clears the halt flag,
        # so it must not run after a Halt below has set it.
        self._flush_acks(owner)
        if isinstance(action, Split):
            left, right = batching.halves(events)
            work.appendleft(right)
            work.appendleft(left)
            self.stats["splits"] += 1
            return True
        if isinstance(action, DeadLetter):
            self.queue.dead_letter(owner, [(ids[0], action.code, action.reason)], note.at_ms, note)
            metrics.DEAD_LETTERED.labels("delivery", action.code).inc()
            self.stats["dead_lettered"] += 1
            log.warning("dead-lettered %s: %s", events[0].transaction_id, action.reason)
            return True
        if isinstance(action, RetryLater):
            until_ms = int((now_s + action.delay_s) * 1000)
            self.queue.retry_later(owner, ids, until_ms, action.reason, note=note)
            metrics.RETRIES.labels(retry_reason(outcome.status)).inc()
            metrics.EVENTS_RETRIED.labels(retry_reason(outcome.status)).inc(len(ids))
            self.stats["retries"] += 1
            self.stats[f"retries_{outcome.status or 'network'}"] += 1
            log.warning("retrying %d events in %.2fs: %s", len(ids), action.delay_s, action.reason)
            if action.pause_sender:
                self.queue.set_state(PAUSED_UNTIL, str(until_ms))
                return False
            return True
        assert isinstance(action, Halt)
        self.queue.retry_later(owner, ids, self._now_ms(), action.reason, count_attempt=False, note=note)
        set_halt(self.queue, action.code, action.reason, int(now_s * 1000))
        self.queue.set_state(PAUSED_UNTIL, str(int((now_s + self.policy.halt_probe_s) * 1000)))
        self.stats["halts"] += 1
        log.error("delivery halted, every event stays queued: %s", action.reason)
        return False

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

    def _release(self, owner: str, events: list[ClaimedEvent]) -> None:
        """Hand unsent events back at once, without counting an attempt against them."""
        if events:
            self.queue.retry_later(owner, [e.id for e in events], self._now_ms(), "released", count_attempt=False)

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


class SendThreads:
    """Threads that live as long as the worker and run its sends in flight.

    A thread started for every send cost more than the send's own Python: py-spy put starting
    and joining them at 8% of a worker's time (Postgres). They are daemons, so a request that
    hangs past the shutdown grace cannot hold the process: its events are handed back, and a
    late arrival is a repeat Metronome ignores. A thread stuck in such a request is replaced."""

    def __init__(self):
        self._jobs: SimpleQueue = SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self.started = 0  # threads started so far

    def run(self, job, args, then) -> None:
        """Run job(arg) for each arg on the threads and `then()` here; return when all are done."""
        args = list(args)
        done = threading.Semaphore(0)
        with self._lock:
            for _ in range(len(args) - self._idle):  # a thread per job not met by an idle one
                threading.Thread(target=self._serve, name="send", daemon=True).start()
                self._idle += 1
                self.started += 1
            self._idle -= len(args)
        for arg in args:
            self._jobs.put((job, arg, done))
        then()
        for _ in args:
            done.acquire()

    def _serve(self) -> None:
        while True:
            job, arg, done = self._jobs.get()
            try:
                job(arg)
            finally:
                with self._lock:
                    self._idle += 1
                done.release()

