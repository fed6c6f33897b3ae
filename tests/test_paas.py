"""Deploying on a PaaS: the Procfile's lines run as written, app.json follows the manifest rules,
`check` and `migrate` say what is wrong, SIGTERM is graceful, and no secret reaches a log."""
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import requests

from conftest import ROOT, TOKEN, WRITE_KEY, machine_clock, store_env, track, wait_until
from destination.config import SETTINGS
from destination.queue import migrations


@pytest.fixture
def clock():
    return machine_clock()  # this module starts processes that keep real time


BIN = Path(sys.executable).parent


def procfile() -> dict:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(settings, sandbox, tmp_path, **extra) -> dict:
    """The environment a dyno would have, pointing at this test's store and sandbox."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env.update({"PATH": f"{BIN}:{env.get('PATH', '')}", "HOST": "127.0.0.1", "PORT": str(free_port()),
                "METRONOME_API_TOKEN": TOKEN, "METRONOME_BASE_URL": sandbox.url, "WRITE_KEYS": f"cdp:{WRITE_KEY}",
                "MAPPINGS_PATH": str(ROOT / "destination" / "mappings" / "default.json"), "POLL_INTERVAL_SECONDS": "0.05",
                "RETRY_BASE_SECONDS": "0.05", "HALT_PROBE_SECONDS": "0.3", "WEB_CONCURRENCY": "2",
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), **store_env(settings)})
    env.update(extra)
    return env


def start(command: str, env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def listening(url: str):
    def up():
        try:
            return requests.get(url + "/healthz", timeout=1).ok
        except requests.RequestException:  # refused, or accepted by a process still booting
            return False
    return up


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(40)
    finally:
        process.kill()


def cue(sandbox, **faults):
    requests.post(sandbox.url + "/sandbox/faults", json=faults, timeout=5).raise_for_status()


# -- Procfile ------------------------------------------------------------------------------------

def test_procfile_declares_release_web_and_worker():
    assert set(procfile()) == {"release", "web", "worker"}
    assert "gunicorn --config python:destination.gunicorn_config" in procfile()["web"]


def test_the_procfile_lines_run_as_written(settings, sandbox, tmp_path, clock):
    env = base_env(settings, sandbox, tmp_path)
    url = f"http://127.0.0.1:{env['PORT']}"
    release = subprocess.run(["bash", "-c", procfile()["release"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert release.returncode == 0, release.stderr
    assert "database schema at version" in release.stdout
    web = start(procfile()["web"], env, tmp_path / "web.log")
    worker = start(procfile()["worker"], env, tmp_path / "worker.log")
    try:
        wait_until(listening(url), timeout=30, message="the web line to listen on PORT")
        answer = requests.post(url + "/v1/events", json=[track(f"p{i}", clock.iso(), bytes=i) for i in range(10)],
                               auth=(WRITE_KEY, ""), timeout=10)
        assert answer.status_code == 200 and answer.json()["accepted"] == 10
        wait_until(lambda: len(sandbox.state.events) == 10, timeout=30, message="the worker line to deliver")
        # The sandbox holds the events a moment before the worker has read its answer and acked.
        page = wait_until(lambda: (text := requests.get(url + "/metrics", timeout=5).text)
                          and "destination_events_delivered_total 10.0" in text and text,
                          message="the worker's delivered counter, shared on this machine")
        assert 'destination_events_accepted_total{source="cdp"} 10.0' in page
        assert requests.get(url + "/readyz", timeout=5).json()["status"] == "ready"
    finally:
        assert stop(worker) == 0
        assert stop(web) == 0


def test_a_burst_of_keep_alive_connections_spreads_over_the_web_processes(settings, sandbox, tmp_path):
    """CDPs and SDKs hold a few keep-alive connections open. Sharing one listening socket, the
    process that woke first took nearly all of a burst (15 of 16 measured), so one process, one
    core under the GIL, did the work of both. Each process now listens on its own SO_REUSEPORT
    socket and the kernel spreads new connections over them."""
    env = base_env(settings, sandbox, tmp_path)
    port = int(env["PORT"])
    web = start(procfile()["web"], env, tmp_path / "web.log")
    connections = []
    try:
        wait_until(listening(f"http://127.0.0.1:{port}"), timeout=30, message="the web line to listen on PORT")
        for _ in range(64):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/healthz")
            assert connection.getresponse().read() == b'{"status":"ok"}'
            connections.append(connection)
        held = connections_held_per_process(port, {c.sock.getsockname()[1] for c in connections})
        assert sum(held.values()) == 64 and len(held) == 2, held
        # Each process's share is binomial(64, 1/2): under 16 for either happens about once in 16,000 runs.
        assert min(held.values()) >= 16, held
    finally:
        for connection in connections:
            connection.close()
        assert stop(web) == 0


def test_the_web_line_opens_no_control_socket(settings, sandbox, tmp_path):
    """gunicorn 25.1+ would open one at ~/.gunicorn/gunicorn.ctl, shared by every gunicorn of the user."""
    env = base_env(settings, sandbox, tmp_path, HOME=str(tmp_path), XDG_RUNTIME_DIR="")
    web = start(procfile()["web"], env, tmp_path / "web.log")
    try:
        wait_until(listening(f"http://127.0.0.1:{env['PORT']}"), timeout=30, message="the web line to listen on PORT")
    finally:
        assert stop(web) == 0
    log = (tmp_path / "web.log").read_text()
    assert "Booting worker" in log and "Control socket" not in log
    assert not (tmp_path / ".gunicorn").exists()


def connections_held_per_process(server_port: int, client_ports: set) -> dict:
    """{pid: how many of these clients' connections it holds}, read from /proc (Linux)."""
    inodes = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if local == server_port and remote in client_ports:
            inodes[f"socket:[{fields[9]}]"] = remote
    held = {}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            found = sum(1 for fd in fd_dir.iterdir() if os.readlink(fd) in inodes)
        except OSError:  # a process that ended, or one we may not read
            continue
        if found:
            held[int(fd_dir.parent.name)] = found
    return held


# -- app.json ------------------------------------------------------------------------------------

# The manifest rules the platform applies (its published app.json schema), written down here.
APP_JSON_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "description", "env", "formation", "addons"],
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 30},
        "description": {"type": "string", "maxLength": 140},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "website": {"type": "string"}, "repository": {"type": "string"}, "logo": {"type": "string"},
        "success_url": {"type": "string"},
        "scripts": {"$ref": "#/$defs/scripts"},
        "env": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Z][A-Z0-9_]*$"},
            "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["description"],
                "properties": {"description": {"type": "string", "minLength": 10}, "value": {"type": "string"},
                               "required": {"type": "boolean"}, "generator": {"enum": ["secret"]}},
            },
        },
        "formation": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": False, "required": ["quantity"],
            "properties": {"quantity": {"type": "integer", "minimum": 0}, "size": {"type": "string"}}}},
        "addons": {"type": "array", "items": {"anyOf": [
            {"type": "string"},
            {"type": "object", "required": ["plan"], "additionalProperties": False,
             "properties": {"plan": {"type": "string", "pattern": "^[a-z0-9-]+(:[a-z0-9-]+)?$"}, "as": {"type": "string"},
                            "options": {"type": "object"}}}]}},
        "buildpacks": {"type": "array", "items": {"type": "object", "required": ["url"]}},
        "stack": {"type": "string"},
        "image": {"type": "string"},
        "environments": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "scripts": {"$ref": "#/$defs/scripts"}, "addons": {"type": "array"}, "env": {"type": "object"},
            "formation": {"type": "object"}, "buildpacks": {"type": "array"}}}},
    },
    "$defs": {"scripts": {"type": "object", "additionalProperties": {"type": "string"}}},
}


