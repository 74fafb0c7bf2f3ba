"""Every shipped experiment composes through Hydra and passes the typed schema, so a typo in one of
conf/experiment/*.yaml fails here, not an hour into a user's sweep."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from vzexp.config import register_configs, validate
from vzexp.paths import config_dir
from vzexp.tasks.stages import compose_stages

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
# the paths an experiment leaves to the user (`???`)
REQUIRED = {
    name: ["data.root=/tmp/eval", "model.path=/tmp/model"]
    for name in ("paper_llava15", "paper_llava_next")
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        overrides = [f"+experiment={name}", *REQUIRED.get(name, [])]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # ${hydra:...} interpolations resolve as in a run
        with open_dict(cfg):
            del cfg["hydra"]
        settings = validate(cfg)
        assert settings.task.name
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
