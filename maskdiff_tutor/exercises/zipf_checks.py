"""Checks for the exercises of the chapters "The distance bound" and "Parallel sampling" (paper
Sections 3.2.3-3.3: Eqs. 14-18, Metrics 1-3, Table 2)."""

from __future__ import annotations

import numpy as np
import torch

from .. import markov, zipf
from .grading import Case, Grade, grade, shown

SEED = 0  # every check draws the same inputs
ZIPF = ((1.0, 10), (1.5, 64), (2.0, 1000), (2.31, 130_000), (1.1, 5), (3.0, 2))  # (s, N), the paper's among them


def _zipf_cases() -> list[Case]:
    return [Case(f"s={s:g}, N={N}", (s, N)) for s, N in ZIPF]


def check_zipf_pmf(student_function) -> Grade:
    r"""``student_function(s, N)`` returns the Zipf probabilities :math:`r^{-s} / H_{N,s}` of ranks
    :math:`r = 1, \dots, N` (Assumption 2) as an array of length N."""
    return grade("check_zipf_pmf", student_function, zipf.zipf_pmf, _zipf_cases())


def check_omegas(student_function) -> Grade:
    r"""``student_function(s, N)`` returns :math:`(\omega_1, \omega_2)`, the largest and the second-largest
    Zipf probabilities."""
    return grade("check_omegas", student_function, zipf.omegas, _zipf_cases())


def check_bound_limit(student_function) -> Grade:
    r"""``student_function(s, N)`` returns the limit of the distance bound,
    :math:`p^* = \omega_2 / (1 - (\omega_1 - \omega_2))` (Eq. 18)."""
    return grade("check_bound_limit", student_function, zipf.bound_limit, _zipf_cases())


def check_distance_bound(student_function) -> Grade:
    r"""``student_function(n, s, N)`` returns the bound of Eq. 17 on the top probability of a [MASK] at
    distance n from an unmasked token: :math:`p^* + (\omega_1 - \omega_2)^n (1 - p^*)`; 1 at n = 0."""
    cases = [Case(f"n={n}, s={s:g}, N={N}", (n, s, N)) for s, N in ZIPF for n in (0, 1, 3, 40)]
    return grade("check_distance_bound", student_function,
                 lambda n, s, N: float(zipf.top_probability_bound(n, s, N)), cases)


def check_distance_marginal(student_function) -> Grade:
    r"""``student_function(P, start, n)`` returns the distribution of the token n positions after the
    token ``start`` in a Markov chain with transition matrix ``P`` (V, V) (a float64 tensor; row i is
    the distribution of the token after i): a tensor of length V, row ``start`` of :math:`P^n`."""
    generator = torch.Generator().manual_seed(SEED)
    cases = []
    for vocab_size, s in ((4, 1.5), (8, 2.0), (16, 1.1)):
        P = markov.zipf_chain(vocab_size, s, generator)
        for n in (0, 1, 2, 7):
            start = int(torch.randint(vocab_size, (1,), generator=generator))
            cases.append(Case(f"a Zipf chain of V={vocab_size}, s={s:g}, start={start}, n={n}", (P, start, n)))
    return grade("check_distance_marginal", student_function, _distance_reference, cases)


def _distance_reference(P: torch.Tensor, start: int, n: int) -> torch.Tensor:
    one_hot = torch.eye(P.shape[0], dtype=torch.float64)[start]
    return markov.distance_marginals(P, one_hot, max(n, 1))[n]


def _probability_lists() -> list[list[float]]:
    rng = np.random.default_rng(SEED)
    lists = [rng.uniform(0.0, 1.0, n).round(4).tolist() for n in (1, 2, 4, 8)]
    lists += [rng.uniform(0.8, 1.0, n).round(4).tolist() for n in (3, 6)]  # where Metric 3 is above 0
    return lists + [[1.0], [1.0, 1.0, 1.0], [0.0, 0.9], [0.5, 0.5]]


def _metric_check(name: str, metric, student_function) -> Grade:
    cases = [Case(f"p={shown(p)}", (p,)) for p in _probability_lists()]
    return grade(name, student_function, lambda p: float(metric(p)), cases)


def check_metric_1(student_function) -> Grade:
    r"""``student_function(p)`` returns Metric 1, :math:`\min_i p_i`, of a list of top probabilities."""
    return _metric_check("check_metric_1", zipf.metric_1, student_function)


def check_metric_2(student_function) -> Grade:
    r"""``student_function(p)`` returns Metric 2, :math:`\prod_i p_i`, of a list of top probabilities."""
    return _metric_check("check_metric_2", zipf.metric_2, student_function)


def check_metric_3(student_function) -> Grade:
    r"""``student_function(p)`` returns Metric 3, :math:`\max(0, \sum_i p_i - (n - 1))`, of a list of n top
    probabilities."""
    return _metric_check("check_metric_3", zipf.metric_3, student_function)


def check_perplexity(student_function) -> Grade:
    r"""``student_function(joint_probability, n)`` returns the perplexity :math:`P^{-1/n}` of n tokens whose
    joint probability is P; infinite where P = 0."""
    pairs = [(0.5, 1), (0.5, 2), (0.01, 4), (1e-12, 8), (1.0, 3), (0.0, 2), (0.34, 2)]
    cases = [Case(f"joint_probability={p:g}, n={n}", (p, n)) for p, n in pairs]
    return grade("check_perplexity", student_function, lambda p, n: float(zipf.perplexity(p, n)), cases)
