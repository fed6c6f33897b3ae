"""The README's quickstart, taken from the README itself and run as a user pastes it."""
import os
import re
import socket
import subprocess
import sys

import pytest
import requests

from conftest import ROOT, wait_until


def readme_block(starting: str) -> str:
    """The ```sh block of the README whose first line starts with `starting`."""
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        if block.startswith(starting):
            return block
    raise AssertionError(f"no ```sh block in the README starts with {starting!r}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_the_quickstart_guide_block_prints_what_the_readme_promises(tmp_path):
    if not (port_free(8080) and port_free(8090)):
        pytest.fail("the quickstart names ports 8080 and 8090; free them to run this test")
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "SQLITE_PATH": str(tmp_path / "q.sqlite3")}
    server = subprocess.Popen([sys.executable, "-m", "destination", "serve", "--sandbox"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The block runs `.venv/bin/metronome-destination` from the folder it is pasted in.
    (tmp_path / ".venv").symlink_to(sys.prefix)
    try:
        def up():
            try:
                return requests.get("http://localhost:8080/healthz", timeout=1).ok
            except requests.RequestException:  # refused, or accepted by a process still booting
                return False
        wait_until(up, timeout=30, message="serve --sandbox to listen on 8080")
        run = subprocess.run(["bash", "-c", readme_block("M=localhost:8090")], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    finally:
        server.terminate()
        server.wait(30)
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"accepted":3' in lines[1]
    assert lines[2:4] == ["every accepted event was delivered or set aside as a dead letter",
                          "Data transfer quantity 6000 total 60"]
    assert '"value":6000,"groups":{"us-east-1":6000}' in lines[4]
