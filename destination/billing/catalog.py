"""The billing catalog, shared by every process through the database.

The worker refreshes it from Metronome (`Refresher`); web processes read it (`CatalogCache`),
at most once a second each, and never call Metronome. It is one JSON document in the store's
state table: the live metrics as Metronome describes them, when they were read, and each
customer id looked up so far with what was found and when.

Metronome does not let a metric's configuration change, so a metric read once stays right until
it is archived; a refresh every BILLING_CATALOG_REFRESH_SECONDS picks up new and archived ones.
A customer found is kept for a long time (BILLING_CUSTOMER_HIT_SECONDS), one not found for a
short time (BILLING_CUSTOMER_MISS_SECONDS), since its alias may be added at any moment.
"""
from __future__ import annotations

import logging
import threading

import orjson

from destination.billing.client import MetronomeUnavailable
from destination.billing.matcher import Catalog, Metric

log = logging.getLogger("destination.billing")
KEY = "billing_catalog"
REQUEST_KEY = "billing_catalog_requested"  # an admin asked for a refresh now (the worker reads Metronome)
STEP_S = 1.0  # how often the refresher looks for work; each part keeps its own pace
RETRY_AFTER_FAILURE_S = 30  # after Metronome failed to answer, the metrics are asked for again this much later


def document(raw: str | None) -> dict:
    """The stored document, or the empty one before any refresh: what the worker and admin read."""
    if not raw:
        return {"metrics": [], "refreshed_ms": None, "customers": {}, "error": None}
    return orjson.loads(raw)


def parse(raw: str | None) -> Catalog | None:
    """The catalog a stored document describes; None until metrics were read once."""
    stored = document(raw)
    if stored["refreshed_ms"] is None:
        return None
    return Catalog([Metric.from_api(m) for m in stored["metrics"]],
                   {cid: entry[0] for cid, entry in stored["customers"].items()}, stored["refreshed_ms"])


class CatalogCache:
    """This process's copy of the catalog, re-read from the store at most every `refresh_s`."""

    def __init__(self, queue, clock, refresh_s: float = 1.0):
        self.queue, self.clock, self.refresh_s = queue, clock, refresh_s
        self._lock = threading.Lock()
        self._raw: str | None = None
        self._catalog: Catalog | None = None
        self._checked = float("-inf")

    def get(self, fresh: bool = False) -> Catalog | None:
        """The catalog, or None when it was never read (or the store cannot be read now)."""
        now = self.clock()
        if fresh or now - self._checked >= self.refresh_s:
            with self._lock:
                if fresh or now - self._checked >= self.refresh_s:
                    self._checked = now
                    try:
                        raw = self.queue.get_state(KEY)
                    except Exception:  # the store being down must not fail the accept path
                        log.warning("billing catalog unreadable; events are not checked meanwhile", exc_info=True)
                        return self._catalog
                    if raw != self._raw:
                        self._raw, self._catalog = raw, parse(raw)
        return self._catalog


class Refresher:
    """The worker's side: read metrics and look up customers in Metronome, and store the result."""

    def __init__(self, queue, client, clock, refresh_s: float, lookups_per_minute: int, hit_s: float, miss_s: float):
        self.queue, self.client, self.clock = queue, client, clock
        self.refresh_s, self.hit_s, self.miss_s = refresh_s, hit_s, miss_s
        self.lookups_per_step = max(1, round(lookups_per_minute * STEP_S / 60)) if lookups_per_minute else 0
        self._retry_at_ms = 0

    def step(self, force: bool = False) -> dict:
        """One refresh: metrics when due (or asked for), then the customers due a lookup. Returns the document."""
        now_ms = int(self.clock() * 1000)
        requested = self.queue.get_state(REQUEST_KEY)
        force = force or requested is not None
        raw = self.queue.get_state(KEY)
        stored = document(raw)
        due = stored["refreshed_ms"] is None or now_ms - stored["refreshed_ms"] >= self.refresh_s * 1000
        if force or (due and now_ms >= self._retry_at_ms):
            try:
                stored["metrics"] = [m for m in self.client.billable_metrics() if not m.get("archived_at")]
                stored["refreshed_ms"], stored["error"] = now_ms, None
            except MetronomeUnavailable as exc:
                # Metronome is down or rate-limiting: ask again later, not at every step.
                self._retry_at_ms = now_ms + int(min(self.refresh_s, RETRY_AFTER_FAILURE_S) * 1000)
                stored["error"] = str(exc)
                log.warning("billing catalog: cannot read metrics from Metronome: %s", exc)
        self._look_up_customers(stored, now_ms)
        text = orjson.dumps(stored).decode()
        if text != raw:  # most steps change nothing: no write, and no re-read in every web process
            self.queue.set_state(KEY, text)
        if requested is not None and self.queue.get_state(REQUEST_KEY) == requested:  # not a newer request
            self.queue.set_state(REQUEST_KEY, None)
        return stored

    def _look_up_customers(self, document: dict, now_ms: int) -> None:
        """Those an accept asked about (from any process), then those whose answer has expired."""
        customers = document["customers"]
        requested = self.queue.customer_lookups(max(self.lookups_per_step, 1) * 4)
        fresh = [cid for cid in requested if not _due(customers.get(cid), now_ms, self.hit_s, self.miss_s)]
        expired = [cid for cid, entry in sorted(customers.items()) if _due(entry, now_ms, self.hit_s, self.miss_s)]
        due = [cid for cid in dict.fromkeys(requested + expired) if cid not in fresh][:self.lookups_per_step]
        done = []
        for cid in due:
            try:
                found = self.client.customer_by_alias(cid)
            except MetronomeUnavailable as exc:
                log.warning("billing catalog: cannot look up customer %r: %s", cid, exc)
                break
            customers[cid] = [found is not None, now_ms]
            done.append(cid)
        self.queue.forget_customer_lookups([cid for cid in requested if cid in fresh or cid in done])


def _due(entry, now_ms: int, hit_s: float, miss_s: float) -> bool:
    if entry is None:
        return True
    known, checked_ms = entry
    return now_ms - checked_ms >= (hit_s if known else miss_s) * 1000
