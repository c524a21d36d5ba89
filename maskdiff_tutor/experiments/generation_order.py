"""Generation order (paper Section 3.4.1) where the denoiser is exact.

On the ground-truth language (a Zipf Markov chain meeting Assumptions 3-4) and on its variant with
an absorbing end-of-text token, generate after a one-token prompt one token per step with the
exact denoiser, choosing the position by confidence, margin, entropy or at random, and measure:

- how autoregressive the order is: the share of steps that decode the leftmost remaining mask
  (and the rightmost), and the rank correlation between position and decoding step;
- how fluent the result is: its true perplexity under the chain (over the sequences the chain
  can produce) and the share it cannot produce at all;
- the same with k tokens per step, where the order starts to matter for quality.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from .. import decoders, decoding, markov
from ..device import generator_on, pick_device
from .result import LegacyResult as ExperimentResult, environment

# name -> (score, temperature): confidence is tried greedy (LLaDA at temperature 0) and sampled
DECODINGS = {"confidence, greedy": (decoding.confidence, 0.0), "confidence, sampled": (decoding.confidence, 1.0),
             "margin, sampled": (decoding.margin, 1.0), "entropy, sampled": (decoding.negative_entropy, 1.0),
             "random order, sampled": (decoding.random_score, 1.0)}

LANGUAGES = ("zipf chain", "with end-of-text")  # the plain chain, and its variant with an absorbing end-of-text


@dataclass(frozen=True)
class Measured:
    """What one setting (language, length, decoding, tokens per step) measured."""
    true_ppl: float | None  # perplexity under the chain of the sequences it can produce; None if it produces none
    impossible_share: float  # share of generated sequences the chain cannot produce
    nfe: int  # denoiser calls per sequence
    leftmost_share: float | None = None  # one token per step only: share of steps that took the leftmost mask
    rightmost_share: float | None = None  # ... the rightmost mask
    spearman_position_vs_step: float | None = None  # ... rank correlation of position and decoding step
    example_order: tuple | None = None  # ... the decoding step of each position of the first sequence


@dataclass(frozen=True)
class Scale:
    """The language and decoding settings of a scale."""
    vocab_size: int  # V, tokens of the chain (the last one is end-of-text in the variant)
    s: float  # Zipf exponent of every row
    function_words: int  # tokens at ranks 2..f+1 of every row
    lengths: tuple  # generated lengths to try (the prompt is one token)
    samples: int  # sequences per setting
    tokens_per_step: tuple  # k values for the quality comparison


SCALES = {
    "ci": Scale(vocab_size=32, s=2.0, function_words=2, lengths=(32, 96), samples=64, tokens_per_step=(1, 4)),
    # gpu: the exact denoiser and the decoders on the GPU, sized with the other experiments to run
    # side by side in scripts/gpu-run.sh's budget of under 10 minutes on one H100-class GPU
    "gpu": Scale(vocab_size=256, s=1.5, function_words=4, lengths=(32, 128, 512), samples=1000,
                 tokens_per_step=(1, 2, 4, 8)),
}


def order_statistics(order: torch.Tensor, generated: slice) -> dict:
    """How left-to-right a decoding order is. ``order`` (B, L) holds the step of each position."""
    steps = order[:, generated].double()  # (B, G)
    B, G = steps.shape
    leftmost = rightmost = 0
    for step in range(G):
        remaining = steps >= step  # (B, G) still masked before this step
        first = remaining.double().argmax(-1)  # (B,) leftmost remaining
        last = G - 1 - remaining.flip(-1).double().argmax(-1)  # (B,) rightmost remaining
        chosen = (steps == step).double().argmax(-1)  # (B,) position decoded at this step
        leftmost += int((chosen == first).sum())
        rightmost += int((chosen == last).sum())
    position = torch.arange(G, dtype=torch.float64)
    ranks = steps.argsort(-1).argsort(-1).double()  # (B, G) decoding rank of each position
    # Spearman correlation between position and decoding rank (1: left to right, -1: right to left)
    rho = 1 - 6 * ((ranks - position) ** 2).sum(-1) / (G * (G**2 - 1))
    return {"leftmost_share": leftmost / (B * G), "rightmost_share": rightmost / (B * G),
            "spearman_position_vs_step": float(rho.mean())}


def unigram_entropy(tokens: torch.Tensor, vocab_size: int) -> float:
    """Entropy in nats of the unigram distribution of ``tokens`` (ids below ``vocab_size``): how
    varied generated text is."""
    counts = torch.bincount(tokens.flatten().cpu(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def run(scale: str = "ci", device: str | torch.device | None = None, seed: int = 0,
        progress: bool = False) -> ExperimentResult:
    """Measure generation orders with the exact denoiser; see the module docstring.

    Args:
        scale: "ci" (seconds on a CPU) or "gpu" (larger language, longer sequences, more samples).
        device: where the exact denoiser and the decoders compute: a CUDA device, or else the CPU
            (the denoiser is float64, which MPS lacks).
        seed: seeds the chain, the prompts and the sampling.
        progress: unused (nothing is trained); accepted for the command line.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    started, cfg, device = time.time(), SCALES[scale], pick_device(device)
    decode_on = device if device.type == "cuda" else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    noise = generator_on(decode_on, generator, seed + 1)
    plain = markov.zipf_chain(cfg.vocab_size, cfg.s, generator, function_words=cfg.function_words)
    eos_id = cfg.vocab_size - 1
    languages = dict(zip(LANGUAGES, (plain, markov.with_end_of_text(plain, eos_id))))
    metrics = {}
    for language, P in languages.items():
        # prompts from the plain chain's stationary distribution, never end-of-text itself
        pi = markov.stationary_distribution(plain)
        pi[eos_id] = 0
        prompts = torch.multinomial(pi / pi.sum(), cfg.samples, replacement=True, generator=generator).unsqueeze(1)
        prompts = prompts.to(decode_on)
        for length in cfg.lengths:
            exact = markov.ChainDenoiser(P, length + 1, initial=pi / pi.sum())
            for name, (score, temperature) in DECODINGS.items():
                for k in cfg.tokens_per_step:
                    decoded = decoders.generate(exact, prompts, length, exact.mask_id, score=score, tokens_per_step=k,
                                                generator=noise, temperature=temperature)
                    nll = -markov.sequence_log_prob(P, decoded.tokens) / length  # (B,), inf if impossible
                    possible = torch.isfinite(nll)
                    row = {"true_ppl": math.exp(float(nll[possible].mean())) if possible.any() else None,
                           "impossible_share": 1 - float(possible.double().mean()), "nfe": decoded.nfe}
                    if k == 1:
                        row.update(order_statistics(decoded.order.cpu(), slice(1, None)))
                        row["example_order"] = decoded.order[0, 1:].tolist()
                    metrics[_key(language, length, name, k)] = row
    config = {"scale": asdict(cfg), "eos_id": eos_id, "denoiser": "exact (markov.ChainDenoiser)",
              "sampling": "Gumbel in float64 at temperature 1 (sampled) or 0 (greedy)"}
    return ExperimentResult("generation_order", scale, seed, config, metrics, {}, environment(device, started))


def _key(language: str, length: int, decoding_name: str, tokens_per_step: int) -> str:
    """Where ``run`` stores a setting in ``result.metrics``."""
    return f"{language} | L={length} | {decoding_name} | k={tokens_per_step}"


def measured(result: ExperimentResult, language: str, length: int, decoding_name: str,
             tokens_per_step: int = 1) -> Measured:
    """What ``result`` (of ``run``) measured for one setting: ``language`` one of ``LANGUAGES``,
    ``length`` one of the scale's lengths, ``decoding_name`` one of ``DECODINGS``, ``tokens_per_step``
    one of the scale's k values."""
    scale = result.config["scale"]
    for name, value, allowed in (("language", language, list(LANGUAGES)), ("length", length, list(scale["lengths"])),
                                 ("decoding_name", decoding_name, list(DECODINGS)),
                                 ("tokens_per_step", tokens_per_step, list(scale["tokens_per_step"]))):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    row = dict(result.metrics[_key(language, length, decoding_name, tokens_per_step)])
    if row.get("example_order") is not None:
        row["example_order"] = tuple(row["example_order"])
    return Measured(**row)
