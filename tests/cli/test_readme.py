"""The README's commands run as written (made small), and the configs it names exist.

Every command of the README's `bash` blocks is either run here, in README order in one temporary
working directory, or matched by exactly one entry of SKIPS, which says why it cannot run here.
`python -m vzexp ...` runs get `data.limit=2 logger=none` appended (the lightning-hydra-template
way of smoke-testing experiments), except the sweep that `vzexp.report` reads next, which keeps
the MLflow logger; an `+experiment=` sweep runs its first job only (its other jobs differ only in
the values swept).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from vzexp_testing import REPO

README = REPO / "README.md"

# (what identifies the command, why it does not run here)
SKIPS = [
    ("pip install", "installs packages; CI runs the set-up commands verbatim (.ci/run)"),
    ("mlflow ui", "starts a web server that runs until it is stopped"),
    ("hydra/launcher=slurm", "submits jobs to a SLURM cluster"),
    ("model.path=/models/", "needs a local 7B checkpoint, a benchmark copy and a GPU"),
    ("--compare visionzip", "reads the paper sweep above, which needs a 7B checkpoint and a GPU"),
]
# the sweep whose runs the next command (`vzexp.report --parent latest`) reads from MLflow
TRACKED = "python -m vzexp -m tokens="


def readme_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


COMMANDS = readme_commands(README.read_text())


def skip_reason(command: str) -> str | None:
    reasons = [why for key, why in SKIPS if key in command]
    return reasons[0] if reasons else None


def first_job_only(words: list[str]) -> list[str]:
    """`+experiment=NAME` sweeps: pin every swept key to its first value (command-line values
    take precedence over the experiment's sweeper params)."""
    extra = []
    for word in words:
        if word.startswith("+experiment="):
            conf = yaml.safe_load(
                (REPO / "conf/experiment" / f"{word.split('=')[1]}.yaml").read_text()
            )
            params = (conf.get("hydra") or {}).get("sweeper", {}).get("params") or {}
            extra += [f"{key}={str(values).split(',')[0]}" for key, values in params.items()]
    return extra


def small(command: str) -> list[str]:
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "vzexp"] and "--help" not in words:
        words += first_job_only(words) + ["data.limit=2"]
        if not command.startswith(TRACKED):
            words.append("logger=none")
    return [sys.executable, *words[1:]] if words[0] == "python" else words


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def readme_env(workdir) -> dict[str, str]:
    """One environment for all the commands, as a user's shell: MLflow's store in the working
    directory (so that the report finds the sweep), the repo's src on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    env["VZEXP_CACHE"] = str(workdir / "cache")
    env.pop("HYDRA_FULL_ERROR", None)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # share the cores with the other workers
        env["OMP_NUM_THREADS"] = str(max(1, min(2, (os.cpu_count() or 1) // workers)))
    return env


def test_every_readme_command_is_run_or_skipped_for_a_reason():
    assert COMMANDS, "no ```bash block found in README.md"
    for command in COMMANDS:
        if skip_reason(command) is None:
            assert command.startswith("python -m vzexp"), f"neither run nor skipped: {command}"
    for key, _ in SKIPS:  # a skip that matches nothing is stale
        assert any(key in c for c in COMMANDS), f"SKIPS entry {key!r} matches no README command"


@pytest.mark.xdist_group("readme")
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, workdir, readme_env):
    if reason := skip_reason(command):
        pytest.skip(reason)
    if command.startswith("python -m vzexp.report"):
        assert any(c.startswith(TRACKED) for c in COMMANDS), "report reads the README's sweep"
    proc = subprocess.run(
        small(command), cwd=workdir, env=readme_env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"


def test_experiments_named_in_readme_and_docs_exist():
    pages = [README, *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        for name in re.findall(r"\+experiment=([a-z0-9_]+)", page.read_text()):
            path = REPO / "conf/experiment" / f"{name}.yaml"
            assert path.is_file(), f"{page.name} names +experiment={name}, which does not exist"


def test_readme_stays_a_short_guide():
    assert len(README.read_text().splitlines()) <= 150, "README.md: details go to docs/"
