"""Tests of maskdiff_tutor.train: the learning-rate schedule, the history, exact repeatability and
exact resume on the CPU, the non-finite-loss error, every argument check, and a small model that
learns the toy marginals P(A) = 0.55 and P(B) = 0.69."""

from __future__ import annotations

import itertools
import math
import os
import pathlib
import re

import pytest
import torch
import torch.nn as nn

from maskdiff_tutor import checkpoints
from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
from maskdiff_tutor.forward_process import denoiser_probs
from maskdiff_tutor.train import History, TrainConfig, optimizer_and_schedule, train


def _model(toy, seed: int = 0, **overrides) -> Denoiser:
    fields = dict(vocab_size=toy.vocab_size, max_seq_len=5, d_model=16, n_layers=1, n_heads=2)
    torch.manual_seed(seed)
    return Denoiser(DenoiserConfig(**{**fields, **overrides}))


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _all_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


SHORT = TrainConfig(steps=12, batch_size=16, lr=3e-3, warmup_steps=3, log_every=4)


# ----------------------------------------------------------------------------- learning rate


def test_lr_warms_up_linearly_then_decays_to_the_floor():
    config = TrainConfig(steps=100, lr=2e-3, warmup_steps=10, min_lr_ratio=0.1)
    for step in range(10):
        assert config.lr_at(step) == pytest.approx(2e-3 * (step + 1) / 10, rel=1e-12)
    assert config.lr_at(9) == pytest.approx(2e-3, rel=1e-12)  # peak at the end of the warm-up
    assert config.lr_at(10) == pytest.approx(2e-3, rel=1e-12)
    # cosine: halfway through the decay the lr is halfway between the peak and the floor
    assert config.lr_at(55) == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5), rel=1e-12)
    for step in range(10, 100):
        progress = (step - 10) / 90
        assert config.lr_at(step) == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))),
                                                   rel=1e-12)
    decay = [config.lr_at(step) for step in range(9, 101)]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert config.lr_at(100) == pytest.approx(2e-3 * 0.1, rel=1e-12)  # ends at lr * min_lr_ratio
    assert config.lr_at(500) == pytest.approx(2e-3 * 0.1, rel=1e-12)  # and stays there
    assert 2e-3 * 0.1 < config.lr_at(99) < 2e-3 * 0.1 * 1.01


def test_lr_without_warm_up_starts_at_the_peak():
    config = TrainConfig(steps=10, lr=1e-2, warmup_steps=0, min_lr_ratio=0.0)
    assert config.lr_at(0) == pytest.approx(1e-2, rel=1e-12)
    assert config.lr_at(10) == pytest.approx(0.0, abs=1e-18)


