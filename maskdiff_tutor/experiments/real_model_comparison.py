"""Two or more models of the "Real models" chapter side by side: each one's real-model result in a
few numbers, averaged over the prompt sets, with its size and its held-out NELBO.

The paper measures one large model, LLaDA; the book measures small models of Tiny Shakespeare. Set
beside each other, a small and a larger model of the same text show which of the chapter's
observations move with the quality of the denoiser (its held-out NELBO) and which do not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .real_model import RealModelResult, observations


@dataclass(frozen=True)
class ModelSummary:
    """One model's real-model result, averaged over the prompt sets."""
    name: str  # a short name for the table
    parameters: int
    held_out_nelbo: float  # nats per text token on held-out text (``small_masked_lm.held_out_nelbo``)
    mean_top_by_n: tuple[float, ...]  # Figure 3: the mean top probability at n = 1, ..., M, averaged over the sets
    top_at_1: float  # Figure 3: the curve averaged over the sets, at n = 1
    lowest: float  # its lowest value
    lowest_at_n: int  # and where it lies
    top_at_end: float  # its value at the last mask
    homogenised_far: float  # Table 1: mean share of far masks whose argmax is a frequent token
    leftmost: float  # generation order: mean share of greedy steps that took the leftmost mask
    rho: float  # mean rank correlation of position and step
    own_ppl: dict[int, float]  # k -> mean of the model's own perplexity of its samples, k tokens per step
    entropy: dict[int, float]  # k -> mean token entropy of its samples (nats)


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


def summarise(name: str, result: RealModelResult, parameters: int, held_out_nelbo: float) -> ModelSummary:
    """The summary of one model's ``result``: every number the mean over its prompt sets."""
    sets = result.metrics.sets
    curve = torch.tensor([_mean(v) for v in zip(*(s.mean_top_by_n for s in sets), strict=True)], dtype=torch.float64)
    seen = observations(curve)
    ks = sorted(sets[0].cost_of_k)
    return ModelSummary(name, parameters, held_out_nelbo, tuple(curve.tolist()), seen.top_at_1, seen.floor,
                        seen.floor_at_n, seen.top_at_end, _mean(s.homogenised_share_far for s in sets),
                        _mean(s.generation_order.leftmost_share for s in sets),
                        _mean(s.generation_order.spearman_position_vs_step for s in sets),
                        {k: _mean(s.cost_of_k[k].own_ppl for s in sets) for k in ks},
                        {k: _mean(s.cost_of_k[k].entropy for s in sets) for k in ks})


def headline(result: RealModelResult) -> dict[str, tuple[float, float]]:
    """The numbers of ``summarise`` as ``name -> (value, tolerance)`` for ``trained_models.compare``
    (tolerance 0: the caller sets its own, as the stored-result check does)."""
    s = summarise("model", result, parameters=0, held_out_nelbo=0.0)
    numbers = {"top probability at n = 1": s.top_at_1, "lowest top probability": s.lowest,
               "top probability at the last mask": s.top_at_end, "far masks homogenised": s.homogenised_far,
               "greedy: leftmost share": s.leftmost, "greedy: rho": s.rho,
               **{f"own PPL, {k} per step": v for k, v in s.own_ppl.items()},
               **{f"entropy, {k} per step": v for k, v in s.entropy.items()}}
    return {name: (float(value), 0.0) for name, value in numbers.items()}


def comparison_table(summaries: list[ModelSummary], masks: int):
    """The models side by side, one column each, one row per quantity (``masks``: the masks measured
    after each prompt, for the row names)."""
    from ..notebook import Table

    if not summaries:
        raise ValueError("summaries must hold at least one ModelSummary; got none")
    rows = [["parameters", *[f"{s.parameters:,}" for s in summaries]],
            ["held-out NELBO (nats per token)", *[f"{s.held_out_nelbo:.3f}" for s in summaries]],
            ["top probability at n = 1", *[f"{s.top_at_1:.3f}" for s in summaries]],
            ["lowest top probability (at n)", *[f"{s.lowest:.3f} ({s.lowest_at_n})" for s in summaries]],
            [f"top probability at n = {masks}", *[f"{s.top_at_end:.3f}" for s in summaries]],
            ["far masks homogenised", *[f"{s.homogenised_far:.2f}" for s in summaries]],
            ["greedy: leftmost share", *[f"{s.leftmost:.2f}" for s in summaries]],
            ["greedy: rho of position and step", *[f"{s.rho:.2f}" for s in summaries]]]
    for k in summaries[0].own_ppl:
        rows.append([f"own PPL, {k} per step (entropy)",
                     *[f"{s.own_ppl[k]:.1f} ({s.entropy[k]:.2f})" for s in summaries]])
    return Table(["quantity", *[s.name for s in summaries]], rows,
                 caption="Each number the mean over the four prompt sets. Own PPL: the model's perplexity of its "
                         "own samples, so it compares k within a column, not one model with another.")
