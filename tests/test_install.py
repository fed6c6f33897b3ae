"""Install anywhere: the wheel, installed in a fresh venv outside the repository, serves and
checks against its built-in sandbox from /tmp, with the mappings it ships and no stray folders."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from conftest import ROOT, wait_until
from test_cli import _free_port


def test_the_wheel_installed_outside_the_repository_serves_and_checks_from_tmp(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    [wheel] = wheels.glob("metronome_destination-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True, timeout=600)
    command = str(venv / "bin" / "metronome-destination")
    with tempfile.TemporaryDirectory(dir="/tmp") as elsewhere:
        env = {"PATH": os.environ["PATH"], "HOME": elsewhere}  # a bare shell: no token, no DATABASE_URL
        run = lambda *args: subprocess.run([command, *args], cwd=elsewhere, env=env, capture_output=True,  # noqa: E731
                                           text=True, timeout=120)
        check = run("check", "--sandbox")
        assert check.returncode == 1 and "no database there yet" in check.stdout, check.stdout + check.stderr
        assert not (Path(elsewhere) / "data").exists()  # a check creates nothing
        assert run("migrate", "--sandbox").returncode == 0
        check = run("check", "--sandbox")
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"ok   mappings: {venv}" in check.stdout  # the shipped mappings, from the installed package
        port, sandbox_port = _free_port(), _free_port()
        server = subprocess.Popen([command, "serve", "--sandbox", "--port", str(port), "--sandbox-port", str(sandbox_port)],
                                  cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _up(port), timeout=60, message="the installed serve to listen")
            event = {"type": "track", "event": "transfer", "messageId": "w1", "userId": "c1",
                     "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "properties": {"bytes": 5000}}
            answer = requests.post(f"http://127.0.0.1:{port}/v1/events", json=event, auth=("sandbox-write-key", ""), timeout=10)
            assert answer.status_code == 200 and answer.json()["accepted"] == 1
            totals = wait_until(lambda: requests.get(f"http://127.0.0.1:{sandbox_port}/sandbox/totals", timeout=5).json(),
                                message="the event at the installed service's sandbox")
            assert totals == {"c1": {"transfer": {"count": 1, "sums": {"bytes": "5000"}}}}
        finally:
            server.terminate()
            assert server.wait(30) == 0
        assert sorted(p.name for p in Path(elsewhere).iterdir()) == ["data"]  # SQLITE_PATH's default, there and only there


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
    except requests.RequestException:  # refused, or accepted by a process still booting
        return False
