"""The registry is `conf/`: every option of every config group composes through Hydra and passes
the typed schema, names itself, and names an importable class in its own layer. The cases come
from `vzexp.list`, so a new YAML is tested with no edit here. Experiments: test_experiment_configs."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

import vzexp.compress
from vzexp.compress.base import Compressor
from vzexp.compress.registry import strategy_class, strategy_config
from vzexp.config import register_configs, validate
from vzexp.errors import ConfigError
from vzexp.list import groups, options, source
from vzexp.paths import config_dir

CHOICE_GROUPS = [g for g in groups() if g != "experiment"]  # experiments are diffs, not choices
CASES = [(group, option) for group in CHOICE_GROUPS for option in options(group)]

# Values that options leave null but validation requires (the user must give them), by option.
REQUIRED = {("task", "score"): "task.predictions"}

# The layer the classes a group's options name (`_target_`) must come from.
LAYERS = {
    "compressor": "vzexp.compress.",
    "data": "vzexp.data.",
    "train_data": "vzexp.data.",
    "encoder": "vzexp.encoders.",
    "llm": "vzexp.models.",
    "model": "vzexp.models.",
    "task": "vzexp.tasks.",
    "trainer": "vzexp.engine.",
    "logger": "vzexp.tracking.",
}


@pytest.fixture(scope="module")
def hydra_conf():
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield


def composed(group: str, option: str) -> tuple[DictConfig, list[str]]:
    """`config` with group=option, and the keys the user must set for it: its `???` values and
    its REQUIRED key."""
    cfg = compose("config", overrides=[f"{group}={option}"])
    needed = sorted(OmegaConf.missing_keys(cfg))
    if (group, option) in REQUIRED:
        needed.append(REQUIRED[group, option])
    return cfg, needed


def targets(node) -> list[str]:
    """Every `_target_` in a config node, at any depth."""
    found = []
    if isinstance(node, DictConfig):
        for key, value in node.items_ex(resolve=False):
            if key == "_target_":
                found.append(value)
            else:
                found += targets(value)
    elif isinstance(node, ListConfig):
        for value in node:
            found += targets(value)
    return found


def test_the_registry_is_the_shipped_config_tree():
    """Without user dirs, the options are exactly the shipped YAML files (the typed schemas that
    vzexp.config registers in each group are not options)."""
    register_configs()
    shipped = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name != "hydra")
    assert groups() == shipped
    for group in shipped:
        assert options(group) == sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
    assert set(LAYERS) == set(CHOICE_GROUPS)


@pytest.mark.parametrize("group, option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_validates(hydra_conf, group, option, tmp_path):
    cfg, needed = composed(group, option)
    if needed:  # left unset, one of them is what the one-line error names
        keys = "|".join(map(re.escape, needed))
        with pytest.raises(ConfigError, match=rf"^({keys})=None is not allowed"):
            validate(cfg)
        for key in needed:
            OmegaConf.update(cfg, key, str(tmp_path / key))
    settings = validate(cfg)
    node = getattr(settings, group)
    name = node["name"] if isinstance(node, dict) else getattr(node, "name", None)
    if group == "trainer":  # trainers carry no name: the option is Lightning's accelerator
        # (auto: resolved for this machine, a CPU without CUDA here)
        expected = ("gpu" if torch.cuda.is_available() else "cpu") if option == "auto" else option
        assert settings.trainer.accelerator == expected
    else:
        assert name == option
    found = targets(cfg[group])
    if group == "compressor":  # a strategy names its class at the top
        assert found == [cfg.compressor["_target_"]]
    if group == "data":  # a data option names its dataset class
        assert found == [cfg.data.dataset["_target_"]]
    for target in found:
        assert target.startswith(LAYERS[group]), (group, option, target)
        assert get_class(target).__module__.startswith(LAYERS[group])


@pytest.mark.parametrize("option", options("compressor"))
def test_every_strategy_builds_the_class_its_yaml_names(hydra_conf, option):
    cfg = compose("config", overrides=[f"compressor={option}", "tokens=16"])
    compressor = instantiate({k: v for k, v in cfg.compressor.items() if k != "name"})
    yaml_target = OmegaConf.load(config_dir() / "compressor" / f"{option}.yaml")["_target_"]
    assert type(compressor) is strategy_class(option) is get_class(yaml_target)
    assert isinstance(compressor, Compressor)
    assert strategy_config(option)["name"] == cfg.compressor.name == option
    assert compressor.kind in ("encoder", "llm")
    assert compressor.budget == 16  # the run's `tokens` is every strategy's budget


def test_every_strategy_class_has_a_yaml():
    """The compressor classes in vzexp.compress and the `compressor` group agree: each strategy
    class (one that declares its own `name`; shared bases such as LLMPruner do not) is what some
    option's `_target_` names, and every option names one of them."""
    for info in pkgutil.iter_modules(vzexp.compress.__path__, "vzexp.compress."):
        importlib.import_module(info.name)
    concrete = set()
    pending = [Compressor]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        in_package = cls.__module__.startswith("vzexp.compress.")  # not a test's own subclass
        if in_package and "name" in vars(cls) and not inspect.isabstract(cls):
            concrete.add(cls)
    named = {strategy_class(option) for option in options("compressor")}
    assert concrete == named


def test_model_families_and_model_configs_agree():
    """Every family vzexp.models supports has a model config, and every config's family is one."""
    from vzexp.models.registry import FAMILIES

    named = {OmegaConf.create(source("model", o)).get("family") for o in options("model")}
    assert named - {None} == set(FAMILIES)
    for family, path in FAMILIES.items():
        module, _, name = path.partition(":")
        assert getattr(importlib.import_module(module), name).name == family
