"""What `mlflow ui` shows: a sweep logged to an `mlflow server` on 127.0.0.1, read back through its
REST API (the parent run and its children, as the UI's compare view lines them up)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from vzexp_testing import run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--default-artifact-root",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("mlflow server did not start")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def rest(url: str, path: str, body: dict | None = None) -> dict:
    """GET without a body, POST with one (the MLflow REST API)."""
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_sweep_in_the_mlflow_server(tmp_path, cli_env, server):
    env = {**cli_env, "MLFLOW_TRACKING_URI": server}
    args = ["-m", "tokens=8,16", "data.limit=2", "data.batch_size=2", "task.max_new_tokens=1"]
    proc = run_cli(args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    experiment = rest(server, "experiments/get-by-name?experiment_name=vzexp")
    runs = rest(
        server, "runs/search", {"experiment_ids": [experiment["experiment"]["experiment_id"]]}
    )
    runs = runs["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    parents = [r for r, t in zip(runs, tags) if t.get("vzexp.sweep") == "parent"]
    assert len(runs) == 3 and len(parents) == 1
    parent_id = parents[0]["info"]["run_id"]
    assert sorted(t.get("mlflow.parentRunId") == parent_id for t in tags) == [False, True, True]
    assert {r["info"]["status"] for r in runs} == {"FINISHED"}
