"""Delivered batches, acked off the send path: one transaction for what gathered meanwhile.

A commit per batch would cost a worker most of its speed; one per claim made every request
wait for the slowest of its round. Here a thread commits what is pending once it holds
`every_events`, or once the oldest has waited `wait_s`, while the window keeps sending. If the
process dies first, those events are sent again with the same transaction_ids when their lease
ends (at once on this host, see queue/owners.py), and Metronome drops the repeats.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("destination.worker")

RETRY_S = 0.5  # after a failed commit (the database blinked), the next try
EVERY_EVENTS = 1000  # delivered events committed together...
WAIT_S = 0.05  # ...or once the oldest has waited this long


class Acker:
    def __init__(self, queue, on_acked, every_events: int = EVERY_EVENTS, wait_s: float = WAIT_S):
        self.queue = queue
        self.on_acked = on_acked  # (items, rows removed per item), after each commit
        self.every_events = every_events
        self.wait_s = wait_s
        self._pending: list[tuple] = []  # (owner, events, note), in the order they were delivered
        self._events = 0
        self._oldest = 0.0
        self._cond = threading.Condition()
        self._commit_lock = threading.Lock()  # one commit at a time: the thread's, or a flush's
        self._thread: threading.Thread | None = None

    def add(self, owner: str, events: list, note) -> None:
        with self._cond:
            first = not self._pending
            if first:
                self._oldest = time.monotonic()
            self._pending.append((owner, events, note))
            self._events += len(events)
            if self._thread is None:  # started in the process that delivers, after any fork
                self._thread = threading.Thread(target=self._run, name="acks", daemon=True)
                self._thread.start()
            elif first or self._events >= self.every_events:
                # Woken only to start its timer or to commit: a wake for every batch was a thread
                # switch per request, which the timer it already runs makes useless.
                self._cond.notify()

    def flush(self) -> None:
        """Commit everything pending now, on this thread; raise if the database refuses."""
        with self._commit_lock:
            self._commit(self._take())

    def pending(self) -> int:
        with self._cond:
            return self._events

    def _take(self) -> list[tuple]:
        with self._cond:
            items, self._pending, self._events = self._pending, [], 0
            return items

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    self._cond.wait(self._left())
            with self._commit_lock:
                try:
                    self._commit(self._take())
                except Exception:  # kept for the next try; a flush at the step's end reports it
                    log.warning("could not ack delivered events; retrying", exc_info=True)
                    time.sleep(RETRY_S)

    def _due(self) -> bool:
        return bool(self._pending) and (self._events >= self.every_events or self._left() == 0)

    def _left(self) -> float | None:
        if not self._pending:
            return None
        return max(0.0, self.wait_s - (time.monotonic() - self._oldest))

    def _commit(self, items: list[tuple]) -> None:
        """One transaction per claim owner (a claim's leases are its owner's); what is not
        committed goes back to the front of the pending list."""
        groups: dict[str, list] = {}
        for item in items:
            groups.setdefault(item[0], []).append(item)
        left = list(groups.values())
        try:
            while left:
                group = left[0]
                removed = self.queue.ack_many(group[0][0], [([e.id for e in events], note) for _, events, note in group])
                left.pop(0)
                self.on_acked(group, removed)
        except Exception:
            back = [item for group in left for item in group]
            with self._cond:
                if back:
                    self._oldest = time.monotonic() - self.wait_s  # due again at once
                self._pending = back + self._pending
                self._events += sum(len(events) for _, events, _ in back)
            raise
