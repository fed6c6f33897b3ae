"""The command line: help everywhere, bad settings named, and `serve --sandbox` really working."""
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT, wait_until


def run(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "destination", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("command", [[], ["serve"], ["worker"], ["migrate"], ["check"], ["wait"], ["sandbox"]])
def test_every_subcommand_has_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0 and "usage: metronome-destination" in result.stdout


def test_worker_help_lists_settings_with_their_environment_variables():
    shown = " ".join(run("worker", "--help").stdout.split())  # argparse wraps lines
    assert "METRONOME_API_TOKEN" in shown
    assert "Env METRONOME_API_TOKEN; default none." in shown and "(secret)" not in shown  # no setting with a default is secret


@pytest.mark.parametrize("args, env, message", [
    (["worker"], {}, "METRONOME_API_TOKEN: required"),
    (["worker", "--metronome-base-url", "ftp://x"], {"METRONOME_API_TOKEN": "t"}, "METRONOME_BASE_URL='ftp://x': must be an http(s) URL"),
    (["worker"], {"METRONOME_API_TOKEN": "t", "BATCH_MAX_EVENTS": "500"}, "BATCH_MAX_EVENTS='500': must be between 1 and 100"),
    (["worker"], {"METRONOME_API_TOKEN": "t", "MAX_REQUEST_BYTES": "5"}, "MAX_REQUEST_BYTES='5': must be between 1024 and 104857600"),
    (["worker"], {"METRONOME_API_TOKEN": "t", "DATABASE_URL": "mysql://x"}, "DATABASE_URL=(hidden): must be a postgres:// or postgresql:// URL"),
    (["serve", "--sandbox", "--mappings-path", "missing.json"], {}, "MAPPINGS_PATH: cannot read missing.json"),
    (["worker"], {"METRONOME_API_TOKEN": "t", "BILLING_CHECK": "maybe"}, "BILLING_CHECK='maybe': must be one of OFF, WARN, HOLD"),
    (["worker"], {"METRONOME_API_TOKEN": "t", "BILLING_VERIFY_SAMPLE": "1000"}, "BILLING_VERIFY_SAMPLE='1000': must be between 0 and 100"),
    (["serve", "--sandbox", "--sandbox-seed", "missing-seed.json"], {}, "SANDBOX_SEED: cannot read seed file missing-seed.json"),
    (["sandbox", "--max-property-bytes", "0"], {}, "--max-property-bytes: must be a whole number of at least 1"),
    (["worker"], {"METRONOME_API_TOKEN": "t", "MAX_SENDS_IN_FLIGHT": "0"}, "MAX_SENDS_IN_FLIGHT='0': must be between 1 and 256"),
    (["worker"], {"METRONOME_API_TOKEN": "t", "FIXED_SENDS_IN_FLIGHT": "perhaps"},
     "FIXED_SENDS_IN_FLIGHT='perhaps': must be true or false"),
])
def test_a_bad_setting_stops_startup_naming_it(args, env, message, tmp_path):
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "METRONOME_API_TOKEN")}
    result = run(*args, env={**base, "SQLITE_PATH": str(tmp_path / "q.sqlite3"), **env})
    assert result.returncode == 2
    assert message in result.stderr


def test_an_invalid_shipped_mapping_stops_startup_with_its_location(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"mappings": [{"name": "m", "trigger": {"path": "$.type"}, "fields": {}}]}')
    result = run("serve", "--sandbox", "--mappings-path", str(bad), "--sqlite-path", str(tmp_path / "q.sqlite3"))
    assert result.returncode == 2
    assert "/mappings/0/trigger: a condition needs 'path'" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_sandbox_receives_and_delivers_in_one_process(tmp_path):
    port, sandbox_port = _free_port(), _free_port()
    process = subprocess.Popen([sys.executable, "-m", "destination", "serve", "--sandbox", "--port", str(port),
                                "--sandbox-port", str(sandbox_port), "--sqlite-path", str(tmp_path / "q.sqlite3")],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               # SQLite only: an inherited DATABASE_URL would point it at the shared public schema.
                               env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})
    try:
        def up():
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
            except requests.RequestException:  # refused, or accepted by a process still booting
                return False
        wait_until(up, timeout=30, message="serve to listen")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event = {"type": "track", "event": "transfer", "messageId": "q1", "userId": "c1", "timestamp": now, "properties": {"bytes": 5000}}
        assert requests.post(f"http://127.0.0.1:{port}/v1/events", json=event, auth=("sandbox-write-key", ""), timeout=5).ok
        totals = wait_until(lambda: requests.get(f"http://127.0.0.1:{sandbox_port}/sandbox/totals", timeout=5).json(),
                            message="the event at the built-in sandbox")
        assert totals == {"c1": {"transfer": {"count": 1, "sums": {"bytes": "5000"}}}}
        admin = requests.get(f"http://127.0.0.1:{port}/admin/mappings", timeout=5,
                             headers={"Authorization": "Bearer sandbox-admin-token"})
        assert (admin.status_code, admin.json()["version"]) == (200, "v1")
    finally:
        process.terminate()
        assert process.wait(30) == 0
    # Each web process writes its accept counts once a second, and the rest as it exits.
    from destination.queue.sqlite import SQLiteQueue

    stopped = SQLiteQueue(tmp_path / "q.sqlite3", migrate=False)
    try:
        counted = {(kind, reason): n for _, kind, reason, n in stopped.delivery_counts(0)}
    finally:
        stopped.close()
    assert counted == {("received", "http"): 1, ("accepted", ""): 1, ("delivered", ""): 1}


def test_the_readme_settings_table_matches_the_code():
    from destination.config import markdown_table

    assert markdown_table() in (ROOT / "docs" / "settings.md").read_text(), "regenerate with destination.config.markdown_table()"


def _bare_env(tmp_path) -> dict:
    """No token, no DATABASE_URL: what a new user's shell has."""
    return {**{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "METRONOME_API_TOKEN")},
            "SQLITE_PATH": str(tmp_path / "q.sqlite3")}


def test_check_sandbox_checks_the_built_in_sandbox_and_never_the_internet(tmp_path):
    env = _bare_env(tmp_path)
    assert run("migrate", "--sandbox", env=env).returncode == 0
    result = run("check", "--sandbox", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   metronome token: http://127.0.0.1:" in result.stdout and "api.metronome.com" not in result.stdout
    assert "checks passed" in result.stdout and "failed" not in result.stdout


def test_check_skip_token_needs_no_token_and_a_failure_names_the_setting(tmp_path):
    env = _bare_env(tmp_path)
    fresh = run("check", "--skip-token", env=env)
    assert "METRONOME_API_TOKEN: required" not in fresh.stderr
    assert fresh.returncode == 1 and "`metronome-destination migrate` or `serve` creates it (SQLITE_PATH" in fresh.stdout
    assert run("migrate", "--sandbox", env=env).returncode == 0
    assert run("check", "--skip-token", env=env).returncode == 0
    bad = run("check", "--skip-token", "--mappings-path", str(tmp_path / "missing.json"), env=env)
    assert bad.returncode in (1, 2) and "MAPPINGS_PATH" in bad.stdout + bad.stderr
    unreachable = run("check", env={**env, "METRONOME_API_TOKEN": "t", "METRONOME_BASE_URL": "http://127.0.0.1:9"})
    assert unreachable.returncode == 1 and "check METRONOME_BASE_URL" in unreachable.stdout
