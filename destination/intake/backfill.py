"""`metronome-destination import`: events from files through the same pipeline as the HTTP routes.

Each chunk of lines is parsed, mapped, validated and judged by `process_events`, then stored with
one `enqueue`, exactly as a request's events are, so transaction_ids, exact numbers and dead
letters behave the same. The import's position (the last line read) commits in that same
transaction: an import stopped at any moment, even by `kill -9`, resumes after the last stored
chunk, and no event is stored twice or skipped. A dry run does everything but store.

Mapping is most of the work (`bench/import_rate.py`: one process mapped and stored 12,300
events/s, the accept path's two web processes 12,800), so chunks are mapped in a pool of
processes while this one reads the file and stores the results in file order.
"""
from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import signal
import threading
from collections import Counter
from queue import SimpleQueue
from dataclasses import dataclass, field
from typing import Callable, Iterator

import orjson

from destination.billing import catalog
from destination.billing.judge import BillingCheck
from destination.intake.files import Item, parsed
from destination.intake.pipeline import process_events
from destination.mapping.versions import compile_text, version_name
from destination.payload.validate import Limits
from destination.queue import tally as tallies
from destination.queue.outbox import DeadLetter

CHUNK_EVENTS = 500  # events per transaction: big enough to amortise the commit, small enough to stop promptly
AHEAD_PER_PROCESS = 2  # chunks read ahead per mapping process: bounded memory, and no process waits for work
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
    bad_lines: list = field(default_factory=list)  # the first few (where, code, message)

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


@dataclass(frozen=True)
class Mapper:
    """What mapping a chunk needs, sent once to each mapping process: the live document as text
    (compiled there), limits, credentials to strip, and the billing catalog as stored at the start."""

    name: str
    source: str
    document: str
    version: str
    limits: Limits
    secrets: tuple
    billing_mode: str | None
    catalog_text: str | None

    @classmethod
    def of(cls, runtime, job: Import) -> "Mapper":
        queue = runtime.queue
        runtime.mappings.current(fresh=True)  # seeds an empty database, as the web process does
        latest = queue.latest_mapping_version()
        billing = runtime.billing
        return cls(job.name, job.source, queue.get_mapping_version(latest)["document"], version_name(latest),
                   runtime.limits, runtime.secrets, billing.mode if billing else None,
                   queue.get_state(catalog.KEY) if billing else None)


@dataclass
class Mapped:
    """A chunk ready to store: what `process_events` made, the refusals numbered by line."""

    rows: list
    dead: list
    counts: dict
    problems: list
    last: int


class _Fixed:
    """A catalog cache that always gives the catalog read at the import's start."""

    def __init__(self, text):
        self.catalog = catalog.parse(text)

    def get(self, fresh: bool = False):
        return self.catalog


_HERE: dict = {}  # in a mapping process: the compiled mappings and billing check


def _start_mapping(mapper: Mapper, in_pool: bool = False) -> None:
    if in_pool:  # Ctrl-C reaches the whole process group: the importing process decides when to stop
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _HERE["mapper"] = mapper
    _HERE["mapping_set"] = compile_text(mapper.document, mapper.version)
    _HERE["billing"] = BillingCheck(mapper.billing_mode, _Fixed(mapper.catalog_text)) if mapper.billing_mode else None


def map_chunk(items: list[Item], now_ms: int) -> Mapped:
    """Parse, map, validate and judge one chunk (in a mapping process, or in this one)."""
    mapper, mapping_set = _HERE["mapper"], _HERE["mapping_set"]
    items = [parsed(item) for item in items]
    good = [item for item in items if item.problem is None]
    processed = process_events([item.event for item in good], mapping_set, now_ms, mapper.limits, mapper.source,
                               _HERE["billing"], mapper.secrets)
    dead = _numbered(processed, good, mapper.name)
    bad = [item for item in items if item.problem is not None]
    dead += [DeadLetter(item.raw, code, f"{mapper.name} line {item.number}: {message}", mapping_set.version, "receive",
                        source=mapper.source) for item in bad for code, message in (item.problem,)]
    counts = {**processed.counts, "refused": processed.counts["refused"] + len(bad)}
    return Mapped(processed.rows, dead, counts, processed.problems, items[-1].number)


