"""One ``train()`` function for masked-diffusion denoisers.

Book chapter "Joint versus marginal" and every experiment that trains. The device is chosen in
``device.py``; bf16 autocast on CUDA; optional ``torch.compile``; gradient clipping; linear
warm-up then cosine decay of the learning rate (a ``torch.optim.lr_scheduler``); seeded runs that
repeat exactly on the CPU, including across a checkpoint and resume; a progress bar; and a clear
error, naming the step, when the loss stops being finite. Returns a ``History`` the book can plot.

The loop's state (step, running loss, history, generator) is one ``LoopState``; a step reads it and
the run's fixed parts and updates it; a checkpoint is that state with the model, optimiser and
scheduler, what the run was made with and a checksum (``checkpoints.py``, which also says what a
resumed run may change), written atomically. Ctrl-C and SIGTERM finish the step and save first.

Under ``torchrun --nproc-per-node N`` the same call trains with PyTorch's DistributedDataParallel
(``distributed.py``): the global batch of ``batch_size`` rows is split into N equal shares.
"""

from __future__ import annotations

import contextlib
import math
import pathlib
import signal
import sys
import threading
from dataclasses import asdict, dataclass, field

import torch

from . import checkpoints, distributed
from ._checks import check_number, check_positive_int, check_tokens
from .blockwise import blockwise_loss, blockwise_loss_loop, number_of_blocks, sample_block_noise
from .device import pick_device
from .files import check_output
from .objectives import LossParts, masked_diffusion_loss
from .schedules import LinearSchedule, Schedule

OBJECTIVES = {
    "random": "random masking of the whole sequence, one time per sequence (Eq. 13; LLaDA, MDLM)",
    "blockwise": "block-causal blockwise training, all blocks in one pass over [x_t, x_0] (BD3-LM)",
    "blockwise_literal": "the paper's blockwise scheme, the clean prefix attending to the noisy block: "
                         "one pass per block",
    "left_to_right": "every token masked, each seeing the clean tokens before it: autoregressive "
                     "next-token training (block-causal with blocks of one token)",
}
LINEAR = LinearSchedule()  # the default noise schedule, alpha(t) = 1 - t


