"""Semi-AR blocks and blockwise training at equal compute (paper Section 3.4.2; the experiment the
paper does not run).

One denoiser architecture is trained with each objective of ``train.OBJECTIVES`` on the same data,
every run given the same number of tokens through the model (``forward_tokens_per_sequence``):

- random masking (LLaDA, MDLM), decoded semi-autoregressively in blocks of every size B with k
  tokens per step (LLaDA's ``block_length``: full attention, later blocks still masked);
- block-causal blockwise training at block sizes B (BD3-LM), decoded in its own blocks with the
  KV cache; the paper's literal blockwise scheme (no cache possible);
- left to right (next-token training), decoded one token at a time.

Measured for each: its likelihood bound on held-out data (nats per token; for the random-masking
model at every B through ``semi_autoregressive_nelbo``), and for each decoding (B, k, order) the
quality of what it generates from nothing: on the ground-truth language (a Zipf Markov chain) the
true NLL per token under the chain, exactly; on real text (``text=``), the NLL per token under a
judge (a left-to-right model trained with more compute on the same training text). Beside each,
the entropy of the generated tokens (a sampler can look fluent by repeating frequent tokens), the
number of denoiser calls and, with one token per step, how left-to-right the order was (Section
3.4.1 on trained models); for the random-masking model and the exact denoiser also greedy
confidence decoding after a one-token prompt, the paper's own setting.
"""

from __future__ import annotations

import math
import pathlib
import time
from dataclasses import asdict, dataclass

import torch

from .. import block_decoding, corpus, markov, remasking
from ..blockwise import semi_autoregressive_nelbo
from ..denoiser import Denoiser, DenoiserConfig, save_denoiser
from ..device import pick_device
from ..schedules import LinearSchedule
from ..train import TrainConfig, forward_tokens_per_sequence, train, training_loss
from .generation_order import order_statistics
from .result import ExperimentResult, environment

ORDERS = {"confidence": remasking.confidence, "random": remasking.random_score}


@dataclass(frozen=True)
class Scale:
    seq_len: int  # L: every sequence is generated from nothing, L tokens
    vocab_size: int  # chain only: V tokens (the mask is one more)
    s: float  # chain only: Zipf exponent of every row
    function_words: int  # chain only: tokens at ranks 2..f+1 of every row
    train_sequences: int  # chain: sequences sampled; text: at most this many chunks for training
    valid_sequences: int  # held-out sequences for the bounds
    preset: str  # denoiser size (DenoiserConfig.preset)
    random_steps: int  # optimiser steps of random masking; the others get the same forward tokens
    batch_size: int  # sequences per step
    lr: float  # peak learning rate
    trained_blocks: tuple  # block sizes of the block-causal models
    literal_blocks: tuple  # block sizes of the paper's literal scheme
    decode_blocks: tuple  # block sizes B for the random-masking model (L = the whole sequence)
    tokens_per_step: tuple  # k values (only k <= B is run)
    samples: int  # sequences generated per decoding
    bound_repeats: int  # Monte Carlo repeats of the held-out bounds
    judge_compute: float  # text only: the judge's forward tokens, in multiples of one model's


SCALES = {
    "ci": Scale(seq_len=32, vocab_size=32, s=2.0, function_words=2, train_sequences=20_000, valid_sequences=256,
                preset="toy", random_steps=900, batch_size=64, lr=4e-3, trained_blocks=(4, 8),
                literal_blocks=(8,), decode_blocks=(1, 2, 4, 8, 16, 32), tokens_per_step=(1, 2, 4, 8),
                samples=256, bound_repeats=32, judge_compute=2.0),
    "cpu": Scale(seq_len=64, vocab_size=64, s=1.5, function_words=4, train_sequences=100_000, valid_sequences=512,
                 preset="toy", random_steps=3000, batch_size=64, lr=4e-3, trained_blocks=(4, 8, 16),
                 literal_blocks=(8,), decode_blocks=(1, 2, 4, 8, 16, 32, 64), tokens_per_step=(1, 2, 4, 8),
                 samples=512, bound_repeats=32, judge_compute=2.0),
    "gpu": Scale(seq_len=128, vocab_size=512, s=1.1, function_words=8, train_sequences=500_000,
                 valid_sequences=4096, preset="small", random_steps=20_000, batch_size=256, lr=1e-3,
                 trained_blocks=(2, 4, 8, 16, 32), literal_blocks=(4, 8), decode_blocks=(1, 2, 4, 8, 16, 32, 128),
                 tokens_per_step=(1, 2, 4, 8), samples=4096, bound_repeats=32, judge_compute=4.0),
}


