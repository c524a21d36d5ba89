r"""The distance bound and parallel decoding on a language with known ground truth
(paper Sections 3.2.3-3.3: Figure 3, Table 1, Metrics 1-3, Table 2; the chapter "Ground truth",
book/parallel_sampling.ipynb).

A Zipf Markov chain meeting Assumptions 3-4, with a few function words, is the language. A
denoiser is trained on sequences sampled from it; then, against the chain's exact answers
(each a record of :class:`Metrics`):

- ``chain``: the chain's own numbers (decay rate, stationary distribution, the bound's limit);
- ``decay``: the top probability of a [MASK] at distance n after a one-token prompt: exact (:math:`P^n`),
  trained model, and the bound of Eq. 17 with the chain's own s and V; the true limit :math:`\max(\pi)`;
  and the homogenisation table: which token each [MASK] predicts when all are predicted at once;
- ``end_of_text``: an end-of-text variant of the chain (exact): the top probability rises again far away;
- ``upturn_by_length``: the same for shorter answers (``answer_length``): where the curve turns up again;
- ``cost_of_k``: decoding k tokens per step left to right, for :math:`k = 1, \dots, \text{all}`: the true
  perplexity under the chain of what was generated, from the exact marginals and from the trained
  model, beside the decoder's own probability (Metric 1-2 measured) and the Table 2 bound;
- ``repeats``: for the same k, exactly (``repeats.adjacent_repeats``, exact denoiser): how often two
  adjacent tokens are the same, and what such a pair costs under the chain, beside the language's own;
- ``gibbs_from_random_start``: random-scan Gibbs from a random start
  (``decoders.sample_gibbs_from_random_start``): the true perplexity after as many denoiser calls as
  one-token-per-step decoding needs, and after several times more, with one and with four tokens
  redrawn per call;
- ``partial_random_init``: the paper's SEDD-inspired random initialisation
  (``decoders.sample_partial_random_init``) for several shares of initialised masks and tokens per
  call, exact denoiser;
- ``remasking``: left-to-right remasking (``decoders.sample_with_remasking``, claim 10): true
  perplexity against denoiser calls for several remasking probabilities, exact denoiser; its row
  without remasking (eta = 0) is ordinary left-to-right decoding at each number of calls.
"""

from __future__ import annotations

import math
import pathlib
import time
from dataclasses import dataclass

import torch

from .. import decoders, markov, zipf
from ..answer_length import UpturnByLength, upturn_by_length
from ..denoiser import Denoiser, DenoiserConfig
from ..device import evaluation_dtype, generator_on, pick_device
from ..forward_process import denoiser_probs
from ..records import distinct
from ..repeats import AdjacentRepeats, adjacent_repeats
from ..train import History, TrainConfig, train
from . import trained_models
from .generation_order import unigram_entropy
from .result import Environment, ExperimentResult


@dataclass(frozen=True)
class Scale:
    """The language, model, training and decoding settings of a scale."""
    vocab_size: int  # V, tokens of the chain (the mask is one more)
    s: float  # Zipf exponent of every row
    function_words: int  # tokens 0..f-1 at ranks 2..f+1 of every row
    seq_len: int  # L: a one-token prompt and L - 1 masks
    train_sequences: int  # sequences sampled for training
    preset: str  # denoiser size
    steps: int  # training steps
    batch_size: int  # sequences per step
    lr: float  # peak learning rate
    samples: int  # sequences generated per decoding setting
    tokens_per_step: tuple[int, ...]  # the k values of the parallel-decoding sweep
    random_init_sweeps: tuple[int, ...] = (1, 2, 4, 8)  # Gibbs from a random start: calls, in multiples of L - 1
    random_init_samples: int = 250  # sequences per random-initialisation setting (the first prompts)
    variant_samples: int = 200  # sequences per setting of the two sweeps below (the first prompts)
    init_fractions: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75)  # the paper's random initialisation: shares f
    init_tokens_per_step: tuple[int, ...] = (1, 4, 8)  # ... and masks decoded per call
    remask_steps: tuple[int, ...] = (4, 6, 8, 12, 16, 32)  # remasking: denoiser calls, at most L - 1
    remask_etas: tuple[float, ...] = (0.0, 0.1, 0.4)  # ... and remasking probabilities per token and step


# The settings that determine the trained weights (the rest only decide what is measured).
TRAINING_FIELDS = ("vocab_size", "s", "function_words", "seq_len", "train_sequences", "preset", "steps", "batch_size",
                   "lr")

