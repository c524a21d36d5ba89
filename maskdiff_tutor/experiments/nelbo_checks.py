r"""Section 3.2.1 checked exactly on the paper's toy (book chapter "The NELBO"): the weight of the loss
shapes training, not its optimum, and the optimal denoiser needs no time input.

Each function returns a typed record, computed in seconds from the toy's exact denoiser:

- ``weighting_minimisers``: the exact contribution of one mask pattern to the loss, as a function of
  the predicted probability of one token, under the NELBO weight (Eq. 12) and without it: both are
  minimised by the true conditional;
- ``time_free_gap``: the posterior :math:`p(x_0 \mid x_t, t)` with the time kept in (Bayes' rule
  through Eq. 3) against the time-free oracle :math:`p(x_0 \mid x_t)`, for several times and schedules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .. import nelbo
from ..schedules import CosineSchedule, LinearSchedule, Schedule
from ..toy import ToyDataset, toy_dataset
from .result import Environment, ExperimentResult

PATTERN = "[MASK] [MASK] C D [MASK]"  # the toy input whose first position the weighting check varies


@dataclass(frozen=True)
class WeightedLoss:
    """One weighting of the loss: its pattern coefficients, and the contribution of one pattern as a
    function of the predicted probability."""

    weighting: str  # "NELBO weight" (Eq. 12, any schedule) or "unweighted" (w = 1, linear schedule)
    coefficients: tuple[float, ...]  # c_k, the weight of a pattern with k masks, k = 0 .. L
    loss: tuple[float, ...]  # c_k times the cross-entropy at each predicted probability of the grid (nats)
    minimiser: float  # the predicted probability of the grid with the smallest loss


@dataclass(frozen=True)
class WeightingMinimisers:
    """The loss of one masked position under both weightings: different scales, one minimiser."""

    pattern: str  # the masked input of the toy
    position: int  # the position whose prediction is varied (0: the first)
    token: str  # the token whose predicted probability is varied
    true_conditional: float  # P(token | the pattern's unmasked tokens), from the exact denoiser
    grid: tuple[float, ...]  # the predicted probabilities tried
    nelbo: WeightedLoss  # under the NELBO weight
    unweighted: WeightedLoss  # without it


def weighting_minimisers(toy: ToyDataset | None = None, pattern: str = PATTERN, position: int = 0,
                         token: str = "A", points: int = 981) -> WeightingMinimisers:
    """Both weightings of the loss of ``token`` at ``position`` of ``pattern`` on a grid of predicted
    probabilities from 0.01 to 0.99 (``points`` of them); the toy is the paper's unless given."""
    toy = toy_dataset() if toy is None else toy
    x_t = toy.ids(pattern)  # (1, L)
    masks = int((x_t == toy.mask_id).sum())  # k, the pattern's number of masks
    p_true = toy.oracle().conditional_probs(x_t)[0, position, toy.tokens.index(token)].item()
    q = torch.linspace(0.01, 0.99, points, dtype=torch.float64)  # (points,)
    # -(p log q + (1 - p) log(1 - q)): the cross-entropy of the true conditional and the prediction
    cross_entropy = -(p_true * torch.log(q) + (1 - p_true) * torch.log(1 - q))  # (points,)
    seq_len = x_t.shape[1]
    losses = []
    for weighting, coefficients in (("NELBO weight", nelbo.pattern_coefficients(seq_len)),
                                    ("unweighted", nelbo.pattern_coefficients(seq_len, LinearSchedule(),
                                                                              weighted=False))):
        loss = coefficients[masks] * cross_entropy  # (points,)
        losses.append(WeightedLoss(weighting, tuple(coefficients.tolist()), tuple(loss.tolist()),
                                   q[loss.argmin()].item()))
    return WeightingMinimisers(pattern, position, token, p_true, tuple(q.tolist()), *losses)


@dataclass(frozen=True)
class TimeFreeGap:
    """The time-conditioned posterior against the time-free one at one time and schedule."""

    time: float  # t
    schedule: str  # the schedule, as its repr
    gap: float  # max |p(x_0 | x_t, t) - p(x_0 | x_t)| over the inputs, positions and tokens


@dataclass(frozen=True)
class TimeFreeCheck:
    """Eq. time-free checked on the toy: the time cancels from the posterior."""

    inputs: tuple[str, ...]  # the masked inputs of the toy
    times: tuple[float, ...]  # the times tried
    schedules: tuple[str, ...]  # the schedules tried, as their repr
    rows: list[TimeFreeGap]  # every time with every schedule

    @property
    def largest_gap(self) -> float:
        """The largest difference over every time, schedule, input, position and token."""
        return max(r.gap for r in self.rows)

    def within(self, resolution: float = 1e-12) -> float:
        """The gap as a claim states it: the largest gap, or ``resolution`` where it is smaller
        (below float64 rounding of these sums)."""
        return max(self.largest_gap, resolution)


def time_free_gap(toy: ToyDataset | None = None,
                  inputs: tuple[str, ...] = (PATTERN, "A [MASK] C [MASK] [MASK]", "[MASK] B' [MASK] [MASK] [MASK]"),
                  times: tuple[float, ...] = (0.05, 0.3, 0.6, 0.95),
                  schedules: tuple[Schedule, ...] = (LinearSchedule(), CosineSchedule())) -> TimeFreeCheck:
    """The time-conditioned posterior of the toy's exact denoiser against the time-free one."""
    toy = toy_dataset() if toy is None else toy
    oracle = toy.oracle()
    x_t = torch.cat([toy.ids(names) for names in inputs])  # (inputs, L)
    time_free = oracle.conditional_probs(x_t)  # (inputs, L, V)
    rows = [TimeFreeGap(time, repr(schedule),
                        (oracle.time_conditioned_probs(x_t, time, schedule) - time_free).abs().max().item())
            for time in times for schedule in schedules]
    return TimeFreeCheck(tuple(inputs), tuple(times), tuple(repr(s) for s in schedules), rows)


# --- everything the claims read, as one result ----------------------------------------------------

@dataclass(frozen=True)
class Findings:
    """The chapter's exact checks of Section 3.2.1, each computed with the chapter's settings."""

    weighting_minimisers: WeightingMinimisers  # claim 1: the weight does not move the optimum
    time_free_gap: TimeFreeCheck  # claim 2: the optimal denoiser needs no time input


@dataclass(frozen=True)
class NelboChecksResult(ExperimentResult):
    """The NELBO chapter's exact checks as one result (``run``)."""

    EXPERIMENT = "nelbo_checks"
    config: None  # the toy and the chapter's settings: nothing to choose
    metrics: Findings
    curves: None  # nothing is trained: no curves


def run(scale: str = "exact", device=None, seed: int = 0, progress: bool = False) -> NelboChecksResult:
    """Both checks on the toy (exact; ``device``, ``seed`` and ``progress`` are accepted for a
    uniform call and not used)."""
    if scale != "exact":
        raise ValueError(f"scale must be 'exact' (the checks are exact); got {scale!r}")
    started = time.time()
    findings = Findings(weighting_minimisers(), time_free_gap())
    return NelboChecksResult(scale, seed, None, findings, None, Environment.now(torch.device("cpu"), started))
