r"""Joint versus marginal on a trained denoiser (paper Section 3.2.2, Figure 1; Section 3.2.1).

Trains the bidirectional denoiser on the paper's toy dataset twice, with the NELBO weight and
without it, and measures on the trained models:

- the marginals at ``[MASK] [MASK] C D [MASK]`` against the exact ones (:math:`P(A) = 0.55`,
  :math:`P(B) = 0.69`);
- parallel argmax of positions 1-2 (AB) against the joint's mode (A'B), and beam search over the
  model's own sequential conditionals;
- the distribution of :math:`(x^1, x^2)` when all five tokens are generated one per step (ancestral)
  and all at once, each as a total-variation distance to the true joint;
- how much the weighted and unweighted models' predictions differ, and each one's exact NELBO.

``run`` returns a :class:`JointVsMarginalResult`: ``result.metrics.weighted.p_a``,
``result.metrics.weighted.sampling.tv_all_at_once_vs_joint``, ``result.metrics.toy.joint_mode``,
``result.sampling_noise()`` and the training histories in ``result.curves``.
"""

from __future__ import annotations

import math
import pathlib
import time
from dataclasses import dataclass

import torch

from .. import decoders, nelbo
from .._checks import check_number
from ..denoiser import Denoiser, DenoiserConfig
from ..device import evaluation_dtype, pick_device
from ..forward_process import denoiser_probs
from ..toy import FIRST, SECOND, ToyDataset, toy_dataset
from ..train import History, TrainConfig, train
from . import trained_models
from .result import Environment, ExperimentResult


@dataclass(frozen=True)
class Scale:
    """The model size, training and sampling settings of a scale."""
    preset: str  # denoiser size (DenoiserConfig.preset)
    steps: int  # optimiser steps per model
    batch_size: int  # sequences per step
    lr: float  # peak learning rate
    samples: int  # sequences generated per sampler for the TV distances


# The settings that determine the trained weights (the rest only decide what is measured).
TRAINING_FIELDS = ("preset", "steps", "batch_size", "lr")

SCALES = {
    "ci": Scale(preset="toy", steps=1500, batch_size=256, lr=3e-3, samples=4000),  # ~1 min on 2 CPU cores
    # gpu: sized with the other experiments to run side by side in scripts/gpu-run.sh's budget of
    # under 10 minutes on one H100-class GPU (each run records its wall time)
    "gpu": Scale(preset="small", steps=3000, batch_size=2048, lr=1e-3, samples=200_000),
}


QUERY = "[MASK] [MASK] C D [MASK]"  # the input whose marginals the chapter reads (Section 3.2.2)


# ----------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class Config:
    """Every setting that produced a result."""
    scale: Scale  # the model size, training and sampling settings
    model: DenoiserConfig  # the denoiser trained with each objective
    schedule: str  # the noise schedule of training: "LinearSchedule()", alpha(t) = 1 - t
    query: str  # the input whose marginals are read, QUERY
    evaluated_in: str  # the dtype the trained models are measured in: "float64" on the CPU, "float32" elsewhere


@dataclass(frozen=True)
class Marginals:
    """The exact denoiser's marginals of positions 1 and 2 at the query."""
    p_a: float  # P(x1 = A | query), probability (0.55 on the toy)
    p_b: float  # P(x2 = B | query), probability (0.69 on the toy)


@dataclass(frozen=True)
class Decoding:
    """Positions 1 and 2 of the query decoded by argmax: in one step, and one after the other."""
    parallel_pair: str  # both argmaxes from one denoiser call, e.g. "AB"
    parallel_pair_joint_probability: float  # that pair's probability under the true joint
    greedy_pair: str  # position 1's argmax, then position 2's given it (beam search of width 1)
    greedy_model_probability: float  # the greedy pair's probability under the model's sequential conditionals
    beam_pair: str  # beam search of width 2 over positions 1 then 2
    beam_model_probability: float  # the beam pair's probability under the model's sequential conditionals


