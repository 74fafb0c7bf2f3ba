"""The strategy registry is the `compressor` config group: one YAML per strategy with `_target_`,
found through Hydra's search path (`vzexp.list`). There is no Python-side list of strategies; the
class a YAML names carries the properties other code filters on (`kind`, `needs_cls`,
`grid_based`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from vzexp.errors import ConfigError
from vzexp.list import options, source

if TYPE_CHECKING:  # the base class imports this registry for its error messages
    from vzexp.compress.base import Compressor


def available() -> list[str]:
    """Every registered strategy (the `compressor` group's options), sorted."""
    return options("compressor")


def strategy_config(name: str) -> dict:
    if name not in available():
        raise ConfigError("compressor", name, f"one of {', '.join(available())}")
    node = OmegaConf.create(source("compressor", name))
    node.pop("defaults", None)
    return OmegaConf.to_container(node, resolve=False)


def strategy_class(name: str) -> type[Compressor]:
    """The class the strategy's YAML names with `_target_`."""
    return get_class(strategy_config(name)["_target_"])


def strategies(where: Callable[[type[Compressor]], bool] | None = None) -> list[str]:
    """The registered strategies (sorted) whose class satisfies `where`, e.g.
    `strategies(lambda cls: cls.kind == "llm")`."""
    return [n for n in available() if where is None or where(strategy_class(n))]


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
