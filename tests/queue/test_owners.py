"""Claims left by a dead process are released at once; a live owner's never are."""
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from destination.queue.owners import new_owner, owner_is_dead, process_identity
from destination.queue.outbox import QueuedEvent
from destination.queue.postgres import PostgresQueue
from destination.queue.sqlite import SQLiteQueue

LEASE_MS = 60_000


@pytest.mark.parametrize("owner, running, dead", [
    ("h:42:1000/n", {42: "1000"}, False),  # alive, the same process
    ("h:42:1000/n", {}, True),  # no such PID any more
    ("h:42:1000/n", {42: "2000"}, True),  # the PID was given to a process started later
    ("h:42:1000/n", {42: "?"}, False),  # exists, start time unreadable: presumed alive
    ("other:42:1000/n", {}, False),  # another host: nothing can be known here; its lease runs out
    ("h:42:?/n", {}, False),  # its own start time was unknown: presumed alive
    ("0123456789abcdef0123456789abcdef", {}, False),  # an owner from before this scheme
    ("h:x:1000/n", {}, False),
    ("h:42:1000", {}, False),
])
def test_an_owner_is_dead_only_when_its_host_is_ours_and_its_process_is_gone(owner, running, dead):
    assert owner_is_dead(owner, host="h", start_of=running.get) is dead


def test_this_process_is_alive_and_each_claim_has_its_own_owner():
    assert owner_is_dead(new_owner()) is False
    assert new_owner() != new_owner() and new_owner().startswith(process_identity() + "/")


def _open(store):
    return PostgresQueue(store["database_url"]) if "database_url" in store else SQLiteQueue(store["sqlite_path"])


CLAIMER = textwrap.dedent("""
    import sys
    from destination.queue.postgres import PostgresQueue
    from destination.queue.sqlite import SQLiteQueue
    kind, where = sys.argv[1:3]
    queue = PostgresQueue(where) if kind == "postgres" else SQLiteQueue(where)
    claim = queue.claim(10, {lease}, 1000)
    print(len(claim.events), flush=True)
    sys.stdin.readline()  # hold the claim until told
    import os
    os._exit(9)  # die as kill -9 would: no ack, no release
""").format(lease=LEASE_MS)


def test_claims_of_a_process_that_died_are_claimed_again_at_once_and_a_live_ones_are_not(store):
    queue = _open(store)
    try:
        queue.enqueue([QueuedEvent(f"t{i}", b"{}", b"{}", "v1", 1000, f"m{i}", "c") for i in range(5)], [], now_ms=1000)
        kind, where = ("postgres", store["database_url"]) if "database_url" in store else ("sqlite", store["sqlite_path"])
        with subprocess.Popen([sys.executable, "-c", CLAIMER, kind, where], cwd=ROOT, text=True, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}) as holder:
            assert holder.stdout.readline().strip() == "5"
            assert queue.claim(10, LEASE_MS, 2000).events == []  # its owner lives: left alone
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(10) == 9
        queue._owners_checked = float("-inf")  # the once-a-second check is due (it is, a second later)
        again = queue.claim(10, LEASE_MS, 2000)  # well inside the dead process's 60 s lease
        assert sorted(e.transaction_id for e in again.events) == [f"t{i}" for i in range(5)]
    finally:
        queue.close()