def _closed_form(lr: float, warmup: int, steps: int, floor: float, step: int) -> float:
    """The learning rate of 0-based step ``step``, written out: lr (s + 1) / W during the warm-up, then
    lr (floor + (1 - floor) (1 + cos(pi p)) / 2) with p = (s - W) / (S - W), held at 1 after the end."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min((step - warmup) / max(1, steps - warmup), 1.0)
    return lr * (floor + (1 - floor) * (0.5 * (1 + math.cos(math.pi * p))))


@pytest.mark.parametrize("lr, warmup, steps, floor", [(2e-3, 10, 100, 0.1), (3e-3, 50, 1500, 0.0),
                                                      (4e-3, 7, 40, 0.25), (1e-2, 0, 10, 0.0), (1e-3, 5, 3, 0.5)])
def test_the_torch_scheduler_gives_the_closed_form_to_the_last_bit_at_every_step(lr, warmup, steps, floor):
    # the rate the optimiser holds before each step is exactly the closed form (==, not approx):
    # the book's trained weights depend on every bit of it
    config = TrainConfig(steps=steps, lr=lr, warmup_steps=warmup, min_lr_ratio=floor)
    optimizer, scheduler = optimizer_and_schedule(nn.Linear(2, 2), config)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    for step in range(steps + 5):
        expected = _closed_form(lr, warmup, steps, floor, step)
        assert optimizer.param_groups[0]["lr"] == expected == scheduler.get_last_lr()[0], step
        assert config.lr_at(step) == expected
        optimizer.step()
        scheduler.step()


def test_history_lr_follows_lr_at(toy):
    config = TrainConfig(steps=9, batch_size=8, lr=1e-3, warmup_steps=4, log_every=1)
    history = train(_model(toy), toy.data, toy.mask_id, config, device="cpu", progress=False)
    assert history.lr == [config.lr_at(step - 1) for step in history.step]


# ----------------------------------------------------------------------------- history


@pytest.mark.parametrize("steps, log_every, expected", [(25, 10, [10, 20, 25]), (20, 10, [10, 20]), (3, 5, [3]),
                                                        (4, 1, [1, 2, 3, 4])])
def test_history_has_one_record_per_log_every_steps(toy, steps, log_every, expected):
    config = TrainConfig(steps=steps, batch_size=8, warmup_steps=2, log_every=log_every)
    history = train(_model(toy), toy.data, toy.mask_id, config, device="cpu", progress=False)
    assert isinstance(history, History)
    assert history.step == expected
    for name in ("loss", "lr", "grad_norm", "tokens"):
        assert len(getattr(history, name)) == len(expected), name
    assert history.tokens == [step * 8 * 5 for step in expected]
    assert all(math.isfinite(x) and x > 0 for x in history.loss + history.grad_norm)
    assert set(history.to_dict()) == {"step", "loss", "lr", "grad_norm", "tokens"}


def test_history_loss_is_the_mean_since_the_last_record(toy):
    # log_every=1 records every step's loss; log_every=3 must record their means over blocks of 3.
    every = train(_model(toy), toy.data, toy.mask_id, TrainConfig(steps=7, batch_size=8, warmup_steps=2, log_every=1),
                  device="cpu", progress=False)
    blocks = train(_model(toy), toy.data, toy.mask_id, TrainConfig(steps=7, batch_size=8, warmup_steps=2, log_every=3),
                   device="cpu", progress=False)
    assert blocks.step == [3, 6, 7]
    expected = [sum(every.loss[0:3]) / 3, sum(every.loss[3:6]) / 3, every.loss[6]]
    assert blocks.loss == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- learning


def test_loss_decreases_on_the_toy_data(toy):
    model = _model(toy, d_model=32)
    config = TrainConfig(steps=150, batch_size=64, lr=1e-2, warmup_steps=10, weighted=False, log_every=10)
    history = train(model, toy.data, toy.mask_id, config, device="cpu", progress=False)
    # The untrained model predicts nearly uniformly over V = 107 tokens: about log 106 = 4.66 nats per
    # masked token, about half of the tokens masked. The trained loss is far below.
    first, last = history.loss[0], sum(history.loss[-3:]) / 3
    assert first > 1.5
    assert last < 0.6 * first
    assert not model.training  # train() leaves the model in eval mode


@pytest.mark.parametrize("seed", [0, 1])
def test_small_model_learns_the_toy_marginals(toy, seed):
    # A one-layer d_model = 32 model, 300 unweighted steps (about a second). Over seeds 0..7 the
    # largest error of P(A) or P(B) was 0.016; seeds 0 and 1 are within 0.008. Tolerance 0.03.
    model = _model(toy, seed=seed, d_model=32)
    config = TrainConfig(steps=300, batch_size=256, lr=1e-2, warmup_steps=20, min_lr_ratio=0.0, weighted=False)
    train(model, toy.data, toy.mask_id, config, seed=seed, device="cpu", progress=False)
    query = toy.ids("[MASK] [MASK] C D [MASK]")
    with torch.no_grad():
        probs = denoiser_probs(model(query), toy.mask_id)[0]  # (5, V)
    assert probs[0, 0].item() == pytest.approx(0.55, abs=0.03)  # P(x^1 = A)
    assert probs[1, 2].item() == pytest.approx(0.69, abs=0.03)  # P(x^2 = B)
    assert probs[0, :2].sum().item() > 0.97 and probs[1, 2:4].sum().item() > 0.97


# ----------------------------------------------------------------------------- repeatability and resume


def test_same_seed_gives_bit_identical_parameters(toy):
    a, b = _model(toy), _model(toy)
    ha = train(a, toy.data, toy.mask_id, SHORT, seed=3, device="cpu", progress=False)
    hb = train(b, toy.data, toy.mask_id, SHORT, seed=3, device="cpu", progress=False)
    assert _all_equal(_params(a), _params(b))
    assert ha.to_dict() == hb.to_dict()


def test_different_seeds_differ(toy):
    a, b = _model(toy), _model(toy)
    ha = train(a, toy.data, toy.mask_id, SHORT, seed=3, device="cpu", progress=False)
    hb = train(b, toy.data, toy.mask_id, SHORT, seed=4, device="cpu", progress=False)
    assert not any(torch.equal(x, y) for x, y in zip(_params(a), _params(b), strict=True) if x.numel() > 1)
    assert ha.loss != hb.loss


def test_same_seed_with_dropout_is_repeatable(toy):
    a, b = _model(toy, dropout=0.3), _model(toy, dropout=0.3)
    train(a, toy.data, toy.mask_id, SHORT, seed=1, device="cpu", progress=False)
    train(b, toy.data, toy.mask_id, SHORT, seed=1, device="cpu", progress=False)
    assert _all_equal(_params(a), _params(b))


class Interrupted(Exception):
    pass


class Interruptible(nn.Module):
    """Wraps a denoiser; raises Interrupted on forward call number ``stop_at`` (1-based), if given."""

    def __init__(self, inner: nn.Module, stop_at: int | None = None):
        super().__init__()
        self.inner, self.stop_at, self.calls = inner, stop_at, 0

    def forward(self, x_t):
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise Interrupted
        return self.inner(x_t)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_exact_resume(toy, tmp_path, dropout):
    # N = 12 steps straight versus a run that checkpoints every 6 steps, is interrupted during step 7,
    # and resumes from the checkpoint into a freshly initialised model: identical parameters and history.
    config = TrainConfig(steps=12, batch_size=16, lr=3e-3, warmup_steps=3, log_every=2, checkpoint_every=6)
    straight = Interruptible(_model(toy, dropout=dropout))
    straight_history = train(straight, toy.data, toy.mask_id, config, seed=5, device="cpu", progress=False)

    path = tmp_path / "ckpt" / "run.pt"
    first = Interruptible(_model(toy, dropout=dropout), stop_at=7)
    with pytest.raises(Interrupted):
        train(first, toy.data, toy.mask_id, config, seed=5, checkpoint=path, device="cpu", progress=False)
    assert path.is_file()
    assert checkpoints.read(path)["step"] == 6

    resumed = Interruptible(_model(toy, seed=99, dropout=dropout))  # different initial weights: must be replaced
    assert not _all_equal(_params(resumed), _params(first))
    resumed_history = train(resumed, toy.data, toy.mask_id, config, seed=5, checkpoint=path, resume=True,
                            device="cpu", progress=False)
    assert resumed.calls == 6  # only the remaining steps ran
    assert _all_equal(_params(resumed), _params(straight))
    assert resumed_history.to_dict() == straight_history.to_dict()
    assert resumed_history.step == [2, 4, 6, 8, 10, 12]
    assert checkpoints.read(path)["step"] == 12  # the final checkpoint


def test_the_checkpoint_holds_the_schedulers_state(toy, tmp_path):
    path = tmp_path / "run.pt"
    config = TrainConfig(steps=6, batch_size=8, lr=3e-3, warmup_steps=4, log_every=2)
    train(_model(toy), toy.data, toy.mask_id, config, checkpoint=path, device="cpu", progress=False)
    saved = checkpoints.read(path)
    assert saved["step"] == 6 and saved["scheduler"]["last_epoch"] == 6
    assert saved["scheduler"]["_last_lr"] == [config.lr_at(6)]  # the rate of the next step
    assert saved["optimizer"]["param_groups"][0]["lr"] == config.lr_at(6)


def test_a_checkpoint_without_the_schedulers_state_is_refused(toy, tmp_path):
    path = tmp_path / "run.pt"
    train(_model(toy), toy.data, toy.mask_id, SHORT, checkpoint=path, device="cpu", progress=False)
    saved = checkpoints.read(path)
    del saved["scheduler"]  # as written before the scheduler joined the checkpoint
    checkpoints.write(path, saved)
    with pytest.raises(ValueError, match=rf"^{path}: not a training checkpoint of this package \(it lacks "
                                         r"\['scheduler'\]\)$"):
        train(_model(toy), toy.data, toy.mask_id, SHORT, checkpoint=path, resume=True, device="cpu", progress=False)


def test_resume_of_a_finished_run_changes_nothing(toy, tmp_path):
    path = tmp_path / "run.pt"
    model = _model(toy)
    history = train(model, toy.data, toy.mask_id, SHORT, checkpoint=path, device="cpu", progress=False)
    again = _model(toy, seed=7)
    again_history = train(again, toy.data, toy.mask_id, SHORT, checkpoint=path, resume=True, device="cpu",
                          progress=False)
    assert _all_equal(_params(model), _params(again))
    assert again_history.to_dict() == history.to_dict()


# ----------------------------------------------------------------------------- non-finite loss


class NanAfter(nn.Module):
    """Returns the inner model's logits, but NaN from forward call ``start`` on (1-based)."""

    def __init__(self, inner: nn.Module, start: int):
        super().__init__()
        self.inner, self.start, self.calls = inner, start, 0

    def forward(self, x_t):
        self.calls += 1
        logits = self.inner(x_t)
        return logits * float("nan") if self.calls >= self.start else logits


