"""What the worker runs beside delivery for billing: the catalog refresher and the verifier.

Metronome's read API is slow and rate-limited, so this runs on a thread of its own and never on
the send path; the worker only tells it what was delivered. Every process that delivers runs one
(`serve` delivers from each web process), but a lease in the shared store lets one process at a
time do the work: one writer of the catalog, one caller of events search. The holder verifies
from its own deliveries; the others' samples wait, bounded, until one of them holds the lease.
"""
from __future__ import annotations

import logging
import threading
import uuid

from destination.billing.catalog import STEP_S, Refresher
from destination.billing.verify import Verifier

log = logging.getLogger("destination.billing")
LEASE = "billing_background"
LEASE_MS = 10_000  # renewed every step; a holder that died is replaced within this


class Background:
    def __init__(self, refresher: Refresher, verifier: Verifier, owner: str | None = None):
        self.refresher, self.verifier = refresher, verifier
        self.queue, self.clock = refresher.queue, refresher.clock
        self.owner = owner or uuid.uuid4().hex

    def delivered(self, events: list, at_ms: int) -> None:
        """Metronome accepted these: maybe check one with events search later."""
        self.verifier.delivered(events, at_ms)

    def step(self) -> bool:
        """One round, if this process holds the lease; True when it did the work."""
        if not self.queue.take_lease(LEASE, self.owner, LEASE_MS, int(self.clock() * 1000)):
            return False
        for part in (self.refresher, self.verifier):
            try:
                part.step()
            except Exception:  # the store or Metronome blinked: billing waits, delivery goes on
                log.exception("billing: %s step failed", type(part).__name__)
        return True

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # the lease itself could not be read or written: try again next step
                log.exception("billing: the lease failed")
            stop.wait(STEP_S)
