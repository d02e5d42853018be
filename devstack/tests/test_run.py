"""`make run`'s supervisor as an operator meets it: it comes up, keeps data across restarts, and stops every
process it started on SIGTERM or SIGINT, so a second run works at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from suara_devstack.infra import free_port, port_open
from suara_devstack.testing import _free_base


def _start(data_dir: Path, broker: int, db: int, base: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker}",
        "MONGODB_URI": f"mongodb://127.0.0.1:{db}/suara",
        "SUARA_BASE_PORT": str(base),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "suara_devstack.cli", "run"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _wait_up(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if "Ctrl-C stops everything." in line:
            return "".join(seen)
        if time.monotonic() > deadline:
            break
    raise AssertionError("suara-dev run never came up:\n" + "".join(seen[-40:]))


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM])
def test_run_comes_up_keeps_data_and_stops_everything(tmp_path: Path, stop_signal: signal.Signals) -> None:
    broker, db, base = free_port(), free_port(), _free_base()
    ports = [broker, db, base, base + 1, base + 2, base + 3, base + 9]
    for attempt in range(2):
        proc = _start(tmp_path, broker, db, base)
        try:
            banner = _wait_up(proc)
            assert f"http://127.0.0.1:{base + 2}/" in banner and f"http://127.0.0.1:{base}/api/v1" in banner
            for port in (base, base + 1, base + 2, base + 3, base + 9):
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            client: MongoClient[dict[str, object]] = MongoClient(f"mongodb://127.0.0.1:{db}/suara")
            marker = client.suara.run_test
            if attempt == 0:
                marker.insert_one({"_id": "kept", "note": "survives a restart"})
            else:
                assert marker.find_one({"_id": "kept"}) == {"_id": "kept", "note": "survives a restart"}
            client.close()
        finally:
            proc.send_signal(stop_signal)
            output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output[-3000:]
        assert "suara: stopped." in output
        left = [p for p in ports if port_open(p)]
        assert left == [], f"ports still served after stop: {left}"
