"""Replay: re-map dead letters with the live mappings and queue what now passes, in one transaction.

An event keeps its transaction_id through a replay (it comes from the event, not from the
replay), so replaying twice, or replaying an event part of which was already delivered, never
creates new usage: Metronome dedups the repeat.
"""
from __future__ import annotations

from destination.intake.pipeline import process_events
from destination.mapping.mapping_set import MappingSet
from destination.payload import exact
from destination.payload.validate import Limits


def replay(queue, mapping_set: MappingSet, letters: list[dict], now_ms: int, limits: Limits,
           billing=None) -> dict:
    """Return counts and, per dead letter, what became of it. With `billing`, each event is judged
    again, so events held for billing go out once the catalog says they bill."""
    queued, resolved, still_refused, results = [], [], [], []
    for letter in letters:
        event = exact.loads(letter["raw"])
        processed = process_events([event], mapping_set, now_ms, limits, letter.get("source"), billing)
        [outcome] = processed.results
        queued.extend(processed.rows)
        if outcome["status"] == "accepted":
            resolved.append(letter["id"])
        elif outcome["status"] == "filtered":
            still_refused.append((letter["id"], "filtered_on_replay", "no enabled mapping subscribes to this event now",
                                  mapping_set.version))
        else:
            first = processed.dead_letters[0]
            still_refused.append((letter["id"], first.code, first.reason, mapping_set.version))
        results.append({"id": letter["id"], **{k: v for k, v in outcome.items() if k != "index"}})
    queue.resolve_dead_letters(queued, resolved, still_refused, now_ms)
    return {"replayed": len(letters), "resolved": len(resolved), "still_dead": len(still_refused),
            "usage_events_queued": len(queued), "results": results}
