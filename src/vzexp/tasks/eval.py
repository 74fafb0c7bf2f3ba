"""task=eval (the default): load the model, install the compressor, evaluate the benchmark,
log metrics, predictions and overlays.

    python -m vzexp                                   # VisionZip on the tiny default
    python -m vzexp compressor=none data.limit=8
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vzexp.engine.trainer import seed_everything
from vzexp.errors import ConfigError
from vzexp.models.install import install
from vzexp.models.load import build_compressor, load_model, tower_shape
from vzexp.models.registry import FAMILIES
from vzexp.tasks.base import Context, Task, varying_overrides
from vzexp.tasks.common import (
    evaluate_and_log,
    load_dataset,
    log_job_log,
    predictions_path,
    projector_download,
)

log = logging.getLogger("vzexp")


@dataclass
class EvalTask(Task):
    """Prefill + greedy generation, scored and timed."""

    name: str = "eval"
    max_new_tokens: int = 4
    predictions_file: str = "predictions.jsonl"  # the merged copy in the run's output dir
    # Predictions are written per batch under predictions_dir, in a file named after the config
    # (model, compressor, data, tokens, seed): a killed run restarted with the same config
    # resumes there. resume=false starts that file again.
    predictions_dir: str = "predictions"
    resume: bool = True
    overlays: int = 4  # kept-token overlays of the first samples, logged under overlays/
    # dialogues (data=shapes_dialogue): also ask every turn by re-sending the image and the
    # whole conversation, timed beside the cached turns (dialogue_time_saved)
    dialogue_baseline: bool = False

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ConfigError("task.max_new_tokens", self.max_new_tokens, "an integer >= 1")
        if self.overlays < 0:
            raise ConfigError("task.overlays", self.overlays, "an integer >= 0 (0: none)")

    def prepare(self, settings) -> None:
        family = settings.model.family
        if family is not None and family not in FAMILIES:
            raise ConfigError("model.family", family, f"null or one of {', '.join(FAMILIES)}")
        self.compressor = build_compressor(settings)  # an impossible budget fails here
        self.dataset = load_dataset(settings)  # a wrong split or size, or bad files, fail here

    def logged_params(self, settings, params: dict) -> dict:
        """The strategy's split of the budget as it resolves for this tower (VisionZip's
        dominant/contextual, null in the config when `tokens` decides them), and no
        `model.tokens` beside a `tokens` that overrides it (it would read as the budget)."""
        split = getattr(self.compressor, "split", None)
        shape = tower_shape(settings) if split is not None else None
        if shape is not None and shape.num_patches is not None:
            dominant, contextual = split(shape.num_patches, shape.has_cls)
            params.get("compressor", {}).update(dominant=dominant, contextual=contextual)
        model = params.get("model", {})
        if "tokens" in model and model["tokens"] != params.get("tokens"):
            del model["tokens"]
        return params

    def run_name(self, settings) -> str:
        """`<strategy>-t<tokens>`, then in a sweep the job's values of the other keys it varies
        (`visionzip-t24-merge_space=hidden-target_pick=similarity`): unique within the sweep."""
        base = f"{settings.compressor.get('name')}-t{settings.tokens}"
        return "-".join([base, *varying_overrides(skip=("tokens", "compressor"))])

    def run(self, settings, context: Context) -> dict[str, float]:
        seed_everything(settings.seed)
        dataset = self.dataset
        words = dataset.vocabulary() if hasattr(dataset, "vocabulary") else []
        model, processor = load_model(settings, words, projector_download(settings))
        installed = install(model, self.compressor, layout=settings.model.layout)
        if installed.tokens_per_image is not None:  # fixed by the tower (not Qwen2-VL's)
            log.info("visual tokens per image: %d", installed.tokens_per_image)
        metrics = evaluate_and_log(
            settings,
            installed,
            processor,
            dataset,
            predictions_path(settings, dataset=dataset),
            context.tracker,
            context.out / self.predictions_file,
        )
        context.tracker.log_metrics(metrics)
        log_job_log(context.tracker, context.out)
        return metrics
