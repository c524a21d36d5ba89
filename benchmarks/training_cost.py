"""What one training sequence costs under each objective: forward tokens and wall time, side by side.

A benchmark, not a test, for the paper's claim that its blockwise scheme is cheaper to learn
(Section 3.4.2). Each objective of ``maskdiff_tutor.train.OBJECTIVES`` trains its own copy of the
book's denoiser (the same initial weights) with the step of ``maskdiff_tutor.train.train``:

    a batch drawn from the data with the run's generator, train.training_loss (the objective's own
    loss: random masking, the block-causal one pass over [x_t, x_0], the paper's one pass per block
    over [clean prefix, noisy block], or left to right), the finiteness check and loss.item(),
    backward, gradient clipping at 1.0, AdamW (train.optimizer_and_schedule) and its scheduler

with bf16 autocast on CUDA and float32 elsewhere. Warm-up steps are discarded; then ``--repeats``
timed blocks of ``--steps`` steps run for each objective, interleaved (A B C ... A B C ...) so that
drift in clock speed or load hits all alike. Reported per objective: the forward tokens a
training sequence runs through the model (``train.forward_tokens_per_sequence``) and the wall
seconds per training sequence (median over the repeats, min..max), each also as a ratio to random
masking. The defaults are the settings of the book's stored blocks models (the ``ci`` scale of
``maskdiff_tutor.experiments.blocks``). Run ``python benchmarks/training_cost.py --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import torch
from machine import cpu_busy_fraction  # benchmarks/machine.py, beside this script

from maskdiff_tutor.blockwise import number_of_blocks
from maskdiff_tutor.denoiser import PRESETS, Denoiser, DenoiserConfig
from maskdiff_tutor.device import hardware_description, pick_device
from maskdiff_tutor.experiments.blocks import SCALES
from maskdiff_tutor.train import LINEAR, TrainConfig, forward_tokens_per_sequence, optimizer_and_schedule, training_loss

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROOT = pathlib.Path(__file__).resolve().parents[1]
# random; blockwise (block-causal, BD3-LM) and the paper's literal scheme at B = 4 and 8; left to right
OBJECTIVES = ("random", "blockwise:4", "blockwise:8", "blockwise_literal:4", "blockwise_literal:8", "left_to_right")
DATA_SEQUENCES = 1024  # sequences the batches are drawn from (their content does not change the time)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints a table; saves every setting and timing as JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scale", default="ci", choices=sorted(SCALES),
                   help="the blocks experiment's scale whose settings are the defaults of --seq-len, --preset, "
                        "--vocab-size, --batch-size and --lr ('ci': the book's stored blocks models, L = 32)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per training sequence L; default: the scale's")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="model size; default: the scale's")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="vocabulary including the mask (the last id); default: the scale's language + 1")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per training step; default: the scale's")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (does not change the time); default: the scale's")
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES),
                   help="objectives of maskdiff_tutor.train.OBJECTIVES, the blockwise ones as NAME:B; "
                        "'random' must be among them (the ratios are to it)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed training steps per repeat and per objective; default 10 on CPU/MPS, 20 on CUDA")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed blocks per objective, interleaved A B C ...; the median and range are over these")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps per objective before timing; default 3 on CPU/MPS, 10 on CUDA")
    p.add_argument("--device", default=None, help="'cpu', 'cuda', 'mps'; default: the best available")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads; default: torch's")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights, the data, the batches and the masks")
    p.add_argument("--out", default=None, help="JSON file; default benchmarks/results/training_cost_<device>.json")
    args = p.parse_args(argv)
    for name in ("seq_len", "vocab_size", "batch_size", "steps", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer; got {value}")
    if args.warmup is not None and args.warmup < 0:
        p.error(f"--warmup must be >= 0; got {args.warmup}")
    return args


def parse_objective(spec: str, seq_len: int) -> tuple[str, int | None]:
    """'random' -> ("random", None); 'blockwise:4' -> ("blockwise", 4); checked against L."""
    name, _, block = spec.partition(":")
    try:
        block_length = int(block) if block else None
        forward_tokens_per_sequence(name, seq_len, block_length)  # checks the objective and B
        if block_length is not None:
            number_of_blocks(seq_len, block_length)  # B divides L
    except ValueError as error:
        raise SystemExit(f"--objectives: {spec!r} is not an objective at seq_len {seq_len} ({error}); write "
                         "random, left_to_right, blockwise:B or blockwise_literal:B") from None
    return name, block_length


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Runner:
    """One objective: its model, optimiser, scheduler and generator; ``step()`` is one step of ``train()``."""

    def __init__(self, spec, objective, block_length, model_config, settings, device, seed):
        self.spec, self.objective, self.block_length, self.device = spec, objective, block_length, device
        torch.manual_seed(seed)  # the same initial weights for every objective, as in the blocks experiment
        self.model = Denoiser(model_config).to(device).train()
        total = settings["warmup"] + settings["repeats"] * settings["steps"]
        self.config = TrainConfig(steps=total, batch_size=settings["batch_size"], lr=settings["lr"],
                                  min_lr_ratio=0.0, warmup_steps=min(50, total // 10), objective=objective,
                                  block_length=block_length)
        self.optimizer, self.scheduler = optimizer_and_schedule(self.model, self.config)
        self.generator = torch.Generator().manual_seed(seed)  # batches, times and masks, as train() draws them
        self.mask_id = model_config.vocab_size - 1
        self.bf16 = device.type == "cuda"
        self.times, self.losses = [], []

    def step(self, data: torch.Tensor) -> float:
        """One optimiser step as ``maskdiff_tutor.train._step`` takes it (without its history records)."""
        index = torch.randint(data.shape[0], (self.config.batch_size,), generator=self.generator).to(self.device)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            parts = training_loss(self.model, data[index], self.config, LINEAR, self.mask_id, self.generator)
        loss = parts.loss.detach()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.spec}: the loss became {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    def run(self, data: torch.Tensor, steps: int) -> float:
        """``steps`` steps; returns wall-clock seconds (synchronised at both ends)."""
        sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = self.step(data)
        sync(self.device)
        self.losses.append(loss)
        return time.perf_counter() - start


def summarise(runners: list[Runner], seq_len: int, sequences_per_repeat: int) -> list[dict]:
    """One row per objective: forward tokens and wall seconds per training sequence, and their ratios
    to random masking."""
    rows = []
    for r in runners:
        per_sequence = [s / sequences_per_repeat for s in r.times]
        rows.append({"objective": r.objective, "block_length": r.block_length,
                     "forward_tokens_per_sequence": forward_tokens_per_sequence(r.objective, seq_len, r.block_length),
                     "seconds_per_repeat": r.times, "seconds_per_sequence": statistics.median(per_sequence),
                     "seconds_per_sequence_min": min(per_sequence), "seconds_per_sequence_max": max(per_sequence),
                     "last_loss_per_repeat": r.losses[-len(r.times):]})
    random = next(row for row in rows if row["objective"] == "random")
    for row in rows:
        row["forward_tokens_ratio"] = row["forward_tokens_per_sequence"] / random["forward_tokens_per_sequence"]
        row["seconds_ratio"] = row["seconds_per_sequence"] / random["seconds_per_sequence"]
        row["forward_tokens_per_s"] = row["forward_tokens_per_sequence"] / row["seconds_per_sequence"]
    return rows


def settings_of(args: argparse.Namespace, device: torch.device) -> dict:
    """Every setting, the scale's defaults filled in."""
    scale, accel = SCALES[args.scale], device.type == "cuda"
    return {"scale": args.scale, "seq_len": args.seq_len or scale.seq_len, "preset": args.preset or scale.preset,
            "vocab_size": args.vocab_size or scale.vocab_size + 1, "batch_size": args.batch_size or scale.batch_size,
            "lr": args.lr or scale.lr, "objectives": list(args.objectives),
            "steps": args.steps or (20 if accel else 10), "repeats": args.repeats,
            "warmup": args.warmup if args.warmup is not None else (10 if accel else 3),
            "device": str(device), "threads": torch.get_num_threads(), "seed": args.seed, "out": args.out,
            "autocast": "bf16" if accel else None, "data_sequences": DATA_SEQUENCES,
            "data": "uniform ids below the mask (the time does not depend on them)",
            "step": "maskdiff_tutor.train: batch by torch.randint, training_loss, isfinite and loss.item(), "
                    "backward, clip_grad_norm_(1.0), AdamW (optimizer_and_schedule), scheduler.step",
            "order": "warm-up each objective, then repeats interleaved A B C ... in the order of objectives"}


