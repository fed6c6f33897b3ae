"""BILLING_CHECK on the accept path: each usage event's verdict, from this process's catalog copy.

`off` checks nothing. `warn` delivers every event and reports each verdict in the 200 answer and
in /metrics. `hold` also sets aside, as a dead letter at stage `billing`, an event whose usage
would be lost for good (no metric, a missing or non-numeric aggregation property, a value too
long), so a replay after the fix sends it with its original transaction_id. An unknown customer
is only a warning even then: Metronome matches an alias added later to events already sent.

Never blocking: the verdict reads the catalog this process already holds (re-read from the store
at most once a second) and never calls Metronome, so a Metronome that is down or answering 429
changes no answer but the verdict, `catalog_unavailable`.
"""
from __future__ import annotations

from destination.billing.catalog import CatalogCache
from destination.billing.matcher import CLEAN, LOSES_USAGE, Catalog, Verdict, bills_cleanly, verdict
from destination.errors import EventRefused

MODES = ("off", "warn", "hold")


class Held(EventRefused):
    """An event `hold` sets aside: kept whole at stage `billing`, with the verdict's reason and the
    usage event it became, whose timestamp says how long it has before Metronome's 34-day window."""

    stage = "billing"

    def __init__(self, code: str, message: str, transaction_id: str | None = None, payload: bytes | None = None):
        super().__init__(code, message)
        self.transaction_id, self.payload = transaction_id, payload


class BillingCheck:
    def __init__(self, mode: str, cache: CatalogCache, max_property_bytes: int, detail: bool = False):
        self.mode, self.cache, self.max_property_bytes = mode, cache, max_property_bytes
        self.max_chars = max_property_bytes // 4  # no value this short can be too long in UTF-8
        self.hold = mode == "hold"
        self.detail = detail  # the admin preview shows what each metric gets; the accept path stays short

    def catalog(self) -> Catalog | None:
        """The catalog for one request's events: read once, not per event."""
        return self.cache.get()

    def describe(self, judged: Verdict) -> dict:
        return judged.as_json() if self.detail else judged.answer()

    def judge(self, usage_event: dict, catalog: Catalog | None) -> Verdict:
        if not self.detail and catalog is not None and bills_cleanly(usage_event, catalog, self.max_chars):
            return CLEAN
        return verdict(usage_event, catalog, self.max_property_bytes)

    def held(self, judged: Verdict, transaction_id: str, payload: bytes) -> Held | None:
        """The refusal that sets this event aside in hold mode, or None to deliver it."""
        if not self.hold:
            return None
        for problem in judged.problems:
            if problem.code in LOSES_USAGE:
                return Held(problem.code, problem.message, transaction_id, payload)
        return None