def run(items: Iterator[Item], runtime, job: Import, stop: threading.Event,
        progress: Callable[[Summary], None] = lambda s: None, processes: int = 1, chunk: int = CHUNK_EVENTS) -> bool:
    """Import every item after `job.summary.lines`, mapping in `processes` processes; return
    False when `stop` ended it early (what was read by then is stored)."""
    mapper = Mapper.of(runtime, job)
    ahead = max(processes, 1) * AHEAD_PER_PROCESS
    chunks = _chunks(items, job.summary.lines, chunk)
    first = list(itertools.islice(chunks, ahead))
    chunks = itertools.chain(first, chunks)
    if processes <= 1 or len(first) < ahead:  # a small file: not worth starting processes
        _start_mapping(mapper)
        return _pipelined(chunks, _InProcess(), ahead, runtime, job, stop, progress)
    # spawn, not fork: this process holds database connections and their threads
    with multiprocessing.get_context("spawn").Pool(processes, _start_mapping, (mapper, True)) as pool:
        return _pipelined(chunks, pool, ahead, runtime, job, stop, progress)


def _pipelined(chunks, pool, ahead: int, runtime, job: Import, stop: threading.Event, progress) -> bool:
    """Read and hand out chunks on this thread; take them back in file order and store them on a
    writer thread. A store is mostly SQLite or the network, without the interpreter lock, so
    reading the next chunks goes on meanwhile. At most `ahead` chunks are out at once. Returns
    False when `stop` ended it before the last chunk."""
    slots, handed = threading.Semaphore(ahead), SimpleQueue()
    failed: list = []

    def write() -> None:
        while (result := handed.get()) is not None:
            try:
                if not failed:
                    _store(result.get(), runtime, job)
                    progress(job.summary)
            except BaseException as exc:  # raised again on the reading thread; later chunks are not stored
                failed.append(exc)
            finally:
                slots.release()

    writer = threading.Thread(target=write, name="import-writer", daemon=True)
    writer.start()
    finished = False
    try:
        for part in chunks:
            slots.acquire()
            if failed:
                break
            handed.put(pool.apply_async(map_chunk, (part, runtime.now_ms())))
            if stop.is_set():
                break
        else:
            finished = True
    finally:
        handed.put(None)  # chunks handed out are stored, in order, even when stopping
        writer.join()
    if failed:
        raise failed[0]
    return finished


class _InProcess:
    """The pool for a small import: each chunk is mapped here, on the reading thread, at once."""

    def apply_async(self, function, args):
        return _Done(function(*args))


class _Done:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def _chunks(items: Iterator[Item], skip_to: int, size: int) -> Iterator[list[Item]]:
    part: list[Item] = []
    for item in items:
        if item.number > skip_to:  # stored by an earlier, interrupted run
            part.append(item)
            if len(part) >= size:
                yield part
                part = []
    if part:
        yield part


def _store(mapped: Mapped, runtime, job: Import) -> None:
    _add(job.summary, mapped)
    if job.import_id is None:
        return  # a dry run
    tally = tallies.accepted(mapped.counts, [d.code for d in mapped.dead], "import")
    runtime.queue.enqueue(mapped.rows, mapped.dead, runtime.now_ms(), (), job.source, mapped.problems, tally,
                          checkpoint=(job.import_id, job.summary.lines, job.summary.as_json()))


def _numbered(processed, good: list[Item], name: str) -> list:
    """The refusals `process_events` made, each reason led by the file and line it came from."""
    out, letters = [], iter(processed.dead_letters)
    for result in processed.results:
        for _ in result.get("errors", ()):
            letter = next(letters)
            out.append(dataclasses.replace(letter, reason=f"{name} line {good[result['index']].number}: {letter.reason}"))
    return out


def _add(summary: Summary, mapped: Mapped) -> None:
    summary.lines = mapped.last
    summary.accepted += mapped.counts["accepted"]
    summary.filtered += mapped.counts["filtered"]
    summary.refused += mapped.counts["refused"]
    summary.usage_events += len(mapped.rows)
    summary.refusals.update(d.code for d in mapped.dead)
    summary.unbillable.update(p.reason for p in mapped.problems)
    room = BAD_LINES_SHOWN - len(summary.bad_lines)
    if room > 0:
        summary.bad_lines += [(where, d.code, message) for d in mapped.dead[:room]
                              for where, _, message in (d.reason.partition(": "),)]
