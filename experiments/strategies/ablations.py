"""VisionZip's ablations on the default model (tiny_shapes, 800 test questions, tokens=24): the three
`+experiment=ablation_*` sweeps into one MLflow store, read back into ablations.md/.json.

    python experiments/strategies/ablations.py [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPERIMENTS = {
    "ablation_merge": ("merge_space", "target_pick", "merge"),
    "ablation_dominant": ("name", "layer", "keep_cls"),
    "ablation_split": ("dominant",),
}


def run(experiment: str, uri: str, cwd: Path) -> float:
    command = [sys.executable, "-m", "vzexp", f"+experiment={experiment}"]
    command += [f"logger.tracking_uri={uri}"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.time()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def rows(uri: str, experiment: str, keys: tuple[str, ...]) -> list[dict]:
    from mlflow.tracking import MlflowClient

    from vzexp.tracking import is_sweep_parent

    client = MlflowClient(uri)
    found = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], max_results=1000
    )
    out = []
    for r in found:
        if is_sweep_parent(r):
            continue
        p, m = r.data.params, r.data.metrics
        row = {k: p[f"compressor.{k}"] for k in keys}
        row["contextual"] = p.get("compressor.contextual")
        row.update(
            accuracy=m["accuracy"],
            count=m["accuracy/count"],
            status=r.info.status,
        )
        out.append(row)
    return sorted(out, key=lambda r: -r["accuracy"])


def markdown(experiment: str, table: list[dict], keys: tuple[str, ...], seconds: float) -> str:
    lines = [
        f"### `+experiment={experiment}` ({len(table)} runs, {seconds:.0f} s)",
        "",
        "| " + " | ".join(keys) + " | accuracy | count |",
        "|" + "---|" * (len(keys) + 2),
    ]
    for r in table:
        lines.append(
            "| "
            + " | ".join(str(r[k]) for k in keys)
            + f" | {r['accuracy']:.3f} | {r['count']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/tmp/vzexp-ablations")
    args = parser.parse_args()
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    sections, result = [], {"command": "python experiments/strategies/ablations.py"}
    for experiment, keys in EXPERIMENTS.items():
        seconds = run(experiment, uri, store)
        table = rows(uri, experiment, keys)
        result[experiment] = table
        sections.append(markdown(experiment, table, keys, seconds))
    (HERE / "ablations.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "ablations.md").write_text(
        f"Command: `{result['command']}` (tiny_shapes, shapes test split, tokens=24; the "
        "all-token reference is in experiments/tiny_default/results.md)\n\n"
        + "\n\n".join(sections)
        + "\n"
    )
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
