"""Training throughput of our ``Denoiser`` next to ``transformers.ModernBertForMaskedLM``.

A benchmark, not a test. Both models are built at the same width, depth, heads, MLP width,
vocabulary and sequence length, and each is trained with the same step:

    masked_diffusion_loss (linear schedule: t ~ U(0, 1] antithetic across the batch, x_t from
    forward_process.sample_xt, cross-entropy at the masked positions weighted by w(t) = 1/t),
    backward, gradient clipping at 1.0, AdamW step

which is the step of ``maskdiff_tutor.train.train`` (bf16 autocast on CUDA, float32 elsewhere).
Warm-up steps are discarded; then ``--repeats`` timed blocks of ``--steps`` steps run for each
model, interleaved (A B A B ...) so that drift in clock speed or load hits both alike. Reported:
tokens/second per block, its median and spread, achieved model FLOP/s and, on CUDA, the model
FLOPs utilisation (MFU) against ``--peak-tflops``.

ModernBERT is built from a config object; nothing is loaded from any hub. Run
``python benchmarks/train_throughput.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import statistics
import sys
import time

import torch
import torch.nn as nn
from machine import cpu_busy_fraction  # benchmarks/machine.py, beside this script

from maskdiff_tutor.denoiser import PRESETS, Denoiser, DenoiserConfig
from maskdiff_tutor.device import hardware_description, pick_device
from maskdiff_tutor.objectives import masked_diffusion_loss
from maskdiff_tutor.schedules import LinearSchedule

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
FLOPS_FORMULA = ("flops_per_token = 6 * N_nonembedding + 12 * n_layers * d_model * seq_len "
                 "(6N: forward + backward of every non-embedding weight; 12*l*d*L: attention scores "
                 "and values, forward + backward). The tied output head (6 * vocab * d_model per token) "
                 "is an embedding parameter and is not counted; see flops_per_token_with_lm_head.")
# AdamW settings of maskdiff_tutor.train (the learning rate does not change the speed)
LR, BETAS, GRAD_CLIP = 3e-3, (0.9, 0.98), 1.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints a table and the ratio ours / ModernBERT; "
                    "saves every setting and timing as JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="model size of maskdiff_tutor.denoiser.PRESETS (d_model, n_layers, n_heads); "
                        "ModernBERT gets the same hidden_size, num_hidden_layers and num_attention_heads")
    p.add_argument("--mlp-ratio", type=int, default=4,
                   help="MLP hidden width = mlp_ratio * d_model for our model, and ModernBERT's "
                        "intermediate_size (its MLP is a gated GLU: Wi maps d_model to 2 * intermediate_size, "
                        "so at the same intermediate_size it has 1.5x the MLP weights of ours)")
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per sequence (both models' max length); default 256 on CPU/MPS, 1024 on CUDA")
    p.add_argument("--batch-size", type=int, default=None,
                   help="sequences per training step; default 8 on CPU/MPS, 32 on CUDA")
    p.add_argument("--vocab-size", type=int, default=1024,
                   help="vocabulary of both models, the mask (last id) and ModernBERT's pad id (second last) "
                        "included; data tokens are uniform over the other ids")
    p.add_argument("--steps", type=int, default=None,
                   help="timed training steps per repeat and per model; default 5 on CPU/MPS, 20 on CUDA")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed blocks per model, interleaved A B A B ...; the median and spread are over these")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed training steps per model before timing (allocator, kernels, compile); "
                        "default 2 on CPU/MPS, 10 on CUDA")
    p.add_argument("--device", default=None,
                   help="'cpu', 'cuda', 'cuda:1', 'mps'; default: the best available "
                        "(maskdiff_tutor.device.pick_device)")
    p.add_argument("--precision", default=None, choices=("bf16", "fp32"),
                   help="bf16: autocast to bfloat16 (CUDA only; what train() does there); fp32: float32 weights and "
                        "activations (TF32 matrix products on CUDA); default bf16 on CUDA, fp32 elsewhere")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile both models (compile time falls in the warm-up)")
    p.add_argument("--modernbert-attention", default="global", choices=("global", "mixed"),
                   help="'global': full attention in every ModernBERT layer, as in ours; 'mixed': ModernBERT's "
                        "default of global attention every third layer and a 128-token sliding window elsewhere "
                        "(with sdpa the window is an attention mask: no fewer FLOPs)")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="peak dense bf16 TFLOP/s of the accelerator for MFU (989 = H100 SXM; ~756 H100 PCIe); "
                        "used on CUDA only")
    p.add_argument("--breakdown", action="store_true",
                   help="after the timing, also time forward+loss, backward and the optimiser step separately "
                        "(synchronised, so slightly slower in total) for each model")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights, the data and the masks")
    p.add_argument("--out", default=None,
                   help="JSON file for the results; default benchmarks/results/train_throughput_<device>.json")
    args = p.parse_args(argv)
    for name in ("seq_len", "batch_size", "vocab_size", "steps", "repeats", "mlp_ratio"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer; got {value}")
    if args.warmup is not None and args.warmup < 0:
        p.error(f"--warmup must be >= 0; got {args.warmup}")
    if args.vocab_size < 3:
        p.error("--vocab-size must be at least 3 (data, pad and mask ids)")
    return args


class ModernBertLogits(nn.Module):
    """``ModernBertForMaskedLM`` called as a denoiser: token ids (B, L) -> logits (B, L, V)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=x_t).logits


