"""What to do with a batch after Metronome answers: a pure function, tested as a table.

Every action carries a reason, so a refused or delayed event can always say why.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

from destination.metronome import retry_after_seconds


@dataclass(frozen=True, slots=True)
class Outcome:
    """Metronome's answer, or the network error that stood in for one."""

    status: int | None
    headers: dict
    body: bytes = b""
    error: str | None = None

    @property
    def message(self) -> str:
        """Metronome's `message`, else the raw body or the network error, for dead-letter reasons."""
        if self.error:
            return self.error
        try:
            parsed = orjson.loads(self.body)
            if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
                return parsed["message"]
        except orjson.JSONDecodeError:
            pass
        return self.body[:500].decode("utf-8", "replace") or f"HTTP {self.status}"


@dataclass(frozen=True, slots=True)
class Delivered:
    pass


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay_s: float
    reason: str
    pause_sender: bool = False  # a 429 means every batch should wait, not just this one


@dataclass(frozen=True, slots=True)
class Split:
    """One bad event rejects a whole batch: resend the halves until it stands alone."""

    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Halt:
    """Nothing can be delivered (bad token, wrong endpoint): keep every event queued, probe later."""

    code: str
    reason: str


Action = Delivered | RetryLater | Split | DeadLetter | Halt


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 0.5
    cap_s: float = 300.0
    # A stop that lasts until someone fixes the token or URL is re-tried at this pace.
    halt_probe_s: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return rng.uniform(0, min(self.cap_s, self.base_s * (2 ** min(attempt, 32))))


TRANSIENT_STATUSES = frozenset({408, 409, 429})
EVENT_STATUSES = frozenset({400, 413, 422})  # the body (some event in it) is at fault
AUTH_STATUSES = frozenset({401, 403})


def decide(outcome: Outcome, batch_size: int, attempt: int, policy: RetryPolicy, rng: random.Random, now_s: float) -> Action:
    """Map one answer for a batch of `batch_size` events, tried `attempt` times before, to an action."""
    status = outcome.status
    if status is not None and 200 <= status < 300:
        return Delivered()
    if status is None or status in TRANSIENT_STATUSES or (status >= 500 and status != 501) or _should_retry(outcome):
        told = retry_after_seconds(outcome.headers, now_s)
        delay = told if told is not None else policy.backoff(attempt, rng)
        reason = outcome.error or f"Metronome answered {status}: {outcome.message}"
        # A 429 throttles us, and no connection at all means Metronome (or the way to it) is down:
        # either way every batch should wait, rather than each one failing in turn.
        return RetryLater(min(delay, policy.cap_s), reason, pause_sender=status in (None, 429))
    if status in AUTH_STATUSES:
        return Halt("metronome_auth", f"Metronome refused the API token ({status}: {outcome.message})")
    if status in EVENT_STATUSES:
        if batch_size > 1:
            return Split(f"Metronome answered {status} for a batch of {batch_size}")
        return DeadLetter(f"metronome_{status}", outcome.message)
    # 404, 405, 501, ...: the URL or API is wrong, not the events. Dead-lettering everything
    # would only make work; keep it all queued and say so until the operator fixes the setting.
    return Halt("metronome_endpoint", f"Metronome answered {status}: {outcome.message}; check METRONOME_BASE_URL")


def _should_retry(outcome: Outcome) -> bool:
    return str(outcome.headers.get("x-should-retry", "")).lower() == "true"
