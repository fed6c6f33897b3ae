"""Group commit: requests that arrive while a commit is in flight share the next transaction.

Every accepted request must be committed before it is answered, and a commit costs the same
for one event as for a hundred (an fsync, a lock handoff). Under load, threads of one process
queue their work here; one of them (the leader) runs everything queued in one transaction,
commits, and wakes them. Then the next waiting thread leads the next group, so no thread works
for others indefinitely. Nobody is answered before the commit that holds their rows has succeeded.

One failing piece must not undo the others. A savepoint around each piece would ensure that,
but each of its statements releases the GIL while the write lock is held, and a mapping thread
may keep the GIL for the whole switch interval before the leader gets it back. So the group runs
bare first; only if a piece fails is the transaction rolled back and the group run again with a
savepoint around each piece. A piece's work may therefore run twice, and must be plain writes.
"""
from __future__ import annotations

import threading
from typing import Callable

MAX_GROUP = 64  # pieces per transaction: bounds one commit's size and its waiters' latency


class _Piece:
    __slots__ = ("work", "wake", "lead", "finished", "result", "error")

    def __init__(self, work):
        self.work = work
        self.wake = threading.Event()
        self.lead = False  # set when the previous leader hands this thread the next group
        self.finished = False
        self.result = None
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self, transaction: Callable):
        """`transaction()` is a context manager giving a db handle that commits on a clean exit."""
        self._transaction = transaction
        self._lock = threading.Lock()
        self._pending: list[_Piece] = []
        self._leading = False  # whether some thread is running (or about to run) a group

    def run(self, work: Callable):
        """Run `work(db)` in a committed transaction, possibly shared; return its result or raise its error."""
        piece = _Piece(work)
        with self._lock:
            self._pending.append(piece)  # with no leader, the queue was empty: this piece is first
            piece.lead = not self._leading
            self._leading = True
        if not piece.lead:
            piece.wake.wait()  # until our group committed, or we are handed the lead
        if not piece.finished:
            self._lead()  # the group we lead starts with our own piece
        if piece.error is not None:
            raise piece.error
        return piece.result

    def _lead(self) -> None:
        group: list[_Piece] = []
        try:
            try:
                with self._transaction() as db:
                    # The group is taken only once the write lock is ours: pieces queued while we
                    # waited for it (another process's commit) join this transaction, not the next.
                    with self._lock:
                        group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
                    for piece in group:
                        piece.result = piece.work(db)
            except Exception:
                if len(group) < 2:  # nothing to keep apart: the piece's own error, below
                    raise
                with self._transaction() as db:  # the first try was rolled back whole
                    self._run_pieces(db, group)
        except Exception as exc:  # the transaction failed or never began: nothing in the group was stored
            if not group:  # it never began; our own piece is still first in line
                with self._lock:
                    group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            for piece in group:
                piece.result, piece.error = None, exc
        finally:
            for piece in group:
                piece.finished = True
                piece.wake.set()
            with self._lock:
                successor = self._pending[0] if self._pending else None
                self._leading = successor is not None
            if successor is not None:
                successor.lead = True
                successor.wake.set()

    @staticmethod
    def _run_pieces(db, group: list[_Piece]) -> None:
        """Each piece in its own savepoint, so a failing one is undone alone and told why."""
        for index, piece in enumerate(group):
            db.execute(f"SAVEPOINT piece_{index}")
            try:
                piece.result, piece.error = piece.work(db), None
            except Exception as exc:  # this piece alone is undone, and its caller told why
                db.execute(f"ROLLBACK TO SAVEPOINT piece_{index}")
                piece.result, piece.error = None, exc
            db.execute(f"RELEASE SAVEPOINT piece_{index}")
