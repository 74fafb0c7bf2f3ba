"""`python -m vzexp`: the Hydra entry point, a thin shell over `vzexp.run.run`."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from vzexp import interrupt
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
        try:
            metrics = run(cfg)
        except Exception as exc:  # e.g. Hydra's instantiate wraps a VzexpError of a dataset
            raise user_error(exc) or exc from None
    except VzexpError as exc:
        if verbose:
            raise
        if _multirun():
            # Let Hydra record this job as failed and go on with the others; it reports the
            # first failure at the end, as this one line (a CompactHydraException).
            from vzexp.sweep import SweepJobError

            logging.getLogger("vzexp").error("vzexp: error: %s", exc)
            raise SweepJobError(f"vzexp: error: {exc}") from exc
        print(f"vzexp: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    return metrics  # a sweeper (hydra/sweeper=optuna) reads its objectives from these


def user_error(exc: BaseException) -> VzexpError | None:
    """The VzexpError behind a wrapper exception (its cause chain), if there is one."""
    seen = exc
    while seen is not None:
        if isinstance(seen, VzexpError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def composition_error(argv: list[str]) -> str | None:
    """Hydra reports an unknown key or option in several lines; a single run's overrides are
    composed once here first so that such a mistake is one line naming the key and the fix.
    Sweeps and flags (-m, --help, --cfg...) keep Hydra's own handling."""
    if any(a.startswith("-") for a in argv):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    from vzexp.preflight import check_creatable

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            composed = compose("config", overrides=argv, return_hydra_config=True)
            if "MULTIRUN" not in str(OmegaConf.select(composed, "hydra.mode")):
                check_creatable(Path(str(composed.hydra.run.dir)))
    except VzexpError as exc:
        return str(exc)
    except OverrideParseException as exc:
        bad = next((a for a in argv if a in str(exc)), str(exc).strip().splitlines()[0])
        return (
            f"{bad!r} cannot be read as an override: quote a value that has spaces, symbols or "
            "non-ASCII characters (\"key='a value'\") and write numbers with ASCII digits"
        )
    except MissingConfigException as exc:
        group, _, value = str(exc.missing_cfg_file or "").rpartition("/")
        if group and exc.options:
            options = ", ".join(sorted(exc.options))
            return f"{group}={value!r} is not allowed: one of {options}"
        return str(exc).strip().splitlines()[0]
    except ConfigCompositionException as exc:
        message = str(exc).strip().splitlines()[0]
        match = re.match(r"Could not override '(.+?)'", message)
        if match:
            key = match.group(1)
            given = next((a for a in argv if a.split("=", 1)[0] == key), key)
            return (
                f"{given} is not allowed: no key {key!r} in the config (to add one use +{given}; "
                "python -m vzexp --cfg job shows every key)"
            )
        return message
    except Exception:  # anything else: Hydra reports it as usual
        return None
    return None


def main() -> None:
    interrupt.install()
    try:
        message = composition_error(sys.argv[1:])
        if message:
            print(f"vzexp: error: {message}", file=sys.stderr, flush=True)
            sys.exit(2)
        _entry()
    except (interrupt.Interrupted, KeyboardInterrupt) as exc:
        # a run or a whole sweep stopped by SIGTERM/SIGINT: the tracked run (and a sweep's parent)
        # ended KILLED on the way out; the predictions and checkpoints written so far stay for the
        # rerun
        interrupt.note(exc)
        signum = exc.signum if isinstance(exc, interrupt.Interrupted) else 2
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(
            f"vzexp: interrupted: stopped by {signal.Signals(signum).name}; the predictions and "
            "checkpoints written so far are kept: rerun the same command to resume",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(128 + signum)


if __name__ == "__main__":
    main()
