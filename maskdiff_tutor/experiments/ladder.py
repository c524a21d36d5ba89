r"""A ladder of denoisers: the decay, homogenisation and generation order against denoiser quality
(paper Sections 3.2.3 and 3.4.1, claims 6, 8 and 12; the chapter "Ground truth",
book/parallel_sampling.ipynb, section "A ladder of denoisers").

The language is the ground-truth experiment's Zipf Markov chain at its ``ci`` scale, built the same
way from the seed (the same P). Denoisers of increasing quality are trained on it (each rung a
preset and a number of training steps, each a full run with its own learning-rate schedule), and
the chain's exact denoiser stands at the top. For each rung, a :class:`Rung` record:

- quality: the held-out NELBO and its gap to the true negative log-likelihood of the same held-out
  sequences, nats per token (the exact denoiser's NELBO equals that NLL: its gap is 0). The gap is
  estimated with common random numbers: every rung is scored on the same times and masks as the
  exact denoiser (``nelbo.continuous_nelbo`` with the same seed), and the gap is the mean difference;
- claim 6: the mean top probability of a [MASK] at distance n after a one-token prompt (every token
  as the prompt, weighted by the stationary distribution, as ``ground_truth.measure_decay``), its
  floor (the median of the far half of the curve) and its fall distance (``markov.fall_distance``, 90 %);
- claim 8: at the farthest mask (n = L - 1), the share of prompts whose argmax is a function word
  (as ``ground_truth.Decay.exact_function_word_share``) and the total variation between the mask's
  marginal and the stationary distribution (weighted mean over prompts);
- claim 12: greedy confidence decoding (LLaDA at temperature 0), one token per step, after the first
  token of each held-out sequence: the share of steps that take the leftmost mask
  (``generation_order.order_statistics``).

Trained models are measured in float64 (``device.evaluation_dtype``), so stored weights give the
same digits on every CPU.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import statistics
import time
from dataclasses import dataclass

import torch

from .. import decoders, markov
from .._checks import check_number
from ..denoiser import Denoiser, DenoiserConfig
from ..device import evaluation_dtype, generator_on, pick_device
from ..forward_process import denoiser_probs
from ..nelbo import continuous_nelbo
from ..schedules import LinearSchedule
from ..train import History, TrainConfig, train
from . import ground_truth, trained_models
from .generation_order import order_statistics
from .result import Environment, ExperimentResult

EXACT = "exact"  # the name of the top rung: the chain's exact denoiser


@dataclass(frozen=True)
class Step:
    """One trained rung of the ladder: a model size and a training length."""
    preset: str  # denoiser size (``denoiser.PRESETS``)
    steps: int  # training steps (a full run: warm-up and decay over these steps)

    @property
    def name(self) -> str:
        """The rung's name, such as "toy 500 steps" (its models' folder is "toy_500_steps")."""
        return f"{self.preset} {self.steps} steps"


@dataclass(frozen=True)
class Scale:
    """The language, the rungs and what is measured."""
    vocab_size: int  # V, tokens of the chain (the mask is one more)
    s: float  # Zipf exponent of every row
    function_words: int  # tokens 0..f-1 at ranks 2..f+1 of every row
    seq_len: int  # L: a one-token prompt and L - 1 masks
    train_sequences: int  # sequences sampled for training (the same for every rung)
    batch_size: int  # sequences per training step
    lr: float  # peak learning rate
    rungs: tuple[Step, ...]  # the trained rungs, from the weakest
    valid_sequences: int  # held-out sequences: the NELBO, and the prompts of greedy decoding
    nelbo_samples: int  # draws of a time and a mask pattern per held-out sequence


# The settings that determine the trained weights (the rest only decide what is measured).
TRAINING_FIELDS = ("vocab_size", "s", "function_words", "seq_len", "train_sequences", "batch_size", "lr")  # and rungs

_GT = ground_truth.SCALES["ci"]  # the ground-truth experiment's chain and training settings
SCALES = {
    "ci": Scale(vocab_size=_GT.vocab_size, s=_GT.s, function_words=_GT.function_words, seq_len=_GT.seq_len,
                train_sequences=_GT.train_sequences, batch_size=_GT.batch_size, lr=_GT.lr,
                rungs=(Step("toy", 150), Step("toy", 500), Step("toy", 1800)),
                valid_sequences=500, nelbo_samples=8),
}
FALL_FRACTION = 0.9  # the fall distance is where the curve has covered 90 % of its fall to the floor


# --- the typed result --------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """Every setting that produced a result."""
    scale: Scale  # the language, the rungs and what is measured
    models: dict[str, DenoiserConfig]  # rung name -> the trained denoiser's configuration
    schedule: str  # the noise schedule of training and of the NELBO
    evaluated_in: str  # the dtype the trained models were measured in ("float64" on a CPU)


@dataclass(frozen=True)
class Rung:
    """What one denoiser measured."""
    name: str  # "toy 500 steps", or "exact"
    parameters: int  # trainable parameters (0 for the exact denoiser)
    nelbo: float  # held-out NELBO, nats per token
    gap: float  # nelbo minus the true NLL per token of the same sequences (0 for the exact denoiser)
    gap_standard_error: float  # the gap's Monte Carlo standard error, nats per token
    top_by_distance: list[float]  # mean top probability of the mask at distance n = 0 .. L - 1 (1 at n = 0)
    floor: float  # the median of the far half of top_by_distance: where the curve settles
    fall_distance: int  # the first n by which the curve covered FALL_FRACTION of its fall from n = 1 to floor
    far_function_word_share: float  # share of prompts (all V) whose argmax at n = L - 1 is a function word
    far_tv_to_stationary: float  # TV(marginal at n = L - 1, pi), mean over prompts weighted by pi
    leftmost_share: float  # greedy confidence decoding after a prompt: share of steps taking the leftmost mask
    rightmost_share: float  # ... the rightmost mask
    spearman_position_vs_step: float  # ... rank correlation of position and decoding step


@dataclass(frozen=True)
class Metrics:
    """Every rung, the weakest first and the exact denoiser last, and the chain's own numbers."""
    rungs: list[Rung]
    true_nll: float  # the true NLL per token of the held-out sequences (the exact denoiser's NELBO)
    entropy_rate_nats: float  # the chain's entropy rate, nats per token
    max_stationary: float  # max(pi): the true limit of the top probability far from the prompt

    @property
    def names(self) -> list[str]:
        """The rungs' names, in order."""
        return [rung.name for rung in self.rungs]

    def rung(self, name: str) -> Rung:
        """The rung called ``name`` (one of ``names``; ``EXACT`` for the exact denoiser)."""
        for rung in self.rungs:
            if rung.name == name:
                return rung
        raise ValueError(f"name must be one of {self.names}; got {name!r}")

    @property
    def exact(self) -> Rung:
        """The exact denoiser's rung."""
        return self.rung(EXACT)

    @property
    def trained(self) -> list[Rung]:
        """The trained rungs, the weakest first."""
        return [rung for rung in self.rungs if rung.name != EXACT]


