"""One step of a worker: a continuous window of requests, fed by claims made ahead.

The step's own thread only decides. Requests run on the send threads, claims on a claim thread,
acks on the acker's thread; each reports back through one inbox, so every answer is acted on
here, in the order it came. A batch leaves as soon as a slot frees, while the next claim is
already on its way. Every promise of the step before it stands: an event is acked only after
its 2xx; split halves go out before anything newer; a 429, a dropped connection or a halt stops
every sender, and once the pause has passed only the process holding the probe lease sends.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from queue import Empty, SimpleQueue

from destination.ops import metrics
from destination.queue.halt import clear_halt, end_pause, halt_state, pause, paused_until, set_halt
from destination.queue.outbox import ClaimedEvent, DeliveryNote
from destination.queue.tally import retry_reason
from destination.worker import batch as batching
from destination.worker import concurrency
from destination.worker.retry import DeadLetter, Delivered, Halt, RetryLater, Split, decide

log = logging.getLogger("destination.worker")

PROBE_WAIT_S = 0.02  # how often a process waiting on another's probe looks for its answer
# Claimed events held in memory are capped in bytes too, whatever the backlog (see Worker for the count).
MAX_HELD_BYTES = 32 * 1024 * 1024
WAKE_S = 1.0  # the longest the step's thread blocks without looking at `stop`


def _rate_of(starts: deque, new: float | None, since: float, now: float) -> float:
    """Add a start time (if any), forget those over a second old, and return the rate a second."""
    if new is not None:
        starts.append(new)
    while starts and starts[0] < now - 1:
        starts.popleft()
    return concurrency.sent_rate(len(starts), since, now)


@dataclass(slots=True)
class Batch:
    owner: str  # the claim whose leases hold these events
    events: list[ClaimedEvent]
    size: int  # payload bytes

    @classmethod
    def of(cls, owner: str, events: list[ClaimedEvent]) -> "Batch":
        return cls(owner, events, sum(len(e.payload) for e in events))


class Round:
    def __init__(self, worker, stop, probing: bool):
        self.w = worker
        self.stop = stop
        self.probing = probing  # this process holds the probe lease: one request, and it decides
        self.inbox: SimpleQueue = SimpleQueue()
        self.buffer: deque[Batch] = deque()
        self.buffered = 0  # events in the buffer
        self.sending = 0  # requests in flight
        self.sending_events = 0
        self.held_bytes = 0
        self.claiming = False
        self.exhausted = False  # the last claim found fewer events than it asked for
        self.claimed_any = False
        self.halted = False  # no more requests this round: a pause, a halt, stop, or a failure
        self.next_start = float("-inf")  # the rate ceiling's next slot (monotonic)

    def run(self) -> float:
        """Work until nothing is claimable, a pause, or stop; return the wait before the next step."""
        try:
            while True:
                if not self.halted:
                    self._fill()
                if not (self.sending or self.claiming or (self.buffer and not self.halted)):
                    break
                message = self._next_message()
                if message is not None:
                    self._handle(message)
        except Exception:
            self.halted = True
            self._drain()  # answers still come: what got a 2xx is acked; the rest the next step hands back
            raise
        self._release_buffer()
        self.w._acker.flush()
        return 0 if self.claimed_any else self.w.idle_s

    # -- sending ------------------------------------------------------------------------------

    def _size(self) -> int:
        if self.probing or self.w._failures:
            # While Metronome is failing or a pause is being probed, one request at a time: an
            # outage costs a request per pause, not a window of them.
            return 1
        return self.w.window.size

    def _fill(self) -> None:
        if self.stop is not None and self.stop.is_set():
            self.halted = True
            return
        self._claim_ahead()
        while self.buffer and self.sending < self._size() and not self.halted:
            if self.w.window.rate is not None:
                self.next_start = concurrency.next_start_s(self.w.window, self.w._last_start)
                if self.next_start > time.monotonic():
                    return
            if not self.probing and paused_until(self.w.queue) is not None:
                self.halted = True  # another process was told to wait: so is this one, before its next request
                return
            self._send(self.buffer.popleft())
            self._claim_ahead()

    def _send(self, batch: Batch) -> None:
        w = self.w
        self.buffered -= len(batch.events)
        self.sending += 1
        self.sending_events += len(batch.events)
        w._peak_in_flight = max(w._peak_in_flight, self.sending)
        started = time.monotonic()
        if started - w._last_start > 1:
            w._sending_since = started  # the rates are measured from here, until a second's break
        w._last_start = started
        in_flight, sent_rate = self.sending, _rate_of(w._starts, started, w._sending_since, started)
        body = batching.body(batch.events)
        inbox = self.inbox

        def send() -> None:
            clock = time.perf_counter()
            try:
                outcome = w.sender.send(body)
            except BaseException as exc:  # raised again on the step's thread
                inbox.put(("error", batch, exc))
                return
            inbox.put(("answer", batch, outcome, time.perf_counter() - clock, started, in_flight, sent_rate))

        w._threads.submit(send)

    # -- claiming -----------------------------------------------------------------------------

    def _claim_ahead(self) -> None:
        """Claim while the buffer holds less than two windows, within the caps on what is held."""
        w = self.w
        if self.claiming or self.exhausted or self.halted:
            return
        if self.buffered >= 2 * self._size() * w.max_events or self.held_bytes >= MAX_HELD_BYTES // 2:
            return
        limit = min(w.claim_size, w.max_held_events - self.buffered - self.sending_events)
        if self.probing:
            limit = min(limit, w.max_events)  # the probe is one batch
        if limit <= 0:
            return
        self.claiming = True
        inbox, queue, lease_ms, now_ms = self.inbox, w.queue, w.lease_ms, w._now_ms()

        def claim() -> None:
            try:
                inbox.put(("claimed", limit, queue.claim(limit, lease_ms, now_ms)))
            except BaseException as exc:
                inbox.put(("error", None, exc))

        w._claims.submit(claim)

    def _claimed(self, limit: int, claim) -> None:
        w = self.w
        self.claiming = False
        self.exhausted = len(claim.events) < limit
        if not claim.events:
            return
        self.claimed_any = True
        w.hold(claim.owner, [e.id for e in claim.events])
        fresh = w._set_aside_stale(claim.owner, claim.events, w._now_ms())
        for events in batching.batches(fresh, w.max_events, w.max_bytes):
            self._buffer(Batch.of(claim.owner, events))

    def _buffer(self, batch: Batch, front: bool = False) -> None:
        (self.buffer.appendleft if front else self.buffer.append)(batch)
        self.buffered += len(batch.events)
        self.held_bytes += batch.size

    # -- answers ------------------------------------------------------------------------------

    def _next_message(self):
        timeout = WAKE_S
        if self.buffer and not self.halted and self.sending < self._size():
            timeout = max(0.0, min(timeout, self.next_start - time.monotonic()))
        try:
            return self.inbox.get(timeout=timeout)
        except Empty:
            return None

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "claimed":
            self._claimed(message[1], message[2])
        elif kind == "answer":
            self._answered(*message[1:])
        else:
            _, batch, exc = message
            if batch is None:
                self.claiming = False
            else:
                self._done(batch)
            raise exc

    def _done(self, batch: Batch) -> None:
        self.sending -= 1
        self.sending_events -= len(batch.events)
        self.held_bytes -= batch.size

    def _answered(self, batch: Batch, outcome, seconds: float, started: float, in_flight: int, sent_rate: float) -> None:
        self._done(batch)
        w = self.w
        kind, now = concurrency.kind_of(outcome.status, outcome.error), time.monotonic()
        admitted = _rate_of(w._admitted, started if kind == "ok" else None, w._sending_since, now)
        answer = concurrency.Answer(kind, seconds, in_flight, sent_rate, started, admitted)
        before = w.window
        w.window, reason = concurrency.on_answer(before, answer, now)
        if w.window.size != before.size:
            metrics.SEND_WINDOW.set(w.window.size)
        if reason:
            metrics.WINDOW_CUTS.labels(reason).inc()
            log.info("send window %d -> %d (rate %s): %s", before.size, w.window.size,
                     f"{w.window.rate:.1f}/s" if w.window.rate else "free", reason,
                     extra={"fields": {"window": w.window.size, "reason": reason, "rate": w.window.rate}})
        self._act(batch, outcome, seconds)

    def _act(self, batch: Batch, outcome, seconds: float) -> None:
        w, owner, events = self.w, batch.owner, batch.events
        ids = [e.id for e in events]
        metrics.record_response(outcome.status, seconds)
        w.stats["requests"] += 1
        now_s = w.clock()
        note = DeliveryNote(int(now_s * 1000), outcome.status, outcome.message)
        attempt = max(max(e.attempts for e in events), w._failures)
        action = decide(outcome, len(events), attempt, w.policy, w.rng, now_s)
        if isinstance(action, Delivered):
            if w._failures:
                w._recovered(note.at_ms)
            w._failures = 0
            w.settle(owner, ids)
            w._acker.add(owner, events, note)
            if self.probing:
                self._probe_passed()
            return
        if isinstance(action, Split):
            left, right = batching.halves(events)
            self._buffer(Batch.of(owner, right), front=True)
            self._buffer(Batch.of(owner, left), front=True)
            w.stats["splits"] += 1
            return
        w.settle(owner, ids)
        if isinstance(action, DeadLetter):
            w.queue.dead_letter(owner, [(ids[0], action.code, action.reason)], note.at_ms, note)
            metrics.DEAD_LETTERED.labels("delivery", action.code).inc()
            w.stats["dead_lettered"] += 1
            log.warning("dead-lettered %s: %s", events[0].transaction_id, action.reason)
            return
        w._failures += 1
        if isinstance(action, RetryLater):
            self._retry(batch, action, outcome, note, now_s)
            return
        assert isinstance(action, Halt)
        w.queue.retry_later(owner, ids, note.at_ms, action.reason, count_attempt=False, note=note)
        set_halt(w.queue, action.code, action.reason, note.at_ms)
        pause(w.queue, int((now_s + w.policy.halt_probe_s) * 1000))
        self.halted = True
        w.stats["halts"] += 1
        log.error("delivery halted, every event stays queued: %s", action.reason)

    def _retry(self, batch: Batch, action: RetryLater, outcome, note: DeliveryNote, now_s: float) -> None:
        w, ids = self.w, [e.id for e in batch.events]
        until_ms = int((now_s + action.delay_s) * 1000)
        w.queue.retry_later(batch.owner, ids, until_ms, action.reason, note=note)
        metrics.RETRIES.labels(retry_reason(outcome.status)).inc()
        metrics.EVENTS_RETRIED.labels(retry_reason(outcome.status)).inc(len(ids))
        w.stats["retries"] += 1
        w.stats[f"retries_{outcome.status or 'network'}"] += 1
        log.warning("retrying %d events in %.2fs: %s", len(ids), action.delay_s, action.reason)
        if action.pause_sender:
            pause(w.queue, until_ms)  # written before anything else: every other process checks it before each request
            self.halted = True

    def _probe_passed(self) -> None:
        """The one probe after a pause got through: every process may send again."""
        self.probing = False
        end_pause(self.w.queue)
        if halt_state(self.w.queue):
            log.info("delivery resumed: Metronome accepted a batch again")
            clear_halt(self.w.queue)

    # -- ending -------------------------------------------------------------------------------

    def _drain(self) -> None:
        """After a failure on this thread: wait for what is in flight; ack what got a 2xx. Events
        not settled stay held, and the next step hands them back at once."""
        while self.sending or self.claiming:
            message = self.inbox.get()
            if message[0] == "claimed":
                self.claiming = False
                if message[2].events:
                    self.w.hold(message[2].owner, [e.id for e in message[2].events])
            elif message[0] == "answer":
                batch, outcome = message[1], message[2]
                self._done(batch)
                if outcome.status is not None and 200 <= outcome.status < 300:
                    self.w.settle(batch.owner, [e.id for e in batch.events])
                    self.w._acker.add(batch.owner, batch.events, DeliveryNote(self.w._now_ms(), outcome.status, ""))
            elif message[1] is None:
                self.claiming = False
            else:
                self._done(message[1])

    def _release_buffer(self) -> None:
        """Hand back, at once and without counting an attempt, what was claimed and not sent."""
        owners: dict[str, list[int]] = {}
        for batch in self.buffer:
            owners.setdefault(batch.owner, []).extend(e.id for e in batch.events)
        self.buffer.clear()
        for owner, ids in owners.items():
            self.w.queue.retry_later(owner, ids, self.w._now_ms(), "released", count_attempt=False)
            self.w.settle(owner, ids)
