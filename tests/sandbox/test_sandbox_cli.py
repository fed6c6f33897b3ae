"""The sandbox from the command line: seeded by default under `serve --sandbox`, from a file under
`sandbox --seed`, and the guide's four steps with `wait` between sending and reading back."""
import json
import os
import socket
import subprocess
import sys
import time

import requests

from conftest import ROOT, wait_until

GUIDE_CUSTOMER, GUIDE_CARD = "5e2d1c0b-0000-4000-8000-000000000031", "5e2d1c0b-0000-4000-8000-000000000021"
AUTH = {"Authorization": "Bearer sandbox-token"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "destination", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def listening(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:  # refused, or accepted by a process still booting
        return False


def test_serve_sandbox_walks_metronomes_testing_guide_with_a_wait_before_the_read_back(tmp_path):
    port, sandbox_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "SQLITE_PATH": str(tmp_path / "q.sqlite3")}
    process = subprocess.Popen([sys.executable, "-m", "destination", "serve", "--sandbox", "--port", str(port),
                                "--sandbox-port", str(sandbox_port)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    metronome = f"http://127.0.0.1:{sandbox_port}"
    try:
        wait_until(lambda: listening(f"http://127.0.0.1:{port}/healthz"), timeout=30, message="serve to listen")
        # 1. a test customer, on the seed's rate card
        customer = requests.post(metronome + "/v1/customers", headers=AUTH, timeout=5,
                                 json={"name": "Guide test", "ingest_aliases": ["guide-test"]}).json()["data"]["id"]
        assert requests.post(metronome + "/v1/contracts/create", headers=AUTH, timeout=5, json={
            "customer_id": customer, "rate_card_id": GUIDE_CARD, "starting_at": "2026-01-01T00:00:00Z"}).ok
        # 2. three transfer events through the destination, one a duplicate
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sent = [{"type": "track", "event": "transfer", "messageId": tid, "userId": "guide-test", "timestamp": now,
                 "properties": {"bytes": size, "region": "us-east-1"}} for tid, size in (("t-1", 5000), ("t-1", 5000), ("t-2", 1000))]
        assert requests.post(f"http://127.0.0.1:{port}/v1/events", json=sent, auth=("sandbox-write-key", ""), timeout=5).ok
        waited = cli("wait", "--timeout", "20", env=env)
        assert (waited.returncode, waited.stdout.strip()) == (0, "every accepted event was delivered or set aside as a dead letter")
        # 3. the draft invoice: 6000 bytes, 60 cents
        [invoice] = requests.get(f"{metronome}/v1/customers/{customer}/invoices?status=DRAFT", headers=AUTH, timeout=5).json()["data"]
        [line] = invoice["line_items"]
        assert (line["quantity"], line["total"], invoice["total"]) == (6000, 60, 60)
        # 4. usage grouped by region
        day = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())
        tomorrow = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() + 86400))
        [row] = requests.post(metronome + "/v1/usage", headers=AUTH, timeout=5, json={
            "window_size": "DAY", "starting_on": day, "ending_before": tomorrow, "customer_ids": [customer],
            "billable_metrics": [{"id": "5e2d1c0b-0000-4000-8000-000000000001", "group_by": {"key": "region"}}]}).json()["data"]
        assert (row["value"], row["groups"]) == (6000, {"us-east-1": 6000})
        # the seed's own customer was made too, and its id printed
        assert requests.get(f"{metronome}/v1/customers/{GUIDE_CUSTOMER}", headers=AUTH, timeout=5).ok
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert f"customer acme: {GUIDE_CUSTOMER}" in out


def test_wait_gives_up_with_exit_1_when_metronome_cannot_be_reached(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "SQLITE_PATH": str(tmp_path / "q.sqlite3")}
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "destination", "serve", "--port", str(port), "--write-keys", "k:key",
                                "--metronome-base-url", f"http://127.0.0.1:{free_port()}", "--metronome-api-token", "t",
                                ], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening(f"http://127.0.0.1:{port}/healthz"), timeout=30, message="serve to listen")
        event = {"type": "track", "event": "x", "messageId": "m", "userId": "u",
                 "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        assert requests.post(f"http://127.0.0.1:{port}/v1/events", json=event, auth=("key", ""), timeout=5).ok
    finally:
        process.terminate()
        process.wait(30)
    waited = cli("wait", "--timeout", "0.3", env=env)
    assert (waited.returncode, waited.stdout.strip()) == (1, "1 event(s) still queued after 0.3 s; see /readyz and the worker's log")


def test_sandbox_seed_loads_a_file_and_prints_each_id(tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({
        "billable_metrics": [{"key": "calls", "name": "API calls", "aggregation_type": "COUNT",
                              "event_type_filter": {"in_values": ["api_call"]}}],
        "customers": [{"key": "beta", "name": "Beta", "ingest_aliases": ["beta"]}]}))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "destination", "sandbox", "--port", str(port), "--seed", str(seed)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_until(lambda: listening(f"http://127.0.0.1:{port}/v1/customers"), timeout=30, message="the sandbox to listen")
        [customer] = requests.get(f"http://127.0.0.1:{port}/v1/customers", headers=AUTH, timeout=5).json()["data"]
        [metric] = requests.get(f"http://127.0.0.1:{port}/v1/billable-metrics", headers=AUTH, timeout=5).json()["data"]
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert f"customer beta: {customer['id']}  (Beta)" in out
    assert f"billable_metric calls: {metric['id']}  (API calls)" in out


def test_a_bad_seed_stops_the_sandbox_with_exit_2_and_says_what_is_wrong(tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"billable_metrics": [{"key": "m", "name": "m", "aggregation_type": "SUM"}]}))
    result = cli("sandbox", "--port", "0", "--seed", str(seed))
    assert result.returncode == 2
    assert "SANDBOX_SEED: seed billable_metric 'm': aggregation_key is required for a SUM metric" in result.stderr
    result = cli("sandbox", "--port", "0", "--seed", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "cannot read seed file" in result.stderr
    seed.write_text(json.dumps({"products": [{"key": "p", "name": "p", "type": "USAGE", "billable_metric": "nope"}]}))
    result = cli("sandbox", "--port", "0", "--seed", str(seed))
    assert result.returncode == 2 and "names an unknown key" in result.stderr