def forward_tokens_per_sequence(objective: str, seq_len: int, block_length: int | None = None) -> int:
    """Tokens a training step runs through the model per sequence: the unit of equal compute.

    random: L; blockwise and left_to_right: :math:`2L` (``[x_t, x_0]``); blockwise_literal: one pass of
    length :math:`(j + 1) B` for each block j, :math:`B n (n + 1) / 2` with :math:`n = L / B` blocks."""
    TrainConfig(objective=objective, block_length=block_length)  # checks the pair
    if objective == "random":
        return seq_len
    if objective in ("blockwise", "left_to_right"):
        return 2 * seq_len
    n = number_of_blocks(seq_len, block_length)
    return block_length * n * (n + 1) // 2


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a ``train()`` run: steps, batch, optimiser, schedule of the learning rate, objective."""
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
    objective: str = "random"  # one of OBJECTIVES: what a training step asks of the model
    block_length: int | None = None  # block size of the blockwise objectives (None for the others)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}; got {self.objective!r}")
        if self.objective.startswith("blockwise"):
            check_positive_int("block_length", self.block_length)
        elif self.block_length is not None:
            raise ValueError(f"block_length is only for the blockwise objectives; objective={self.objective!r} "
                             f"takes block_length=None, got {self.block_length!r}")
        for name in ("steps", "batch_size", "log_every"):
            check_positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every"):
            check_positive_int(name, getattr(self, name), minimum=0)
        check_number("lr", self.lr, above=0)
        check_number("min_lr_ratio", self.min_lr_ratio, at_least=0, at_most=1)
        check_number("grad_clip", self.grad_clip, at_least=0, meaning="0: no clipping")
        check_number("weight_decay", self.weight_decay, at_least=0)

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based): warm-up, then cosine decay (the closed
        form that ``optimizer_and_schedule``'s scheduler follows)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


@dataclass
class History:
    """What ``train()`` records every ``log_every`` steps, one list per quantity."""
    step: list[int] = field(default_factory=list)  # optimiser step (1-based) of each record
    loss: list[float] = field(default_factory=list)  # mean loss over the steps since the last record
    lr: list[float] = field(default_factory=list)  # learning rate at that step
    grad_norm: list[float] = field(default_factory=list)  # gradient norm before clipping
    tokens: list[int] = field(default_factory=list)  # tokens seen so far

    def to_dict(self) -> dict:
        """The history as a dict of lists (for JSON)."""
        return asdict(self)


@dataclass
class LoopState:
    """Where a training run stands after ``step`` optimiser steps: everything besides the model, the
    optimiser and its scheduler that a checkpoint must hold for a resumed run to continue exactly."""
    generator: torch.Generator  # batches, times and masks; seeded alike on every process
    history: History = field(default_factory=History)  # the records so far
    step: int = 0  # optimiser steps taken
    running_loss: float = 0.0  # the loss summed over the steps since the last history record
    running_steps: int = 0  # how many steps that sum holds


@dataclass(frozen=True)
class _Run:
    """What every step of one ``train()`` call uses and none changes."""
    model: torch.nn.Module  # the caller's model, trained in place
    step_model: torch.nn.Module  # the model as a step calls it: wrapped by DDP and torch.compile where asked
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # sets the optimiser's learning rate before each step
    data: torch.Tensor  # (N, L) clean token ids on the device
    config: TrainConfig
    schedule: Schedule  # the noise schedule
    mask_id: int
    pad_id: int | None
    time_input: bool  # the model takes t
    device: torch.device
    rows: slice | None  # this process's share of the global batch under torchrun; None for one process
    made_with: dict | None  # what the run is made with (checkpoints.made_with), when it has a checkpoint


def optimizer_and_schedule(model: torch.nn.Module,
                           config: TrainConfig) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its learning-rate scheduler: linear warm-up, then cosine decay to ``lr * min_lr_ratio``
    (``config.lr_at``). Call ``scheduler.step()`` after each ``optimizer.step()``.

    ``LambdaLR`` multiplies the optimiser's base rate by the factor it is given. The base rate is 1
    and the factor the rate itself, so step s runs at ``config.lr_at(s)`` to the last bit. A base
    rate ``lr`` times a factor :math:`(s + 1) / W` rounds differently from :math:`lr (s + 1) / W` in
    about a third of the warm-up steps, and training would end at other weights."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: config.lr_at(step))


def train(model: torch.nn.Module, data: torch.Tensor, mask_id: int, config: TrainConfig = TrainConfig(),
          schedule: Schedule = LINEAR, *, device: str | torch.device | None = None, seed: int = 0,
          pad_id: int | None = None, checkpoint: str | pathlib.Path | None = None, resume: bool = False,
          progress: bool = True) -> History:
    """Train ``model`` in place on ``data`` with the masked-diffusion objective
    (``config.objective``: random masking, blockwise or left to right; see ``OBJECTIVES``).

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
        checkpoint: a file for model, optimiser, scheduler, generators, history and what the run is
            made with (``checkpoints.py``); checked before the first step (a folder, a device or a path
            under a file is refused), written every ``config.checkpoint_every`` steps and at the end.
        resume: continue from ``checkpoint`` (which must exist); the result is identical, on the
            CPU, to a run that was never interrupted. A checkpoint made with other settings, data or
            model, or damaged, is refused naming what differs (``steps`` may grow; see
            ``checkpoints.py`` for what may change).
        progress: show a progress bar.

    Ctrl-C (SIGINT) and SIGTERM (``kill``, a job scheduler, torchrun passing either on) finish the
    current step, save a checkpoint, print one line and stop: Ctrl-C raises ``KeyboardInterrupt``,
    SIGTERM is then handed to the handler it would have met (by default the process ends).

    Several processes (launched by ``torchrun``; the process group is opened here if it is not
    yet): the model is wrapped in ``DistributedDataParallel``. Every process draws the same global
    batch indices and the same times and masks from the shared generator (seeded ``seed``) and
    computes the loss on its own ``batch_size / N`` rows, scaled so that DDP's mean of the
    gradients is the gradient of the whole batch's loss: N processes follow, to float rounding,
    the steps of one process on the same batches. Dropout is seeded ``seed + rank``. The logged
    loss is the mean over the processes; only rank 0 shows the progress bar and writes the
    checkpoint, which holds every process's dropout generator (so resume with the same N). A stop
    in any process stops all of them after the same step, and none leaves before rank 0 has
    written its checkpoint (torchrun ends the others when one process leaves).
    """
    time_input = _check_arguments(model, data, mask_id, config, pad_id, checkpoint, resume)
    rank, world = distributed.start()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes "
                         f"({world}, torchrun's WORLD_SIZE): each takes an equal share of the global batch")
    made_with = None if checkpoint is None else checkpoints.made_with(
        config, model, data, seed=seed, mask_id=mask_id, pad_id=pad_id, schedule=schedule, world_size=world)
    device = distributed.local_device(pick_device(device))
    model.to(device)
    state = LoopState(torch.Generator().manual_seed(seed))  # the same on every process: batches, times, masks
    torch.manual_seed(seed + rank)  # dropout, different on every process
    optimizer, scheduler = optimizer_and_schedule(model, config)
    if resume:
        state = _resume(checkpoint, made_with, model, optimizer, scheduler, config, device, rank)
    share = config.batch_size // world
    run = _Run(model, _step_model(model, device, world, config.compile), optimizer, scheduler, data.to(device),
               config, schedule, mask_id, pad_id, time_input, device,
               slice(rank * share, (rank + 1) * share) if world > 1 else None, made_with)
    model.train()
    with _progress_bar(config.steps, state.step, progress and rank == 0) as bar, _deferred_stop() as received:
        stopped = _steps(run, state, checkpoint, bar, received)
    if stopped:
        _say_interrupted(state.step, config.steps, checkpoint, rank)
        _stop(received())
    model.eval()
    return state.history


def _steps(run: _Run, state: LoopState, checkpoint, bar, received) -> bool:
    """Steps until ``config.steps``, each followed by a checkpoint when one is due; returns whether a
    stop signal ended them early (after the checkpoint of the last step taken)."""
    config = run.config
    while state.step < config.steps:
        stop = _step(run, state, bar, received)
        due = config.checkpoint_every and state.step % config.checkpoint_every == 0
        if checkpoint is not None and (due or state.step == config.steps or stop):
            _save_checkpoint(checkpoint, run, state)
        if stop:
            return True
    return False


def _check_arguments(model, data, mask_id, config, pad_id, checkpoint, resume) -> bool:
    """Check ``train()``'s arguments before any work; returns whether the model takes a time input."""
    if not isinstance(data, torch.Tensor) or data.ndim != 2 or 0 in data.shape:
        raise ValueError(f"data must be a non-empty integer tensor of shape (N, L); got "
                         f"{tuple(getattr(data, 'shape', ()))}")
    model_config = getattr(model, "config", None)  # a DenoiserConfig for the package's Denoiser
    check_tokens("data", data, getattr(model_config, "vocab_size", None), mask_id, allow_mask=True)
    if (data == mask_id).any():
        raise ValueError(f"data contains mask_id {mask_id}: the mask must lie outside the data's vocabulary")
    time_input = bool(getattr(model_config, "time_conditioning", False))
    if config.objective != "random" and (pad_id is not None or time_input):
        raise ValueError(f"objective={config.objective!r} supports neither padding (pad_id) nor a "
                         "time-conditioned model; use objective='random'")
    if config.block_length is not None:
        number_of_blocks(data.shape[1], config.block_length)
    if checkpoint is not None:  # now, not when first written: that may be after all the training
        check_output(checkpoint, "checkpoint", kind="checkpoint file")
    if resume and (checkpoint is None or not pathlib.Path(checkpoint).is_file()):
        raise ValueError(f"resume=True needs an existing checkpoint file; got {checkpoint!r}")
    return time_input


