"""Projector tuning on the shipped tiny model: the tuner's loss is the model's own loss, only the
projector learns, cached tokens equal the ones computed in the loop, checkpoints hold the projector
only, and a saved projector loads back."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import lightning as L
import pytest
import torch
from vzexp_testing import loss_with_compressor

from vzexp.compress.divprune import DivPrune
from vzexp.compress.visionzip import VisionZip
from vzexp.data.instruct import InstructDataset, collate, read_instruct
from vzexp.data.shapes import INSTRUCT_FILE, export_instruct
from vzexp.engine.feature_cache import FeatureCache, check_cacheable
from vzexp.engine.tuning import ProjectorTuner, TuneDataModule
from vzexp.errors import ConfigError, MissingPathError
from vzexp.models.install import tokens_per_image
from vzexp.models.projector import load_projector, save_projector
from vzexp.paths import resource_dir

TOKENS = 12


@pytest.fixture(scope="module")
def shipped():
    from vzexp.models.build import load_checkpoint

    return load_checkpoint(str(resource_dir() / "tiny_shapes"))


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes-instruct")
    export_instruct(out, scenes=12, seed=0, image_size=112)
    return out


def dataset_for(model, processor, train_dir, compressor, with_pixels=True):
    records = read_instruct(train_dir / INSTRUCT_FILE)
    tokens = tokens_per_image(model, compressor)
    return InstructDataset(records, train_dir / "images", processor, tokens, with_pixels)


def fit_briefly(tuner, data, steps, root, precision="32-true"):
    """Train `steps` batches of 3 with a bare Lightning Trainer; returns it (for checkpoints)."""
    trainer = L.Trainer(
        max_steps=steps,
        precision=precision,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=root,
    )
    trainer.fit(tuner, datamodule=TuneDataModule(data, 3, 0, seed=0))
    return trainer


def schedule():
    return dict(lr=1e-3, weight_decay=0.0, warmup_steps=1, total_steps=4)


def test_the_tuner_loss_is_the_models_own_loss_with_the_compressor(shipped, train_dir):
    model, processor = shipped
    compressor = VisionZip(budget=TOKENS)
    data = dataset_for(model, processor, train_dir, compressor)
    batch = collate([data[i] for i in range(4)], pad_id=processor.tokenizer.pad_token_id)
    tuner = ProjectorTuner(model, compressor, **schedule())
    with torch.no_grad():
        loss_sum, count = tuner.token_losses(batch)
    reference = loss_with_compressor(model, compressor, batch)
    assert count == (batch["labels"][:, 1:] != -100).sum()
    torch.testing.assert_close(loss_sum / count, reference, rtol=1e-5, atol=1e-5)


def test_isolated_turns_lose_exactly_what_each_turn_loses_when_asked_alone(shipped, train_dir):
    model, processor = shipped
    compressor = VisionZip(budget=TOKENS)
    records = read_instruct(train_dir / INSTRUCT_FILE)[:2]
    assert all(len(r.turns) >= 3 for r in records)
    tokens = tokens_per_image(model, compressor)
    isolated = InstructDataset(records, train_dir / "images", processor, tokens, isolate_turns=True)
    pad = processor.tokenizer.pad_token_id
    tuner = ProjectorTuner(model, compressor, **schedule())
    with torch.no_grad():
        loss_sum, count = tuner.token_losses(collate([isolated[0], isolated[1]], pad))
        alone_sum, alone_count, alone_lengths = 0.0, 0, []
        for record in records:
            for turn in record.turns:
                single = replace(record, turns=(turn,))
                item = InstructDataset([single], train_dir / "images", processor, tokens)[0]
                s, c = tuner.token_losses(collate([item], pad))
                alone_sum, alone_count = alone_sum + s, alone_count + c
                alone_lengths.append(len(item["input_ids"]))
    assert count == alone_count
    torch.testing.assert_close(loss_sum, alone_sum, rtol=1e-5, atol=1e-4)
    # the image prefix comes once; every turn starts where it starts when asked alone
    first = isolated[0]
    prefix = int((first["segments"] == 0).sum())
    turns = len(records[0].turns)
    assert len(first["input_ids"]) == prefix + sum(n - prefix for n in alone_lengths[:turns])
    starts = [int((first["segments"] == k).nonzero()[0]) for k in range(1, turns + 1)]
    assert [int(first["position_ids"][at]) for at in starts] == [prefix] * turns


def test_only_the_projector_trains_and_checkpoints_hold_only_it(shipped, train_dir, tmp_path):
    model, processor = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compressor = VisionZip(budget=TOKENS)
    data = dataset_for(model, processor, train_dir, compressor)
    tuner = ProjectorTuner(model, compressor, **schedule())
    trainer = fit_briefly(tuner, data, 4, tmp_path)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("model.multi_modal_projector.") for k in changed)
    path = tmp_path / "t.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert state and all(k.startswith("projector.") for k in state)
    # the tuned projector saved alone loads back into a fresh copy of the model
    saved = save_projector(model, tmp_path / "projector", {"tokens": TOKENS})
    model.load_state_dict(before)
    load_projector(model, str(saved))
    after = model.model.multi_modal_projector.state_dict()
    assert all(torch.equal(after[k], state[f"projector.{k}"]) for k in after)
    model.load_state_dict(before)


def test_llm_layers_train_the_last_layers_too_and_load_back_with_the_projector(
    shipped, train_dir, tmp_path
):
    model, processor = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compressor = VisionZip(budget=TOKENS)
    data = dataset_for(model, processor, train_dir, compressor)
    last = len(model.model.language_model.layers) - 1
    tuner = ProjectorTuner(model, compressor, llm_layers=1, **schedule())
    fit_briefly(tuner, data, 3, tmp_path)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    tail = f"model.language_model.layers.{last}."
    assert any(k.startswith(tail) for k in changed)
    assert all(k.startswith(("model.multi_modal_projector.", tail)) for k in changed)
    tuned = {k: v.clone() for k, v in model.state_dict().items()}
    saved = save_projector(model, tmp_path / "projector", {"tokens": TOKENS}, llm_layers=1)
    assert (saved / "llm_layers.safetensors").is_file()
    model.load_state_dict(before)
    load_projector(model, str(saved))  # the directory: projector and the tuned layer
    assert all(torch.equal(model.state_dict()[k], tuned[k]) for k in changed)
    model.load_state_dict(before)
    with pytest.raises(ConfigError, match="task.llm_layers"):
        ProjectorTuner(model, compressor, llm_layers=99, **schedule())


def test_a_frozen_projector_trains_the_llm_layers_alone_without_gradients_below_them(
    shipped, train_dir, tmp_path
):
    model, processor = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compressor = VisionZip(budget=TOKENS)
    data = dataset_for(model, processor, train_dir, compressor)
    last = len(model.model.language_model.layers) - 1
    tuner = ProjectorTuner(model, compressor, llm_layers=1, tune_projector=False, **schedule())
    assert [len(g["params"]) for g in tuner.param_groups()] == [
        len(list(tuner.llm_tail.parameters()))
    ]
    # the loss's graph reaches the tuned layer, not the projected tokens below it (grads left by
    # earlier tests on this module-scoped model cleared first)
    model.zero_grad(set_to_none=True)
    batch = collate([data[i] for i in range(2)], pad_id=processor.tokenizer.pad_token_id)
    loss_sum, _ = tuner.token_losses(batch)
    loss_sum.backward()
    assert all(p.grad is None for p in tuner.projector.parameters())
    assert all(p.grad is not None for p in tuner.llm_tail.parameters())
    tuner.zero_grad(set_to_none=True)
    fit_briefly(tuner, data, 3, tmp_path)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(f"model.language_model.layers.{last}.") for k in changed)
    model.load_state_dict(before)


def test_a_bfloat16_model_trains_its_tuned_parts_in_float32_under_autocast(
    shipped, train_dir, tmp_path
):
    from vzexp.models.build import load_checkpoint

    model, processor = load_checkpoint(str(resource_dir() / "tiny_shapes"), dtype="bfloat16")
    compressor = VisionZip(budget=TOKENS)
    data = dataset_for(model, processor, train_dir, compressor)
    batch = collate([data[i] for i in range(4)], pad_id=processor.tokenizer.pad_token_id)
    tuner = ProjectorTuner(model, compressor, llm_layers=1, **schedule())
    trained = {id(p) for p in tuner.parameters()}
    assert {p.dtype for p in tuner.parameters()} == {torch.float32}
    frozen = {n: p.clone() for n, p in model.named_parameters() if id(p) not in trained}
    assert {p.dtype for p in frozen.values()} == {torch.bfloat16}
    # the same loss as the float32 model's, to bfloat16's precision
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss_sum, count = tuner.token_losses(batch)
    reference = ProjectorTuner(shipped[0], compressor, **schedule())
    with torch.no_grad():
        reference_sum, _ = reference.token_losses(batch)
    torch.testing.assert_close(loss_sum / count, reference_sum / count, rtol=2e-2, atol=1e-2)
    # a mixed-precision fit moves the float32 weights only
    before = [p.detach().clone() for p in tuner.parameters()]
    fit_briefly(tuner, data, 3, tmp_path, precision="bf16-mixed")
    assert {p.dtype for p in tuner.parameters()} == {torch.float32}
    assert not all(torch.equal(a, b) for a, b in zip(before, tuner.parameters()))
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    # back in bfloat16 (as task=tune casts it after saving), it runs without autocast
    model.to(torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert torch.isfinite(tuner.token_losses(batch)[0])


def test_cached_tokens_equal_the_tokens_computed_in_the_loop(shipped, train_dir, tmp_path):
    model, processor = shipped
    compressor = VisionZip(budget=TOKENS)
    data = dataset_for(model, processor, train_dir, compressor)
    params = {"_target_": "vzexp.compress.visionzip.VisionZip", "budget": TOKENS}
    cache = FeatureCache(tmp_path, model, params, data)
    features = cache.load_or_build(model, compressor, data, batch_size=5)
    assert features.shape == (12, TOKENS, model.config.vision_config.hidden_size)
    tuner = ProjectorTuner(model, compressor, **schedule())
    batch = collate([data[i] for i in (3, 7)], pad_id=0)
    torch.testing.assert_close(features[[3, 7]], tuner.visual_tokens(batch))
    assert cache.path.is_file() and not list(tmp_path.glob("*.tmp*"))
    # a second cache with the same key reads the file; another budget is another file
    again = FeatureCache(tmp_path, model, params, data)
    assert again.path == cache.path
    assert torch.equal(again.load_or_build(model, None, data, 5), features)
    other = FeatureCache(tmp_path, model, {**params, "budget": 24}, data)
    assert other.path != cache.path


def test_strategies_whose_tokens_depend_on_the_projector_refuse_the_cache():
    with pytest.raises(ConfigError, match=r"task.cache.*divprune.*task.cache=false"):
        check_cacheable(DivPrune(budget=TOKENS))
    check_cacheable(DivPrune(budget=TOKENS, space="vision"))
    check_cacheable(VisionZip(budget=TOKENS))


def test_a_projector_of_another_shape_or_a_missing_one_is_one_clear_error(shipped, tmp_path):
    model, _ = shipped
    with pytest.raises(MissingPathError, match="model.projector=.*not an MLflow run id"):
        load_projector(model, str(tmp_path / "nowhere"))
    from safetensors.torch import save_file

    save_file({"linear_1.weight": torch.zeros(2, 2)}, tmp_path / "projector.safetensors")
    with pytest.raises(ConfigError, match=r"model.projector.*a projector of this model's shape"):
        load_projector(model, str(tmp_path))


def test_a_projector_by_run_id_is_read_from_the_directory_the_download_gives(shipped, tmp_path):
    model, _ = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    saved = save_projector(model, tmp_path / "run" / "projector", {"tokens": TOKENS}, llm_layers=1)
    asked = []

    def download(run_id, artifact_path):
        asked.append((run_id, artifact_path))
        return saved

    run_id = "0123456789abcdef" * 2
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    try:
        assert load_projector(model, run_id, download) == saved / "projector.safetensors"
        assert asked == [(run_id, "projector")]
        last = len(model.model.language_model.layers) - 1
        restored = ("model.multi_modal_projector.", f"model.language_model.layers.{last}.")
        state = model.state_dict()
        for key, value in before.items():
            assert torch.equal(state[key], value) == key.startswith(restored) or not value.any()

        def unknown_run(run_id, artifact_path):
            raise KeyError(run_id)

        with pytest.raises(MissingPathError, match="no projector/projector.safetensors artifact"):
            load_projector(model, run_id, unknown_run)
        with pytest.raises(MissingPathError, match="an MLflow run id, and no tracking store"):
            load_projector(model, run_id)
    finally:
        model.load_state_dict(before)


def loss_and_grads(tuner, batch):
    """(token-loss sum, the trained layers' gradients) of one batch."""
    tuner.zero_grad(set_to_none=True)
    loss_sum, _ = tuner.token_losses(batch)
    loss_sum.backward()
    grads = [p.grad.clone() for p in tuner.llm_tail.parameters()]
    tuner.zero_grad(set_to_none=True)
    return loss_sum.detach(), grads


@contextmanager
def counted_calls(module):
    """A list that gets one entry per forward call of `module` inside the block."""
    calls = []
    hook = module.register_forward_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        hook.remove()


def trunk_tuner(model, compressor, cache_trunk=True):
    return ProjectorTuner(
        model,
        compressor,
        llm_layers=1,
        tune_projector=False,
        cache_trunk=cache_trunk,
        **schedule(),
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("isolate", [False, True], ids=["one-conversation", "isolated-turns"])
def test_the_trunk_cache_replays_the_frozen_layers_output_so_loss_and_gradients_are_unchanged(
    shipped, train_dir, isolate, dtype
):
    """bfloat16: the half-precision path (model.dtype=bfloat16, autocast), whose frozen layers'
    bfloat16 output is what later epochs replay."""
    if dtype == "float32":
        model, processor = shipped
    else:
        from vzexp.models.build import load_checkpoint

        model, processor = load_checkpoint(str(resource_dir() / "tiny_shapes"), dtype=dtype)
    compressor = VisionZip(budget=TOKENS)
    records = read_instruct(train_dir / INSTRUCT_FILE)[:3]
    tokens = tokens_per_image(model, compressor)
    data = InstructDataset(records, train_dir / "images", processor, tokens, isolate_turns=isolate)
    pad = processor.tokenizer.pad_token_id
    tuner = trunk_tuner(model, compressor)
    half = dtype == "bfloat16"
    recorded = collate([data[0], data[1], data[2]], pad)
    assert not tuner.trunk.covers(recorded)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
        full_loss, full_grads = loss_and_grads(tuner, recorded)
        assert tuner.trunk.covers(recorded)
        assert {s.dtype for s in tuner.trunk.states.values()} == {getattr(torch, dtype)}
        # replayed in another grouping and order (so other padding): the same sum and gradients,
        # without running the frozen layers
        with counted_calls(model.model.language_model.layers[0]) as frozen_calls:
            replays = [
                loss_and_grads(tuner, collate([data[2], data[0]], pad)),
                loss_and_grads(tuner, collate([data[1]], pad)),
            ]
    assert not frozen_calls
    tolerance = dict(rtol=1e-2, atol=1e-3) if half else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(replays[0][0] + replays[1][0], full_loss, **tolerance)
    for k, grad in enumerate(full_grads):
        assert grad.dtype == torch.float32  # the trained layer's own float32 weights
        # bfloat16: other padding rounds a few products differently; within 1% of the largest
        scale = float(grad.abs().max())
        tolerance = dict(rtol=1e-2, atol=1e-2 * scale) if half else dict(rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(replays[0][1][k] + replays[1][1][k], grad, **tolerance)


def test_a_sample_whose_tokens_changed_is_recomputed_not_replayed(shipped, train_dir):
    model, processor = shipped
    compressor = VisionZip(budget=TOKENS)
    data = dataset_for(model, processor, train_dir, compressor)
    pad = processor.tokenizer.pad_token_id
    tuner = trunk_tuner(model, compressor)
    with torch.no_grad():
        tuner.token_losses(collate([data[0]], pad))
    other = collate([data[1]], pad)
    other["index"] = torch.tensor([0])  # another sample's tokens under index 0
    assert not tuner.trunk.covers(other)


def test_epochs_with_the_trunk_cache_train_the_same_weights_running_the_frozen_layers_once(
    shipped, train_dir, tmp_path
):
    model, processor = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compressor = VisionZip(budget=TOKENS)
    data = dataset_for(model, processor, train_dir, compressor)
    initial = [p.detach().clone() for p in model.model.language_model.layers[-1].parameters()]
    trained, frozen_calls = {}, {}
    for cached in (False, True):
        model.load_state_dict(before)
        tuner = trunk_tuner(model, compressor, cache_trunk=cached)
        with counted_calls(model.model.language_model.layers[0]) as calls:
            fit_briefly(tuner, data, 8, tmp_path / str(cached))  # 12 samples x 3: 2 epochs
        trained[cached] = [p.detach().clone() for p in tuner.llm_tail.parameters()]
        frozen_calls[cached] = len(calls)
    model.load_state_dict(before)
    assert frozen_calls == {False: 8, True: 4}
    assert not all(torch.equal(a, b) for a, b in zip(trained[True], initial))
    for plain, cached in zip(trained[False], trained[True]):
        torch.testing.assert_close(cached, plain, rtol=1e-4, atol=1e-5)
