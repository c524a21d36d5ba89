"""Blockwise training and semi-autoregressive sampling: the fast paths against their references.

A benchmark, not a test (the tests prove the fast paths give the same numbers). In one run:

1. Training: the one-pass block-causal loss over [x_t, x_0] (``blockwise.blockwise_loss``)
   against the per-block loop (``blockwise_loss_loop``), a full step each (loss, backward,
   AdamW), tokens of data per second, at each sequence length and block length.
2. Sampling: ``block_causal.generate_block_causal`` with and without the KV cache, generated
   tokens per second, one token per step, at each sequence length.
3. Sampler overhead: the share of a cached sampling run spent outside the model's calls.

Each pair runs interleaved (A B A B) and the medians are compared. Results go to JSON with the
settings and the hardware. Run ``python benchmarks/blocks_and_cache.py --help``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import time

import torch

from maskdiff_tutor import block_causal, blockwise
from maskdiff_tutor.denoiser import PRESETS, Denoiser, DenoiserConfig
from maskdiff_tutor.device import hardware_description, pick_device
from maskdiff_tutor.schedules import LinearSchedule

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="toy", choices=sorted(PRESETS), help="model size (DenoiserConfig.preset)")
    p.add_argument("--vocab-size", type=int, default=256, help="vocabulary including the mask (the last id)")
    p.add_argument("--seq-lens", type=int, nargs="+", default=[256, 1024], help="sequence lengths L")
    p.add_argument("--train-blocks", type=int, nargs="*", default=[4, 8],
                   help="block lengths for training (none: skip the training measurement)")
    p.add_argument("--sample-block", type=int, default=8, help="block length for sampling")
    p.add_argument("--train-batch", type=int, default=2, help="sequences per training step")
    p.add_argument("--sample-batch", type=int, default=1, help="sequences generated at once")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median reported)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps; default the best available")
    p.add_argument("--out", default=None, help="JSON path; default benchmarks/results/blocks_and_cache_<device>.json")
    return p.parse_args(argv)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)
    device = pick_device(args.device)
    mask_id = args.vocab_size - 1
    config = DenoiserConfig.preset(args.preset, vocab_size=args.vocab_size, max_seq_len=2 * max(args.seq_lens))
    torch.manual_seed(0)
    model = Denoiser(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    results = {"training": [], "sampling": []}

    for L in args.seq_lens:
        x0 = torch.randint(0, mask_id, (args.train_batch, L), generator=generator).to(device)
        for block in args.train_blocks:
            x_t, t = blockwise.sample_block_noise(x0, block, LinearSchedule(), mask_id, generator)

            def train_step(loss_fn, x0=x0, x_t=x_t, t=t, block=block):  # this iteration's batch and block
                def run():
                    with torch.autocast(**autocast):
                        loss = loss_fn(model, x0, x_t, t, block, LinearSchedule(), mask_id).loss
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                return run

            fast, slow = train_step(blockwise.blockwise_loss), train_step(blockwise.blockwise_loss_loop)
            fast(), slow()  # warm-up
            times = {"one_pass": [], "loop": []}
            for _ in range(args.repeats):
                times["one_pass"].append(timed(fast, device))
                times["loop"].append(timed(slow, device))
            tokens = args.train_batch * L
            row = {"seq_len": L, "block_length": block, "tokens_per_step": tokens,
                   "seconds": times, **{f"{k}_tokens_per_s": tokens / statistics.median(v) for k, v in times.items()}}
            row["speedup"] = row["one_pass_tokens_per_s"] / row["loop_tokens_per_s"]
            results["training"].append(row)
            print(f"train  L={L:5d} block={block:2d}: one pass {row['one_pass_tokens_per_s']:9.0f} tok/s, "
                  f"loop {row['loop_tokens_per_s']:9.0f} tok/s, speed-up {row['speedup']:.2f}x", flush=True)

    model.eval()
    for L in args.seq_lens:
        prompt = torch.randint(0, mask_id, (args.sample_batch, args.sample_block), generator=generator).to(device)
        gen = L - args.sample_block

        def sample(cache, prompt=prompt, gen=gen):  # this length's prompt and generation length
            return lambda: block_causal.generate_block_causal(model, prompt, gen, mask_id, args.sample_block,
                                                              use_cache=cache)
        times = {"cached": [], "uncached": []}
        for _ in range(args.repeats):
            times["cached"].append(timed(sample(True), device))
            times["uncached"].append(timed(sample(False), device))
        tokens = args.sample_batch * gen
        row = {"seq_len": L, "block_length": args.sample_block, "generated_tokens": tokens, "seconds": times,
               **{f"{k}_tokens_per_s": tokens / statistics.median(v) for k, v in times.items()}}
        row["speedup"] = row["cached_tokens_per_s"] / row["uncached_tokens_per_s"]
        # overhead: the share of a cached run not spent inside model.step
        spent = []
        original = model.step

        def counting_step(*a, original=original, spent=spent, **k):  # this length's step and tally
            sync(device)
            start = time.perf_counter()
            out = original(*a, **k)
            sync(device)
            spent.append(time.perf_counter() - start)
            return out
        model.step = counting_step
        total = timed(sample(True), device)
        del model.step
        row["sampler_overhead_share"] = 1 - sum(spent) / total
        results["sampling"].append(row)
        print(f"sample L={L:5d} block={args.sample_block}: cached {row['cached_tokens_per_s']:8.1f} tok/s, "
              f"uncached {row['uncached_tokens_per_s']:8.1f} tok/s, speed-up {row['speedup']:.2f}x; "
              f"sampler overhead {100 * row['sampler_overhead_share']:.1f}% of a cached run", flush=True)

    out = pathlib.Path(args.out) if args.out else RESULTS / f"blocks_and_cache_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "blocks_and_cache", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "settings": vars(args), "model": {"config": vars(config) if hasattr(config, "__dict__") else str(config),
                                                 "parameters": model.num_parameters()},
              "hardware": hardware_description(device), "results": results}
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
