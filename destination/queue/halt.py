"""Delivery's halt state, kept in the shared database so every process sees one answer.

The worker sets it when Metronome refuses our token or URL and clears it when a probe gets
through; readiness and /metrics read it. It lives beside the store, not in the worker, so that
those readers need not import the delivery stage.
"""
from __future__ import annotations

import orjson

HALT = "halt"  # the state key
# No process sends before this time (a 429's Retry-After, a halt's next probe). Once it has
# passed, the key stays until one probe, from the one process holding the PROBE lease, gets a 2xx.
PAUSED_UNTIL = "paused_until_ms"
PROBE = "probe"


def halt_state(queue) -> dict | None:
    """Why delivery is halted (bad token, wrong URL), or None when it is not."""
    raw = queue.get_state(HALT)
    return orjson.loads(raw) if raw else None


def set_halt(queue, code: str, reason: str, since_ms: int) -> None:
    queue.set_state(HALT, orjson.dumps({"code": code, "reason": reason, "since_ms": since_ms}).decode())


def clear_halt(queue) -> None:
    queue.set_state(HALT, None)


def pause(queue, until_ms: int) -> None:
    """Pause every sender until `until_ms`, never shortening a pause already set."""
    queue.raise_state(PAUSED_UNTIL, until_ms)


def paused_until(queue) -> int | None:
    raw = queue.get_state(PAUSED_UNTIL)
    return int(raw) if raw else None


def end_pause(queue) -> None:
    """A probe got through: every process may send again."""
    queue.set_state(PAUSED_UNTIL, None)
    queue.set_state(PROBE, None)