@dataclass(frozen=True)
class Sampling:
    """The pair (x1, x2) of ``Scale.samples`` sequences generated from ``[MASK] x 5``, one token per
    denoiser call in a random order (sequential) or all five from one call (all at once). Pair
    tables are (2, 2): rows A, A'; columns B, B'; shares of all sequences generated."""
    tv_sequential_vs_joint: float  # total variation between the sequential pairs and the true joint
    tv_all_at_once_vs_joint: float  # total variation between the all-at-once pairs and the true joint
    tv_all_at_once_vs_product: float  # total variation between the all-at-once pairs and pair_product_of_marginals
    invalid_pairs_sequential: float  # share of sequential samples whose pair lies outside {A, A'} x {B, B'}
    invalid_pairs_all_at_once: float  # the same share for all-at-once samples
    pair_sequential: list[list[float]]  # (2, 2) shares of the sequential samples
    pair_all_at_once: list[list[float]]  # (2, 2) shares of the all-at-once samples
    pair_product_of_marginals: list[list[float]]  # (2, 2) the model's P(x1) P(x2) at the query


@dataclass(frozen=True)
class ModelMeasurement:
    """What one trained denoiser does on the toy."""
    objective: str  # "weighted" (the NELBO weight w(t) = 1/t) or "unweighted" (plain masked cross-entropy)
    p_a: float  # the model's P(x1 = A | query), probability
    p_b: float  # the model's P(x2 = B | query), probability
    max_error_at_query: float  # max(|p_a - exact|, |p_b - exact|), probability
    max_error_over_inputs: float  # largest |model - exact| probability at any masked position of any masked input
    decoding: Decoding  # argmax decoding of positions 1 and 2 of the query
    sampling: Sampling  # the pair (x1, x2) sampled one token per step and all at once
    exact_nelbo_per_sequence: float  # the exact NELBO (Eq. 13) averaged over the toy's sequences, nats


@dataclass(frozen=True)
class ObjectiveComparison:
    """How far apart the weighted and unweighted models' predictions lie (Section 3.2.1)."""
    max_abs_difference: float  # largest |weighted - unweighted| probability at any masked position of any input
    mean_tv_at_masks: float  # mean over masked positions of the total variation between the two predictions
    inputs_compared: int  # distinct masked versions of the toy's sequences compared


@dataclass(frozen=True)
class ToyFacts:
    """Exact facts of the toy dataset, the references of the measurements."""
    joint: list[list[float]]  # (2, 2) the true P(x1, x2): rows A, A'; columns B, B'
    joint_mode: str  # the joint's most probable pair, "A'B"
    tv_product_of_exact_marginals_vs_joint: float  # total variation between P(x1) P(x2) and the joint (0.079)
    true_nll_per_sequence: float  # -log P(x) averaged over the toy's sequences, nats (log 100)

    def sampling_noise(self, draws: int) -> float:
        r"""The mean total variation between the joint and the pairs of ``draws`` exact draws from
        it: how far sampling noise alone takes a perfect sampler. Each pair's share :math:`\hat p`
        of :math:`n` draws has :math:`E|\hat p - p| \approx \sqrt{2 p (1 - p) / (\pi n)}` (normal
        approximation), and TV is half the sum over the four pairs."""
        n = check_number("draws", draws, integer=True, at_least=1, meaning="the number of exact draws")
        # E TV ~ 1/2 sum_ij sqrt(2 p_ij (1 - p_ij) / (pi n))
        return 0.5 * sum(math.sqrt(2 * p * (1 - p) / (math.pi * n)) for row in self.joint for p in row)


@dataclass(frozen=True)
class MarginalsRow:
    """One row of the chapter's table of marginals at the query."""
    denoiser: str  # "exact (oracle)", "trained, weighted" or "trained, unweighted"
    p_a: float  # P(x1 = A | query), probability
    p_b: float  # P(x2 = B | query), probability
    max_error_at_query: float | None  # the larger of the two differences from the exact marginals; None for the oracle


@dataclass(frozen=True)
class Metrics:
    """Everything the experiment measures."""
    oracle: Marginals  # the exact marginals at the query
    weighted: ModelMeasurement  # the model trained with the NELBO weight
    unweighted: ModelMeasurement  # the model trained without it
    weighted_vs_unweighted: ObjectiveComparison  # how far apart the two models' predictions lie
    toy: ToyFacts  # the exact references

    def models(self) -> tuple[ModelMeasurement, ModelMeasurement]:
        """The two trained models' measurements: weighted, then unweighted."""
        return self.weighted, self.unweighted

    def marginals_rows(self) -> list[MarginalsRow]:
        """The marginals at the query: the oracle's, then each model's with its largest error."""
        return [MarginalsRow("exact (oracle)", self.oracle.p_a, self.oracle.p_b, None),
                *(MarginalsRow(f"trained, {m.objective}", m.p_a, m.p_b, m.max_error_at_query) for m in self.models())]


