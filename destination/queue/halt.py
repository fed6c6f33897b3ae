"""Delivery's halt state, kept in the shared database so every process sees one answer.

The worker sets it when Metronome refuses our token or URL and clears it when a probe gets
through; readiness and /metrics read it. It lives beside the store, not in the worker, so that
those readers need not import the delivery stage.
"""
from __future__ import annotations

import orjson

HALT = "halt"  # the state key
PAUSED_UNTIL = "paused_until_ms"  # no process sends before this time (a 429's Retry-After, a halt's next probe)


def halt_state(queue) -> dict | None:
    """Why delivery is halted (bad token, wrong URL), or None when it is not."""
    raw = queue.get_state(HALT)
    return orjson.loads(raw) if raw else None


def set_halt(queue, code: str, reason: str, since_ms: int) -> None:
    queue.set_state(HALT, orjson.dumps({"code": code, "reason": reason, "since_ms": since_ms}).decode())


def clear_halt(queue) -> None:
    queue.set_state(HALT, None)
