"""Which processes are delivering, and how many requests each had in flight: the Delivery view's
"sends in flight" for the whole deployment. Each worker reports every few seconds in the shared
state; a report older than a few beats is a process that stopped."""
from __future__ import annotations

import orjson

PREFIX = "sending:"
BEAT_S = 5
STALE_MS = 3 * BEAT_S * 1000
FORGET_MS = 3_600_000  # a stopped process's last report is deleted after an hour


def report(queue, process: str, in_flight: int, now_ms: int) -> None:
    """`in_flight`: the most requests this process had out at once since its last report."""
    queue.set_state(PREFIX + process, orjson.dumps({"in_flight": in_flight, "at_ms": now_ms}).decode())


def leave(queue, process: str) -> None:
    queue.set_state(PREFIX + process, None)


def current(queue, now_ms: int) -> dict:
    reports = _reports(queue)
    live = [r for r in reports.values() if r and r["at_ms"] >= now_ms - STALE_MS]
    return {"in_flight": sum(r["in_flight"] for r in live), "processes": len(live)}


def forget_stopped(queue, now_ms: int) -> None:
    stopped = [key for key, r in _reports(queue).items() if not r or r["at_ms"] < now_ms - FORGET_MS]
    if stopped:
        queue.delete_states(stopped)


def _reports(queue) -> dict:
    return {key: orjson.loads(value) if value else None for key, value in queue.states(PREFIX).items()}