@dataclass(frozen=True)
class Curves:
    """The two models' training histories (loss in nats per token)."""
    weighted: History  # trained with the NELBO weight
    unweighted: History  # trained without it


@dataclass(frozen=True)
class JointVsMarginalResult(ExperimentResult):
    """What ``run`` returns and saves."""
    EXPERIMENT = "joint_vs_marginal"
    config: Config
    metrics: Metrics
    curves: Curves

    def sampling_noise(self) -> float:
        """The mean total variation between the joint and ``config.scale.samples`` exact draws from
        it (``ToyFacts.sampling_noise``): the distance an exact sampler lands at by chance alone."""
        return self.metrics.toy.sampling_noise(self.config.scale.samples)


# ----------------------------------------------------------------------------- measurements


def pair_distribution(tokens: torch.Tensor) -> torch.Tensor:
    r"""Empirical distribution of :math:`(x^1, x^2)` over generated toy sequences (N, 5): 2 x 2, rows A, A'.

    Pairs outside :math:`\{A, A'\} \times \{B, B'\}` (a model's mistakes) are not in the table, so it sums to the
    fraction of valid pairs."""
    first, second = tokens[:, 0].cpu(), tokens[:, 1].cpu() - len(FIRST)
    valid = (first < len(FIRST)) & (second >= 0) & (second < len(SECOND))
    table = torch.zeros(2, 2, dtype=torch.float64)
    table.index_put_((first[valid], second[valid]), torch.ones(int(valid.sum()), dtype=torch.float64), accumulate=True)
    return table / len(tokens)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    r""":math:`\mathrm{TV}(p, q) = \frac{1}{2} \sum |p - q|` over the four pairs, plus half the mass either puts
    elsewhere."""
    outside = abs(float(p.sum()) - float(q.sum()))
    return 0.5 * (float((p - q).abs().sum()) + outside)


def pair_name(i: int, j: int) -> str:
    """The name of the pair :math:`(x^1, x^2)` with indices (i, j), e.g. "AB"."""
    return FIRST[i] + SECOND[j]


def run(scale: str = "ci", device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
        save_models: str | pathlib.Path | None = None,
        models: str | pathlib.Path | None = None) -> JointVsMarginalResult:
    """Train the two denoisers (or load them) and measure them; see the module docstring.

    Args:
        scale: "ci" (a CPU minute) or "gpu" (a larger model, longer training, more samples).
        device: None for the best available, or a device name that must exist.
        seed: seeds model initialisation, training and sampling.
        progress: show training progress bars.
        save_models: a folder to save the two trained models in (``trained_models.save``).
        models: a folder of models saved by an earlier run with the same scale and seed, measured
            instead of training (``trained_models.book_folder("joint_vs_marginal")``: the book's).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    started, settings, device = time.time(), SCALES[scale], pick_device(device)
    toy = toy_dataset()
    model_config = DenoiserConfig.preset(settings.preset, vocab_size=toy.vocab_size, max_seq_len=5)
    trained = trained_models.train_or_load(
        "joint_vs_marginal", trained_models.training_settings(settings, TRAINING_FIELDS, seed, model_config),
        lambda: _train_models(toy, model_config, settings, device, seed, progress, started), save_models, models,
        device)
    dtype = evaluation_dtype(device)
    with torch.no_grad():
        metrics = _measure(toy, trained.models, device, dtype, settings.samples, seed)
    config = Config(scale=settings, model=model_config, schedule="LinearSchedule()", query=QUERY,
                    evaluated_in=str(dtype).removeprefix("torch."))
    curves = Curves(weighted=trained.histories["weighted"], unweighted=trained.histories["unweighted"])
    return JointVsMarginalResult(scale, seed, config, metrics, curves,
                                 Environment.now(device, started, training=trained.environment))


def _measure(toy: ToyDataset, models: dict, device: torch.device, dtype: torch.dtype, samples: int,
             seed: int) -> Metrics:
    """Measure the trained ``models`` ("weighted" and "unweighted") against the toy's exact denoiser."""
    oracle = toy.oracle()
    exact = oracle.conditional_probs(toy.ids(QUERY))[0]  # (5, V)
    reference = Marginals(p_a=float(exact[0, 0]), p_b=float(exact[1, 2]))
    inputs = _masked_inputs(toy)  # (N, 5)
    masked = (inputs == toy.mask_id).unsqueeze(-1)  # (N, 5, 1)
    exact_at_inputs = oracle.conditional_probs(inputs)  # (N, 5, V)
    predictions, measured = {}, {}
    for name, model in models.items():
        denoiser = _on_cpu(model.to(dtype).eval(), device)
        predictions[name] = denoiser_probs(denoiser(inputs), toy.mask_id)  # (N, 5, V)
        max_error_over_inputs = float(((predictions[name] - exact_at_inputs) * masked).abs().max())
        measured[name] = _measure_model(name, denoiser, toy, reference, max_error_over_inputs, samples, seed)
    comparison = _compare_objectives(predictions["weighted"], predictions["unweighted"], masked)
    return Metrics(oracle=reference, weighted=measured["weighted"], unweighted=measured["unweighted"],
                   weighted_vs_unweighted=comparison, toy=_toy_facts(toy, oracle))