SCALES = {
    "ci": Scale(vocab_size=32, s=2.0, function_words=2, seq_len=33, train_sequences=20_000, preset="toy",
                steps=1800, batch_size=64, lr=4e-3, samples=500, tokens_per_step=(1, 2, 4, 8, 16, 32),
                random_init_sweeps=(1, 2, 4), random_init_samples=100),
    # gpu: sized with the other experiments to run side by side in scripts/gpu-run.sh's budget of
    # under 10 minutes on one H100-class GPU (each run records its wall time)
    "gpu": Scale(vocab_size=512, s=1.1, function_words=8, seq_len=129, train_sequences=200_000, preset="small",
                 steps=6000, batch_size=256, lr=1e-3, samples=4000,
                 tokens_per_step=(1, 2, 4, 8, 16, 32, 64, 128), random_init_sweeps=(1, 2, 4),
                 random_init_samples=500, variant_samples=500, init_tokens_per_step=(1, 4, 16),
                 remask_steps=(8, 16, 32, 64, 128)),
}

GIBBS_EXACT_K = (1, 4)  # positions redrawn per call by Gibbs from a random start, exact denoiser
GIBBS_TRAINED_K = (1,)  # ... trained denoiser
UPTURN_EXTRAS = (0.0, 0.02, 0.05, 0.1)  # extra probabilities of end-of-text after every token (shorter answers)


# --- the typed result --------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """Every setting that produced a result."""
    scale: Scale  # the language, model, training and decoding settings
    model: DenoiserConfig  # the trained denoiser's configuration
    schedule: str  # the noise schedule of training
    prompt: str  # what every measured sequence starts with
    evaluated_in: str  # the dtype the trained model was measured in ("float64" on a CPU)


@dataclass(frozen=True)
class Chain:
    """The chain's own numbers: how fast it forgets, where it settles, how much it says."""
    decay_rate: float  # |lambda_2|, the second eigenvalue of P in magnitude: the rate of the decay
    max_stationary: float  # max(pi): the true limit of the top probability far from the prompt
    argmax_stationary: int  # the token of largest stationary mass
    omega1: float  # omega_1 of Zipf(s, V): the top probability of every row (Assumption 4)
    omega2: float  # omega_2: the second
    bound_limit: float  # p*, the limit of Eq. 17's bound (Eq. 18)
    entropy_rate_nats: float  # -sum_a pi_a sum_b P_ab log P_ab, nats per token
    most_frequent: list[int]  # the ten tokens of largest stationary mass, largest first
    stationary_entropy: float  # entropy of pi, nats: the token entropy of the language's own text

    @property
    def perplexity(self) -> float:
        """The chain's own perplexity, the exponential of its entropy rate (what exact sampling reaches)."""
        return math.exp(self.entropy_rate_nats)


@dataclass(frozen=True)
class DistanceRow:
    """The decay at one distance n from the prompt (a row of the chapter's table)."""
    n: int  # distance from the prompt, in tokens
    exact_top: float  # top probability of the exact marginal, mean over prompts weighted by pi
    trained_top: float | None  # ... of the trained denoiser's (None at n = 0, the prompt)
    bound: float  # Eq. 17's bound with the chain's s and V
    trained_vs_exact_tv: float | None  # total variation between trained and exact marginals, weighted mean
    exact_tv_to_stationary: float  # total variation between the exact marginal and pi, weighted mean


@dataclass(frozen=True)
class Decay:
    """The marginal of a [MASK] at distance n = 0 .. L - 1 after a one-token prompt (every token as
    the prompt; means weighted by how often the prompt occurs, pi). Lists are indexed by n."""
    exact_top: list[float]  # top probability of the exact marginal (P^n); 1 at n = 0
    trained_top: list[float | None]  # ... of the trained denoiser; None at n = 0 (the prompt)
    bound: list[float]  # Eq. 17's bound with the chain's s and V
    trained_vs_exact_tv: list[float | None]  # TV(trained, exact); None at n = 0
    exact_tv_to_stationary: list[float]  # TV(exact marginal, pi): how far from the limit
    exact_argmax: list[list[int]]  # [prompt][n]: the exact marginal's argmax (Table 1)
    trained_argmax: list[list[int]]  # [prompt][n]: the trained denoiser's; -1 at n = 0
    function_words: int  # tokens 0 .. function_words - 1 are the function words (the scale's)

    def at(self, n: int) -> DistanceRow:
        """Every number of distance ``n``, as one row."""
        if not 0 <= n < len(self.exact_top):
            raise ValueError(f"n must be a distance in [0, {len(self.exact_top) - 1}]; got {n!r}")
        return DistanceRow(n, self.exact_top[n], self.trained_top[n], self.bound[n], self.trained_vs_exact_tv[n],
                           self.exact_tv_to_stationary[n])

    def exact_function_word_share(self, n: int) -> float:
        """The share of prompts (all V, unweighted) whose exact argmax at distance ``n`` is a
        function word: homogenisation, from about 1 / V near the prompt to 0 or 1 far away."""
        return _function_word_share(self.exact_argmax, n, self.function_words)

    def trained_function_word_share(self, n: int) -> float:
        """The same share for the trained denoiser's argmax (``n`` >= 1)."""
        return _function_word_share(self.trained_argmax, n, self.function_words)