@pytest.mark.parametrize("start", [1, 3])
def test_nan_logits_raise_naming_the_step(toy, start):
    model = NanAfter(_model(toy), start)
    with pytest.raises(FloatingPointError, match=rf"at step {start};"):
        train(model, toy.data, toy.mask_id, SHORT, device="cpu", progress=False)


def test_huge_learning_rate_raises_naming_the_step(toy):
    config = TrainConfig(steps=50, batch_size=16, lr=1e30, warmup_steps=0, grad_clip=0.0)
    with pytest.raises(FloatingPointError,
                       match=r"the loss became (nan|inf|-inf) at step \d+; lower the learning rate"):
        train(_model(toy), toy.data, toy.mask_id, config, device="cpu", progress=False)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("data", [torch.zeros(0, 5, dtype=torch.long), torch.zeros(4, 0, dtype=torch.long),
                                  torch.zeros(5, dtype=torch.long), [[0, 1, 2, 3, 4]]],
                         ids=["no-rows", "no-columns", "1d", "list"])
def test_empty_or_malformed_data_raises(toy, data):
    with pytest.raises(ValueError, match="data must be a non-empty"):
        train(_model(toy), data, toy.mask_id, SHORT, device="cpu", progress=False)


def test_data_containing_the_mask_raises(toy):
    data = toy.data.clone()
    data[3, 4] = toy.mask_id
    with pytest.raises(ValueError, match=f"data contains mask_id {toy.mask_id}"):
        train(_model(toy), data, toy.mask_id, SHORT, device="cpu", progress=False)


