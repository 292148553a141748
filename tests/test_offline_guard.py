"""tools/offline_guard: a Python started with it on PYTHONPATH reaches this machine and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import socket, urllib.request
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
socket.create_connection(server.getsockname(), timeout=2).close()  # loopback: allowed
print("loopback ok")
for url in ("https://example.com/weights.pth", "http://192.0.2.1/data.tar.gz"):
    try:
        urllib.request.urlopen(url, timeout=2)
    except OSError as exc:
        print("refused:", exc)
"""


def test_guard_refuses_and_logs_everything_off_the_machine(tmp_path):
    log = tmp_path / "attempts.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools" / "offline_guard"), "TLH_OFFLINE_GUARD_LOG": str(log)}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "loopback ok" in out.stdout and out.stdout.count("refused:") == 2
    assert "offline_guard" in out.stdout
    assert log.read_text().splitlines() == ["'example.com'", "'192.0.2.1'"]