def _function_word_share(argmax: list[list[int]], n: int, function_words: int) -> float:
    if not 0 <= n < len(argmax[0]):
        raise ValueError(f"n must be a distance in [0, {len(argmax[0]) - 1}]; got {n!r}")
    return sum(0 <= row[n] < function_words for row in argmax) / len(argmax)


@dataclass(frozen=True)
class EndOfText:
    """The exact top probability of a [MASK] at distance n = 0 .. 4L after a one-token prompt, on
    the chain with an absorbing end-of-text token (mean over every prompt but end-of-text)."""
    eos_id: int  # the end-of-text token
    top: list[float]  # top probability at distance n
    eos_probability: list[float]  # probability that the [MASK] at distance n is end-of-text

    @property
    def dip(self) -> float:
        """The lowest top probability, before end-of-text takes over."""
        return min(self.top)

    @property
    def dip_n(self) -> int:
        """The distance of the dip (the first, if it repeats)."""
        return self.top.index(self.dip)

    @property
    def far_n(self) -> int:
        """The farthest distance measured (4L)."""
        return len(self.top) - 1

    @property
    def far(self) -> float:
        """The top probability at the farthest distance, where it rose again."""
        return self.top[-1]


@dataclass(frozen=True)
class ExactAndTrained:
    """One number measured with both denoisers."""
    exact: float  # with the chain's exact denoiser
    trained: float  # with the trained denoiser


@dataclass(frozen=True)
class CostOfK:
    """Decoding the L - 1 masks after a prompt left to right, k tokens per step."""
    k: int  # tokens decoded per step, each from its own marginal
    calls: int  # denoiser calls, ceil((L - 1) / k) (the same for both denoisers)
    true_ppl: ExactAndTrained  # perplexity under the chain of the decoded tokens
    entropy: ExactAndTrained  # entropy of the decoded tokens' unigram distribution, nats (Chain.stationary_entropy)
    decoder_ppl: float  # perplexity under the exact decoder's own marginals when it chose them (Metrics 1-2)
    bound_ppl: float  # Table 2's bound (Eq. 17 + Metric 2)


@dataclass(frozen=True)
class GibbsRow:
    """Gibbs from a random start after one number of denoiser calls."""
    calls: int  # denoiser calls, a multiple of L - 1
    exact: dict[int, float]  # positions redrawn per call k -> true PPL, exact denoiser
    trained: dict[int, float]  # ... trained denoiser


@dataclass(frozen=True)
class GibbsFromRandomStart:
    """Random-scan Gibbs from a random start (``decoders.sample_gibbs_from_random_start``): true
    perplexity under the chain after each number of calls, beside one token per step in a random order."""
    masks: int  # L - 1: the masks after the prompt, and the calls of one token per step
    after_one_call: float  # true PPL after one call (exact, k = 1): nearly the random start
    one_at_a_time: ExactAndTrained  # true PPL of one token per step in a random order (``masks`` calls)
    by_calls: dict[int, GibbsRow]  # denoiser calls -> the row

    @property
    def equal_budget(self) -> GibbsRow:
        """The row with as many calls as one token per step needs (``masks``)."""
        if self.masks not in self.by_calls:
            raise ValueError(f"no row with {self.masks} calls (the rows have {list(self.by_calls)})")
        return self.by_calls[self.masks]


@dataclass(frozen=True)
class RandomInitSetting:
    """The paper's random initialisation at one share f and k (exact denoiser)."""
    share: float  # f: the share of the open masks initialised at random in each call
    k: int  # masks decoded per call (at most)
    true_ppl: float  # perplexity under the chain of the decoded tokens
    calls: int  # denoiser calls it took
    entropy: float  # entropy of the decoded tokens' unigram distribution, nats (Chain.stationary_entropy)


