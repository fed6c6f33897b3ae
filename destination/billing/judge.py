"""BILLING_CHECK on the accept path: each usage event's verdict, from this process's catalog copy.

`off` checks nothing. `warn` delivers every event and reports each verdict in the 200 answer and
in /metrics. `hold` also sets aside, as a dead letter at stage `billing`, an event whose usage
would be lost for good (no metric, a missing or non-numeric aggregation property), so a replay after the fix sends it with its original transaction_id. An unknown customer
is only a warning even then: Metronome matches an alias added later to events already sent.

Never blocking: the verdict reads the catalog this process already holds (re-read from the store
at most once a second) and never calls Metronome, so a Metronome that is down or answering 429
changes no answer but the verdict, `catalog_unavailable`.
"""
from __future__ import annotations

from destination.billing.catalog import CatalogCache
from destination.billing.matcher import CLEAN, LOSES_USAGE, Catalog, Verdict, verdict
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
    def __init__(self, mode: str, cache: CatalogCache, detail: bool = False):
        self.mode, self.cache = mode, cache
        self.hold = mode == "hold"
        self.detail = detail  # the admin preview shows what each metric gets; the accept path stays short

    def start(self) -> "Judging":
        """The judge of one request's events, with the catalog read once for all of them."""
        return Judging(self, self.cache.get())

    def held(self, judged: Verdict, transaction_id: str, payload: bytes) -> Held | None:
        """The refusal that sets this event aside in hold mode, or None to deliver it."""
        if not self.hold:
            return None
        for problem in judged.problems:
            if problem.code in LOSES_USAGE:
                return Held(problem.code, problem.message, transaction_id, payload)
        return None


# The answer for a usage event that bills with nothing to say, which most are: one shared list,
# so the accept path builds nothing for it.
CLEAN_ANSWER = [CLEAN.answer()]
ONE_CLEAN = [CLEAN]  # the verdicts of such an event


def _unsure(usage_event: dict) -> bool:
    return False


class Judging:
    """One request's verdicts, against the catalog as it was when the request began."""

    __slots__ = ("check", "catalog", "clean", "hold")

    def __init__(self, check: BillingCheck, catalog: Catalog | None):
        self.check, self.catalog, self.hold = check, catalog, check.hold
        # `clean(usage_event)` is the fast test, called straight from the accept path's loop: a
        # True means CLEAN, with nothing built; anything else asks `judge`. The preview wants
        # each metric's detail, so it always asks `judge`.
        self.clean = _unsure if catalog is None or check.detail else catalog.clean_test

    def judge(self, usage_event: dict) -> Verdict:
        return verdict(usage_event, self.catalog)

    def answers(self, verdicts: list) -> list:
        """What the answer body says of one event's usage events."""
        return [judged.as_json() if self.check.detail else judged.answer() for judged in verdicts]
