"""`metronome-destination import`, run as a user runs it (a subprocess) against a real SQLite file or
Postgres: dry run and real import agree, a re-run adds no usage at the sandbox, an import stopped
with SIGINT half way resumes with every event exactly once, a progress bar on a pseudo-terminal,
and every bad input gets a clear message and loses nothing that was accepted."""
import gzip
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, machine_clock, store_env, wait_until
from destination.worker.build import build_worker

EVENTS = 100_000


@pytest.fixture
def clock():
    """The import runs in its own process on the machine's clock; the sandbox must keep the same time."""
    return machine_clock()


def write_events(path, count: int, clock, bad_every: int = 100, prefix: str = "e") -> int:
    """A JSONL file of `count` lines, every `bad_every`-th one not JSON; returns how many are bad."""
    when = clock.iso(-3600)
    bad = 0
    with open(path, "w") as out:
        for i in range(count):
            if bad_every and i % bad_every == bad_every - 1:
                out.write(f"{{\"messageId\": \"{prefix}-{i}\", broken\n")
                bad += 1
                continue
            out.write(json.dumps({"type": "track", "event": "api_call", "messageId": f"{prefix}-{i}", "userId": f"cust_{i % 7}",
                                  "timestamp": when, "properties": {"tokens": i % 1000, "price": "0.10"}}) + "\n")
    return bad


def cli_env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    return {**env, **store_env(settings), "MAPPINGS_PATH": settings.mappings_path, "BILLING_CHECK": "OFF",
            "METRONOME_API_TOKEN": "", "PYTHONUNBUFFERED": "1"}


def run_import(settings, *args, stdin=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "destination", "import", *map(str, args)], cwd=ROOT, env=cli_env(settings),
                          capture_output=True, timeout=timeout, input=stdin)


def printed_counts(text: str) -> dict:
    """The summary's figures, as the user reads them."""
    number = lambda label: int(re.search(rf"^  {label}\s+([\d,]+)", text, re.M).group(1).replace(",", ""))  # noqa: E731
    usage = int(re.search(r"events, ([\d,]+) usage events", text).group(1).replace(",", ""))
    refusals = dict((code, int(n.replace(",", ""))) for code, n in re.findall(r"(\w+) ([\d,]+)", text.split("refused", 1)[1].split("\n")[0]))
    return {"lines": number("lines read"), "accepted": number("accepted"), "filtered": number("filtered"),
            "refused": number("refused"), "usage_events": usage, "refusals": refusals,
            "outside_window": number("outside the 34-day window")}


def stored(queue) -> dict:
    with queue._read() as db:
        rows, distinct = db.execute("SELECT count(*), count(DISTINCT transaction_id) FROM outbox").fetchone()
        letters = db.execute("SELECT code, reason FROM dead_letters ORDER BY id").fetchall()
    return {"rows": rows, "distinct": distinct, "dead_letters": letters}


def test_the_dry_run_counts_are_the_real_imports(settings, queue, tmp_path, clock):
    path = tmp_path / "usage.jsonl"
    bad = write_events(path, EVENTS, clock)
    dry = run_import(settings, "--dry-run", path)
    assert dry.returncode == 0, dry.stderr.decode()
    assert "DRY RUN, nothing stored or sent" in dry.stdout.decode()
    assert stored(queue) == {"rows": 0, "distinct": 0, "dead_letters": []} and queue.list_imports() == []
    real = run_import(settings, path)
    assert real.returncode == 0, real.stderr.decode()
    predicted, done = printed_counts(dry.stdout.decode()), printed_counts(real.stdout.decode())
    assert predicted == done
    assert done == {"lines": EVENTS, "accepted": EVENTS - bad, "filtered": 0, "refused": bad, "usage_events": EVENTS - bad,
                    "refusals": {"malformed_json": bad}, "outside_window": 0}
    found = stored(queue)
    assert found["rows"] == found["distinct"] == EVENTS - bad and len(found["dead_letters"]) == bad
    # each bad line is a dead letter that says where it was
    assert found["dead_letters"][0] == ("malformed_json", found["dead_letters"][0][1])
    assert f"{path} line 100: not JSON" in found["dead_letters"][0][1]
    recorded = queue.list_imports()
    assert [(r["name"], r["status"], r["position"]) for r in recorded] == [(str(path), "done", EVENTS)]
    assert json.loads(recorded[0]["counts"])["accepted"] == EVENTS - bad and "@" in recorded[0]["who"]


def deliver_all(settings, queue, clock) -> None:
    stop = threading.Event()
    worker = build_worker(settings, queue, clock=clock)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: queue.depth() == 0, timeout=120, message="the import delivered")
    finally:
        stop.set()
        thread.join(10)


