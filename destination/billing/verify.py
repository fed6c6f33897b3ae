"""After delivery: ask Metronome's own events search what a sample of delivered events matched.

The worker offers each delivered batch; a few transaction_ids are kept (a bounded reservoir, so
memory stays flat at any rate). Every BILLING_VERIFY_INTERVAL_SECONDS, at most
BILLING_VERIFY_SAMPLE of those old enough for Metronome to have processed them are searched for
(events search is heavily rate-limited, hence the gentle defaults), and each answer is compared
with the verdict the catalog gives the same usage event. A disagreement means the catalog is
stale or the matcher is wrong: it is counted and kept with both sides for the admin page.

Results live in the store's state table, so every process's /metrics and admin page agree.
"""
from __future__ import annotations

import logging
import random
import threading

import orjson

from destination.billing.client import MetronomeUnavailable
from destination.billing.matcher import verdict

log = logging.getLogger("destination.billing")
KEY = "billing_verification"
RESERVOIR = 200  # delivered events kept as candidates between two checks
SETTLE_MS = 5_000  # Metronome processes an event within seconds; searching sooner finds nothing yet
RECENT_KEPT = 50


class Verifier:
    def __init__(self, queue, client, catalog_cache, clock, sample: int, interval_s: float,
                 rng: random.Random | None = None):
        self.queue, self.client, self.cache, self.clock = queue, client, catalog_cache, clock
        self.sample, self.interval_s = sample, interval_s
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._candidates: list[tuple[int, str, bytes]] = []  # (delivered at ms, transaction_id, payload)
        self._offered = 0
        self._last_s = float("-inf")

    def delivered(self, events, at_ms: int) -> None:
        """Offer delivered events; each has an equal chance to stay, whatever the rate (reservoir sampling)."""
        with self._lock:
            for event in events:
                self._offered += 1
                if len(self._candidates) < RESERVOIR:
                    self._candidates.append((at_ms, event.transaction_id, event.payload))
                else:
                    slot = self.rng.randrange(self._offered)
                    if slot < RESERVOIR:
                        self._candidates[slot] = (at_ms, event.transaction_id, event.payload)

    def step(self) -> dict | None:
        """Check a sample when due; return the stored results, or None when nothing was due."""
        now_s = self.clock()
        if not self.sample or now_s - self._last_s < self.interval_s:
            return None
        now_ms = int(now_s * 1000)
        with self._lock:
            ready = [c for c in self._candidates if now_ms - c[0] >= SETTLE_MS]
            chosen = ready[:self.sample]
            self._candidates = [c for c in self._candidates if c not in chosen]
            if not self._candidates:
                self._offered = 0
        if not chosen:
            return None
        self._last_s = now_s
        try:
            found = {e["transaction_id"]: e for e in self.client.search_events([tid for _, tid, _ in chosen])
                     if not e.get("is_duplicate")}
        except MetronomeUnavailable as exc:
            log.warning("billing verification: events search failed: %s", exc)
            return None
        return self._record([compare(orjson.loads(payload), found.get(tid), self.cache.get())
                             for _, tid, payload in chosen], now_ms)

    def _record(self, results: list[dict], now_ms: int) -> dict:
        raw = self.queue.get_state(KEY)
        stored = orjson.loads(raw) if raw else {"counts": {}, "disagreements": 0, "recent": []}
        for result in results:
            stored["counts"][result["result"]] = stored["counts"].get(result["result"], 0) + 1
            stored["disagreements"] += not result["agrees"]
        stored["recent"] = ([{**r, "checked_ms": now_ms} for r in results] + stored["recent"])[:RECENT_KEPT]
        self.queue.set_state(KEY, orjson.dumps(stored).decode())
        return stored


def compare(event: dict, searched: dict | None, catalog) -> dict:
    """One delivered event: what Metronome's search says it matched, against what the catalog predicts."""
    predicted = sorted(m.id for m, _ in verdict(event, catalog).bills)
    if searched is None:
        result, metrics = "not_found", []
    else:
        metrics = sorted(m["id"] for m in searched.get("matched_billable_metrics") or [])
        result = "no_customer" if not searched.get("matched_customer") else "matched" if metrics else "no_metric"
    agrees = True  # nothing to compare without an answer or a catalog
    if searched is not None and catalog is not None:
        known = catalog.customers.get(event["customer_id"])  # None: not looked up yet, so not a disagreement
        agrees = predicted == metrics and (known is None or known == bool(searched.get("matched_customer")))
    return {"transaction_id": event["transaction_id"], "event_type": event["event_type"], "result": result,
            "metronome_metrics": metrics, "predicted_metrics": predicted, "agrees": agrees}


def stored_results(queue) -> dict:
    raw = queue.get_state(KEY)
    return orjson.loads(raw) if raw else {"counts": {}, "disagreements": 0, "recent": []}
