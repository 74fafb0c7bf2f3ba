"""Every shipped experiment composes through Hydra and passes the typed schema, so a typo in one of
conf/experiment/*.yaml fails here, not an hour into a user's sweep: the composed config holds
every choice and value the experiment file sets, and every sweep names options and keys that exist."""

from __future__ import annotations

import copy

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from omegaconf import OmegaConf, open_dict

from vzexp.config import register_configs, validate
from vzexp.list import groups, options
from vzexp.paths import config_dir
from vzexp.tasks.stages import compose_stages

EXPERIMENTS = options("experiment")
MISSING = object()


def leaves(node: dict, prefix: str = "") -> dict[str, object]:
    """{dotted key: value} of a YAML body; a list is one value, and so are a sweep's params
    (their keys are dotted config keys themselves)."""
    found = {}
    for key, value in node.items():
        if isinstance(value, dict) and f"{prefix}{key}" != "hydra.sweeper.params":
            found.update(leaves(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def swept_values(key: str, value: str) -> list[str] | None:
    """The values a sweep gives `key` (Hydra's sweep syntax: a,b, choice(a,b) or, for a config
    group, glob(*) over its options); None for a range (interval)."""
    override = OverridesParser.create().parse_override(f"{key}={value}")
    if isinstance(override.value(), Glob):
        return override.value().filter(options(key))
    if override.is_choice_sweep():
        return list(override.sweep_string_iterator())
    return None


# the paths an experiment leaves to the user (`???`)
REQUIRED = {
    name: ["paths.eval_root=/tmp/eval", "model.path=/tmp/model"]
    for name in ("paper_llava15", "paper_llava_next")
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name):
    register_configs()
    raw = OmegaConf.to_container(
        OmegaConf.load(config_dir() / "experiment" / f"{name}.yaml"), resolve=False
    )
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        overrides = [f"+experiment={name}", *REQUIRED.get(name, [])]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # ${hydra:...} interpolations resolve as in a run
        choices = dict(cfg.hydra.runtime.choices)
        # every `override /group: option` of its defaults list is the run's choice
        for entry in raw.get("defaults", []):
            if isinstance(entry, dict):
                [(key, option)] = entry.items()
                if key.startswith("override /"):
                    assert choices[key.removeprefix("override /")] == option, key
        # every value it sets is the composed config's: setting them again changes nothing
        body = {k: v for k, v in raw.items() if k != "defaults"}
        again = copy.deepcopy(cfg)
        for node in (again, again.hydra):  # Hydra marks its node read-only
            OmegaConf.set_readonly(node, False)
        again.merge_with(body)
        for override in REQUIRED.get(name, []):  # the command line wins over the file
            OmegaConf.update(again, *override.split("=", 1))
        for key in leaves(body):
            found = OmegaConf.select(cfg, key, default=MISSING)
            assert found is not MISSING, key
            assert found == OmegaConf.select(again, key), key
        # a sweep names options of the group it sweeps, or keys the config has
        for key, value in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items():
            values = swept_values(key, str(value))
            if key in groups():
                assert values and set(values) <= set(options(key)), (key, values)
            else:
                assert OmegaConf.select(cfg, key, default=MISSING) is not MISSING, key
        with open_dict(cfg):
            del cfg["hydra"]
        settings = validate(cfg)
        assert settings.task.name == choices["task"]
        assert settings.compressor["name"] == choices["compressor"]
        assert settings.model.name == choices["model"]
        if settings.task.name == "tune":  # a staged recipe: every stage composes and validates
            stages = compose_stages(settings)
            assert len(stages) == max(1, len(settings.task.stages))


def test_predictions_resume_only_under_the_same_precision():
    """A file written under bf16-mixed autocast is not resumed by a float32 run (or back); the
    default precision keeps the keys that files written before had."""
    from vzexp.tasks.common import predictions_path

    register_configs()
    paths = {}
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for precision in ["32-true", "bf16-mixed"]:
            cfg = compose("config", overrides=[f"trainer.precision={precision}"])
            paths[precision] = predictions_path(validate(cfg))
        default = predictions_path(validate(compose("config")))
        devices = predictions_path(validate(compose("config", overrides=["trainer.devices=2"])))
    assert paths["32-true"] != paths["bf16-mixed"]
    assert paths["32-true"] == default == devices  # the device count does not change answers
