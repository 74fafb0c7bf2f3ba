"""`python -m vzexp`: the Hydra entry point, a thin shell over `vzexp.run.run`."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from vzexp.config import register_configs
from vzexp.errors import VzexpError
from vzexp.paths import config_dir

register_configs()


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().mode.name == "MULTIRUN"
    except ValueError:
        return False


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _entry(cfg: DictConfig) -> dict[str, float]:
    from vzexp.run import run

    verbose = bool(cfg.get("verbose")) or os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        metrics = run(cfg)
    except VzexpError as exc:
        if verbose or _multirun():
            # In a sweep, let Hydra record this job as failed and go on with the others.
            logging.getLogger("vzexp").error("vzexp: error: %s", exc)
            raise
        print(f"vzexp: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    return metrics  # a sweeper (hydra/sweeper=optuna) reads its objectives from these


def main() -> None:
    _entry()


if __name__ == "__main__":
    main()
