"""Screenshots of the MLflow UI for docs/tracking.md, taken from a fresh sweep with headless
Chromium (Debian's `chromium` package: `apt-get install chromium`).

    python docs/screenshots.py [--out docs/img] [--limit 8]

In a temporary directory (its own SQLite store) it runs a two-variable sweep and its report,
serves the store with `mlflow ui` on a free local port, and saves:
  * mlflow_runs.png: the experiment's runs, the children nested under the sweep's parent;
  * mlflow_parent.png: the parent run (description, shared params, best accuracy);
  * mlflow_child.png: one child run (its name, params, metrics, dataset).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SWEEP = ["-m", "compressor.merge_space=keys,hidden", "tokens=8,24", "task.max_new_tokens=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"screenshots: {url} did not answer within {seconds:.0f} s")


def shoot(browser: str, url: str, path: Path, size: str = "1600,1000") -> None:
    """Chromium's own headless screenshot, after the page's scripts have had time to fetch."""
    subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={size}",
            "--virtual-time-budget=20000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "img"))
    parser.add_argument("--limit", type=int, default=8, help="samples per job")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("screenshots: no chromium on PATH (apt-get install chromium)")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        python = sys.executable
        subprocess.run(
            [python, "-m", "vzexp", *SWEEP, f"data.limit={args.limit}"],
            cwd=tmp,
            env=env,
            check=True,
        )
        subprocess.run(
            [python, "-m", "vzexp.report", "--parent", "latest", "--out", "report"],
            cwd=tmp,
            env=env,
            check=True,
        )
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("vzexp")
        runs = client.search_runs([experiment.experiment_id])
        parent = next(r for r in runs if r.data.tags.get("vzexp.sweep") == "parent")
        child = next(r for r in runs if r.info.run_id == parent.data.tags["vzexp.best.run_id"])
        port = free_port()
        server = subprocess.Popen(
            [python, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--port", str(port)],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/health")
            runs_page = f"{base}/#/experiments/{experiment.experiment_id}/runs"
            shoot(browser, runs_page, out / "mlflow_runs.png")
            shoot(browser, f"{runs_page}/{parent.info.run_id}", out / "mlflow_parent.png")
            shoot(browser, f"{runs_page}/{child.info.run_id}", out / "mlflow_child.png")
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {out}/mlflow_runs.png, mlflow_parent.png, mlflow_child.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
