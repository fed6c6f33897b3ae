"""The threads a worker's requests and claims run on, kept between rounds.

A thread started for every send cost more than the send's own Python: py-spy put starting and
joining them at 8% of a worker's time (Postgres). They are daemons, so a request that hangs past
the shutdown grace cannot hold the process: its events are handed back, and a late arrival is a
repeat Metronome ignores. A job that finds no idle thread gets a new one, so a thread stuck in
such a request never holds up the next.
"""
from __future__ import annotations

import threading
from queue import SimpleQueue


class Threads:
    def __init__(self, name: str = "send"):
        self.name = name
        self._jobs: SimpleQueue = SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self.started = 0  # threads started so far

    def submit(self, job) -> None:
        """Run `job()` on an idle thread, or on a new one."""
        with self._lock:
            if self._idle == 0:
                threading.Thread(target=self._serve, name=self.name, daemon=True).start()
                self.started += 1
            else:
                self._idle -= 1
        self._jobs.put(job)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            finally:
                with self._lock:
                    self._idle += 1