@dataclass(frozen=True)
class Curves:
    """Series recorded while the measured models were made."""
    training: dict[str, History]  # rung name -> its training history


@dataclass(frozen=True)
class LadderResult(ExperimentResult):
    """The result of :func:`run`."""
    EXPERIMENT = "ladder"
    config: Config
    metrics: Metrics
    curves: Curves


# --- the run -----------------------------------------------------------------------------------

def run(scale: str = "ci", device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
        save_models: str | pathlib.Path | None = None, models: str | pathlib.Path | None = None) -> LadderResult:
    """Build the chain, train every rung (or load them), measure each; see the module docstring.

    Args:
        scale: "ci" (the book's: the ground-truth chain, about a minute on a CPU to train).
        device: None for the best available, or a device name that must exist.
        seed: seeds the chain, the training and held-out data, the models and the NELBO's draws.
        progress: show the training progress bars.
        save_models: a folder to save the trained models in (``trained_models.save``).
        models: a folder of models saved by an earlier run with the same scale and seed, measured
            instead of training (``trained_models.book_folder("ladder")``: the book's).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    check_number("seed", seed, integer=True, at_least=0)
    started, cfg, device = time.time(), SCALES[scale], pick_device(device)
    generator = torch.Generator().manual_seed(seed)
    # the chain as ground_truth builds it from the same seed: the same P
    P = markov.zipf_chain(cfg.vocab_size, cfg.s, generator, function_words=cfg.function_words)
    exact = markov.ChainDenoiser(P, cfg.seq_len)
    configs = {step.name: DenoiserConfig.preset(step.preset, vocab_size=cfg.vocab_size + 1, max_seq_len=cfg.seq_len)
               for step in cfg.rungs}
    trained = _train_or_load(cfg, P, configs, generator, device, seed, started, progress, save_models, models)
    valid = markov.sample_sequences(P, cfg.valid_sequences, cfg.seq_len, torch.Generator().manual_seed(seed + 5))
    dtype = evaluation_dtype(device)
    denoisers = {name: ground_truth.float64_denoiser(model.to(dtype).eval(), device)
                 for name, model in trained.models.items()}
    denoisers[EXACT] = exact
    with torch.no_grad():
        reference = _nelbo_draws(exact, valid, cfg, seed)  # (S B,) the exact denoiser's draws
        rungs = [measure_rung(name, denoiser, _parameters(trained.models.get(name)), exact, P, valid, reference, cfg,
                              seed) for name, denoiser in denoisers.items()]
    pi = markov.stationary_distribution(P)
    true_nll = float(-markov.sequence_log_prob(P, valid, initial=pi).mean()) / cfg.seq_len
    metrics = Metrics(rungs, true_nll, ground_truth.measure_chain(P, cfg.s).entropy_rate_nats, float(pi.max()))
    config = Config(cfg, configs, "LinearSchedule()", str(dtype).removeprefix("torch."))
    return LadderResult(scale, seed, config, metrics, Curves(dict(trained.histories)),
                        Environment.now(device, started, training=trained.environment))


def _parameters(model: torch.nn.Module | None) -> int:
    return 0 if model is None else sum(p.numel() for p in model.parameters())


def _train_or_load(cfg: Scale, P: torch.Tensor, configs: dict, generator: torch.Generator, device: torch.device,
                   seed: int, started: float, progress: bool, save_models, models) -> trained_models.TrainedModels:
    """Every rung's model: trained on the same sequences sampled from P (drawn as ground_truth draws
    its training data), or loaded from ``models``."""
    mask_id = cfg.vocab_size  # the chain's mask id, V
    data = markov.sample_sequences(P, cfg.train_sequences, cfg.seq_len, generator_on(device, generator, seed + 4))

    def train_models():
        models_, histories = {}, {}
        for step in cfg.rungs:
            torch.manual_seed(seed)
            model = Denoiser(configs[step.name])
            histories[step.name] = train(model, data, mask_id,
                                         TrainConfig(steps=step.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                                     min_lr_ratio=0.0, log_every=max(1, step.steps // 100)),
                                         device=device, seed=seed, progress=progress)
            models_[step.name] = model
        return trained_models.TrainedModels(models_, histories, Environment.now(device, started))

    settings = {**{name: getattr(cfg, name) for name in TRAINING_FIELDS}, "seed": seed,
                "rungs": [dataclasses.asdict(step) for step in cfg.rungs],
                "models": {name: dataclasses.asdict(config) for name, config in configs.items()}}
    return trained_models.train_or_load("ladder", settings, train_models, save_models, models, device)


# --- the measurements --------------------------------------------------------------------------

def _nelbo_draws(denoiser, valid: torch.Tensor, cfg: Scale, seed: int) -> torch.Tensor:
    """``denoiser``'s NELBO draws (S B,) on the held-out sequences, nats per sequence: the same
    times and masks for every denoiser (one seed), so differences between denoisers are paired."""
    samples = cfg.nelbo_samples
    estimate = continuous_nelbo(denoiser, valid, LinearSchedule(), cfg.vocab_size,
                                torch.Generator().manual_seed(seed + 6), samples=samples)
    return estimate.per_token.sum(-1)  # (S B,)


def measure_rung(name: str, denoiser, parameters: int, exact: markov.ChainDenoiser, P: torch.Tensor,
                 valid: torch.Tensor, reference: torch.Tensor, cfg: Scale, seed: int) -> Rung:
    """Every number of one rung (see the module docstring). ``reference`` holds the exact
    denoiser's NELBO draws on ``valid``; the exact denoiser itself (``name == EXACT``) is measured
    from its exact marginals and has gap 0."""
    V, L, mask_id = cfg.vocab_size, cfg.seq_len, cfg.vocab_size
    draws = reference if name == EXACT else _nelbo_draws(denoiser, valid, cfg, seed)  # (S B,)
    # paired differences, averaged over the draws of each sequence: (B,)
    per_sequence = (draws - reference).view(cfg.nelbo_samples, -1).mean(0) / L
    prompts = torch.full((V, L), mask_id)
    prompts[:, 0] = torch.arange(V)  # every token as a one-token prompt, L - 1 masks after it
    probs = exact.conditional_probs(prompts) if name == EXACT else denoiser_probs(denoiser(prompts), mask_id)
    top, share, tv = _profile(probs[..., :V], markov.stationary_distribution(P), cfg.function_words)
    floor = statistics.median(top[1:][(L - 1) // 2:])  # the far half of n = 1 .. L - 1
    decoded = decoders.generate(denoiser, valid[:, :1], L - 1, mask_id, tokens_per_step=1)
    order = order_statistics(decoded.order.cpu(), slice(1, None))
    return Rung(name=name, parameters=parameters, nelbo=float(draws.mean()) / L, gap=float(per_sequence.mean()),
                gap_standard_error=float(per_sequence.std()) / math.sqrt(len(per_sequence)), top_by_distance=top,
                floor=floor, fall_distance=markov.fall_distance(top, floor, FALL_FRACTION),
                far_function_word_share=share, far_tv_to_stationary=tv, **order)


def _profile(probs: torch.Tensor, pi: torch.Tensor, function_words: int) -> tuple[list[float], float, float]:
    """From the marginals (V prompts, L, V) after every token as a prompt: the mean top probability by
    distance weighted by pi (n = 0 set to 1: the prompt itself), the share of prompts whose argmax
    at the farthest mask is a function word, and the weighted TV of that mask's marginal to pi."""
    weights = pi.unsqueeze(-1)  # (V, 1): prompts weighted by how often they occur
    top = (weights * probs.max(-1).values).sum(0).tolist()  # (L,)
    far = probs[:, -1]  # (V, V): the farthest mask's marginal after each prompt
    share = float((far.argmax(-1) < function_words).double().mean())
    # TV(p, q) = 1/2 sum_v |p_v - q_v|
    tv = float((pi * 0.5 * (far - pi).abs().sum(-1)).sum())
    return [1.0] + top[1:], share, tv


