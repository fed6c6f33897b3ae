"""Readiness: can this deployment take events and deliver them? Each failed check says why."""
from __future__ import annotations

from destination.queue.halt import halt_state


def readiness(queue, now_ms: int, max_pending_age_s: float) -> tuple[bool, dict]:
    """(ready, checks): the database answers, Metronome is not refusing our token, delivery moves."""
    checks: dict = {}
    try:
        queue.ping()
    except Exception as exc:  # any failure to answer means "not ready", with its kind
        checks["database"] = {"ok": False, "reason": f"database unreachable: {type(exc).__name__}"}
        return False, checks
    try:  # a full disk still answers reads: only a write says whether an accept can be stored
        queue.write_probe()
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "reason": f"database cannot be written: {type(exc).__name__}: {exc}"[:300]}
        return False, checks
    halt = halt_state(queue)
    checks["metronome"] = (
        {"ok": False, "reason": f"delivery halted since {halt['since_ms']}: {halt['reason']}", "code": halt["code"]}
        if halt else {"ok": True}
    )
    oldest = queue.oldest_pending_ms()
    age_s = max(0, now_ms - oldest) / 1000 if oldest is not None else 0.0
    checks["delivery"] = {"ok": age_s <= max_pending_age_s, "oldest_pending_age_s": round(age_s, 3)}
    if not checks["delivery"]["ok"]:
        checks["delivery"]["reason"] = f"oldest queued event is {age_s:.0f}s old (limit {max_pending_age_s:.0f}s)"
    return all(check["ok"] for check in checks.values()), checks