def _step_model(model, device, world: int, compile: bool):
    """The model as a training step calls it: in DistributedDataParallel under torchrun (made after
    a resume has loaded the weights: DDP broadcasts rank 0's parameters and buffers), compiled when
    asked."""
    shared = model
    if world > 1:
        devices = [device] if device.type == "cuda" else None
        shared = torch.nn.parallel.DistributedDataParallel(model, device_ids=devices)
    return torch.compile(shared) if compile else shared


def _step(run: _Run, state: LoopState, bar, received) -> bool:
    """One optimiser step on a batch drawn from ``state.generator``, recorded in ``state``; returns
    whether to stop (a stop signal ``received()`` by this process or, under torchrun, by any)."""
    config = run.config
    index = torch.randint(run.data.shape[0], (config.batch_size,), generator=state.generator).to(run.device)  # (B,)
    with torch.autocast(device_type=run.device.type, dtype=torch.bfloat16, enabled=run.device.type == "cuda"):
        parts = training_loss(run.step_model, run.data[index], config, run.schedule, run.mask_id, state.generator,
                              run.pad_id, run.time_input, run.rows)
    loss, stop = _agree(parts.loss.detach(), received() is not None, run.rows is not None)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()} at step {state.step + 1}; lower the learning "
                                 f"rate (lr = {config.lr}) or check the data and the schedule")
    run.optimizer.zero_grad(set_to_none=True)
    parts.loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(),
                                               config.grad_clip if config.grad_clip > 0 else math.inf)
    lr = run.optimizer.param_groups[0]["lr"]  # the rate this step runs at
    run.optimizer.step()
    run.scheduler.step()
    state.step += 1
    state.running_loss += loss.item()
    state.running_steps += 1
    if state.step % config.log_every == 0 or state.step == config.steps:
        _record(state, lr, float(grad_norm), state.step * config.batch_size * run.data.shape[1])
        if bar is not None:
            bar.set_postfix(loss=f"{state.history.loss[-1]:.4f}")
    if bar is not None:
        bar.update(1)
    return stop


