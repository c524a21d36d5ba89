"""One ``train()`` function for masked-diffusion denoisers.

Book chapter "Joint versus marginal" and every experiment that trains. The device is chosen in
``device.py``; bf16 autocast on CUDA; optional ``torch.compile``; gradient clipping; linear
warm-up then cosine decay of the learning rate; seeded runs that repeat exactly on the CPU,
including across a checkpoint and resume; a progress bar; and a clear error, naming the step, when
the loss stops being finite. Returns a ``History`` the book can plot.
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import asdict, dataclass, field

import torch

from ._checks import check_positive_int
from .device import pick_device
from .objectives import masked_diffusion_loss
from .schedules import LinearSchedule, Schedule


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimiser steps
    batch_size: int = 64  # sequences per step
    lr: float = 3e-3  # peak learning rate (AdamW)
    warmup_steps: int = 50  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # clip the global gradient norm (0: no clipping)
    weighted: bool = True  # NELBO weight w(t) (True) or the unweighted cross-entropy (False)
    antithetic: bool = True  # low-discrepancy times across the batch
    compile: bool = False  # torch.compile the model for the training steps
    log_every: int = 10  # record the history every this many steps
    checkpoint_every: int = 0  # save a checkpoint every this many steps (0: only at the end)

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every"):
            check_positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every"):
            check_positive_int(name, getattr(self, name), minimum=0)
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0, min_lr_ratio in [0, 1], grad_clip >= 0 and weight_decay >= 0; "
                             f"got lr={self.lr}, min_lr_ratio={self.min_lr_ratio}, grad_clip={self.grad_clip}, "
                             f"weight_decay={self.weight_decay}")

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based): warm-up, then cosine decay."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


@dataclass
class History:
    step: list = field(default_factory=list)  # optimiser step (1-based) of each record
    loss: list = field(default_factory=list)  # mean loss over the steps since the last record
    lr: list = field(default_factory=list)  # learning rate at that step
    grad_norm: list = field(default_factory=list)  # gradient norm before clipping
    tokens: list = field(default_factory=list)  # tokens seen so far

    def to_dict(self) -> dict:
        return asdict(self)


def train(model: torch.nn.Module, data: torch.Tensor, mask_id: int, config: TrainConfig = TrainConfig(),
          schedule: Schedule = LinearSchedule(), *, device: str | torch.device | None = None, seed: int = 0,
          pad_id: int | None = None, checkpoint: str | pathlib.Path | None = None, resume: bool = False,
          progress: bool = True) -> History:
    """Train ``model`` in place on ``data`` with the masked-diffusion objective.

    Args:
        model: a denoiser module; called as ``model(x_t)`` (or ``model(x_t, t)`` if its config has
            ``time_conditioning``).
        data: clean token ids (N, L); batches are drawn uniformly with replacement.
        mask_id: the mask token; must not occur in ``data``.
        config: steps, batch size, optimiser and objective settings.
        schedule: the noise schedule; its weight is used when ``config.weighted``.
        device: None for the best available (cuda, mps, cpu) or a name that must exist.
        seed: seeds the batch order, times and masks (and the model's dropout).
        pad_id: padding id in ``data``; never masked, never counted.
        checkpoint: a file for model, optimiser, generator and history; written every
            ``config.checkpoint_every`` steps and at the end.
        resume: continue from ``checkpoint`` (which must exist); the result is identical, on the
            CPU, to a run that was never interrupted.
        progress: show a progress bar.
    """
    if not isinstance(data, torch.Tensor) or data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"data must be a non-empty integer tensor of shape (N, L); got "
                         f"{tuple(getattr(data, 'shape', ()))}")
    if (data == mask_id).any():
        raise ValueError(f"data contains mask_id {mask_id}: the mask must lie outside the data's vocabulary")
    if resume and (checkpoint is None or not pathlib.Path(checkpoint).is_file()):
        raise ValueError(f"resume=True needs an existing checkpoint file; got {checkpoint!r}")
    device = pick_device(device)
    model.to(device)
    data = data.to(device)
    time_input = bool(getattr(getattr(model, "config", None), "time_conditioning", False))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.98))
    history, start = History(), 0
    if resume:
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, start = History(**state["history"]), state["step"]
    step_model = torch.compile(model) if config.compile else model
    bar = _progress_bar(config.steps, start, progress)
    running, count = 0.0, 0
    model.train()
    for step in range(start, config.steps):
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        index = torch.randint(data.shape[0], (config.batch_size,), generator=generator).to(device)  # (B,)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            parts = masked_diffusion_loss(step_model, data[index], schedule, mask_id, generator, config.weighted,
                                          pad_id, config.antithetic, time_input)
        if not torch.isfinite(parts.loss):
            raise FloatingPointError(f"the loss became {parts.loss.item()} at step {step + 1}; lower the learning "
                                     f"rate (lr = {config.lr}) or check the data and the schedule")
        optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip if config.grad_clip > 0 else math.inf)
        optimizer.step()
        running, count = running + parts.loss.item(), count + 1
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            history.step.append(step + 1)
            history.loss.append(running / count)
            history.lr.append(config.lr_at(step))
            history.grad_norm.append(float(grad_norm))
            history.tokens.append((step + 1) * config.batch_size * data.shape[1])
            running, count = 0.0, 0
            if bar is not None:
                bar.set_postfix(loss=f"{history.loss[-1]:.4f}")
        if bar is not None:
            bar.update(1)
        if checkpoint is not None and ((config.checkpoint_every and (step + 1) % config.checkpoint_every == 0)
                                       or step + 1 == config.steps):
            _save_checkpoint(checkpoint, model, optimizer, generator, history, step + 1)
    if bar is not None:
        bar.close()
    model.eval()
    return history


def _progress_bar(total: int, start: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="training", unit="step")


def _save_checkpoint(path, model, optimizer, generator, history, step):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "history": history.to_dict(), "step": step}, path)