def _on_cpu(model: Denoiser, device: torch.device):
    """``model`` as a denoiser of CPU tensors returning float64 logits: the toy's tensors live on the
    CPU; the model may not."""
    return lambda x: model(x.to(device)).double().cpu()


def _masked_inputs(toy: ToyDataset) -> torch.Tensor:
    """Every distinct masked version of the toy's sequences, under all 2^5 mask patterns (N, 5)."""
    patterns = nelbo.mask_patterns(5)  # (32, 5)
    # (100, 32, 5) -> (3200, 5) -> (N, 5) distinct
    return torch.where(patterns.unsqueeze(0), toy.mask_id, toy.data.unsqueeze(1)).reshape(-1, 5).unique(dim=0)


def _measure_model(objective: str, denoiser, toy: ToyDataset, reference: Marginals, max_error_over_inputs: float,
                   samples: int, seed: int) -> ModelMeasurement:
    """One trained model's marginals at the query, its decodings, its samples and its exact NELBO."""
    query = toy.ids(QUERY)  # (1, 5)
    probs = denoiser_probs(denoiser(query), toy.mask_id)[0]  # (5, V)
    p_first, p_second = probs[0, :2], probs[1, 2:4]  # (2,) over A, A'; (2,) over B, B'
    p_a, p_b = float(p_first[0]), float(p_second[0])
    return ModelMeasurement(
        objective=objective, p_a=p_a, p_b=p_b,
        max_error_at_query=max(abs(p_a - reference.p_a), abs(p_b - reference.p_b)),
        max_error_over_inputs=max_error_over_inputs,
        decoding=_decode_pair(denoiser, toy, p_first, p_second),
        sampling=_sample_pairs(denoiser, toy, torch.outer(p_first, p_second), samples, seed),  # product: (2, 2)
        exact_nelbo_per_sequence=float(nelbo.exact_nelbo(denoiser, toy.data, toy.mask_id).mean()))


def _decode_pair(denoiser, toy: ToyDataset, p_first: torch.Tensor, p_second: torch.Tensor) -> Decoding:
    """Positions 1 and 2 of the query by parallel argmax of the marginals ``p_first`` (A, A') and
    ``p_second`` (B, B'), greedily one after the other, and by beam search of width 2."""
    query, joint = toy.ids(QUERY), toy.pair_joint()  # (1, 5), (2, 2)
    i, j = int(p_first.argmax()), int(p_second.argmax())
    greedy, greedy_log_p = decoders.beam_search(denoiser, query, toy.mask_id, 1, positions=[0, 1])
    beam, beam_log_p = decoders.beam_search(denoiser, query, toy.mask_id, 2, positions=[0, 1])
    return Decoding(parallel_pair=pair_name(i, j), parallel_pair_joint_probability=float(joint[i, j]),
                    greedy_pair=toy.names(greedy[0, :2]).replace(" ", ""),
                    greedy_model_probability=float(greedy_log_p.exp()),
                    beam_pair=toy.names(beam[0, :2]).replace(" ", ""), beam_model_probability=float(beam_log_p.exp()))