def _agree(loss: torch.Tensor, stop: bool, shared: bool) -> tuple[torch.Tensor, bool]:
    """Under torchrun (``shared``) every process learns the mean loss and whether any was interrupted."""
    if not shared:
        return loss, stop
    agreed = torch.stack([loss.float(), torch.tensor(float(stop), device=loss.device)])
    torch.distributed.all_reduce(agreed)
    return agreed[0] / torch.distributed.get_world_size(), bool(agreed[1] > 0)


def _record(state: LoopState, lr: float, grad_norm: float, tokens: int) -> None:
    """Append a history record: the mean loss since the last one, then start a new sum."""
    history = state.history
    history.step.append(state.step)
    history.loss.append(state.running_loss / state.running_steps)
    history.lr.append(lr)
    history.grad_norm.append(grad_norm)
    history.tokens.append(tokens)
    state.running_loss, state.running_steps = 0.0, 0


def _say_interrupted(step: int, steps: int, checkpoint, rank: int) -> None:
    where = f"checkpoint saved to {checkpoint}; train(..., resume=True) continues" if checkpoint \
        else "no checkpoint file was given, so nothing was saved"
    if rank == 0:
        print(f"training interrupted after step {step} of {steps}: {where}", file=sys.stderr)


def training_loss(model, x0: torch.Tensor, config: TrainConfig, schedule: Schedule, mask_id: int,
                  generator: torch.Generator | None = None, pad_id: int | None = None,
                  time_input: bool = False, rows: slice | None = None) -> LossParts:
    """One Monte Carlo sample of ``config.objective``'s loss on the batch x0 (B, L).

    With ``config.weighted`` the random and blockwise losses are NELBOs (upper bounds on the NLL
    in nats per token); left_to_right is the exact NLL of next-token prediction. ``rows``: the
    noise is drawn for the whole batch and the loss computed on these rows only (one process's
    share; see ``masked_diffusion_loss``)."""
    if config.objective == "random":
        return masked_diffusion_loss(model, x0, schedule, mask_id, generator, config.weighted, pad_id,
                                     config.antithetic, time_input, rows)
    rows = slice(None) if rows is None else rows
    if config.objective == "left_to_right":
        x0 = x0[rows]
        x_t = torch.full_like(x0, mask_id)
        t = torch.ones(x0.shape, dtype=torch.float64)  # (B, L): every block (token) fully masked
        return blockwise_loss(model, x0, x_t, t, 1, schedule, mask_id, weighted=False)
    x_t, t = sample_block_noise(x0, config.block_length, schedule, mask_id, generator, config.antithetic)
    x0, x_t, t = x0[rows], x_t[rows], t[rows]  # every block loss divides by its rows' token count
    if config.objective == "blockwise":
        return blockwise_loss(model, x0, x_t, t, config.block_length, schedule, mask_id, config.weighted)
    return blockwise_loss_loop(model, x0, x_t, t, config.block_length, schedule, mask_id, config.weighted,
                               causal_prefix=False)