@dataclass(frozen=True)
class PartialRandomInit:
    """The paper's SEDD-inspired random initialisation (``decoders.sample_partial_random_init``),
    exact denoiser, for every share f and k; f = 0 is ordinary left-to-right decoding."""
    settings: list[RandomInitSetting]  # by share, then by k

    @property
    def shares(self) -> list[float]:
        """The shares f measured, in order."""
        return distinct(s.share for s in self.settings)

    @property
    def tokens_per_call(self) -> list[int]:
        """The k measured, in order."""
        return distinct(s.k for s in self.settings)

    def at(self, f: float, k: int) -> RandomInitSetting:
        """The setting of share ``f`` and ``k`` masks per call."""
        for setting in self.settings:
            if setting.share == f and setting.k == k:
                return setting
        raise ValueError(f"no setting with f = {f!r} and k = {k!r}; the shares are {self.shares} and the k "
                         f"{self.tokens_per_call}")

    def row(self, f: float) -> list[RandomInitSetting]:
        """The settings of share ``f``, by k."""
        if f not in self.shares:
            raise ValueError(f"f must be one of the shares measured, {self.shares}; got {f!r}")
        return [s for s in self.settings if s.share == f]

    def lowest_ppl(self, at_least_k: int) -> float:
        """The lowest true PPL of any share with ``at_least_k`` or more masks decoded per call."""
        values = [s.true_ppl for s in self.settings if s.k >= at_least_k]
        if not values:
            raise ValueError(f"no setting decodes {at_least_k} or more per call (the k are {self.tokens_per_call})")
        return min(values)

    def fewest_calls_below(self, ppl: float) -> int | None:
        """The fewest denoiser calls of a setting with random tokens (f > 0) whose true PPL is
        below ``ppl``; None if none is."""
        calls = [s.calls for s in self.settings if s.share > 0 and s.true_ppl < ppl]
        return min(calls) if calls else None


@dataclass(frozen=True)
class RemaskingSetting:
    """Left-to-right remasking at one remasking probability and number of calls (exact denoiser)."""
    eta: float  # remasking probability per decoded token and step (0: no remasking)
    calls: int  # denoiser calls, exactly
    true_ppl: float  # perplexity under the chain of the decoded tokens
    decoded_per_call: float  # tokens decoded per call: the masks plus the remasked tokens, over the calls
    entropy: float  # entropy of the decoded tokens' unigram distribution, nats (Chain.stationary_entropy)


@dataclass(frozen=True)
class Remasking:
    """Left-to-right remasking (``decoders.sample_with_remasking``), exact denoiser, for every eta
    and number of calls; eta = 0 is ordinary left-to-right decoding with that many calls."""
    settings: list[RemaskingSetting]  # by eta, then by calls

    @property
    def etas(self) -> list[float]:
        """The remasking probabilities measured, in order."""
        return distinct(s.eta for s in self.settings)

    @property
    def calls(self) -> list[int]:
        """The numbers of calls measured, in order."""
        return distinct(s.calls for s in self.settings)

    @property
    def highest_eta(self) -> float:
        """The largest remasking probability measured."""
        return max(self.etas)

    def at(self, eta: float, calls: int) -> RemaskingSetting:
        """The setting of remasking probability ``eta`` with ``calls`` denoiser calls."""
        for setting in self.settings:
            if setting.eta == eta and setting.calls == calls:
                return setting
        raise ValueError(f"no setting with eta = {eta!r} and {calls!r} calls; the etas are {self.etas} and the "
                         f"calls {self.calls}")

    def row(self, eta: float) -> list[RemaskingSetting]:
        """The settings of ``eta``, by calls."""
        if eta not in self.etas:
            raise ValueError(f"eta must be one of the remasking probabilities measured, {self.etas}; got {eta!r}")
        return [s for s in self.settings if s.eta == eta]

    def ordinary(self, calls: int) -> RemaskingSetting:
        """Ordinary left-to-right decoding (no remasking) with ``calls`` denoiser calls."""
        return self.at(0.0, calls)

    def ordinary_decoding(self) -> list[RemaskingSetting]:
        """Ordinary left-to-right decoding (no remasking), by calls."""
        return self.row(0.0)


@dataclass(frozen=True)
class Metrics:
    """What the experiment measured, against the chain's exact answers."""
    chain: Chain  # the chain's own numbers
    decay: Decay  # the marginal of a [MASK] by distance from a one-token prompt
    end_of_text: EndOfText  # the same, exact, on the chain with end-of-text
    cost_of_k: dict[int, CostOfK]  # k tokens per step -> the cost of decoding so
    repeats: dict[int, AdjacentRepeats]  # k tokens per step -> adjacent repeats, exact (prompts from pi)
    gibbs_from_random_start: GibbsFromRandomStart  # the book's Gibbs variant of random initialisation
    partial_random_init: PartialRandomInit  # the paper's random initialisation
    remasking: Remasking  # left-to-right remasking; eta = 0 is ordinary decoding
    upturn_by_length: UpturnByLength  # end_of_text for shorter answers: where the top probability turns up