def commit() -> str | None:
    """The git commit of the code that ran, with '+' when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        code = ["maskdiff_tutor", "benchmarks/training_cost.py"]
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *code], cwd=ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_of(args, device)
    L, vocab = settings["seq_len"], settings["vocab_size"]
    specs = {spec: parse_objective(spec, L) for spec in args.objectives}
    if ("random", None) not in specs.values():
        raise SystemExit("--objectives must include 'random': every ratio is to random masking")
    model_config = DenoiserConfig.preset(settings["preset"], vocab_size=vocab, max_seq_len=L)
    runners = [Runner(spec, objective, block, model_config, settings, device, args.seed)
               for spec, (objective, block) in specs.items()]
    data_generator = torch.Generator().manual_seed(args.seed + 1)
    data = torch.randint(0, vocab - 1, (DATA_SEQUENCES, L), generator=data_generator).to(device)  # (N, L)
    print(f"device {device} ({hardware_description(device).get('gpu', 'cpu')}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, scale {args.scale}: L {L}, preset {settings['preset']}, vocab {vocab}, "
          f"batch {settings['batch_size']}; warm-up {settings['warmup']}, {settings['repeats']} x "
          f"{settings['steps']} timed steps per objective", flush=True)
    machine = {"cpu_busy_fraction_before": cpu_busy_fraction(),
               "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if device.type == "cpu" and (machine["cpu_busy_fraction_before"] or 0) > 0.2:
        print(f"warning: the CPUs were {100 * machine['cpu_busy_fraction_before']:.0f}% busy just before the run; "
              "another process on these cores slows multi-threaded steps far beyond its share: rerun when idle",
              flush=True)
    start = time.perf_counter()
    measure(runners, data, settings)
    machine["wall_seconds"] = time.perf_counter() - start
    machine["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    machine["cpu_busy_fraction_after"] = cpu_busy_fraction()
    rows = summarise(runners, L, settings["steps"] * settings["batch_size"])
    print_table(rows)
    record = {"benchmark": "training_cost",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([pathlib.Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
              "settings": settings,
              "model": {"config": dataclasses.asdict(model_config), "parameters": runners[0].model.num_parameters()},
              "versions": {"torch": torch.__version__, "python": platform.python_version(), "commit": commit()},
              "hardware": hardware_description(device), "results": rows, **machine}
    out = pathlib.Path(args.out) if args.out else RESULTS / f"training_cost_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return record


def measure(runners: list[Runner], data: torch.Tensor, settings: dict) -> None:
    """Warm-up, then the timed repeats interleaved across the objectives."""
    for r in runners:
        if settings["warmup"]:
            r.run(data, settings["warmup"])
    for repeat in range(settings["repeats"]):
        for r in runners:
            r.times.append(r.run(data, settings["steps"]))
        per_sequence = settings["steps"] * settings["batch_size"]
        print(f"  repeat {repeat + 1}/{settings['repeats']}: " + ", ".join(
            f"{r.spec} {1e3 * r.times[-1] / per_sequence:.3f}" for r in runners) + " ms per sequence", flush=True)


def print_table(rows: list[dict]) -> None:
    head = (f"{'objective':<18} {'B':>3} {'fwd tokens/seq':>14} {'x random':>9} {'ms/seq median':>14} "
            f"{'min..max':>15} {'x random':>9}")
    print(head)
    print("-" * len(head))
    for row in rows:
        block = "" if row["block_length"] is None else row["block_length"]
        print(f"{row['objective']:<18} {block:>3} {row['forward_tokens_per_sequence']:>14} "
              f"{row['forward_tokens_ratio']:>9.2f} {1e3 * row['seconds_per_sequence']:>14.3f} "
              f"{1e3 * row['seconds_per_sequence_min']:>7.3f}..{1e3 * row['seconds_per_sequence_max']:<6.3f} "
              f"{row['seconds_ratio']:>9.2f}")


if __name__ == "__main__":
    main()