@pytest.mark.parametrize("missing", [None, "missing.pt"])
def test_resume_without_a_checkpoint_file_raises(toy, tmp_path, missing):
    checkpoint = None if missing is None else tmp_path / missing
    with pytest.raises(ValueError, match="resume=True needs an existing checkpoint"):
        train(_model(toy), toy.data, toy.mask_id, SHORT, checkpoint=checkpoint, resume=True, device="cpu",
              progress=False)


@pytest.mark.parametrize("where", ["a folder", "under a file", "a character device", "a FIFO"])
def test_a_checkpoint_path_that_cannot_be_written_fails_before_the_first_step(toy, tmp_path, where):
    # checkpoint_every=0 writes only at the end: found then, the training would be lost
    file = tmp_path / "file"
    file.write_text("")
    if where == "a FIFO":
        os.mkfifo(tmp_path / "fifo")
    path = {"a folder": tmp_path, "under a file": file / "run.pt", "a character device": pathlib.Path("/dev/null"),
            "a FIFO": tmp_path / "fifo"}[where]
    message = {"a folder": f"checkpoint {path} is a folder; give the path of a checkpoint file",
               "under a file": f"checkpoint {path}: {file} is a file, so the folder {file} cannot be created"}.get(
        where, f"checkpoint {path} is {where}, not a regular file; give the path of a checkpoint file")
    model = Interruptible(_model(toy))
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        train(model, toy.data, toy.mask_id, SHORT, checkpoint=path, device="cpu", progress=False)
    assert model.calls == 0  # refused before the first step