@dataclass(frozen=True)
class Curves:
    """Series recorded while the measured model was made."""
    training: History  # the trained denoiser's training history


@dataclass(frozen=True)
class GroundTruthResult(ExperimentResult):
    """The result of :func:`run`."""
    EXPERIMENT = "ground_truth"
    config: Config
    metrics: Metrics
    curves: Curves


# --- the run -----------------------------------------------------------------------------------

def run(scale: str = "ci", device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
        save_models: str | pathlib.Path | None = None, models: str | pathlib.Path | None = None) -> GroundTruthResult:
    """Build the chain, train the denoiser (or load it), measure; see the module docstring.

    Args:
        scale: "ci" (the book's: a CPU minute with stored models) or "gpu" (a larger language,
            model and sweep).
        device: None for the best available, or a device name that must exist.
        seed: seeds the chain, the training data, the model and the sampling.
        progress: show the training progress bar.
        save_models: a folder to save the trained model in (``trained_models.save``).
        models: a folder of models saved by an earlier run with the same scale and seed, measured
            instead of training (``trained_models.book_folder("ground_truth")``: the book's).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    started, cfg, device = time.time(), SCALES[scale], pick_device(device)
    if max(cfg.remask_steps) > cfg.seq_len - 1:
        raise ValueError(f"remask_steps must not exceed the {cfg.seq_len - 1} masks of a sequence; "
                         f"got {cfg.remask_steps}")
    generator = torch.Generator().manual_seed(seed)
    P = markov.zipf_chain(cfg.vocab_size, cfg.s, generator, function_words=cfg.function_words)
    exact = markov.ChainDenoiser(P, cfg.seq_len)
    model_config = DenoiserConfig.preset(cfg.preset, vocab_size=cfg.vocab_size + 1, max_seq_len=cfg.seq_len)
    trained = _train_or_load(cfg, P, model_config, generator, device, seed, started, progress, save_models, models)
    dtype = evaluation_dtype(device)
    learned = float64_denoiser(trained.models["model"].to(dtype).eval(), device)
    # the sampling sweeps decode on a CUDA device when there is one (the exact denoiser too: it
    # computes where its input is); elsewhere on the CPU (MPS has no float64)
    decode_on = device if device.type == "cuda" else torch.device("cpu")
    with torch.no_grad():
        decay = measure_decay(exact, learned, P, cfg.s, cfg.function_words)
        first = markov.sample_sequences(P, cfg.samples, 1, generator)[:, 0]  # prompts from pi
        x = torch.full((cfg.samples, cfg.seq_len), exact.mask_id)
        x[:, 0] = first
        x = x.to(decode_on)
        generator = generator_on(decode_on, generator, seed + 2)
        cost_of_k = cost_of_k_sweep(exact, learned, x, P, cfg.tokens_per_step, cfg.s, generator)
        gibbs = gibbs_from_random_start_sweep(exact, learned, x[: cfg.random_init_samples], P,
                                              cfg.random_init_sweeps, generator)
        # its own stream: the results above do not use it
        variants = generator_on(decode_on, torch.Generator().manual_seed(seed + 1), seed + 3)
        prompts = x[: cfg.variant_samples]
        partial = partial_random_init_sweep(exact, prompts, P, cfg.init_fractions, cfg.init_tokens_per_step, variants)
        remasking = remasking_sweep(exact, prompts, P, cfg.remask_steps, cfg.remask_etas, variants)
        repeats = {k: adjacent_repeats(P, exact.initial, cfg.seq_len, k) for k in cfg.tokens_per_step}
        metrics = Metrics(measure_chain(P, cfg.s), decay, measure_end_of_text(P, cfg.seq_len), cost_of_k, repeats,
                          gibbs, partial, remasking, upturn_by_length(P, cfg.seq_len, UPTURN_EXTRAS))
    config = Config(cfg, model_config, "LinearSchedule()",
                    "one token drawn from the stationary distribution, then L - 1 masks",
                    str(dtype).removeprefix("torch."))
    return GroundTruthResult(scale, seed, config, metrics, Curves(trained.histories["model"]),
                             Environment.now(device, started, training=trained.environment))


def _train_or_load(cfg: Scale, P: torch.Tensor, model_config: DenoiserConfig, generator: torch.Generator,
                   device: torch.device, seed: int, started: float, progress: bool, save_models,
                   models) -> trained_models.TrainedModels:
    """The trained denoiser: trained on sequences sampled from P, or loaded from ``models``. The
    sequences are sampled either way, so the draws after them come from the same stream."""
    mask_id = cfg.vocab_size  # the chain's mask id, V
    stream = generator_on(device, generator, seed + 4)
    data = markov.sample_sequences(P, cfg.train_sequences, cfg.seq_len, stream)  # (N, L)

    def train_model():
        torch.manual_seed(seed)
        model = Denoiser(model_config)
        history = train(model, data, mask_id, TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                                          min_lr_ratio=0.0, log_every=max(1, cfg.steps // 100)),
                        device=device, seed=seed, progress=progress)
        return trained_models.TrainedModels({"model": model}, {"model": history}, Environment.now(device, started))

    settings = trained_models.training_settings(cfg, TRAINING_FIELDS, seed, model_config)
    return trained_models.train_or_load("ground_truth", settings, train_model, save_models, models, device)


def float64_denoiser(model: torch.nn.Module, device: torch.device):
    """The trained model as a float64 denoiser that runs on ``device`` and answers on its input's device."""
    def learned(x):
        return model(x.to(device)).double().to(x.device)
    return learned