@dataclass(frozen=True)
class Language:
    train: torch.Tensor  # (N, L) training sequences
    valid: torch.Tensor  # (M, L) held-out sequences
    mask_id: int  # the mask; vocab_size = mask_id + 1
    log_prob: object  # callable tokens (S, L) -> (S,) log-probability under the reference (chain or judge)
    decode: object  # callable ids -> str for real text, None for the chain
    description: dict  # what the language is, for the record


def run(scale: str = "ci", device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
        text: str | pathlib.Path | None = None, save_models: str | pathlib.Path | None = None) -> ExperimentResult:
    """Train every objective at equal compute and measure it; see the module docstring.

    Args:
        scale: "ci" (about 90 s on 2 CPU cores, what the book runs), "cpu" (longer sequences and
            training: 25 minutes on one CPU core for the chain, 30 for Tiny Shakespeare) or "gpu"
            (larger language, model and sweep).
        device: None for the best available, or a device name that must exist.
        seed: seeds the language, the data, the models and the sampling.
        progress: show the training progress bars.
        text: a UTF-8 text file: use real text (character-level) instead of the Zipf chain.
        save_models: a folder to save every trained model in (``save_denoiser``, one sub-folder per
            model, spaces and "=" replaced by "_"), with ``tokenizer.json`` for real text; load them
            with ``load_denoiser`` and ``corpus.load_tokenizer``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    started, cfg, device = time.time(), SCALES[scale], pick_device(device)
    generator = torch.Generator().manual_seed(seed)
    schedule = LinearSchedule()
    if text is None:
        language, judge_history, tokenizer = _chain(cfg, generator), None, None
    else:
        language, judge_history, tokenizer = _text(cfg, pathlib.Path(text), generator, device, seed, progress)
    L, mask_id = cfg.seq_len, language.mask_id
    budget = cfg.random_steps * cfg.batch_size * L  # forward tokens every run gets

    runs = [("random", None)] + [("blockwise", b) for b in cfg.trained_blocks] + \
           [("blockwise_literal", b) for b in cfg.literal_blocks] + [("left_to_right", None)]
    models, training = {}, {}
    for objective, block in runs:
        name = objective if block is None else f"{objective} B={block}"
        steps = max(1, round(budget / (cfg.batch_size * forward_tokens_per_sequence(objective, L, block))))
        models[name] = _train(cfg, language, objective, block, steps, device, seed, progress)
        training[name] = {"objective": objective, "block_length": block, "steps": steps,
                          "history": models[name][1].to_dict()}

    if save_models is not None:
        folder = pathlib.Path(save_models)
        for name, (model, _) in models.items():
            save_denoiser(model, folder / name.replace(" ", "_").replace("=", "_"))
        if tokenizer is not None:
            tokenizer.save(folder / "tokenizer.json")
    metrics = {"reference": _reference(language, cfg, generator), "models": {}}
    valid = language.valid.to(device)
    for name, (model, _) in models.items():
        objective, block = training[name]["objective"], training[name]["block_length"]
        entry = {"objective": objective, "block_length": block, "steps": training[name]["steps"]}
        with torch.no_grad():
            if objective == "random":
                entry["bound_by_block"] = {str(b): _mean(semi_autoregressive_nelbo(
                    model, valid, b, schedule, mask_id, generator, cfg.bound_repeats)) for b in cfg.decode_blocks}
                entry["bound"] = entry["bound_by_block"].get(str(L))  # the whole sequence as one block
            else:
                entry["bound"] = _bound(model, valid, objective, block, schedule, mask_id, generator,
                                        cfg.bound_repeats)
        entry["decodings"] = _decode_all(model, objective, block, cfg, language, generator, device)
        if objective == "random":
            entry["greedy_after_prompt"] = _greedy_after_prompt(model, cfg, language, device)
        metrics["models"][name] = entry
    if text is None:  # the exact denoiser decoded the same ways: decoding error without model error
        exact = markov.ChainDenoiser(language.description["P"], L)
        metrics["models"]["exact denoiser"] = {"objective": None, "block_length": None, "steps": 0, "bound": None,
                                               "decodings": _decode_all(exact, "random", None, cfg, language,
                                                                        generator, torch.device("cpu")),
                                               "greedy_after_prompt": _greedy_after_prompt(exact, cfg, language,
                                                                                           torch.device("cpu"))}
    description = {k: v for k, v in language.description.items() if k != "P"}
    config = {"scale": asdict(cfg), "language": description, "schedule": "LinearSchedule()",
              "forward_token_budget": budget, "model": asdict(next(iter(models.values()))[0].config),
              "orders": list(ORDERS), "sampling": "float64 Gumbel, temperature 1, no prompt"}
    curves = {"training": training}
    if judge_history is not None:
        curves["judge"] = judge_history
    return ExperimentResult("blocks", scale, seed, config, metrics, curves, environment(device, started))


def _chain(cfg: Scale, generator: torch.Generator) -> Language:
    P = markov.zipf_chain(cfg.vocab_size, cfg.s, generator, function_words=cfg.function_words)
    pi = markov.stationary_distribution(P)
    train_data = markov.sample_sequences(P, cfg.train_sequences, cfg.seq_len, generator, initial=pi)
    valid = markov.sample_sequences(P, cfg.valid_sequences, cfg.seq_len, generator, initial=pi)
    return Language(train_data, valid, cfg.vocab_size, lambda x: markov.sequence_log_prob(P, x.cpu(), pi), None,
                    {"kind": "Zipf Markov chain, first token from its stationary distribution",
                     "vocab_size": cfg.vocab_size, "s": cfg.s, "function_words": cfg.function_words, "P": P})


def _text(cfg: Scale, path: pathlib.Path, generator: torch.Generator, device, seed: int, progress: bool):
    """Character-level real text, and a judge trained on the same training split."""
    raw = corpus.load_text(path)
    tokenizer = corpus.CharTokenizer.train(raw)
    sequences = corpus.chunk(tokenizer.encode(raw), cfg.seq_len)  # (N, L)
    if len(sequences) < 2 * cfg.valid_sequences:
        raise ValueError(f"text {str(path)!r} holds {len(sequences)} sequences of {cfg.seq_len} characters; the "
                         f"{cfg.valid_sequences} held-out sequences of scale {cfg} need at least twice as many")
    train_data, valid = corpus.split(sequences, cfg.valid_sequences / len(sequences), generator)
    train_data = train_data[: cfg.train_sequences]
    mask_id = tokenizer.mask_id
    language = Language(train_data, valid, mask_id, None, None, {})
    judge_steps = max(1, round(cfg.judge_compute * cfg.random_steps / 2))  # left to right costs 2L per sequence
    judge, history = _train(cfg, language, "left_to_right", None, judge_steps, device, seed + 1, progress)
    judge_config = TrainConfig(objective="left_to_right")

    @torch.no_grad()
    def log_prob(x):
        x = x.to(device)
        return -training_loss(judge, x, judge_config, LinearSchedule(), mask_id).nll.sum(-1).double().cpu()

    description = {"kind": "character-level text", "path": str(path), "characters": len(raw),
                   "vocab_size": mask_id, "train_sequences": len(train_data), "valid_sequences": len(valid),
                   "judge": f"left-to-right model, same preset, {cfg.judge_compute}x the forward tokens",
                   "judge_steps": judge_steps}
    return Language(train_data, valid, mask_id, log_prob, tokenizer.decode, description), history.to_dict(), tokenizer


def _train(cfg, language, objective, block, steps, device, seed, progress):
    torch.manual_seed(seed)
    config = DenoiserConfig.preset(cfg.preset, vocab_size=language.mask_id + 1, max_seq_len=cfg.seq_len)
    model = Denoiser(config)
    train_config = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, min_lr_ratio=0.0,
                               warmup_steps=min(50, steps // 10), log_every=max(1, steps // 50),
                               objective=objective, block_length=block)
    history = train(model, language.train, language.mask_id, train_config, device=device, seed=seed,
                    progress=progress)
    return model, history


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean())


@torch.no_grad()
def _bound(model, valid, objective, block, schedule, mask_id, generator, repeats) -> float:
    """The held-out NELBO (NLL for left to right) in nats per token, averaged over ``repeats``."""
    config = TrainConfig(objective=objective, block_length=block)
    return sum(float(training_loss(model, valid, config, schedule, mask_id, generator).loss)
               for _ in range(repeats)) / repeats


def _entropy(tokens: torch.Tensor, vocab_size: int) -> float:
    """Entropy in nats of the unigram distribution of ``tokens``."""
    counts = torch.bincount(tokens.flatten().cpu(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def _reference(language: Language, cfg: Scale, generator) -> dict:
    nll = -language.log_prob(language.valid) / cfg.seq_len
    reference = {"valid_nll": _mean(nll), "valid_ppl": math.exp(_mean(nll)),
                 "valid_entropy": _entropy(language.valid, language.mask_id)}
    if "P" in language.description:
        P = language.description["P"]
        pi = markov.stationary_distribution(P)
        h_pi, h_rate = float(-(pi * pi.log()).sum()), float(-(pi.unsqueeze(-1) * P * P.log()).sum())
        reference["exact_nll"] = (h_pi + (cfg.seq_len - 1) * h_rate) / cfg.seq_len  # the chain's entropy per token
        reference["stationary_entropy"] = h_pi
    return reference


def _decodings(objective: str, block: int | None, cfg: Scale):
    """(B, k, order) for a model trained with ``objective``."""
    if objective == "left_to_right":
        return [(1, 1, "confidence")]
    blocks = cfg.decode_blocks if objective == "random" else (block,)
    return [(b, k, order) for b in blocks for k in cfg.tokens_per_step if k <= b for order in ORDERS
            if order == "confidence" or k < b]  # with k = B (or B = 1) the order inside a block is moot


@torch.no_grad()
def _decode_all(model, objective, block, cfg: Scale, language: Language, generator, device) -> list:
    prompt = torch.empty(cfg.samples, 0, dtype=torch.long, device=device)
    records = []
    for b, k, order in _decodings(objective, block, cfg):
        common = dict(tokens_per_step=k, score=ORDERS[order], generator=generator, greedy=False)
        if objective == "random":
            decoded = remasking.generate(model, prompt, cfg.seq_len, language.mask_id, block_length=b, **common)
        else:
            literal = objective == "blockwise_literal"
            decoded = block_decoding.generate_block_causal(model, prompt, cfg.seq_len, language.mask_id, b,
                                                           use_cache=not literal, causal_prefix=not literal, **common)
        tokens = decoded.tokens.cpu()
        nll = -language.log_prob(tokens) / cfg.seq_len  # (S,) reference NLL per token
        record = {"block_length": b, "tokens_per_step": k, "order": order, "nfe": decoded.nfe, "nll": _mean(nll),
                  "ppl": math.exp(_mean(nll)), "entropy": _entropy(tokens, language.mask_id)}
        if k == 1:  # how autoregressive the order was (Section 3.4.1), on this trained model
            record.update(order_statistics(decoded.order.cpu(), slice(0, None)))
        if language.decode is not None:
            record["examples"] = [language.decode(row) for row in tokens[:2]]
        records.append(record)
    return records


@torch.no_grad()
def _greedy_after_prompt(model, cfg: Scale, language: Language, device) -> dict:
    """Greedy confidence decoding (LLaDA at temperature 0), one token per step, the rest of the
    sequence as one block, after the first token of each held-out sequence: the setting of the
    paper's Section 3.4.1. How left to right its order is, and the reference NLL of the result."""
    prompt = language.valid[:, :1].to(device)  # (M, 1)
    decoded = remasking.generate(model, prompt, cfg.seq_len - 1, language.mask_id, tokens_per_step=1, greedy=True)
    nll = -language.log_prob(decoded.tokens.cpu()) / cfg.seq_len
    return {"prompts": prompt.shape[0], "nll": _mean(nll), "ppl": math.exp(_mean(nll)),
            **order_statistics(decoded.order.cpu(), slice(1, None))}
