"""vzexp.engine's training adapter: the warm-up schedules, and StepModule fitted by a Trainer from
make_trainer trains exactly the trainable parameters of a plain torch module by its loss, with its
metrics logged into the tracker's run under the Trainer's prefix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vzexp.engine.schedule import warmup_constant, warmup_cosine
from vzexp.engine.trainer import make_trainer
from vzexp.engine.training import EpochSetter, StepModule


def test_warmup_then_cosine_to_zero():
    f = warmup_cosine(warmup_steps=4, total_steps=20)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(12) == pytest.approx(0.5)
    assert f(20) == pytest.approx(0.0)
    assert f(25) == pytest.approx(0.0)


def test_warmup_then_constant_keeps_the_full_lr_to_the_end():
    f = warmup_constant(warmup_steps=4, total_steps=20)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert [f(s) for s in (4, 12, 19, 25)] == [1.0] * 4
    assert warmup_constant(0, 20)(0) == 1.0


class _Regression(nn.Module):
    """y = w x + b with b frozen: the loss and one extra logged scalar."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.b = nn.Parameter(torch.ones(1), requires_grad=False)

    def forward(self, batch):
        loss = ((self.w * batch["x"] + self.b - batch["y"]) ** 2).mean()
        return loss, {"fit/loss": loss, "fit/w": self.w.detach()[0]}


class _Tracker:
    class info:  # noqa: N801  what make_trainer reads: a run to log into
        run_id = "run"

    def __init__(self):
        self.logged: list[tuple[dict, int | None]] = []

    def log_metrics(self, metrics, step=None):
        self.logged.append((metrics, step))


class _Epochs(torch.utils.data.Dataset):
    def __init__(self):
        self.epoch, self.seen = 0, []

    def __len__(self):
        return 2

    def __getitem__(self, i):
        self.seen.append(self.epoch)
        x = torch.tensor([float(i + 1)])
        return {"x": x, "y": 3 * x + 1}


def test_step_module_trains_the_trainable_parameters_and_logs_into_the_run():
    from omegaconf import OmegaConf

    trainer_cfg = OmegaConf.create(
        dict(accelerator="cpu", devices=1, num_nodes=1, strategy="auto", precision="32-true")
    )
    tracker, data, net = _Tracker(), _Epochs(), _Regression()
    trainer = make_trainer(
        trainer_cfg,
        tracker,
        metric_prefix="stage",
        max_steps=60,
        max_epochs=-1,
        log_every_n_steps=1,
        enable_progress_bar=False,
        callbacks=[EpochSetter(data)],
    )
    module = StepModule(
        net, lr=0.1, weight_decay=0.0, warmup_steps=1, total_steps=60, schedule="constant"
    )
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    trainer.fit(module, train_dataloaders=loader)
    assert net.w.item() == pytest.approx(3.0, abs=0.3)  # learned from 0 towards 3
    assert net.b.item() == 1.0  # frozen: not in the optimiser
    names = {name for metrics, _ in tracker.logged for name in metrics}
    assert {"stage-fit/loss", "stage-fit/w"} <= names
    assert sorted(set(data.seen)) == list(range(60))  # one batch per epoch, each told its epoch


def test_a_log_file_gets_progress_lines_instead_of_a_bar(caplog):
    """Output that is not a terminal (pytest's capture, a batch job's log file): no progress bar,
    a log line per interval and at the end with batches done of all, time per batch and the loss
    the bar would show."""
    import logging

    from omegaconf import OmegaConf

    from vzexp.engine.trainer import LogProgress

    trainer_cfg = OmegaConf.create(
        dict(accelerator="cpu", devices=1, num_nodes=1, strategy="auto", precision="32-true")
    )
    data, net = _Epochs(), _Regression()
    trainer = make_trainer(trainer_cfg, max_steps=6, max_epochs=-1, callbacks=[EpochSetter(data)])
    [progress] = [c for c in trainer.callbacks if isinstance(c, LogProgress)]
    assert trainer.progress_bar_callback is None
    progress.every = 0.0  # a line per step
    module = StepModule(net, lr=0.1, weight_decay=0.0, warmup_steps=1, total_steps=6)
    with caplog.at_level(logging.INFO, logger="vzexp"):
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=2))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training:")]
    assert [line.split(",")[0] for line in lines] == [
        f"training: {n}/6 batches" for n in range(1, 7)
    ]
    assert "s per batch" in lines[0] and "s left" in lines[0] and "s left" not in lines[-1]


class _SignalAtStep(_Regression):
    """Sends `signum` to this process from inside training step `at`; records the steps run."""

    def __init__(self, signum, at: int):
        super().__init__()
        self.signum, self.at, self.steps = signum, at, []

    def forward(self, batch):
        import os

        self.steps.append(len(self.steps))
        if self.steps[-1] == self.at:
            os.kill(os.getpid(), self.signum)
        return super().forward(batch)


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_signal_during_training_stops_the_fit_at_the_end_of_that_step(signum, monkeypatch):
    """With vzexp's handlers installed (as `python -m vzexp` does), a real signal during step 3
    lets that step finish (its optimiser update applied), starts no later step and stops the
    fit with Interrupted: for SIGTERM too, which Lightning also handles itself."""
    import signal

    from omegaconf import OmegaConf

    from vzexp import interrupt
    from vzexp.engine.trainer import stoppable

    signum = signal.Signals[signum]
    monkeypatch.setattr(interrupt, "_received", None)
    handlers = {s: signal.getsignal(s) for s in interrupt.SIGNALS}
    trainer_cfg = OmegaConf.create(
        dict(accelerator="cpu", devices=1, num_nodes=1, strategy="auto", precision="32-true")
    )
    net = _SignalAtStep(signum, at=3)
    trainer = make_trainer(
        trainer_cfg, max_steps=20, max_epochs=-1, enable_progress_bar=False, logger=False
    )
    module = StepModule(
        net, lr=0.1, weight_decay=0.0, warmup_steps=1, total_steps=20, schedule="constant"
    )
    loader = torch.utils.data.DataLoader(_Epochs(), batch_size=2)
    interrupt.install()
    try:
        with pytest.raises(interrupt.Interrupted) as stopped:
            stoppable(lambda: trainer.fit(module, train_dataloaders=loader))
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert stopped.value.signum == signum
    assert net.steps == [0, 1, 2, 3]
    assert trainer.global_step == 4  # step 3's update was applied before the stop
    assert interrupt.pending() is None