def _progress_bar(total: int, start: int, enabled: bool):
    """A tqdm bar as a context manager, or one that yields None when ``enabled`` is False."""
    if not enabled:
        return contextlib.nullcontext()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="training", unit="step")


def _save_checkpoint(path, run: _Run, state: LoopState) -> None:
    """Everything a run needs to continue exactly, and what it was made with, written atomically with a
    checksum (``checkpoints.write``): a kill during the write leaves the previous checkpoint whole. Under
    torchrun every process calls it; each one's dropout generators are gathered, rank 0 writes, and no
    process returns before the file is whole: when one process leaves, torchrun ends the others, and a
    stop must not end rank 0 while it writes."""
    cuda_rng = torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None
    every_rank = distributed.gather((torch.get_rng_state(), cuda_rng))
    if distributed.is_main():
        saved = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                 "scheduler": run.scheduler.state_dict(), "generator": state.generator.get_state(),
                 "torch_rng": every_rank[0][0], "cuda_rng": every_rank[0][1], "history": asdict(state.history),
                 "step": state.step, "running_loss": state.running_loss, "running_steps": state.running_steps,
                 "made_with": run.made_with}
        if len(every_rank) > 1:
            saved.update(rank_torch_rng=[rng for rng, _ in every_rank], rank_cuda_rng=[rng for _, rng in every_rank])
        checkpoints.write(path, saved)
    distributed.barrier()


def _resume(path, made_with: dict, model, optimizer, scheduler, config: TrainConfig, device, rank: int) -> LoopState:
    """Load a checkpoint, once it is verified (``checkpoints.read``) and made with what this run is made
    with (``checkpoints.check_resume``), into the model, optimiser, scheduler and this process's
    generators; returns the loop's state at the step it was written."""
    saved = checkpoints.read(path)
    checkpoints.check_resume(path, saved["made_with"], made_with, saved["step"])
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    for group in optimizer.param_groups:  # the rate of the next step on this run's schedule (steps may have grown)
        group["lr"] = config.lr_at(saved["step"])
    generator = torch.Generator()
    generator.set_state(saved["generator"])
    torch_rng, cuda_rng = checkpoints.rng_of_rank(saved, rank, made_with["world_size"])
    torch.set_rng_state(torch_rng)
    if device.type == "cuda" and cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, device)
    return LoopState(generator, History(**saved["history"]), saved["step"], saved["running_loss"],
                     saved["running_steps"])


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; kill, job schedulers and torchrun passing a stop on


@contextlib.contextmanager
def _deferred_stop():
    """Within the block, a stop signal (``STOP_SIGNALS``) is only recorded, and the training loop reads
    the record after each step: the step finishes, a checkpoint is written, and then the loop stops
    (``_stop``). Yields a function that returns the first stop signal received, or None. A signal that
    was ignored (``SIG_IGN``, as for a job started in the background) stays ignored. Outside the main
    thread signals cannot be caught; there the function returns None and signals act as usual."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield lambda: received[0] if received else None
    finally:
        for signum, handler in previous.items():  # None: a handler not set from Python; restore the default
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _stop(signum: int | None) -> None:
    """End a run that a stop signal ended early, once its checkpoint is written: SIGTERM goes to the
    handler it would have met (by default the process ends, as a signalled one does); Ctrl-C, or a stop
    received by another process under torchrun, raises ``KeyboardInterrupt``."""
    if signum == signal.SIGTERM:
        signal.raise_signal(signum)
    raise KeyboardInterrupt