def test_app_json_passes_the_manifest_schema_and_matches_the_procfile():
    manifest = json.loads((ROOT / "app.json").read_text())
    jsonschema.validate(manifest, APP_JSON_SCHEMA)
    assert set(manifest["formation"]) == {"web", "worker"} <= set(procfile())
    assert manifest["env"]["METRONOME_API_TOKEN"]["required"] is True
    assert all(manifest["env"][name]["generator"] == "secret" for name in ("WRITE_KEYS", "ADMIN_TOKENS"))
    assert any(a["plan"].startswith("heroku-postgresql") for a in manifest["addons"])
    assert manifest["environments"]["test"]["scripts"]["test"] == "pytest"
    known = {s.env for s in SETTINGS}
    assert set(manifest["env"]) <= known, "every variable in app.json is a real setting"


# -- check and migrate ---------------------------------------------------------------------------

def run_cli(*args, env):
    return subprocess.run([sys.executable, "-m", "destination", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_check_passes_with_a_good_token_and_fails_with_a_bad_one(settings, sandbox, tmp_path):
    env = base_env(settings, sandbox, tmp_path)
    assert run_cli("migrate", env=env).returncode == 0
    good = run_cli("check", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    # the billing section adds a line per enabled mapping (the default mapping: one)
    assert "ok   metronome token" in good.stdout and "4 of 4 checks passed" in good.stdout
    assert "ok   billing: track events as usage: event_type comes from each event" in good.stdout
    bad = run_cli("check", env={**env, "METRONOME_API_TOKEN": "revoked-token"})
    assert bad.returncode == 1
    assert "FAIL metronome token" in bad.stdout and "refused the token with 403" in bad.stdout
    assert "revoked-token" not in bad.stdout + bad.stderr


def test_check_names_an_unreachable_database_a_wrong_url_and_a_broken_mapping(settings, sandbox, tmp_path):
    env = base_env(settings, sandbox, tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"mappings": [{"name": "m", "trigger": {"path": "$.type", "equals": "track"}, "fields": {}}]}')
    result = run_cli("check", env={**env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none",
                                   "MAPPINGS_PATH": str(broken), "METRONOME_BASE_URL": sandbox.url + "/wrong"})
    assert result.returncode == 1
    assert "FAIL mappings: " in result.stdout and "/mappings/0/fields" in result.stdout
    assert "FAIL database: Postgres (DATABASE_URL): cannot connect: OperationalError" in result.stdout
    assert "answered 404; expected 400 for an empty batch. Is METRONOME_BASE_URL right?" in result.stdout


def test_check_reports_a_schema_that_needs_migrating(sandbox, tmp_path):
    env = {**os.environ, "METRONOME_API_TOKEN": TOKEN, "METRONOME_BASE_URL": sandbox.url, "DATABASE_URL": "",
           "SQLITE_PATH": str(tmp_path / "new.sqlite3")}
    result = run_cli("check", "--skip-token", env=env)
    assert result.returncode == 1 and "no database there yet" in result.stdout
    assert not (tmp_path / "new.sqlite3").exists()  # the check created nothing
    sqlite3.connect(tmp_path / "new.sqlite3").close()  # a database file from before any migration
    result = run_cli("check", "--skip-token", env=env)
    assert result.returncode == 1
    assert f"schema at version 0 of {migrations.latest('sqlite')}; run `metronome-destination migrate`" in result.stdout
    assert run_cli("migrate", env=env).returncode == 0
    assert run_cli("check", "--skip-token", env=env).returncode == 0


def test_check_with_missing_settings_exits_2_naming_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("METRONOME_API_TOKEN", "DATABASE_URL")}
    result = run_cli("check", env=env)
    assert result.returncode == 2 and "METRONOME_API_TOKEN: required" in result.stderr


# -- SIGTERM -------------------------------------------------------------------------------------

def test_sigterm_mid_request_exits_0_within_the_grace_and_hands_the_batch_back(settings, sandbox, queue, tmp_path, clock, app):
    app.test_client().post("/v1/events", json=[track(f"g{i}", clock.iso()) for i in range(150)], auth=(WRITE_KEY, ""))
    cue(sandbox, hang_s=120)  # Metronome takes the first batch and never answers
    env = base_env(settings, sandbox, tmp_path, SHUTDOWN_GRACE_SECONDS="2", LEASE_SECONDS="600")
    worker = start(procfile()["worker"], env, tmp_path / "worker.log")
    try:
        assert sandbox.state.hung.wait(30), "the worker never sent a batch"
        began = time.monotonic()
        assert stop(worker) == 0
        assert time.monotonic() - began < 25
    finally:
        worker.kill()
    # Despite a 600 s lease, all 150 are claimable now: the hung batch and the unsent rest went back.
    claim = queue.claim(1000, 1000, int(time.time() * 1000))
    assert len(claim.events) == 150
    log = (tmp_path / "worker.log").read_text()
    assert "outlived the 2s shutdown grace" in log and '"finished_in_grace":false' in log


def test_a_worker_on_a_dyno_without_database_url_warns_loudly(sandbox, tmp_path):
    env = {**os.environ, "METRONOME_API_TOKEN": TOKEN, "METRONOME_BASE_URL": sandbox.url, "DATABASE_URL": "",
           "SQLITE_PATH": str(tmp_path / "q.sqlite3"), "DYNO": "worker.1"}
    result = run_cli("migrate", env=env)
    line = next(json.loads(l) for l in result.stderr.splitlines() if "CAN BE LOST" in l)
    assert line["level"] == "warning" and line["data_at_risk"] is True


# -- no secret in any log --------------------------------------------------------------------------

def test_no_secret_appears_in_the_logs_of_a_full_run(settings, sandbox, tmp_path, clock):
    """release, check, web and worker run through good traffic, refused credentials, a revoked and
    restored Metronome token, and shutdown; then every byte they wrote is searched for each secret."""
    import uuid

    secrets = {name: f"{name}-{uuid.uuid4().hex}" for name in ("token", "writekey", "admin", "dbpass", "presented")}
    env = base_env(settings, sandbox, tmp_path, METRONOME_API_TOKEN=secrets["token"],
                   WRITE_KEYS=f"cdp:{secrets['writekey']}", ADMIN_TOKENS=f"ops:{secrets['admin']}", LOG_LEVEL="DEBUG")
    if settings.database_url:  # trust auth ignores the password, so a real one can ride along in the URL
        env["DATABASE_URL"] = settings.database_url.replace("postgresql://postgres@", f"postgresql://postgres:{secrets['dbpass']}@")
    cue(sandbox, tokens=[secrets["token"]])
    url = f"http://127.0.0.1:{env['PORT']}"
    outputs = [subprocess.run(["bash", "-c", procfile()["release"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)]
    outputs.append(run_cli("check", env=env))
    assert [o.returncode for o in outputs] == [0, 0]
    web = start(procfile()["web"], env, tmp_path / "web.log")
    worker = start(procfile()["worker"], env, tmp_path / "worker.log")
    try:
        wait_until(listening(url), timeout=30, message="web")
        post = lambda body, **kw: requests.post(url + "/v1/events", json=body, timeout=10, **kw)
        assert post([track("s1", clock.iso())], auth=(secrets["writekey"], "")).status_code == 200
        assert post([track("s2", clock.iso())], headers={"Authorization": f"Bearer {secrets['writekey']}"}).status_code == 200
        assert post([track("s3", clock.iso())], auth=(secrets["presented"], "")).status_code == 401
        assert post({"batch": [track("s4", clock.iso())], "writeKey": secrets["presented"]}).status_code == 401
        wait_until(lambda: len(sandbox.state.events) == 2, timeout=30, message="delivery")
        cue(sandbox, tokens=["someone-else"])  # Metronome revokes our token: the worker halts and says why
        assert post([track("s5", clock.iso())], auth=(secrets["writekey"], "")).status_code == 200
        wait_until(lambda: requests.get(url + "/readyz", timeout=5).status_code == 503, timeout=30, message="the halt")
        cue(sandbox, tokens=[secrets["token"]])
        wait_until(lambda: len(sandbox.state.events) == 3, timeout=30, message="delivery after the token is back")
        admin = requests.get(url + "/admin/deliveries", headers={"Authorization": f"Bearer {secrets['admin']}"}, timeout=5)
        assert admin.status_code == 200 and admin.json()["count"] >= 3
        assert requests.get(url + "/admin/deliveries", headers={"Authorization": f"Bearer {secrets['presented']}"},
                            timeout=5).status_code == 401
    finally:
        assert stop(worker) == 0
        assert stop(web) == 0
    everything = "".join(o.stdout + o.stderr for o in outputs)
    everything += (tmp_path / "web.log").read_text() + (tmp_path / "worker.log").read_text()
    assert "POST /v1/events 401" in everything and "delivery halted" in everything  # the run did reach those paths
    leaked = [name for name, value in secrets.items() if value in everything]
    assert leaked == [], f"secrets found in the logs: {leaked}"