# --- what retraining may move ------------------------------------------------------------------

# How far retraining may move a trained rung's numbers (``book.check``): about 1.5 times the largest
# spread over the stored seeds 0, 1 and 2 of any rung (``maskdiff-tutor book-models --spread
# --experiment ladder``), where a seed draws the chain too: NELBO gap 0.196 (500 steps), floor
# 0.015, fall distance 1, TV to pi 0.020 (the function-word share did not move), leftmost share
# 0.562 (1,800 steps: 1.0, 0.44 and 0.50).
GAP_TOLERANCE = 0.3  # nats per token
FLOOR_TOLERANCE = 0.025
FALL_TOLERANCE = 2  # tokens
SHARE_TOLERANCE = 0.05  # function-word share and TV at the farthest mask
LEFTMOST_TOLERANCE = 0.85


def headline(result: LadderResult) -> dict:
    """The numbers the section's reading rests on: name -> (value, tolerance), for every trained
    rung, the tolerance being how far retraining may move the value (``book.check``)."""
    LadderResult.check_type(result)
    numbers = {}
    for rung in result.metrics.trained:
        numbers[f"{rung.name}: NELBO gap"] = (rung.gap, GAP_TOLERANCE)
        numbers[f"{rung.name}: floor of the top probability"] = (rung.floor, FLOOR_TOLERANCE)
        numbers[f"{rung.name}: fall distance"] = (float(rung.fall_distance), FALL_TOLERANCE)
        numbers[f"{rung.name}: far mask, function-word share"] = (rung.far_function_word_share, SHARE_TOLERANCE)
        numbers[f"{rung.name}: far mask, TV to the stationary distribution"] = (rung.far_tv_to_stationary,
                                                                               SHARE_TOLERANCE)
        numbers[f"{rung.name}: greedy after a prompt, leftmost share"] = (rung.leftmost_share, LEFTMOST_TOLERANCE)
    return numbers
