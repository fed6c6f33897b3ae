"""Group claimed events into Metronome requests: pure, no I/O.

Each queued payload is already the serialized Metronome event, so a request body is a join of
bytes with no re-encoding.
"""
from __future__ import annotations

from typing import Sequence

MAX_EVENTS = 100  # Metronome's limit for one /v1/ingest call
# Metronome publishes no byte limit; 512 KiB keeps far below the usual 1-10 MB gateway limits
# while still fitting 100 typical (0.3-2 KB) events, so the count cap is what normally binds.
MAX_BYTES = 512 * 1024


def batches(events: Sequence, max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES) -> list[list]:
    """Split events (with `.payload` bytes) into runs within both caps; an oversize event goes alone."""
    out: list[list] = []
    current: list = []
    size = 2  # the surrounding brackets
    for event in events:
        cost = len(event.payload) + 1
        if current and (len(current) >= max_events or size + cost > max_bytes):
            out.append(current)
            current, size = [], 2
        current.append(event)
        size += cost
    if current:
        out.append(current)
    return out


def body(events: Sequence) -> bytes:
    """The JSON array Metronome expects, built from the stored payloads."""
    return b"[" + b",".join(event.payload for event in events) + b"]"


def halves(events: Sequence) -> tuple[list, list]:
    middle = len(events) // 2
    return list(events[:middle]), list(events[middle:])