def _sample_pairs(denoiser, toy: ToyDataset, product: torch.Tensor, samples: int, seed: int) -> Sampling:
    """``samples`` sequences from ``[MASK] x 5`` one token per step, then as many all at once (one
    generator, seeded ``seed + 1``), their pairs (x1, x2) against the joint and against the model's
    ``product`` of marginals (2, 2)."""
    joint = toy.pair_joint()  # (2, 2)
    generator = torch.Generator().manual_seed(seed + 1)
    all_masks = torch.full((samples, 5), toy.mask_id)
    sequential = pair_distribution(decoders.sample_one_at_a_time(denoiser, all_masks, toy.mask_id, generator).tokens)
    at_once = pair_distribution(decoders.sample_all_at_once(denoiser, all_masks, toy.mask_id, generator).tokens)
    return Sampling(tv_sequential_vs_joint=total_variation(sequential, joint),
                    tv_all_at_once_vs_joint=total_variation(at_once, joint),
                    tv_all_at_once_vs_product=total_variation(at_once, product),
                    invalid_pairs_sequential=round(1 - float(sequential.sum()), 12),
                    invalid_pairs_all_at_once=round(1 - float(at_once.sum()), 12),
                    pair_sequential=sequential.tolist(), pair_all_at_once=at_once.tolist(),
                    pair_product_of_marginals=product.tolist())


def _compare_objectives(weighted: torch.Tensor, unweighted: torch.Tensor, masked: torch.Tensor) -> ObjectiveComparison:
    """The weighted and unweighted models' predictions (N, 5, V) compared at the masked positions
    (``masked`` (N, 5, 1))."""
    difference = ((weighted - unweighted) * masked).abs()  # (N, 5, V)
    # mean TV = sum |p - q| / (number of masked positions) / 2
    return ObjectiveComparison(max_abs_difference=float(difference.max()),
                               mean_tv_at_masks=float(difference.sum() / masked.sum() / 2),
                               inputs_compared=len(masked))


def _toy_facts(toy: ToyDataset, oracle) -> ToyFacts:
    """The joint of (x1, x2), its mode, how far the product of its marginals lies from it, and the true NLL."""
    joint = toy.pair_joint()  # (2, 2)
    row, col = divmod(int(joint.argmax()), 2)
    product = torch.outer(joint.sum(1), joint.sum(0))  # (2, 2) P(x1) P(x2)
    return ToyFacts(joint=joint.tolist(), joint_mode=pair_name(row, col),
                    tv_product_of_exact_marginals_vs_joint=total_variation(product, joint),
                    true_nll_per_sequence=float(-oracle.log_prob(toy.data).mean()))


def _train_models(toy, model_config, settings: Scale, device, seed: int, progress: bool,
                  started: float) -> trained_models.TrainedModels:
    """The weighted and the unweighted denoiser, from the same initial weights."""
    models, histories = {}, {}
    for name, weighted in (("weighted", True), ("unweighted", False)):
        torch.manual_seed(seed)  # the same initial weights for both objectives
        model = Denoiser(model_config)
        config = TrainConfig(steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr,
                             min_lr_ratio=0.0, weighted=weighted, log_every=max(1, settings.steps // 100))
        histories[name] = train(model, toy.data, toy.mask_id, config, device=device, seed=seed,
                                progress=progress)
        models[name] = model
    return trained_models.TrainedModels(models, histories, Environment.now(device, started))


def headline(result: JointVsMarginalResult) -> dict:
    """The numbers the chapter's conclusions rest on: name -> (value, tolerance), the tolerance
    being how far retraining may move the value (``book.check``): about 1.5 times the largest
    difference between seeds 0, 1 and 2 at the ci scale (``maskdiff-tutor book-models --spread``).
    Retraining with the same seed on another CPU moves the values less."""
    JointVsMarginalResult.check_type(result)
    numbers = {}
    for m in result.metrics.models():
        numbers.update({
            f"{m.objective}: P(A)": (m.p_a, 0.02),
            f"{m.objective}: P(B)": (m.p_b, 0.01),
            f"{m.objective}: parallel argmax is AB (1 = yes)": (float(m.decoding.parallel_pair == "AB"), 0.0),
            f"{m.objective}: beam search finds A'B (1 = yes)": (float(m.decoding.beam_pair == "A'B"), 0.0),
            f"{m.objective}: TV(one per step, joint)": (m.sampling.tv_sequential_vs_joint, 0.012),
            f"{m.objective}: TV(all at once, joint)": (m.sampling.tv_all_at_once_vs_joint, 0.02),
            f"{m.objective}: exact NELBO per sequence": (m.exact_nelbo_per_sequence, 0.005)})
    numbers["largest weighted-unweighted difference"] = (result.metrics.weighted_vs_unweighted.max_abs_difference,
                                                         0.015)
    return numbers