# --- the measurements --------------------------------------------------------------------------

def measure_chain(P: torch.Tensor, s: float) -> Chain:
    """The chain's decay rate, stationary distribution, entropy rate and the bound's limit for its s and V."""
    pi = markov.stationary_distribution(P)
    omega1, omega2 = zipf.omegas(s, P.shape[0])
    # H = -sum_a pi_a sum_b P_ab log P_ab, nats per token
    entropy_rate = float(-(pi.unsqueeze(-1) * P * torch.log(P)).sum())
    return Chain(decay_rate=markov.decay_rate(P), max_stationary=float(pi.max()), argmax_stationary=int(pi.argmax()),
                 omega1=float(omega1), omega2=float(omega2), bound_limit=zipf.bound_limit(s, P.shape[0]),
                 entropy_rate_nats=entropy_rate, most_frequent=[int(i) for i in pi.argsort(descending=True)[:10]],
                 stationary_entropy=float(-(pi * torch.log(pi)).sum()))


def measure_decay(exact: markov.ChainDenoiser, learned, P: torch.Tensor, s: float, function_words: int) -> Decay:
    """The exact and trained marginals of every [MASK] after every token as a one-token prompt;
    means over prompts weighted by pi, beside Eq. 17's bound."""
    V, L, mask_id = exact.vocab_size, exact.max_len, exact.mask_id
    pi = markov.stationary_distribution(P)
    prompts = torch.full((V, L), mask_id)
    prompts[:, 0] = torch.arange(V)  # every token as a one-token prompt, L - 1 masks after it
    exact_probs = exact.conditional_probs(prompts)[..., :V]  # (V, L, V)
    model_probs = denoiser_probs(learned(prompts), mask_id)[..., :V]  # (V, L, V)
    weights = pi.unsqueeze(-1)  # (V, 1): prompts weighted by how often they occur
    # position 0 is the prompt: the model predicts nothing there (None / -1 in its series)
    trained_top = (weights * model_probs.max(-1).values).sum(0).tolist()  # (L,)
    # TV(p, q) = 1/2 sum_v |p_v - q_v|
    trained_tv = (weights * 0.5 * (model_probs - exact_probs).abs().sum(-1)).sum(0).tolist()  # (L,)
    trained_argmax = model_probs.argmax(-1)  # (V, L)
    trained_argmax[:, 0] = -1
    return Decay(exact_top=(weights * exact_probs.max(-1).values).sum(0).tolist(),
                 trained_top=[None] + trained_top[1:],
                 bound=markov.chain_distance_bound(P, s, L - 1).tolist(),
                 trained_vs_exact_tv=[None] + trained_tv[1:],
                 exact_tv_to_stationary=(weights * 0.5 * (exact_probs - pi).abs().sum(-1)).sum(0).tolist(),
                 exact_argmax=exact_probs.argmax(-1).tolist(), trained_argmax=trained_argmax.tolist(),
                 function_words=function_words)


def measure_end_of_text(P: torch.Tensor, seq_len: int) -> EndOfText:
    """The exact marginals to distance 4L on P with its last token made an absorbing end-of-text."""
    V = P.shape[0]
    eos_chain = markov.with_end_of_text(P, eos_id=V - 1)
    starts = torch.eye(V, dtype=torch.float64)[: V - 1]  # (V - 1, V): every prompt but EOS itself
    rows = markov.distance_marginals(eos_chain, starts, 4 * seq_len).transpose(0, 1)  # (V - 1, 4L + 1, V)
    return EndOfText(eos_id=V - 1, top=rows.max(-1).values.mean(0).tolist(),
                     eos_probability=rows[..., V - 1].mean(0).tolist())


