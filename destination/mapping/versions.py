"""The live mappings: versions in the database, so admin edits outlive a PaaS's wiped disk.

Every save is a new version (when, which admin token's label, a comment); rolling back saves an
old document again as the newest version, so history only ever grows. The newest version is
live. Each process caches the compiled set and looks for a newer version at most once a second,
so an edit made through one web process reaches every process, and every worker, within a second.
The file in MAPPINGS_PATH seeds an empty database; after that the database wins.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from destination.errors import ConfigError, Conflict, NotFound
from destination.mapping.mapping_set import MappingSet, compile_mapping_set
from destination.payload import exact

log = logging.getLogger("destination.mappings")


def version_name(version_id: int) -> str:
    return f"v{version_id}"


def compile_text(text: str | bytes, version: str) -> MappingSet:
    """Parse and validate a mapping document; raise ConfigError with every problem's location."""
    try:
        document = exact.loads(text.encode() if isinstance(text, str) else text)
    except ValueError as exc:
        raise ConfigError(f"/: not valid JSON: {exc}") from None
    return compile_mapping_set(document, version)


class MappingStore:
    def __init__(self, queue, seed_path: str | Path, clock=time.time, refresh_s: float = 1.0):
        self.queue = queue
        self.seed_path = Path(seed_path)
        self.clock = clock
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cached: MappingSet | None = None
        self._cached_id: int | None = None
        self._checked_at = float("-inf")

    def seed(self) -> None:
        """Load the shipped file into an empty store; warn when a store already differs from it."""
        path = self.seed_path
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"MAPPINGS_PATH: cannot read {path}: {exc.strerror}") from None
        try:
            compile_text(text, "seed")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        latest = self.queue.latest_mapping_version()
        if latest is None:
            # Several processes start at once: only the first to take the lock seeds.
            self.queue.save_mapping_version(text, "seed", f"seeded from {path.name}", self._now_ms(), if_latest=None)
        elif exact.loads(self.queue.get_mapping_version(latest)["document"].encode()) != exact.loads(text.encode()):
            log.warning("%s differs from the live mapping %s in the database, which wins; import the file through "
                        "the admin API to use it", path, version_name(latest))

    def current(self) -> MappingSet:
        now = time.monotonic()
        if self._cached is not None and now - self._checked_at < self.refresh_s:
            return self._cached
        with self._lock:
            latest = self.queue.latest_mapping_version()
            if latest is None:  # the database was down at boot, or emptied since
                self.seed()
                latest = self.queue.latest_mapping_version()
            if latest != self._cached_id:
                self._cached = compile_text(self.queue.get_mapping_version(latest)["document"], version_name(latest))
                self._cached_id = latest
            self._checked_at = now
            return self._cached

    def save(self, text: str, author: str, comment: str, based_on: int | None = None) -> int:
        """Validate, then store as the newest version; raise ConfigError and store nothing if invalid.

        With `based_on`, raise Conflict unless that version is still the newest, so an admin
        editing from an old version never silently overwrites a colleague's later save."""
        compile_text(text, "candidate")
        kwargs = {} if based_on is None else {"if_latest": based_on}
        version = self.queue.save_mapping_version(text, author, comment, self._now_ms(), **kwargs)
        if version is None:
            latest = self.queue.latest_mapping_version()
            raise Conflict(f"the live mappings are now {version_name(latest)} (saved by {self.get(latest)['author']}), "
                           f"not {version_name(based_on)}; reload them and apply your edit again")
        self._checked_at = float("-inf")  # this process sees its own edit at once
        return version

    def rollback(self, version: int, author: str, comment: str = "") -> int:
        old = self.get(version)
        return self.save(old["document"], author, comment or f"rollback to {version_name(version)}")

    def get(self, version: int) -> dict:
        found = self.queue.get_mapping_version(version)
        if found is None:
            raise NotFound(f"mapping version {version} does not exist", code="no_such_version")
        return found

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)
