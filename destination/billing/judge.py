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
from destination.billing.matcher import LOSES_USAGE, Verdict, verdict
from destination.errors import EventRefused

MODES = ("off", "warn", "hold")


class Held(EventRefused):
    """An event `hold` sets aside: kept whole at stage `billing`, with the verdict's reason."""

    stage = "billing"


class BillingCheck:
    def __init__(self, mode: str, cache: CatalogCache, max_property_bytes: int):
        self.mode, self.cache, self.max_property_bytes = mode, cache, max_property_bytes
        self.hold = mode == "hold"

    def judge(self, usage_event: dict) -> Verdict:
        return verdict(usage_event, self.cache.get(), self.max_property_bytes)

    def held(self, judged: Verdict) -> Held | None:
        """The refusal that sets this event aside in hold mode, or None to deliver it."""
        if not self.hold:
            return None
        for problem in judged.problems:
            if problem.code in LOSES_USAGE:
                return Held(problem.code, problem.message)
        return None
