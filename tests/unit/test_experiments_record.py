"""experiments/ is a record: its index lists every experiment config, and it holds no logs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"


def test_index_lists_every_experiment_config():
    index = (EXPERIMENTS / "README.md").read_text()
    for path in sorted((ROOT / "conf/experiment").glob("*.yaml")):
        assert f"`+experiment={path.stem}`" in index, f"experiments/README.md misses {path.stem}"


def test_every_indexed_folder_exists_and_has_a_readme():
    index = (EXPERIMENTS / "README.md").read_text()
    for folder in sorted(p for p in EXPERIMENTS.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "__")):
            continue
        assert (folder / "README.md").is_file(), f"{folder.name}/ has no README"
        assert f"`{folder.name}/" in index, f"experiments/README.md does not list {folder.name}/"


def test_no_log_files():
    logs = sorted(str(p.relative_to(ROOT)) for p in EXPERIMENTS.rglob("*.log"))
    assert not logs, f"experiments/ keeps results, not logs: {logs}"


def test_every_folder_is_one_experiment_config_or_the_benchmarks():
    configs = {p.stem for p in (ROOT / "conf/experiment").glob("*.yaml")}
    for folder in sorted(p for p in EXPERIMENTS.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "__")) or folder.name == "perf":
            continue
        assert folder.name in configs, f"experiments/{folder.name}/ maps to no experiment config"


def test_every_script_is_indexed():
    """A script here measures something its folder's README reports; one the index does not name
    is a probe, which git history keeps instead."""
    index = (EXPERIMENTS / "README.md").read_text()
    for script in sorted(EXPERIMENTS.rglob("*.py")):
        name = str(script.relative_to(EXPERIMENTS))
        if script.parent.name == "perf" and script.name == "probe.py":
            continue  # the benchmarks' shared timing helpers
        assert f"`{name}`" in index, f"experiments/README.md does not name {name}"