def test_a_second_run_of_the_same_file_adds_no_usage_at_the_sandbox(settings, queue, sandbox, tmp_path, clock):
    path = tmp_path / "usage.jsonl.gz"
    plain = tmp_path / "usage.jsonl"
    write_events(plain, 2_000, clock, bad_every=0)
    path.write_bytes(gzip.compress(plain.read_bytes()))
    assert run_import(settings, path).returncode == 0
    deliver_all(settings, queue, clock)
    first = {tid: dict(e) for tid, e in sandbox.state.events.items()}
    assert len(first) == 2_000
    again = run_import(settings, path)
    assert again.returncode == 0 and "2,000 usage events queued" in again.stdout.decode()
    deliver_all(settings, queue, clock)
    assert sandbox.state.events == first  # the same transaction_ids: Metronome keeps the first and drops the repeat
    assert sandbox.state.duplicates == 2_000
    assert [r["status"] for r in queue.list_imports()] == ["done", "done"]


def test_an_import_stopped_half_way_resumes_with_every_event_exactly_once(settings, queue, tmp_path, clock):
    path = tmp_path / "usage.jsonl"
    bad = write_events(path, EVENTS, clock)
    process = subprocess.Popen([sys.executable, "-m", "destination", "import", "--jobs", "2", str(path)], cwd=ROOT,
                               env=cli_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: (found := queue.list_imports()) and found[0]["position"] >= EVENTS // 2, timeout=120,
                   interval=0.01, message="the import half way")
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C does: to the import and its mapping processes
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err.decode()
    assert "interrupted" in out.decode() and "run the same command again to resume" in out.decode()
    stopped = queue.list_imports()[0]
    assert stopped["status"] == "interrupted" and EVENTS // 2 <= stopped["position"] < EVENTS
    part = stored(queue)
    assert 0 < part["rows"] < EVENTS - bad and part["rows"] == part["distinct"]

    resumed = run_import(settings, path)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert f"resuming import {stopped['id']} of {path} after line {stopped['position']}" in resumed.stderr.decode()
    found = stored(queue)
    assert found["rows"] == found["distinct"] == EVENTS - bad  # every event once: none skipped, none twice
    lines = sorted(int(re.search(r" line (\d+):", reason).group(1)) for _, reason in found["dead_letters"])
    assert lines == list(range(100, EVENTS + 1, 100))  # every bad line once
    final = queue.list_imports()
    assert len(final) == 1 and final[0]["status"] == "done" and json.loads(final[0]["counts"])["refused"] == bad
    assert printed_counts(resumed.stdout.decode())["lines"] == EVENTS


@pytest.mark.parametrize("backend", ["sqlite"])
def test_progress_on_a_terminal_is_a_bar_with_rate_and_eta_and_plain_lines_elsewhere(settings, tmp_path, clock):
    path = tmp_path / "usage.jsonl"
    write_events(path, 20_000, clock)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command on a pseudo-terminal, as a user at a shell runs it
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "destination", "import", "--dry-run", str(path)],
                  {**cli_env(settings), "COLUMNS": "140", "LINES": "40"})  # a new pseudo-terminal has no size
    shown = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        shown += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = shown.decode()
    assert "\x1b[" in text and "\r" in text  # redrawn in place
    assert "━" in text and re.search(r"\d+%", text)  # a bar and its share of the file
    assert re.search(r"[\d,]+ events · [\d,]+ events/s · ETA", text)
    assert "100%" in text and "import of" in text
    plain = run_import(settings, "--dry-run", path)  # not a terminal: no escape codes, the summary on stdout
    assert "\x1b[" not in plain.stderr.decode() + plain.stdout.decode()
    assert "20,000 events" in plain.stdout.decode()


