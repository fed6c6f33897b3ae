"""`metronome-destination import FILE...`: the command around intake/backfill.py. It opens the
store and the live mappings as the web process does (create_app), records each file's import,
draws progress, and prints a summary. Exit codes: 0 done, 1 the store failed, 2 input that is
not JSON (or bad settings), 130 interrupted (run it again to resume)."""
from __future__ import annotations

import getpass
import hashlib
import os
import signal
import socket
import sys
import threading
import time

from destination.app import create_app
from destination.errors import ConfigError, first_line
from destination.intake import backfill
from destination.intake.files import NotJSON, Source, read_events

FINGERPRINT_BYTES = 1 << 20
PLAIN_EVERY_S = 5.0  # a progress line this often when the output is not a terminal


def run(settings, files: list[str], dry_run: bool, source_label: str, jobs: int = 1, out=None, err=None) -> int:
    """The summary goes to `out` (stdout); progress and errors to `err` (stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        runtime = create_app(settings).extensions["destination"]
    except ConfigError:
        raise
    except Exception as exc:  # the database is down or refuses us: say so, in one line
        print(f"metronome-destination import: cannot open the store: {first_line(exc, 300)}", file=err)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # finish the chunk in hand, record where, then stop
        signal.signal(signum, lambda *_: stop.set())
    try:
        for name in files:
            try:
                code = _one(runtime, name, dry_run, source_label, jobs, stop, out, err)
            except Exception as exc:  # the store failed part-way: every chunk committed stays, with its position
                print(f"metronome-destination import: {name}: the store failed: {first_line(exc, 300)}; what was "
                      "stored is kept: run the same command again to resume", file=err)
                return 1
            if code:
                return code
        return 0
    finally:
        runtime.queue.close()



def _one(runtime, name: str, dry_run: bool, source_label: str, jobs: int, stop: threading.Event, out, err) -> int:
    try:
        source = Source(name)
    except NotJSON as exc:
        print(f"metronome-destination import: {exc}", file=err)
        return 2
    job = backfill.Import("stdin" if name == "-" else name, source_label)
    queue = runtime.queue
    if not dry_run:
        job.import_id, position, counts = queue.start_import(job.name, _fingerprint(name), _who(), runtime.now_ms())
        job.summary = backfill.Summary.from_json(counts)
        if position:
            print(f"resuming import {job.import_id} of {job.name} after line {position}", file=err)
    reporter = Reporter(job.name, source, err)
    started = job.summary.events
    try:
        finished = backfill.run(read_events(source, runtime.settings.max_event_bytes), runtime, job, stop, reporter.update,
                                processes=jobs)
    except NotJSON as exc:
        reporter.close()
        if job.import_id is not None:
            queue.end_import(job.import_id, "stopped", job.summary.as_json(), runtime.now_ms())
        print(f"metronome-destination import: {exc}" + _kept(job), file=err)
        return 2
    finally:
        source.close()
    reporter.close()
    status = "done" if finished else "interrupted"
    if job.import_id is not None:
        queue.end_import(job.import_id, status, job.summary.as_json(), runtime.now_ms())
    print(summary_text(job, status, dry_run, reporter.elapsed(), job.summary.events - started,
                       runtime.billing is not None), file=out, flush=True)
    return 0 if finished else 130


def _kept(job) -> str:
    if job.import_id is None or not job.summary.lines:
        return ""
    return (f"\nthe {job.summary.events:,} events before it are stored (import {job.import_id}); fix the file and "
            "run again: they are not stored twice")


def summary_text(job, status: str, dry_run: bool, seconds: float, events_now: int, judged: bool) -> str:
    s = job.summary
    head = (f"{'DRY RUN, nothing stored or sent: ' if dry_run else ''}import of {job.name}: {status}, "
            f"{events_now:,} events in {seconds:.1f} s ({events_now / max(seconds, 1e-9):,.0f} events/s)")
    refusals = ", ".join(f"{code} {n:,}" for code, n in s.refusals.most_common()) or "none"
    unbillable = (", ".join(f"{reason} {n:,}" for reason, n in s.unbillable.most_common()) or "none") if judged \
        else "not judged (BILLING_CHECK=OFF)"
    lines = [head, f"  lines read          {s.lines:,}",
             f"  accepted            {s.accepted:,} events, {s.usage_events:,} usage events{' would be' if dry_run else ''} queued",
             f"  filtered            {s.filtered:,}", f"  refused             {s.refused:,}: {refusals}",
             f"  outside the 34-day window  {s.outside_window:,}", f"  unbillable          {unbillable}"]
    if s.bad_lines:
        lines.append("  first refusals:")
        lines += [f"    {where}: {code}: {message}" for where, code, message in s.bad_lines]
        if s.refused > len(s.bad_lines):
            lines.append(f"    and {s.refused - len(s.bad_lines):,} more, each a dead letter with its line")
    if job.import_id is not None:
        lines.append(f"recorded as import {job.import_id}; refusals are dead letters (admin page, Dead letters)"
                     + ("; run the same command again to resume" if status == "interrupted" else ""))
    return "\n".join(lines)


class Reporter:
    """A progress bar with events/s and an ETA on a terminal (rich); a plain line every few
    seconds otherwise, so a log or CI keeps readable lines, not redraws."""

    def __init__(self, name: str, source: Source, out, clock=time.monotonic):
        self.name, self.source, self.out, self.clock = name, source, out, clock
        self.started = self.last = clock()
        self.first_events = None
        self.bar = None
        if out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                TextColumn("{task.fields[events]:,} events · {task.fields[rate]:,.0f} events/s · ETA"),
                                TimeRemainingColumn(), console=Console(file=out), transient=False)
            self.task = self.bar.add_task(name, total=source.size, events=0, rate=0)
            self.bar.start()

    def update(self, summary) -> None:
        if self.first_events is None:
            self.first_events = summary.events  # a resumed import counts only this run's rate
        events = summary.events - self.first_events
        rate = events / max(self.elapsed(), 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.source.consumed() or 0, events=summary.events, rate=rate)
        elif self.clock() - self.last >= PLAIN_EVERY_S:
            self.last = self.clock()
            done = self.source.consumed()
            share = f", {100 * done / self.source.size:.0f}% of the file" if done is not None and self.source.size else ""
            print(f"{self.name}: line {summary.lines:,}, {summary.events:,} events ({rate:,.0f} events/s{share})",
                  file=self.out, flush=True)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fingerprint(name: str) -> str | None:
    """The same file, wherever it is: its size, first and last megabyte. None for stdin, which
    cannot be read again, so cannot resume (its events still dedup at Metronome)."""
    if name == "-":
        return None
    digest = hashlib.sha256()
    with open(name, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        digest.update(str(size).encode())
        file.seek(0)
        digest.update(file.read(FINGERPRINT_BYTES))
        file.seek(max(0, size - FINGERPRINT_BYTES))
        digest.update(file.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container's environment
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"
