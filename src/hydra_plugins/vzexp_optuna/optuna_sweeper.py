"""`hydra/sweeper=optuna`: an Optuna search over overrides, each trial a job of the configured
Hydra launcher (basic, parallel, local, slurm) and of the sweep's MLflow parent run.

    python -m vzexp -m hydra/sweeper=optuna hydra.sweeper.n_trials=12 \\
        'tokens=int(interval(8,96))' 'compressor.merge=choice(add,mean)'

The search space uses Hydra's sweep syntax: choice(...)/a,b and range(...) are categorical,
interval(lo,hi) is a float range (int(interval(...)) an integer one, tag(log, interval(...))
log-scaled); plain key=value overrides apply to every trial. Each job returns vzexp's metrics and
`objectives` names the ones to optimise, with one `directions` entry each (several objectives give
a Pareto front, e.g. accuracy up and visual_tokens_llm down). The study's trials and its best
trials are written to <sweep dir>/optuna_results.yaml.

Hydra's own optuna sweeper pins Optuna<3, which conflicts with the SQLAlchemy 2 that MLflow needs;
this one is written against Optuna's ask/tell interface (Optuna>=3)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid", "nsga2")


def distribution(override: Override):
    """Hydra's sweep value -> an Optuna distribution."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise SystemExit(  # one line, no traceback: the sweep has not started
        f"hydra/sweeper=optuna: error: {override.input_line!r} is not a search space; "
        "use choice(...), a,b,..., range(...) or interval(lo,hi)"
    )


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        objectives: list[str],
        directions: list[str],
        n_trials: int,
        n_jobs: int,
        sampler: str,
        seed: int,
        study_name: str | None = None,
        storage: str | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        if len(objectives) != len(directions):
            raise ValueError(
                f"hydra.sweeper.directions: {list(directions)} must give one direction "
                f"(maximize/minimize) per objective {list(objectives)}"
            )
        if sampler not in SAMPLERS:
            raise ValueError(f"hydra.sweeper.sampler: {sampler!r} is not one of {SAMPLERS}")
        self.objectives, self.directions = list(objectives), list(directions)
        self.n_trials, self.n_jobs, self.sampler_name, self.seed = n_trials, n_jobs, sampler, seed
        self.study_name, self.storage = study_name, storage
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _sampler(self, space: dict):
        import optuna

        if self.sampler_name == "grid":
            return optuna.samplers.GridSampler(
                {k: d.choices for k, d in space.items()}, seed=self.seed
            )
        return {
            "tpe": optuna.samplers.TPESampler,
            "random": optuna.samplers.RandomSampler,
            "nsga2": optuna.samplers.NSGAIISampler,
        }[self.sampler_name](seed=self.seed)

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        overrides = parser.parse_overrides(lines)
        fixed = [o.input_line for o in overrides if not o.is_sweep_override()]
        space = {o.get_key_element(): distribution(o) for o in overrides if o.is_sweep_override()}
        if not space:
            raise SystemExit(
                "hydra/sweeper=optuna: error: no search space among the overrides; "
                "give one, e.g. 'tokens=int(interval(8,96))' or 'compressor=choice(visionzip,pool)'"
            )
        if self.sampler_name == "grid" and not all(hasattr(d, "choices") for d in space.values()):
            raise SystemExit(
                "hydra.sweeper.sampler=grid: error: needs categorical (choice/range) spaces only"
            )
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self._sampler(space),
            directions=self.directions,
            load_if_exists=bool(self.study_name and self.storage),
        )
        done = 0
        while done < self.n_trials:
            batch = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            jobs = [
                [*fixed, *(f"{key}={value}" for key, value in trial.params.items())]
                for trial in batch
            ]
            returns = self.launcher.launch(jobs, initial_job_idx=done)
            for trial, ret in zip(batch, returns):
                self._tell(study, trial, ret)
            done += len(batch)
        self._write(study)
        return study

    def _tell(self, study, trial, ret) -> None:
        from optuna.trial import TrialState

        try:
            metrics = ret.return_value  # re-raises the job's exception
            values = [float(metrics[name]) for name in self.objectives]
        except Exception as exc:  # a failed job is a failed trial; the search goes on
            log.error("optuna trial %d failed: %s", trial.number, exc)
            study.tell(trial, state=TrialState.FAIL)
            return
        study.tell(trial, values)

    def _write(self, study) -> None:
        from optuna.trial import TrialState

        finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
        best = study.best_trials if finished else []
        results = {
            "objectives": dict(zip(self.objectives, self.directions)),
            "best": [{"number": t.number, "params": t.params, "values": t.values} for t in best],
            "trials": [
                {"number": t.number, "state": t.state.name, "params": t.params, "values": t.values}
                for t in study.trials
            ],
        }
        path = Path(OmegaConf.select(self.config, "hydra.sweep.dir")) / "optuna_results.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(OmegaConf.to_yaml(OmegaConf.create(results)))
        for t in best:
            log.info("best trial %d: %s -> %s", t.number, t.params, t.values)
        log.info("optuna: %d trials, results in %s", len(study.trials), path)
