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

    def current(self, fresh: bool = False) -> MappingSet:
        """The live mappings, re-read at most every `refresh_s` (the accept path's bound), or now
        with `fresh`: a preview or replay right after a save, in any process, uses that save."""
        now = time.monotonic()
        if not fresh and self._cached is not None and now - self._checked_at < self.refresh_s:
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

    def save(self, text: str, author: str, comment: str, based_on: int | None = None,
             confirm_id_change: bool = False) -> int:
        """Validate, then store as the newest version; raise ConfigError and store nothing if invalid.

        With `based_on`, raise Conflict unless that version is still the newest, so an admin
        editing from an old version never silently overwrites a colleague's later save. Unless
        `confirm_id_change`, raise Conflict (`transaction_id_changed`) when a mapping kept by
        name builds its transaction_id another way: a sender's retry of an event delivered
        under the old rule would get a new id, and Metronome would bill it again."""
        compile_text(text, "candidate")
        if not confirm_id_change:
            self._refuse_id_changes(text)
        kwargs = {} if based_on is None else {"if_latest": based_on}
        version = self.queue.save_mapping_version(text, author, comment, self._now_ms(), **kwargs)
        if version is None:
            latest = self.queue.latest_mapping_version()
            raise Conflict(f"the live mappings are now {version_name(latest)} (saved by {self.get(latest)['author']}), "
                           f"not {version_name(based_on)}; reload them and apply your edit again")
        self._checked_at = float("-inf")  # this process sees its own edit at once
        return version

    def rollback(self, version: int, author: str, comment: str = "", confirm_id_change: bool = False) -> int:
        old = self.get(version)
        return self.save(old["document"], author, comment or f"rollback to {version_name(version)}",
                         confirm_id_change=confirm_id_change)

    def _refuse_id_changes(self, text: str) -> None:
        latest = self.queue.latest_mapping_version()
        if latest is None:
            return
        changed = id_rule_changes(self.get(latest)["document"], text)
        if changed:
            raise Conflict(f"saving changes how {', '.join(map(repr, changed))} builds its transaction_id: a sender's "
                           "retry of an event already delivered would get a new id and bill again. Send "
                           '"confirm_id_change": true to save anyway', code="transaction_id_changed")

    def get(self, version: int) -> dict:
        found = self.queue.get_mapping_version(version)
        if found is None:
            raise NotFound(f"mapping version {version} does not exist", code="no_such_version")
        return found

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def id_rule_changes(old_text: str, new_text: str) -> list[str]:
    """Names of the enabled mappings, in both documents, whose transaction_id source differs."""
    def rules(text: str) -> dict:
        return {m["name"]: m["fields"]["transaction_id"] for m in exact.loads(text.encode())["mappings"]
                if m.get("enabled", True)}
    old, new = rules(old_text), rules(new_text)
    return [name for name, rule in new.items() if name in old and old[name] != rule]