def build_modernbert(cfg: DenoiserConfig, attention: str):
    import transformers
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    layer_types = (["full_attention"] * cfg.n_layers if attention == "global" else
                   ["full_attention" if i % 3 == 0 else "sliding_attention" for i in range(cfg.n_layers)])
    kwargs = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
                  num_attention_heads=cfg.n_heads, intermediate_size=cfg.mlp_ratio * cfg.d_model,
                  max_position_embeddings=cfg.max_seq_len, layer_types=layer_types,
                  pad_token_id=cfg.vocab_size - 2, bos_token_id=None, eos_token_id=None,
                  cls_token_id=None, sep_token_id=None, tie_word_embeddings=True,
                  attention_dropout=0.0, mlp_dropout=0.0, embedding_dropout=0.0)
    config = ModernBertConfig(**kwargs, attn_implementation="sdpa")
    has_reference_compile = hasattr(config, "reference_compile")
    if has_reference_compile:  # transformers 4.x: would torch.compile parts of the model behind our back
        config.reference_compile = False
    model = ModernBertForMaskedLM(config)
    model.config._attn_implementation = "sdpa"
    embed = model.model.embeddings.tok_embeddings.weight
    total = sum(p.numel() for p in model.parameters())
    info = {"class": "transformers.ModernBertForMaskedLM", "transformers": transformers.__version__,
            "attn_implementation": model.config._attn_implementation, "attention": attention,
            "layer_types": layer_types,
            "reference_compile": (False if has_reference_compile else "field absent in this transformers version"),
            "config": {k: v for k, v in kwargs.items() if k != "layer_types"},
            "tied_embeddings": model.decoder.weight is embed,
            "params_total": total, "params_embedding": embed.numel(), "params_non_embedding": total - embed.numel()}
    return ModernBertLogits(model), info


def build_ours(cfg: DenoiserConfig):
    model = Denoiser(cfg)
    info = {"class": "maskdiff_tutor.denoiser.Denoiser", "config": dataclasses.asdict(cfg),
            "params_total": model.num_parameters(),
            "params_embedding": model.num_parameters() - model.num_parameters(non_embedding=True),
            "params_non_embedding": model.num_parameters(non_embedding=True)}
    return model, info