def cost_of_k_sweep(exact: markov.ChainDenoiser, learned, x: torch.Tensor, P: torch.Tensor, tokens_per_step,
                    s: float, generator: torch.Generator) -> dict[int, CostOfK]:
    """Left-to-right decoding of the masks of x, k tokens per step for every k in ``tokens_per_step``:
    first every k with the exact denoiser, then every k with the trained one (one stream)."""
    mask_id, masks = exact.mask_id, _masks(x, exact.mask_id)
    exact_runs = [decoders.sample_left_to_right(exact, x, mask_id, k, generator) for k in tokens_per_step]
    trained_runs = [decoders.sample_left_to_right(learned, x, mask_id, k, generator) for k in tokens_per_step]
    bounds = zipf.parallel_perplexity_bound(list(tokens_per_step), s, P.shape[0]).tolist()
    return {k: CostOfK(k=k, calls=run.nfe,
                       true_ppl=ExactAndTrained(_true_ppl(P, run.tokens, masks), _true_ppl(P, other.tokens, masks)),
                       entropy=ExactAndTrained(_entropy(P, run.tokens), _entropy(P, other.tokens)),
                       decoder_ppl=_decoder_perplexity(exact, x, run, mask_id), bound_ppl=bound)
            for k, run, other, bound in zip(tokens_per_step, exact_runs, trained_runs, bounds, strict=True)}


def _decoder_perplexity(denoiser, x, decoded, mask_id) -> float:
    """Perplexity of the generated tokens under the decoder's own probabilities at the moment it
    chose them (the product of marginals of each step): what Metrics 1-2 describe."""
    tokens, order = decoded.tokens, decoded.order
    log_p = torch.zeros(tokens.shape[0], dtype=torch.float64, device=tokens.device)
    for step in range(decoded.nfe):
        current = torch.where(order >= step, mask_id, tokens)  # the sequence before this step
        current = torch.where(x != mask_id, x, current)  # the prompt is always there
        probs = denoiser_probs(denoiser(current), mask_id)  # (B, L, V)
        chosen = order == step  # (B, L)
        picked = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, L)
        log_p += torch.where(chosen, torch.log(picked), torch.zeros_like(picked)).sum(-1)
    return math.exp(float(-log_p.mean() / (x == mask_id).sum(-1).double().mean()))


def gibbs_from_random_start_sweep(exact: markov.ChainDenoiser, learned, x: torch.Tensor, P: torch.Tensor, sweeps,
                                  generator: torch.Generator) -> GibbsFromRandomStart:
    """True perplexity of random-scan Gibbs from a random start after n (L - 1) denoiser calls,
    n in ``sweeps``, with k in ``GIBBS_EXACT_K`` tokens redrawn per call (exact denoiser) and
    ``GIBBS_TRAINED_K`` (trained model); beside it, one token per step in a random order, which
    needs exactly L - 1 calls."""
    mask_id, masks = exact.mask_id, _masks(x, exact.mask_id)
    vocab_size = mask_id + 1  # the ids the logits cover, the mask included
    gibbs = decoders.sample_gibbs_from_random_start
    one_call = gibbs(exact, x, mask_id, vocab_size, 1, 1, generator).tokens  # nearly the random start
    calls = [n * masks for n in sweeps]
    ppl, one_at_a_time = {}, {}
    for name, denoiser, ks in (("exact", exact, GIBBS_EXACT_K), ("trained", learned, GIBBS_TRAINED_K)):
        for k in ks:
            ppl[name, k] = [_true_ppl(P, gibbs(denoiser, x, mask_id, vocab_size, n, k, generator).tokens, masks)
                            for n in calls]
        one_at_a_time[name] = _true_ppl(P, decoders.sample_one_at_a_time(denoiser, x, mask_id, generator).tokens, masks)
    rows = {n: GibbsRow(n, {k: ppl["exact", k][i] for k in GIBBS_EXACT_K},
                        {k: ppl["trained", k][i] for k in GIBBS_TRAINED_K}) for i, n in enumerate(calls)}
    return GibbsFromRandomStart(masks=masks, after_one_call=_true_ppl(P, one_call, masks),
                                one_at_a_time=ExactAndTrained(one_at_a_time["exact"], one_at_a_time["trained"]),
                                by_calls=rows)


