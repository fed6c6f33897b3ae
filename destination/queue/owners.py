"""Who holds a claim, and whether that process still lives.

A claim's owner names its process: `host:pid:start/nonce`, where `start` is the process's start
time as the kernel counts it, so a PID the system hands out again is not taken for the old
process. A process that finds claims left by a dead process of its own host releases them at once,
instead of waiting out their lease (60 s by default): after `kill -9` and a restart, delivery
resumes within a poll. A claim whose owner lives, or lives on another host, is never touched here;
its lease runs out as before.
"""
from __future__ import annotations

import os
import socket
import uuid
from functools import lru_cache

HOST = socket.gethostname().replace(":", "_").replace("/", "_")


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None
    when it does not exist. The command name (field 2) may hold spaces and parentheses, so the
    fields are counted from its closing parenthesis."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return "?"  # unreadable: it exists, so it may live
    return fields[19].decode() if len(fields) > 19 else "?"


@lru_cache(maxsize=8)
def _identity(pid: int) -> str:
    return f"{HOST}:{pid}:{_start_ticks(pid) or '?'}"


def process_identity() -> str:
    """This process's name in claims; per PID, so a forked gunicorn worker gets its own."""
    return _identity(os.getpid())


def new_owner() -> str:
    return f"{process_identity()}/{uuid.uuid4().hex}"


def owner_is_dead(owner: str, host: str = HOST, start_of=_start_ticks) -> bool:
    """True only when `owner` names a process of this host that no longer runs (or whose PID now
    belongs to a process started later). Anything else, including owners from before this
    scheme, is presumed alive."""
    process, _, nonce = owner.partition("/")
    parts = process.split(":")
    if not nonce or len(parts) != 3 or parts[0] != host or not parts[1].isdigit() or parts[2] == "?":
        return False
    now = start_of(int(parts[1]))
    return now is None or (now != "?" and now != parts[2])