class Runner:
    """One model, its optimiser and its own mask generator; ``step()`` is one training step."""

    def __init__(self, name, model, info, device, compile_, seed, mask_id, schedule, bf16):
        self.name, self.model, self.info, self.device = name, model.to(device).train(), info, device
        self.step_model = torch.compile(model) if compile_ else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS)
        self.generator = torch.Generator().manual_seed(seed)  # same seed for both: same times and masks
        self.mask_id, self.schedule = mask_id, schedule
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
        self.times, self.losses, self.breakdown = [], [], None

    def step(self, x0: torch.Tensor) -> torch.Tensor:
        with torch.autocast(**self.autocast):
            parts = masked_diffusion_loss(self.step_model, x0, self.schedule, self.mask_id, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.optimizer.step()
        return parts.loss.detach()

    def run(self, batches, steps: int, offset: int) -> float:
        """``steps`` steps on successive batches; returns wall-clock seconds (synchronised)."""
        sync(self.device)
        start = time.perf_counter()
        for i in range(steps):
            loss = self.step(batches[(offset + i) % len(batches)])
        # one .item() per block (train() calls it every step; the input checks in masked_diffusion_loss
        # and Denoiser already synchronise every step on CUDA, for both models alike)
        self.losses.append(float(loss))
        sync(self.device)
        return time.perf_counter() - start

    def time_phases(self, batches, steps: int) -> dict:
        """Median seconds per step of forward+loss, backward (with clipping) and the AdamW step."""
        phases = {"forward_and_loss": [], "backward_and_clip": [], "optimizer": []}
        for i in range(steps):
            x0 = batches[i % len(batches)]
            sync(self.device)
            t0 = time.perf_counter()
            with torch.autocast(**self.autocast):
                parts = masked_diffusion_loss(self.step_model, x0, self.schedule, self.mask_id, self.generator)
            sync(self.device)
            t1 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            parts.loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
            sync(self.device)
            t2 = time.perf_counter()
            self.optimizer.step()
            sync(self.device)
            t3 = time.perf_counter()
            for key, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
                phases[key].append(seconds)
        return {key: statistics.median(values) for key, values in phases.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def flops_per_token(n_non_embedding: int, cfg: DenoiserConfig, seq_len: int) -> int:
    # flops_per_token = 6 N + 12 n_layers d_model L     (see FLOPS_FORMULA)
    return 6 * n_non_embedding + 12 * cfg.n_layers * cfg.d_model * seq_len


def summarise(runner: Runner, tokens_per_block: int, cfg: DenoiserConfig, seq_len: int, device, peak_tflops):
    rates = [tokens_per_block / s for s in runner.times]
    fpt = flops_per_token(runner.info["params_non_embedding"], cfg, seq_len)
    median = statistics.median(rates)
    q = statistics.quantiles(rates, n=4) if len(rates) > 1 else [median] * 3
    out = {"seconds_per_repeat": runner.times, "tokens_per_s_per_repeat": rates,
           "tokens_per_s_median": median, "tokens_per_s_min": min(rates), "tokens_per_s_max": max(rates),
           "tokens_per_s_iqr": [q[0], q[2]],
           "spread_percent": 100 * (max(rates) - min(rates)) / median,
           "flops_per_token": fpt,
           "flops_per_token_with_lm_head": fpt + 6 * cfg.vocab_size * cfg.d_model,
           "achieved_tflops": median * fpt / 1e12,
           "mfu": (median * fpt / (peak_tflops * 1e12)) if device.type == "cuda" else None,
           "last_loss_per_repeat": runner.losses[-len(runner.times):]}
    if device.type == "cuda":
        out["max_memory_allocated_gib"] = runner.max_memory_gib
    if runner.breakdown is not None:
        out["breakdown_seconds_per_step"] = runner.breakdown
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    accel = device.type == "cuda"
    seq_len = args.seq_len or (1024 if accel else 256)
    batch_size = args.batch_size or (32 if accel else 8)
    steps = args.steps or (20 if accel else 5)
    warmup = args.warmup if args.warmup is not None else (10 if accel else 2)
    precision = args.precision or ("bf16" if accel else "fp32")
    if precision == "bf16" and not accel:
        raise SystemExit(f"--precision bf16 is measured on CUDA only (train() autocasts to bf16 there); "
                         f"on {device.type} use --precision fp32")
    vocab, mask_id, pad_id = args.vocab_size, args.vocab_size - 1, args.vocab_size - 2
    cfg = DenoiserConfig.preset(args.preset, vocab_size=vocab, max_seq_len=seq_len, mlp_ratio=args.mlp_ratio)
    schedule = LinearSchedule()
    if accel:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(args.seed)
    ours, ours_info = build_ours(cfg)
    torch.manual_seed(args.seed)
    modernbert, mb_info = build_modernbert(cfg, args.modernbert_attention)
    bf16 = precision == "bf16"
    runners = [Runner("ours", ours, ours_info, device, args.compile, args.seed, mask_id, schedule, bf16),
               Runner("modernbert", modernbert, mb_info, device, args.compile, args.seed, mask_id, schedule, bf16)]

    data_gen = torch.Generator().manual_seed(args.seed + 1)
    n_batches = 4
    batches = [torch.randint(0, pad_id, (batch_size, seq_len), generator=data_gen).to(device)
               for _ in range(n_batches)]  # data ids exclude the pad and the mask
    tokens_per_block = steps * batch_size * seq_len

    print(f"device {device} ({hardware_description(device).get('gpu', 'cpu')}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, preset {args.preset}, seq_len {seq_len}, batch {batch_size}, "
          f"vocab {vocab}, warmup {warmup}, {args.repeats} x {steps} timed steps per model, "
          f"{precision}, compile {args.compile}, ModernBERT attention {args.modernbert_attention}", flush=True)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    busy_before = cpu_busy_fraction()
    if device.type == "cpu" and busy_before is not None and busy_before > 0.2:
        print(f"warning: the CPUs were {100 * busy_before:.0f}% busy just before the run; another process on "
              "these cores slows every multi-threaded op (OpenMP threads wait on each other) far beyond its "
              "share: rerun on an idle machine", flush=True)
    start = time.perf_counter()
    for r in runners:  # warm-up, discarded
        if warmup:
            r.run(batches, warmup, 0)
    for rep in range(args.repeats):  # A B A B ...
        for r in runners:
            if accel:
                torch.cuda.reset_peak_memory_stats(device)
            r.times.append(r.run(batches, steps, rep * steps))
            if accel:
                r.max_memory_gib = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"  repeat {rep + 1}/{args.repeats}: " + ", ".join(
            f"{r.name} {tokens_per_block / r.times[-1]:,.0f} tok/s" for r in runners), flush=True)
    if args.breakdown:
        for r in runners:
            r.breakdown = r.time_phases(batches, max(steps, 3))
    elapsed = time.perf_counter() - start

    results = {r.name: summarise(r, tokens_per_block, cfg, seq_len, device, args.peak_tflops) for r in runners}
    ratio = results["ours"]["tokens_per_s_median"] / results["modernbert"]["tokens_per_s_median"]
    print_table(runners, results, ratio, device, args.peak_tflops)

    import transformers
    record = {
        "benchmark": "train_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([pathlib.Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
        "settings": {**vars(args), "seq_len": seq_len, "batch_size": batch_size, "steps": steps, "warmup": warmup,
                     "mask_id": mask_id, "modernbert_pad_id": pad_id, "data": f"uniform ids in [0, {pad_id})",
                     "device": str(device), "precision": precision, "autocast": "bf16" if bf16 else None,
                     "tf32": accel, "optimizer": {"name": "AdamW", "lr": LR, "betas": BETAS},
                     "grad_clip": GRAD_CLIP,
                     "loss": "maskdiff_tutor.objectives.masked_diffusion_loss, LinearSchedule, weighted (w = 1/t), "
                             "antithetic times; x_t by forward_process.sample_xt",
                     "step": "forward + loss, backward, clip_grad_norm_(1.0), AdamW.step; loss.item() once per repeat",
                     "order": "warm-up each model, then repeats interleaved A B A B (A = ours)"},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "hardware": hardware_description(device),
        "models": {r.name: r.info for r in runners},
        "flops_formula": FLOPS_FORMULA,
        "peak_tflops": args.peak_tflops if accel else None,
        "tokens_per_repeat": tokens_per_block,
        "results": results,
        "ratio_ours_over_modernbert_tokens_per_s": ratio,
        "ratio_ours_over_modernbert_achieved_flops": (results["ours"]["achieved_tflops"]
                                                      / results["modernbert"]["achieved_tflops"]),
        "wall_seconds": elapsed,
        "cpu_busy_fraction_before": busy_before,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    out = pathlib.Path(args.out) if args.out else RESULTS / f"train_throughput_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return record


def print_table(runners, results, ratio, device, peak_tflops):
    cuda = device.type == "cuda"
    head = (f"{'model':<11} {'params':>11} {'non-emb':>11} {'tok/s median':>13} {'min..max':>21} "
            f"{'spread':>7} {'TFLOP/s':>8}" + (f" {'MFU':>6}" if cuda else ""))
    print(head)
    print("-" * len(head))
    for r in runners:
        s = results[r.name]
        line = (f"{r.name:<11} {r.info['params_total']:>11,} {r.info['params_non_embedding']:>11,} "
                f"{s['tokens_per_s_median']:>13,.0f} "
                f"{s['tokens_per_s_min']:>10,.0f}..{s['tokens_per_s_max']:<9,.0f} "
                f"{s['spread_percent']:>6.1f}% {s['achieved_tflops']:>8.4f}")
        if cuda:
            line += f" {100 * s['mfu']:>5.1f}%"
        print(line)
        if r.breakdown is not None:
            b = r.breakdown
            print(f"{'':<11} per step: forward+loss {1e3 * b['forward_and_loss']:.1f} ms, backward+clip "
                  f"{1e3 * b['backward_and_clip']:.1f} ms, AdamW {1e3 * b['optimizer']:.1f} ms")
    print(f"ratio ours / ModernBERT (tokens/s, medians): {ratio:.3f}")
    print("FLOPs: " + FLOPS_FORMULA + (f" MFU = achieved FLOP/s / {peak_tflops:g} TFLOP/s." if cuda else ""))


if __name__ == "__main__":
    main()