def partial_random_init_sweep(denoiser, x: torch.Tensor, P: torch.Tensor, fractions, tokens_per_step,
                              generator: torch.Generator) -> PartialRandomInit:
    """The paper's random initialisation (``decoders.sample_partial_random_init``) for every share
    of initialised masks in ``fractions`` and every k in ``tokens_per_step``: true perplexity under
    the chain P and denoiser calls. The settings of fraction 0 are ordinary left-to-right decoding
    with k tokens per step."""
    mask_id = denoiser.mask_id
    masks = _masks(x, mask_id)
    settings = []
    for fraction in fractions:
        for k in tokens_per_step:
            run = decoders.sample_partial_random_init(denoiser, x, mask_id, mask_id + 1, fraction, k, generator)
            settings.append(RandomInitSetting(fraction, k, _true_ppl(P, run.tokens, masks), run.nfe,
                                              _entropy(P, run.tokens)))
    return PartialRandomInit(settings)


def remasking_sweep(denoiser, x: torch.Tensor, P: torch.Tensor, steps, etas, generator: torch.Generator) -> Remasking:
    """Left-to-right remasking (``decoders.sample_with_remasking``) for every number of denoiser calls
    in ``steps`` and remasking probability in ``etas``: true perplexity under the chain P and the
    mean number of tokens decoded per call (the masks plus the remasked tokens, over the calls).
    ``eta = 0`` is no remasking."""
    mask_id = denoiser.mask_id
    masks = _masks(x, mask_id)
    settings = []
    for eta in etas:
        for n in steps:
            run = decoders.sample_with_remasking(denoiser, x, mask_id, n, eta, generator)
            settings.append(RemaskingSetting(eta, n, _true_ppl(P, run.tokens, masks),
                                             (masks + float(run.remasked.double().mean())) / n,
                                             _entropy(P, run.tokens)))
    return Remasking(settings)


def _masks(x: torch.Tensor, mask_id: int) -> int:
    """The masks after the prompt (the most in any sequence of x)."""
    return int((x == mask_id).sum(-1).max())


def _entropy(P: torch.Tensor, tokens: torch.Tensor) -> float:
    """Entropy in nats of the unigram distribution of the generated tokens (after the prompt)."""
    return unigram_entropy(tokens[:, 1:], P.shape[0])


def _true_ppl(P: torch.Tensor, tokens: torch.Tensor, masks: int) -> float:
    """Perplexity under the chain of the generated tokens after the one-token prompt,
    exp(mean over sequences of -log P(x_1 .. x_n | x_0) / n): every sequence has a positive
    probability under a Zipf chain, so no sequence is left out."""
    return math.exp(float((-markov.sequence_log_prob(P, tokens) / masks).mean()))


# --- what retraining may move ------------------------------------------------------------------

# How far retraining may move the trained model's numbers: about 1.5 times the largest difference
# between seeds 0, 1 and 2 at the ci scale (``maskdiff-tutor book-models --spread``), as an
# absolute tolerance for the top probability at distance n and relative to the value for perplexities.
TOP_TOLERANCE = {1: 0.02, 2: 0.06, 3: 0.05, 4: 0.05, 8: 0.03, 32: 0.015}
PPL_RELATIVE_TOLERANCE = {1: 0.3, 2: 0.45, 4: 0.2, 32: 0.08}  # k tokens per step


def headline(result: GroundTruthResult) -> dict:
    """The numbers the chapter's conclusions rest on: name -> (value, tolerance), the tolerance
    being how far retraining may move the value (``book.check``; see ``TOP_TOLERANCE``).
    Retraining with the same seed on another CPU moves the values less."""
    GroundTruthResult.check_type(result)
    decay, gibbs = result.metrics.decay, result.metrics.gibbs_from_random_start
    numbers = {f"trained top probability, n = {n}": (decay.trained_top[n], tolerance)
               for n, tolerance in TOP_TOLERANCE.items() if n < len(decay.trained_top)}  # n = 32 needs L > 32
    for n in (1, 3, 6):
        numbers[f"trained: share of prompts whose argmax is a function word, n = {n}"] = (
            decay.trained_function_word_share(n), 0.1)
    for k, cost in result.metrics.cost_of_k.items():
        if k in PPL_RELATIVE_TOLERANCE:
            value = cost.true_ppl.trained
            numbers[f"trained: true PPL, k = {k}"] = (value, PPL_RELATIVE_TOLERANCE[k] * value)
    for calls, row in gibbs.by_calls.items():
        value = row.trained[1]
        numbers[f"trained: Gibbs from a random start, true PPL after {calls} calls"] = (value, 0.2 * value)
    value = gibbs.one_at_a_time.trained
    numbers["trained: one token per step in random order, true PPL"] = (value, 0.05 * value)
    return numbers
