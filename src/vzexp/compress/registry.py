"""The strategy registry is the `compressor` config group: one YAML per strategy with `_target_`."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from vzexp.compress.base import Compressor
from vzexp.errors import ConfigError
from vzexp.paths import config_dir


def available() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "compressor").glob("*.yaml"))


def strategy_config(name: str) -> dict:
    path: Path = config_dir() / "compressor" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError("compressor", name, f"one of {', '.join(available())}")
    node = OmegaConf.load(path)
    node.pop("defaults", None)
    return OmegaConf.to_container(node, resolve=False)


def build_compressor(name: str, **overrides) -> Compressor:
    """Instantiate a strategy by registry name, overriding its YAML parameters."""
    cfg = strategy_config(name)
    for key, value in overrides.items():
        if key not in cfg:
            raise ConfigError(
                f"compressor.{key}",
                value,
                f"a parameter of '{name}': {', '.join(k for k in cfg if not k.startswith('_'))}",
            )
        cfg[key] = value
    # Interpolations like ${tokens} only make sense under Hydra; here the caller gives values.
    cfg = {k: (None if isinstance(v, str) and v.startswith("${") else v) for k, v in cfg.items()}
    return instantiate({k: v for k, v in cfg.items() if k != "name"})
