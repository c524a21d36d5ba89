"""Checks for the exercises of the chapter "The NELBO" (paper Section 2, Eqs. 3-13)."""

from __future__ import annotations

import numpy as np
import torch

from ..forward_process import categorical_kl, posterior_probs
from ..schedules import CosineSchedule, LinearSchedule, LogLinearSchedule, PolynomialSchedule
from .grading import Case, Grade, grade, shown

SEED = 0  # every check draws the same inputs


def check_nelbo_weight(student_function) -> Grade:
    r"""``student_function(schedule, t)`` returns the NELBO weight :math:`w(t) = -\alpha'(t) / (1 - \alpha(t))`
    as a float, for any schedule of ``maskdiff_tutor.schedules`` (use ``schedule.alpha`` and
    ``schedule.dalpha``) and a time t in [0.05, 1]."""
    rng = np.random.default_rng(SEED)
    schedules = (LinearSchedule(), CosineSchedule(), PolynomialSchedule(2.0), PolynomialSchedule(0.5),
                 LogLinearSchedule())
    times = [*rng.uniform(0.05, 1.0, 3).round(4), 1.0]
    cases = [Case(f"t={t:g}, {schedule}", (schedule, float(t))) for schedule in schedules for t in times]
    return grade("check_nelbo_weight", student_function, lambda schedule, t: float(schedule.weight(t)), cases)


def check_reveal_probability(student_function) -> Grade:
    r"""``student_function(alpha_s, alpha_t)`` returns the probability that a token masked at time t
    is unmasked at the earlier time s < t, :math:`(\alpha_s - \alpha_t) / (1 - \alpha_t)` (Eq. 5),
    for :math:`0 \le \alpha_t \le \alpha_s \le 1` and :math:`\alpha_t < 1`."""
    rng = np.random.default_rng(SEED)
    pairs = [tuple(sorted(rng.uniform(0, 0.99, 2).round(4), reverse=True)) for _ in range(6)]
    pairs += [(0.5, 0.5), (1.0, 0.3), (0.7, 0.0), (1.0, 0.0)]  # nothing revealed; all of it; from fully masked
    cases = [Case(f"alpha_s={a_s:g}, alpha_t={a_t:g}", (float(a_s), float(a_t))) for a_s, a_t in pairs]
    return grade("check_reveal_probability", student_function, _reveal_reference, cases)


def _reveal_reference(alpha_s: float, alpha_t: float) -> float:
    # the posterior of Eq. 5 for a masked x_t and a linear schedule (alpha = 1 - t): its weight on x0
    x_t, x0 = torch.tensor([[1]]), torch.tensor([[0]])
    return float(posterior_probs(x_t, x0, 1 - alpha_s, 1 - alpha_t, LinearSchedule(), mask_id=1, vocab_size=2)[0, 0, 0])


def check_posterior(student_function) -> Grade:
    r"""``student_function(x_t, x0, alpha_s, alpha_t, vocab_size, mask_id)`` returns the posterior
    :math:`q(x_s \mid x_t, x_0)` of one position (Eq. 5) as a probability vector of length
    ``vocab_size``: ``x_t`` and ``x0`` are token ids (``x_t`` is ``x0`` or ``mask_id``), and
    :math:`0 \le \alpha_t \le \alpha_s \le 1`, :math:`\alpha_t < 1`."""
    rng = np.random.default_rng(SEED)
    cases = []
    for vocab_size in (2, 5, 9):
        mask_id = vocab_size - 1
        for masked in (True, False):
            x0 = int(rng.integers(0, mask_id))
            a_s, a_t = sorted(rng.uniform(0, 0.99, 2).round(4), reverse=True)
            args = (mask_id if masked else x0, x0, float(a_s), float(a_t), vocab_size, mask_id)
            cases.append(Case(f"x_t={args[0]}, x0={x0}, alpha_s={a_s:g}, alpha_t={a_t:g}, vocab_size={vocab_size}, "
                              f"mask_id={mask_id}", args))
    return grade("check_posterior", student_function, _posterior_reference, cases)


def _posterior_reference(x_t, x0, alpha_s, alpha_t, vocab_size, mask_id) -> torch.Tensor:
    return posterior_probs(torch.tensor([[x_t]]), torch.tensor([[x0]]), 1 - alpha_s, 1 - alpha_t, LinearSchedule(),
                           mask_id, vocab_size)[0, 0]


def check_categorical_kl(student_function) -> Grade:
    r"""``student_function(p, q)`` returns :math:`\mathrm{KL}(p \,\|\, q) = \sum_v p_v \log(p_v / q_v)` of two
    probability vectors (numpy arrays), with :math:`0 \log 0 = 0` (a token p gives no mass adds nothing)."""
    rng = np.random.default_rng(SEED)
    pairs = [(rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))) for n in (2, 3, 6, 10)]
    pairs += [(np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])),  # 0 log 0 = 0
              (np.array([1.0, 0.0]), np.array([1.0, 0.0])),  # equal, with a zero
              (np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5]))]
    cases = [Case(f"p={shown(list(map(float, p)))}, q={shown(list(map(float, q)))}", (p, q)) for p, q in pairs]
    return grade("check_categorical_kl", student_function,
                 lambda p, q: float(categorical_kl(torch.from_numpy(p), torch.from_numpy(q))), cases)
