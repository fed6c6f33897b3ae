"""What the worker runs beside delivery for billing: the catalog refresher and the verifier.

Metronome's read API is slow and rate-limited, so this runs on a thread of its own and never on
the send path; the worker only tells it what was delivered.
"""
from __future__ import annotations

import logging
import threading

from destination.billing.catalog import STEP_S, Refresher
from destination.billing.verify import Verifier

log = logging.getLogger("destination.billing")


class Background:
    def __init__(self, refresher: Refresher, verifier: Verifier):
        self.refresher, self.verifier = refresher, verifier

    def delivered(self, events: list, at_ms: int) -> None:
        """Metronome accepted these: look up their customers, and maybe check one with events search."""
        self.refresher.saw({e.customer_id for e in events if e.customer_id})
        self.verifier.delivered(events, at_ms)

    def run(self, stop: threading.Event) -> None:
        """Refresh and verify until `stop` is set; a failure is logged and tried again at the next step."""
        while not stop.is_set():
            for part in (self.refresher, self.verifier):
                try:
                    part.step()
                except Exception:  # the store or Metronome blinked: billing waits, delivery goes on
                    log.exception("billing: %s step failed", type(part).__name__)
            stop.wait(STEP_S)
