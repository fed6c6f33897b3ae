"""Processes that open one fresh SQLite file at the same moment, as gunicorn's workers do at boot."""
import multiprocessing

from destination.queue.sqlite import SQLiteQueue

PROCESSES = 8
TRIALS = 40


def _open(path: str, barrier) -> None:
    barrier.wait(10)
    SQLiteQueue(path).close()


def test_processes_opening_a_fresh_file_at_once_all_open_it(tmp_path):
    """Switching a new file to WAL answered "database is locked" at once, without SQLite's busy
    wait, while another process migrated it: one process in about a hundred failed so, and a
    failed gunicorn worker stops `serve`."""
    context = multiprocessing.get_context("fork")
    failed = 0
    for trial in range(TRIALS):
        barrier = context.Barrier(PROCESSES)
        processes = [context.Process(target=_open, args=(str(tmp_path / f"q{trial}.sqlite3"), barrier))
                     for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(30)
        failed += sum(process.exitcode != 0 for process in processes)
    assert failed == 0, f"{failed} of {TRIALS * PROCESSES} processes could not open a fresh file"
    assert SQLiteQueue(tmp_path / "q0.sqlite3").depth() == 0
