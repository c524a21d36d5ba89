"""Generation order (paper Section 3.4.1) where the denoiser is exact.

On the ground-truth language (a Zipf Markov chain meeting Assumptions 3-4) and on its variant with
an absorbing end-of-text token, generate after a one-token prompt one token per step with the
exact denoiser, choosing the position by confidence, margin, entropy or at random, and measure:

- how autoregressive the order is: the share of steps that decode the leftmost remaining mask
  (and the rightmost), and the rank correlation between position and decoding step;
- how fluent the result is: its true perplexity under the chain (over the sequences the chain
  can produce) and the share it cannot produce at all;
- the same with k tokens per step, where the order starts to matter for quality.

``run`` returns a :class:`GenerationOrderResult` whose metrics hold one :class:`Measured` row per
setting (language, length, decoding, k); ``result.metrics.measured(...)`` finds one and
``result.metrics.table(...)`` the rows of one of the chapter's tables.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .. import decoders, decoding, markov
from ..device import generator_on, pick_device
from ..records import distinct
from .result import Environment, ExperimentResult

# name -> (score, temperature): confidence is tried greedy (LLaDA at temperature 0) and sampled
DECODINGS = {"confidence, greedy": (decoding.confidence, 0.0), "confidence, sampled": (decoding.confidence, 1.0),
             "margin, sampled": (decoding.margin, 1.0), "entropy, sampled": (decoding.negative_entropy, 1.0),
             "random order, sampled": (decoding.random_score, 1.0)}

LANGUAGES = ("zipf chain", "with end-of-text")  # the plain chain, and its variant with an absorbing end-of-text


@dataclass(frozen=True)
class Scale:
    """The language and decoding settings of a scale."""
    vocab_size: int  # V, tokens of the chain (the last one is end-of-text in the variant)
    s: float  # Zipf exponent of every row
    function_words: int  # tokens at ranks 2..f+1 of every row
    lengths: tuple[int, ...]  # generated lengths to try, in tokens (the prompt is one token)
    samples: int  # sequences per setting
    tokens_per_step: tuple[int, ...]  # k values for the quality comparison


SCALES = {
    "ci": Scale(vocab_size=32, s=2.0, function_words=2, lengths=(32, 96), samples=64, tokens_per_step=(1, 4)),
    # gpu: the exact denoiser and the decoders on the GPU, sized with the other experiments to run
    # side by side in scripts/gpu-run.sh's budget of under 10 minutes on one H100-class GPU
    "gpu": Scale(vocab_size=256, s=1.5, function_words=4, lengths=(32, 128, 512), samples=1000,
                 tokens_per_step=(1, 2, 4, 8)),
}


@dataclass(frozen=True)
class Config:
    """Every setting that produced a result."""
    scale: Scale  # the language and decoding settings
    eos_id: int  # the end-of-text token of the variant (the chain's last token), absorbing
    denoiser: str  # what predicted the masks: the chain's exact denoiser
    sampling: str  # how tokens were drawn


@dataclass(frozen=True)
class Measured:
    """What one setting (language, length, decoding, tokens per step) measured."""
    language: str  # one of LANGUAGES
    length: int  # tokens generated after the one-token prompt
    decoding: str  # one of DECODINGS
    tokens_per_step: int  # k
    true_ppl: float | None  # perplexity under the chain of the sequences it can produce; None if it produces none
    impossible_share: float  # share of generated sequences the chain cannot produce
    nfe: int  # denoiser calls per sequence
    entropy: float  # entropy of the generated tokens' unigram distribution, nats (Metrics.stationary_entropy)
    leftmost_share: float | None = None  # one token per step only: share of steps that took the leftmost mask
    rightmost_share: float | None = None  # ... the rightmost mask
    spearman_position_vs_step: float | None = None  # ... rank correlation of position and decoding step
    example_order: tuple[int, ...] | None = None  # ... the decoding step of each position of the first sequence


@dataclass(frozen=True)
class Metrics:
    """Every setting measured, one row each, in the order run: language, length, decoding, k."""
    settings: tuple[Measured, ...]
    stationary_entropy: float  # entropy of the plain chain's stationary law, nats: its own token entropy

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages measured, in order."""
        return tuple(distinct(row.language for row in self.settings))

    @property
    def lengths(self) -> tuple[int, ...]:
        """The generated lengths measured, in order."""
        return tuple(distinct(row.length for row in self.settings))

    @property
    def decodings(self) -> tuple[str, ...]:
        """The decodings measured, in order (the names of ``DECODINGS``)."""
        return tuple(distinct(row.decoding for row in self.settings))

    @property
    def tokens_per_step(self) -> tuple[int, ...]:
        """The k values measured, in order."""
        return tuple(distinct(row.tokens_per_step for row in self.settings))

    def measured(self, language: str, length: int, decoding_name: str, tokens_per_step: int = 1) -> Measured:
        """What one setting measured: ``language`` one of ``LANGUAGES``, ``length`` one of the scale's
        lengths, ``decoding_name`` one of ``DECODINGS``, ``tokens_per_step`` one of the scale's k values."""
        for name, value, allowed in (("language", language, self.languages), ("length", length, self.lengths),
                                     ("decoding_name", decoding_name, self.decodings),
                                     ("tokens_per_step", tokens_per_step, self.tokens_per_step)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}")
        setting = (language, length, decoding_name, tokens_per_step)
        return next(row for row in self.settings
                    if (row.language, row.length, row.decoding, row.tokens_per_step) == setting)

    def table(self, language: str, length: int, tokens_per_step: int = 1) -> list[Measured]:
        """Every decoding of one language, length and k: the rows of one of the chapter's tables."""
        return [self.measured(language, length, name, tokens_per_step) for name in self.decodings]

    def by_language(self, length: int, columns: list[tuple[str, int, str]]) -> tuple[list[str], list[list]]:
        """One row per language and decoding at one ``length``: the header and rows of one table.
        Each column is ``(label, k, field)``, the ``Measured`` field read at ``k`` tokens per step."""
        fields = set(Measured.__dataclass_fields__)
        for label, _, field in columns:
            if field not in fields:
                raise ValueError(f"field of column {label!r} must be one of {sorted(fields)}; got {field!r}")
        header = ["language", "decoding"] + [label for label, _, _ in columns]
        rows = [[language, name] + [getattr(self.measured(language, length, name, k), field) for _, k, field in columns]
                for language in self.languages for name in self.decodings]
        return header, rows