@pytest.mark.parametrize("resume", [False, True])
def test_a_checkpoint_that_is_not_a_path_is_named_before_the_first_step(toy, resume):
    model = Interruptible(_model(toy))
    with pytest.raises(TypeError, match=r"^checkpoint must be a str or pathlib.Path \(a file path\); got int 5$"):
        train(model, toy.data, toy.mask_id, SHORT, checkpoint=5, resume=resume, device="cpu", progress=False)
    assert model.calls == 0


@pytest.mark.parametrize("device", ["banana", "tpu"])
def test_unknown_device_raises(toy, device):
    with pytest.raises(ValueError, match=f"'{device}'"):
        train(_model(toy), toy.data, toy.mask_id, SHORT, device=device, progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: the request is valid")
def test_unavailable_cuda_raises(toy):
    with pytest.raises(ValueError, match="'cuda' was requested but no such CUDA device"):
        train(_model(toy), toy.data, toy.mask_id, SHORT, device="cuda", progress=False)


def test_cpu_device_by_name(toy):
    a, b = _model(toy), _model(toy)
    train(a, toy.data, toy.mask_id, SHORT, device="cpu", progress=False)
    train(b, toy.data, toy.mask_id, SHORT, device=torch.device("cpu"), progress=False)
    assert _all_equal(_params(a), _params(b))


@pytest.mark.parametrize("name", ["steps", "batch_size", "log_every"])
@pytest.mark.parametrize("value", [0, -1, 2.0, None, True])
def test_bad_positive_ints_raise(name, value):
    with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
        TrainConfig(**{name: value})


@pytest.mark.parametrize("name", ["warmup_steps", "checkpoint_every"])
@pytest.mark.parametrize("value", [-1, 1.5, None, True])
def test_bad_non_negative_ints_raise(name, value):
    with pytest.raises(ValueError, match=f"{name} must be an int >= 0"):
        TrainConfig(**{name: value})


@pytest.mark.parametrize("name, value", [("lr", 0.0), ("lr", -1e-3), ("lr", float("nan")), ("lr", float("inf")),
                                         ("lr", "0.1"), ("min_lr_ratio", -0.1), ("min_lr_ratio", 1.5),
                                         ("min_lr_ratio", float("nan")), ("grad_clip", -1.0),
                                         ("grad_clip", float("nan")), ("grad_clip", float("inf")),
                                         ("weight_decay", -0.1), ("weight_decay", float("nan")),
                                         ("weight_decay", float("inf")), ("weight_decay", True)])
def test_bad_optimiser_values_raise(name, value):
    pattern = rf"^{name} must be .*; got {value!r}$".replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**{name: value})


@pytest.mark.parametrize("name, value, message", [
    ("lr", 0.0, "lr must be a finite number > 0; got 0.0"),
    ("min_lr_ratio", 1.5, "min_lr_ratio must be a finite number in [0, 1]; got 1.5"),
    ("grad_clip", -1.0, "grad_clip must be a finite number >= 0 (0: no clipping); got -1.0"),
    ("weight_decay", True, "weight_decay must be a finite number >= 0; got True"),
])
def test_optimiser_value_messages(name, value, message):
    with pytest.raises(ValueError) as error:
        TrainConfig(**{name: value})
    assert str(error.value) == message


def test_progress_bar_runs(toy, capsys):
    history = train(_model(toy), toy.data, toy.mask_id, TrainConfig(steps=3, batch_size=4, warmup_steps=1),
                    device="cpu", progress=True)
    assert history.step == [3]
    assert "training" in capsys.readouterr().err