@pytest.mark.parametrize("name, content, message", [
    ("usage.csv", b"id,name\n1,2\n", "usage.csv: not JSON: it starts with b'i'"),
    ("image.png", b"\x89PNG\r\n\x1a\n", "image.png: not JSON: it starts with b'\\x89'"),
    ("cut.jsonl.gz", (lambda whole: whole[:len(whole) // 2])(gzip.compress(b"".join(
        b'{"type": "track", "messageId": "%d"}\n' % i for i in range(5000)))), "cut.jsonl.gz: not a whole gzip file"),
    ("broken.json", b'[{"type": "track", "messageId": "a"},\n{"oops": }]', "element 2 of the JSON array: Expecting value"),
])
def test_input_that_is_not_json_stops_with_exit_2_and_a_clear_message(settings, queue, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    result = run_import(settings, path)
    assert result.returncode == 2 and message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    assert stored(queue)["rows"] == 0


def test_a_missing_file_is_exit_2_naming_it(settings, tmp_path):
    result = run_import(settings, tmp_path / "nowhere.jsonl")
    assert result.returncode == 2 and "nowhere.jsonl: cannot open: No such file or directory" in result.stderr.decode()


def test_arrays_stdin_empty_files_and_an_oversized_line_import_with_everything_accounted_for(settings, queue, tmp_path, clock):
    when = clock.iso(-60)
    array = tmp_path / "export.json"
    array.write_text(json.dumps([{"type": "track", "event": "e", "messageId": f"arr-{i}", "userId": "c", "timestamp": when,
                                  "properties": {"exact": "<n>"}} for i in range(3)]).replace('"<n>"', "0.1000000000000000055511151231257827"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    huge = tmp_path / "huge.jsonl"
    event = {"type": "track", "event": "e", "userId": "c", "timestamp": when}
    huge.write_text(json.dumps({**event, "messageId": "ok-1"}) + "\n"
                    + json.dumps({**event, "messageId": "too-big", "properties": {"blob": "x" * 40_000}}) + "\n"
                    + json.dumps({**event, "messageId": "ok-2"}) + "\n")
    stdin = json.dumps({**event, "messageId": "from-stdin"}).encode() + b"\n"
    result = run_import(settings, array, empty, huge, "-", stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    with queue._read() as db:
        rows = dict(db.execute("SELECT transaction_id, payload FROM outbox").fetchall())
    assert sorted(rows) == ["arr-0", "arr-1", "arr-2", "from-stdin", "ok-1", "ok-2"]
    assert b'"exact":"0.1000000000000000055511151231257827"' in bytes(rows["arr-0"])  # exact, as the HTTP routes keep it
    (code, reason), = stored(queue)["dead_letters"]
    assert code == "event_too_large" and f"{huge} line 2: " in reason
    assert [r["name"] for r in queue.list_imports()] == ["stdin", str(huge), str(empty), str(array)]


@pytest.mark.parametrize("backend", ["sqlite"])  # the check's verdicts are the subject; both stores run the rest
def test_the_dry_run_says_what_would_bill_nothing_and_the_import_records_the_same(settings, queue, tmp_path, clock):
    """With BILLING_CHECK on, against the catalog stored in the database (the guide's metrics, and
    which customers Metronome knows, as the worker would have written it)."""
    from destination.billing.catalog import KEY
    from destination.sandbox.seed import read_seed

    now_ms = int(clock() * 1000)
    metrics = [{k: v for k, v in m.items() if k != "key"} for m in read_seed("guide")["billable_metrics"]]
    queue.set_state(KEY, json.dumps({"metrics": metrics, "refreshed_ms": now_ms, "error": None,
                                     "customers": {"cust_known": [True, now_ms], "cust_gone": [False, now_ms]}}))
    when = clock.iso(-60)
    path = tmp_path / "usage.jsonl"
    with open(path, "w") as out:
        for i in range(30):
            event, customer = [("transfer", "cust_known"), ("transfr", "cust_known"), ("transfer", "cust_gone")][i % 3]
            out.write(json.dumps({"type": "track", "event": event, "messageId": f"b-{i}", "userId": customer,
                                  "timestamp": when, "properties": {"bytes": 100, "region": "us-east-1"}}) + "\n")
    env = {**cli_env(settings), "BILLING_CHECK": "WARN"}
    runs = [subprocess.run([sys.executable, "-m", "destination", "import", *flags, str(path)], cwd=ROOT, env=env,
                           capture_output=True, timeout=120) for flags in (["--dry-run"], [])]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr.decode()
    unbillable = [re.search(r"^  unbillable\s+(.*)$", r.stdout.decode(), re.M).group(1) for r in runs]
    assert unbillable[0] == unbillable[1]
    reasons = dict((code, int(n)) for code, n in re.findall(r"(\w+) (\d+)", unbillable[0]))
    assert sum(reasons.values()) == 20 and len(reasons) == 2  # the typo, and the customer Metronome does not know
    assert json.loads(queue.list_imports()[0]["counts"])["unbillable"] == reasons


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_store_that_cannot_be_opened_is_one_clear_line_and_exit_1(settings, tmp_path, clock):
    path = tmp_path / "usage.jsonl"
    write_events(path, 10, clock, bad_every=0)
    env = {**cli_env(settings), "SQLITE_PATH": str(tmp_path / "a-file" / "queue.sqlite3")}
    (tmp_path / "a-file").write_text("a file where the store's folder should be")
    result = subprocess.run([sys.executable, "-m", "destination", "import", str(path)], cwd=ROOT, env=env,
                            capture_output=True, timeout=60)
    assert result.returncode == 1 and "import: cannot open the store:" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