@dataclass(frozen=True)
class GenerationOrderResult(ExperimentResult):
    """What ``run`` measured, with the settings and environment that produced it."""
    EXPERIMENT = "generation_order"
    config: Config
    metrics: Metrics
    curves: None  # nothing is trained: no curves
    environment: Environment




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
        progress: bool = False) -> GenerationOrderResult:
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
    languages = dict(zip(LANGUAGES, (plain, markov.with_end_of_text(plain, eos_id)), strict=True))
    rows = []
    for language, P in languages.items():
        # prompts from the plain chain's stationary distribution, never end-of-text itself
        pi = markov.stationary_distribution(plain)
        pi[eos_id] = 0
        prompts = torch.multinomial(pi / pi.sum(), cfg.samples, replacement=True, generator=generator).unsqueeze(1)
        prompts = prompts.to(decode_on)
        for length in cfg.lengths:
            exact = markov.ChainDenoiser(P, length + 1, initial=pi / pi.sum())
            rows += [_measure(exact, P, prompts, (language, length, name, k), noise)
                     for name in DECODINGS for k in cfg.tokens_per_step]
    config = Config(cfg, eos_id, denoiser="exact (markov.ChainDenoiser)",
                    sampling="Gumbel in float64 at temperature 1 (sampled) or 0 (greedy)")
    stationary = markov.stationary_distribution(plain)
    metrics = Metrics(tuple(rows), float(-(stationary * stationary.log()).sum()))
    return GenerationOrderResult(scale, seed, config, metrics, None, Environment.now(device, started))


def _measure(exact: markov.ChainDenoiser, P: torch.Tensor, prompts: torch.Tensor, setting: tuple,
             noise: torch.Generator) -> Measured:
    """Decode after ``prompts`` (B, 1) in one ``setting`` (language, length, decoding name, k) and measure it."""
    language, length, name, k = setting
    score, temperature = DECODINGS[name]
    decoded = decoders.generate(exact, prompts, length, exact.mask_id, score=score, tokens_per_step=k,
                                generator=noise, temperature=temperature)
    nll = -markov.sequence_log_prob(P, decoded.tokens) / length  # (B,), inf if impossible
    possible = torch.isfinite(nll)
    # true PPL = exp(mean NLL per token) over the sequences the chain can produce
    true_ppl = math.exp(float(nll[possible].mean())) if possible.any() else None
    order = {}
    if k == 1:
        order = {**order_statistics(decoded.order.cpu(), slice(1, None)),
                 "example_order": tuple(decoded.order[0, 1:].tolist())}
    return Measured(language, length, name, k, true_ppl, impossible_share=1 - float(possible.double().mean()),
                    nfe=decoded.nfe, entropy=unigram_entropy(decoded.tokens[:, 1:], P.shape[0]), **order)
