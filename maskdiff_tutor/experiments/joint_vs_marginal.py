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
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import asdict, dataclass

import torch

from .. import decoders, nelbo
from ..denoiser import Denoiser, DenoiserConfig
from ..device import evaluation_dtype, pick_device
from ..forward_process import denoiser_probs
from ..toy import FIRST, SECOND, toy_dataset
from ..train import TrainConfig, train
from . import trained_models
from .result import LegacyResult as ExperimentResult, environment


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
        save_models: str | pathlib.Path | None = None, models: str | pathlib.Path | None = None) -> ExperimentResult:
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
    oracle = toy.oracle()
    query = toy.ids("[MASK] [MASK] C D [MASK]")
    joint = toy.pair_joint()  # (2, 2)
    model_config = DenoiserConfig.preset(settings.preset, vocab_size=toy.vocab_size, max_seq_len=5)
    trained = trained_models.train_or_load(
        "joint_vs_marginal", trained_models.training_settings(settings, TRAINING_FIELDS, seed, model_config),
        lambda: _train_models(toy, model_config, settings, device, seed, progress, started), save_models, models, device)
    dtype, metrics, curves = evaluation_dtype(device), {}, trained.histories
    measured = {name: model.to(dtype).eval() for name, model in trained.models.items()}

    def on_cpu(model):  # the toy's tensors live on the CPU; the model may not
        return lambda x: model(x.to(device)).double().cpu()

    with torch.no_grad():
        exact = oracle.conditional_probs(query)[0]  # (5, V)
        metrics["oracle"] = {"P(A)": float(exact[0, 0]), "P(B)": float(exact[1, 2])}
        patterns = nelbo.mask_patterns(5)  # (32, 5)
        inputs = torch.where(patterns.unsqueeze(0), toy.mask_id, toy.data.unsqueeze(1)).reshape(-1, 5).unique(dim=0)
        predictions = {}
        for name, model in measured.items():
            denoiser = on_cpu(model)
            probs = denoiser_probs(denoiser(query), toy.mask_id)[0]  # (5, V)
            predictions[name] = denoiser_probs(denoiser(inputs), toy.mask_id)  # (N, 5, V)
            masked = (inputs == toy.mask_id).unsqueeze(-1)
            p_first, p_second = probs[0, :2], probs[1, 2:4]
            i, j = int(p_first.argmax()), int(p_second.argmax())
            generator = torch.Generator().manual_seed(seed + 1)
            all_masks = torch.full((settings.samples, 5), toy.mask_id)
            sequential = decoders.sample_one_at_a_time(denoiser, all_masks, toy.mask_id, generator)
            at_once = decoders.sample_all_at_once(denoiser, all_masks, toy.mask_id, generator)
            greedy, greedy_score = decoders.beam_search(denoiser, query, toy.mask_id, 1, positions=[0, 1])
            beam, beam_score = decoders.beam_search(denoiser, query, toy.mask_id, 2, positions=[0, 1])
            product = torch.outer(p_first, p_second)  # (2, 2) product of the model's marginals
            metrics[name] = {
                "P(A)": float(p_first[0]), "P(B)": float(p_second[0]),
                "max_abs_error_vs_oracle": max(abs(float(p_first[0]) - metrics["oracle"]["P(A)"]),
                                               abs(float(p_second[0]) - metrics["oracle"]["P(B)"])),
                "parallel_argmax": pair_name(i, j), "parallel_argmax_joint_probability": float(joint[i, j]),
                "greedy_left_to_right": toy.names(greedy[0, :2]).replace(" ", ""),
                "greedy_model_probability": float(greedy_score.exp()),
                "beam_search_width_2": toy.names(beam[0, :2]).replace(" ", ""),
                "beam_model_probability": float(beam_score.exp()),
                "tv_sequential_vs_joint": total_variation(pair_distribution(sequential.tokens), joint),
                "tv_all_at_once_vs_joint": total_variation(pair_distribution(at_once.tokens), joint),
                "tv_all_at_once_vs_product": total_variation(pair_distribution(at_once.tokens), product),
                "invalid_pairs_sequential": round(1 - float(pair_distribution(sequential.tokens).sum()), 12),
                "invalid_pairs_all_at_once": round(1 - float(pair_distribution(at_once.tokens).sum()), 12),
                "pair_sequential": pair_distribution(sequential.tokens).tolist(),
                "pair_all_at_once": pair_distribution(at_once.tokens).tolist(),
                "pair_product_of_marginals": product.tolist(),
                "max_abs_error_vs_oracle_all_inputs": float(((predictions[name] - oracle.conditional_probs(inputs))
                                                             * masked).abs().max()),
                "exact_nelbo_per_sequence": float(nelbo.exact_nelbo(denoiser, toy.data, toy.mask_id).mean()),
            }
        masked = (inputs == toy.mask_id).unsqueeze(-1)
        difference = ((predictions["weighted"] - predictions["unweighted"]) * masked).abs()
        metrics["weighted_vs_unweighted"] = {"max_abs_difference": float(difference.max()),
                                             "mean_abs_difference_at_masks": float(difference.sum() / masked.sum() / 2),
                                             "inputs_compared": len(inputs)}
    row, col = divmod(int(joint.argmax()), 2)
    metrics["toy"] = {"joint": joint.tolist(), "joint_mode": pair_name(row, col),
                      "tv_product_of_exact_marginals_vs_joint": total_variation(
                          torch.outer(joint.sum(1), joint.sum(0)), joint),
                      "true_nll_per_sequence": float(-oracle.log_prob(toy.data).mean())}
    config = {"scale": asdict(settings), "model": asdict(model_config), "schedule": "LinearSchedule()",
              "query": "[MASK] [MASK] C D [MASK]", "evaluated_in": str(dtype).removeprefix("torch.")}
    return ExperimentResult("joint_vs_marginal", scale, seed, config, metrics, curves,
                            {**environment(device, started), "training": trained.environment})


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
                                progress=progress).to_dict()
        models[name] = model
    return trained_models.TrainedModels(models, histories, environment(device, started))




def headline(result: ExperimentResult) -> dict:
    """The numbers the chapter's conclusions rest on: name -> (value, tolerance), the tolerance
    being how far retraining may move the value (``book.check``): about 1.5 times the largest
    difference between seeds 0, 1 and 2 at the ci scale (``maskdiff-tutor book-models --spread``).
    Retraining with the same seed on another CPU moves the values less."""
    m = result.metrics
    numbers = {}
    for name in ("weighted", "unweighted"):
        numbers.update({
            f"{name}: P(A)": (m[name]["P(A)"], 0.02),
            f"{name}: P(B)": (m[name]["P(B)"], 0.01),
            f"{name}: parallel argmax is AB (1 = yes)": (float(m[name]["parallel_argmax"] == "AB"), 0.0),
            f"{name}: beam search finds A'B (1 = yes)": (float(m[name]["beam_search_width_2"] == "A'B"), 0.0),
            f"{name}: TV(one per step, joint)": (m[name]["tv_sequential_vs_joint"], 0.012),
            f"{name}: TV(all at once, joint)": (m[name]["tv_all_at_once_vs_joint"], 0.02),
            f"{name}: exact NELBO per sequence": (m[name]["exact_nelbo_per_sequence"], 0.005)})
    numbers["largest weighted-unweighted difference"] = (m["weighted_vs_unweighted"]["max_abs_difference"], 0.015)
    return numbers
