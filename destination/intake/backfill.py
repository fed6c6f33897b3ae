"""`metronome-destination import`: events from files through the same pipeline as the HTTP routes.

Each chunk of events is mapped, validated and judged by `process_events`, then stored with one
`enqueue`, exactly as a request's events are, so transaction_ids, exact numbers and dead letters
behave the same. The import's position (the last line read) commits in that same transaction:
an import stopped at any moment, even by `kill -9`, resumes after the last stored chunk, and
no event is stored twice or skipped. A dry run does everything but store.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import orjson

from destination.intake.files import Item
from destination.intake.pipeline import process_events
from destination.queue import tally as tallies
from destination.queue.outbox import DeadLetter

CHUNK_EVENTS = 500  # events per transaction: big enough to amortise the commit, small enough to stop promptly
BAD_LINES_SHOWN = 10
OUTSIDE_WINDOW = ("timestamp_too_old", "timestamp_in_future")


@dataclass
class Summary:
    """What an import did (or, dry, would do), cumulative across a resumed import's runs."""

    lines: int = 0  # the position: the number of the last line or element read
    accepted: int = 0
    filtered: int = 0
    refused: int = 0
    usage_events: int = 0
    refusals: Counter = field(default_factory=Counter)  # code -> dead letters
    unbillable: Counter = field(default_factory=Counter)  # reason -> usage events the billing check flagged
    bad_lines: list = field(default_factory=list)  # the first few (line, code, message)

    @property
    def events(self) -> int:
        return self.accepted + self.filtered + self.refused

    @property
    def outside_window(self) -> int:
        return sum(self.refusals[code] for code in OUTSIDE_WINDOW)

    def as_json(self) -> str:
        return orjson.dumps({**dataclasses.asdict(self), "refusals": dict(self.refusals),
                             "unbillable": dict(self.unbillable)}).decode()

    @classmethod
    def from_json(cls, text: str) -> "Summary":
        stored = orjson.loads(text or "{}")
        summary = cls(**{k: v for k, v in stored.items() if k not in ("refusals", "unbillable", "bad_lines")})
        summary.refusals.update(stored.get("refusals", {}))
        summary.unbillable.update(stored.get("unbillable", {}))
        summary.bad_lines = [tuple(b) for b in stored.get("bad_lines", [])]
        return summary


@dataclass
class Import:
    """One file's import: where it resumes, and what it is recorded as (None: a dry run)."""

    name: str
    source: str  # the label mappings see as the event's source, as a write key's label
    import_id: int | None = None
    summary: Summary = field(default_factory=Summary)


def run(items: Iterator[Item], runtime, job: Import, stop: threading.Event,
        progress: Callable[[Summary], None] = lambda s: None, chunk: int = CHUNK_EVENTS) -> bool:
    """Import every item after `job.summary.lines`; return False when `stop` ended it early."""
    mapping_set = runtime.mappings.current(fresh=True)
    skip_to = job.summary.lines
    batch: list[Item] = []
    for item in items:
        if item.number <= skip_to:
            continue
        batch.append(item)
        if len(batch) >= chunk:
            _store(batch, runtime, job, mapping_set)
            batch = []
            progress(job.summary)
            if stop.is_set():
                return False
    if batch:
        _store(batch, runtime, job, mapping_set)
    progress(job.summary)
    return True


def _store(items: list[Item], runtime, job: Import, mapping_set) -> None:
    now_ms = runtime.now_ms()
    good = [item for item in items if item.problem is None]
    processed = process_events([item.event for item in good], mapping_set, now_ms, runtime.limits, job.source,
                               runtime.billing, runtime.secrets)
    dead = _numbered(processed, good, job.name)
    bad = [item for item in items if item.problem is not None]
    dead += [DeadLetter(item.raw, code, f"{job.name} line {item.number}: {message}", mapping_set.version, "receive",
                        source=job.source) for item in bad for code, message in (item.problem,)]
    counts = {**processed.counts, "refused": processed.counts["refused"] + len(bad)}
    _add(job.summary, counts, processed, dead, bad, items[-1].number)
    if job.import_id is None:
        return  # a dry run
    tally = tallies.accepted(counts, [d.code for d in dead], "import")
    runtime.queue.enqueue(processed.rows, dead, now_ms, (), job.source, processed.problems, tally,
                          checkpoint=(job.import_id, job.summary.lines, job.summary.as_json()))


def _numbered(processed, good: list[Item], name: str) -> list:
    """The refusals `process_events` made, each reason led by the file and line it came from."""
    out, letters = [], iter(processed.dead_letters)
    for result in processed.results:
        for _ in result.get("errors", ()):
            letter = next(letters)
            out.append(dataclasses.replace(letter, reason=f"{name} line {good[result['index']].number}: {letter.reason}"))
    return out


def _add(summary: Summary, counts: dict, processed, dead: list, bad: list[Item], last: int) -> None:
    summary.lines = last
    summary.accepted += counts["accepted"]
    summary.filtered += counts["filtered"]
    summary.refused += counts["refused"]
    summary.usage_events += len(processed.rows)
    summary.refusals.update(d.code for d in dead)
    summary.unbillable.update(p.reason for p in processed.problems)
    room = BAD_LINES_SHOWN - len(summary.bad_lines)
    if room > 0:
        summary.bad_lines += [(d.reason.split(": ", 1)[0], d.code, d.reason.split(": ", 1)[-1]) for d in dead[:room]]
