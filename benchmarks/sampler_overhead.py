"""The sampler's overhead: an earlier version of the unmasking loop against today's, side by side.

A benchmark, not a test (the decoder tests prove that both give the same tokens). It loads the
decoding modules of an earlier commit (``--old``, default 670c698, the loop before it became
named step functions) from git into temporary modules beside today's, builds the ``--preset``
model once, and at each sequence length runs ``block_causal.generate_block_causal`` with the KV
cache, one token per step (the sampling run of ``blocks_and_cache.py``), with the old and the new code:

1. **With the model**: ``--warmup`` untimed runs of each, then ``--repeats`` rounds of old, new,
   new, old (so that drift and the place in a round hit both alike). Each run is timed whole and
   inside ``model.step``, by the wall clock and by the process's CPU time; the sampler overhead
   is the share of a run spent outside the model's calls.
2. **The sampler alone**: the same rounds with a stand-in model whose ``step`` returns fixed
   logits at once, so that a run is all sampler: microseconds per step, the cost that the model's
   time hides in (1) and that varies less from run to run.

Reported per length and version: the median (and least) seconds of a run, of its time outside the
model and its overhead share, and the ratios new / old of the medians. Before timing, each length
checks that the two versions give the same tokens, order, calls and scores. Results go to JSON
with the settings and the hardware. Run ``python benchmarks/sampler_overhead.py --help``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import torch
from machine import cpu_busy_fraction  # benchmarks/machine.py, beside this script

from maskdiff_tutor import block_causal
from maskdiff_tutor.denoiser import PRESETS, Denoiser, DenoiserConfig
from maskdiff_tutor.device import hardware_description

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OLD_MODULES = ("_checks", "clean_distribution", "decoding", "decoders")  # loaded in this order
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # elapsed; CPU time of this process's threads
ROUND = ("old", "new", "new", "old")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--old", default="670c698", help="git commit of the earlier decoding modules")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size (DenoiserConfig.preset)")
    p.add_argument("--vocab-size", type=int, default=256, help="vocabulary including the mask (the last id)")
    p.add_argument("--seq-lens", type=int, nargs="+", default=[256, 1024], help="sequence lengths L")
    p.add_argument("--sample-block", type=int, default=8, help="block length (the prompt is one block)")
    p.add_argument("--repeats", type=int, default=10, help="rounds of old, new, new, old per length")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each version per length")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="JSON path; default benchmarks/results/sampler_overhead_cpu.json")
    return p.parse_args(argv)


def load_old_decoders(commit: str):
    """The ``decoders`` module of ``commit``, with that commit's ``decoding``, ``clean_distribution``
    and ``_checks`` beside it, as modules ``maskdiff_tutor._old_<name>`` (their relative imports
    of each other rewritten; other modules of the package are today's)."""
    for name in OLD_MODULES:
        source = subprocess.run(["git", "show", f"{commit}:maskdiff_tutor/{name}.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
        for other in OLD_MODULES:
            source = source.replace(f"from .{other} import", f"from ._old_{other} import")
        qualified = f"maskdiff_tutor._old_{name}"
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(qualified, loader=None))
        module.__package__ = "maskdiff_tutor"
        sys.modules[qualified] = module
        exec(compile(source, f"{commit}:maskdiff_tutor/{name}.py", "exec"), module.__dict__)
    return sys.modules["maskdiff_tutor._old_decoders"]


class TimedSteps:
    """Wraps ``model.step`` and adds up the seconds spent inside it, by each clock."""

    def __init__(self, model):
        self.original, self.seconds = model.step, dict.fromkeys(CLOCKS, 0.0)

    def __call__(self, *args, **kwargs):
        start = {name: clock() for name, clock in CLOCKS.items()}
        out = self.original(*args, **kwargs)
        for name, clock in CLOCKS.items():
            self.seconds[name] += clock() - start[name]
        return out


class StandIn:
    """A block-causal model that computes nothing: ``step`` returns fixed logits (B, n, V) and empty
    keys and values, so that a sampling run with it is all sampler."""

    def __init__(self, config, batch: int, block: int):
        self.config = config
        self.logits = torch.randn(batch, block, config.vocab_size, generator=torch.Generator().manual_seed(1))

    def step(self, x, position_ids, past_kv=None):
        n = x.shape[1]
        kv = torch.zeros(x.shape[0], 1, n, 1)  # (B, heads, n, head dim)
        return self.logits[:, :n], [(kv, kv)]


def timed_run(module, model, prompt, gen_length, mask_id, block) -> tuple[dict, object]:
    """({clock: (seconds of the whole run, seconds inside model.step)}, the result) of one cached
    sampling run."""
    steps = TimedSteps(model)
    model.step = steps
    try:
        start = {name: clock() for name, clock in CLOCKS.items()}
        decoded = module.generate_block_causal(model, prompt, gen_length, mask_id, block, use_cache=True)
        total = {name: clock() - start[name] for name, clock in CLOCKS.items()}
    finally:
        del model.step
    return {name: (total[name], steps.seconds[name]) for name in CLOCKS}, decoded


def same_result(a, b) -> bool:
    return (torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order) and a.nfe == b.nfe
            and torch.equal(a.confidence.nan_to_num(-1.0), b.confidence.nan_to_num(-1.0)))


def summary(runs: list[tuple[float, float]]) -> dict:
    """Every run's seconds (whole, inside the model, outside it) and overhead share; their medians
    and least values."""
    seconds, inside = [r[0] for r in runs], [r[1] for r in runs]
    outside = [s - m for s, m in runs]
    shares = [o / s for o, s in zip(outside, seconds, strict=True)]
    return {"seconds": seconds, "model_seconds": inside, "outside_seconds": outside, "overhead_share": shares,
            "median_seconds": statistics.median(seconds), "median_outside_seconds": statistics.median(outside),
            "median_overhead_share": statistics.median(shares), "least_seconds": min(seconds),
            "least_outside_seconds": min(outside)}


def compare(runs: dict) -> dict:
    """The summaries of the old and the new runs by one clock, and the ratios new / old of their medians."""
    row = {name: summary(r) for name, r in runs.items()}
    row["new_over_old_seconds"] = row["new"]["median_seconds"] / row["old"]["median_seconds"]
    row["new_over_old_outside_seconds"] = row["new"]["median_outside_seconds"] / row["old"]["median_outside_seconds"]
    return row


def rounds(versions: dict, model, prompt, gen: int, mask_id: int, args) -> dict:
    """Check that both versions decode alike, warm up, then time ``args.repeats`` rounds:
    {clock: {version: [(seconds, seconds inside the model), ...]}}."""
    first = {name: timed_run(module, model, prompt, gen, mask_id, args.sample_block)[1]
             for name, module in versions.items()}
    if not same_result(first["old"], first["new"]):
        raise SystemExit(f"L = {prompt.shape[1] + gen}: the old and the new decoders give different results")
    for _ in range(args.warmup - 1):
        for module in versions.values():
            timed_run(module, model, prompt, gen, mask_id, args.sample_block)
    runs = {clock: {"old": [], "new": []} for clock in CLOCKS}
    for _ in range(args.repeats):
        for name in ROUND:
            for clock, timing in timed_run(versions[name], model, prompt, gen, mask_id, args.sample_block)[0].items():
                runs[clock][name].append(timing)
    return runs


def measure(versions: dict, model, L: int, mask_id: int, generator, args) -> dict:
    """One sequence length: the runs with the model (by each clock) and with the stand-in."""
    prompt = torch.randint(0, mask_id, (1, args.sample_block), generator=generator)
    gen = L - args.sample_block
    row = {"seq_len": L, "block_length": args.sample_block, "generated_tokens": gen,
           **{clock: compare(r) for clock, r in rounds(versions, model, prompt, gen, mask_id, args).items()}}
    for clock in CLOCKS:
        c = row[clock]
        print(f"L={L:5d} {clock:4}: old {c['old']['median_seconds']:.3f} s/run, overhead "
              f"{100 * c['old']['median_overhead_share']:.1f}%; new {c['new']['median_seconds']:.3f} s/run, "
              f"overhead {100 * c['new']['median_overhead_share']:.1f}%; new/old: whole run "
              f"{c['new_over_old_seconds']:.3f}, outside the model {c['new_over_old_outside_seconds']:.3f}",
              flush=True)
    alone = rounds(versions, StandIn(model.config, 1, args.sample_block), prompt, gen, mask_id, args)["wall"]
    per_step = {name: [1e6 * (seconds - inside) / gen for seconds, inside in r] for name, r in alone.items()}
    row["sampler_alone"] = {"microseconds_per_step": per_step,
                            **{f"median_{name}": statistics.median(v) for name, v in per_step.items()},
                            **{f"least_{name}": min(v) for name, v in per_step.items()}}
    row["sampler_alone"]["new_over_old"] = row["sampler_alone"]["median_new"] / row["sampler_alone"]["median_old"]
    a = row["sampler_alone"]
    print(f"L={L:5d} sampler alone: old {a['median_old']:.1f} us/step, new {a['median_new']:.1f} us/step, "
          f"new/old {a['new_over_old']:.3f}", flush=True)
    return row


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    versions = {"old": load_old_decoders(args.old), "new": block_causal}
    mask_id = args.vocab_size - 1
    config = DenoiserConfig.preset(args.preset, vocab_size=args.vocab_size, max_seq_len=2 * max(args.seq_lens))
    torch.manual_seed(0)
    model = Denoiser(config).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    load_before, busy_before = os.getloadavg(), cpu_busy_fraction()
    if busy_before is not None and busy_before > 0.2:
        print(f"warning: the CPUs were {100 * busy_before:.0f}% busy just before the run: the shares and times "
              "are noisier than on an idle machine; rerun when it is idle")
    results = [measure(versions, model, L, mask_id, generator, args) for L in args.seq_lens]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    modules = [f"maskdiff_tutor/{name}.py" for name in OLD_MODULES]
    dirty = bool(subprocess.run(["git", "status", "--porcelain", *modules], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    record = {"benchmark": "sampler_overhead", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "settings": vars(args),
              "new": f"{head.strip()}{' with uncommitted changes to these modules' if dirty else ''}",
              "model": {"config": vars(config), "parameters": model.num_parameters()},
              "hardware": hardware_description(device), "cpu_busy_before": busy_before,
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "results": results}
    out = pathlib.Path(args.out) if args.out else RESULTS / "sampler_overhead_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
