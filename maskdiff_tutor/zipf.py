r"""Zipf's law, the distance bound on a [MASK]'s top probability, and the cost of parallel samples.

Book chapter "The distance bound" (paper Section 3.2.3, Eq. 14-18) and its Table 2 section
(paper Section 3.3, Metrics 1-3). Pure numpy in float64; nothing here imports torch.

- Zipf's law (the paper's footnote 1): the r-th most probable of N tokens has probability
  :math:`r^{-s} / H_{N,s}`, so :math:`\omega_1 = 1 / H_{N,s}` and :math:`\omega_2 = 2^{-s} / H_{N,s}`
  (footnote 2).
- The recursion :math:`p_n \le \omega_2 + (\omega_1 - \omega_2)\, p_{n-1}`, :math:`p_0 = 1`, whose closed
  form is the paper's Eq. 17, :math:`p^* + (\omega_1 - \omega_2)^n (1 - p^*)`, with limit
  :math:`p^* = \omega_2 / (1 - (\omega_1 - \omega_2))` (Eq. 18). The recursion holds under
  Assumptions 3-4 plus the book's Assumption H (history-free peaks); see
  :mod:`maskdiff_tutor.assumptions` for what Assumptions 3-4 alone give.
- Metrics 1-3 (paper Section 3.3) for the top probabilities :math:`p_1, \dots, p_n` of the first n
  masks: Metric 1 is :math:`\min_i p_i`, an upper bound on the joint probability of the argmax
  tokens; Metric 2 is :math:`\prod_i p_i`, their joint probability if the masks were independent;
  Metric 3 is :math:`\max(0, \sum_i p_i - (n - 1))`, a lower bound (Bonferroni). A sequence's
  perplexity is :math:`P(x_1, \dots, x_n)^{-1/n}` (the paper's definition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._checks import check_counts, check_number


def _check_zipf(s, N) -> tuple[float, int]:
    """The Zipf exponent and vocabulary size as a float > 0 and an int >= 2."""
    check_number("s", s, above=0, meaning="the Zipf exponent")
    check_number("N", N, integer=True, at_least=2, meaning="the vocabulary size")
    return float(s), int(N)


DIRECT_TERMS = 100_000  # power sums up to this many terms are summed term by term


def _power_sum(s: float, N: int, a: int, c: float = 1.0) -> float:
    """sum_{r=a}^{N} (c / r)^s in float64, in time and memory independent of N: the first
    ``DIRECT_TERMS`` terms one by one, the rest by the Euler-Maclaurin formula for f(x) = (c/x)^s
    (integral, end corrections and three Bernoulli terms; with the tail starting beyond r = 10^5
    its remainder is below 10^-30 of the sum)."""
    if a > N:
        return 0.0
    last_direct = min(N, a + DIRECT_TERMS - 1)
    ranks = np.arange(a, last_direct + 1, dtype=np.float64)
    total = float(np.sum(ranks ** -s if c == 1 else (c / ranks) ** s))
    if last_direct == N:
        return total
    lo, hi = float(last_direct + 1), float(N)  # the tail: r = lo .. hi

    def f(x):
        return (c / x) ** s

    t = (1 - s) * math.log(hi / lo)
    ratio = math.expm1(t) / t if t != 0 else 1.0  # (e^t - 1) / t, exact near s = 1
    integral = c * (c / lo) ** (s - 1) * math.log(hi / lo) * ratio  # c^s (hi^(1-s) - lo^(1-s)) / (1-s)
    ends = (f(lo) + f(hi)) / 2

    def derivative(x, order):  # d^order/dx^order of (c/x)^s, for odd order 1, 3, 5
        rising = math.prod(s + j for j in range(order))
        return -rising * f(x) / x**order

    bernoulli = ((2, 1 / 6), (4, -1 / 30), (6, 1 / 42))  # (2k, B_2k)
    corrections = sum(b / math.factorial(k) * (derivative(hi, k - 1) - derivative(lo, k - 1)) for k, b in bernoulli)
    return total + integral + ends + corrections


def harmonic(s: float, N: int) -> float:
    r"""The generalised harmonic number :math:`H_{N,s} = \sum_{r=1}^{N} r^{-s}`, in time and memory
    independent of N (see ``_power_sum``)."""
    return _power_sum(*_check_zipf(s, N), a=1)


def zipf_pmf(s: float, N: int) -> np.ndarray:
    r"""Zipf's law, :math:`p(r) = r^{-s} / H_{N,s}` for ranks :math:`r = 1, \dots, N`, as an array of shape (N,)."""
    s, N = _check_zipf(s, N)
    # p(r) = r^(-s) / H_{N,s}     [eq-zipf]
    unnormalised = np.arange(1, N + 1, dtype=np.float64) ** -s  # (N,)
    return unnormalised / unnormalised.sum()


def omegas(s: float, N: int) -> tuple[float, float]:
    r"""The largest and second-largest Zipf probabilities,
    :math:`(\omega_1, \omega_2) = (1 / H_{N,s},\ 2^{-s} / H_{N,s})` (the paper's footnote 2)."""
    return _omegas(*_check_zipf(s, N))


def _omegas(s: float, N: int) -> tuple[float, float]:
    h = _power_sum(s, N, a=1)  # H_{N,s}
    # omega1 = 1 / H_{N,s}, omega2 = 2^(-s) / H_{N,s}     [eq-omegas]
    return 1.0 / h, 2.0**-s / h


def bound_step(p_prev, s: float, N: int):
    r"""One step of the recursion of the bound, :math:`\omega_2 + (\omega_1 - \omega_2)\, p_{n-1}`."""
    omega1, omega2 = omegas(s, N)
    # p_n <= omega2 + (omega1 - omega2) p_(n-1)     [eq-bound-recursion]
    return omega2 + (omega1 - omega2) * np.asarray(p_prev, dtype=np.float64)


def bound_limit(s: float, N: int) -> float:
    r"""The limit of the bound (Eq. 18), the fixed point of the recursion:
    :math:`p^* = \omega_2 / (1 - (\omega_1 - \omega_2))`.

    Computed as :math:`1 / (2 + \sum_{r=3}^{N} (2/r)^s)`, the same number without the
    cancellation in :math:`1 - (\omega_1 - \omega_2)` (multiply the numerator and the denominator
    by :math:`H_{N,s} / 2^{-s}`). For large s, :math:`\omega_1 - \omega_2` rounds to 1 and the
    paper's form would divide by zero; this one tends to 1/2."""
    return _bound_limit(*_check_zipf(s, N))


def _bound_limit(s: float, N: int) -> float:
    # p* = omega2 / (1 - (omega1 - omega2)) = 1 / (2 + sum_{r>=3} (2/r)^s)     [eq-18]
    return 1.0 / (2.0 + _power_sum(s, N, a=3, c=2.0))


def top_probability_bound(n, s: float, N: int) -> np.ndarray:
    r"""The bound of Eq. 17 on the top probability of a [MASK] at distance :math:`n \ge 0` (:math:`n = 0` is the
    unmasked token itself, probability 1): :math:`p^* + (\omega_1 - \omega_2)^n (1 - p^*)`."""
    return _top_probability_bound(check_counts("n", n, 0), *_check_zipf(s, N))


def _top_probability_bound(n: np.ndarray, s: float, N: int) -> np.ndarray:
    omega1, omega2 = _omegas(s, N)
    p_star = _bound_limit(s, N)
    # p* + (omega1 - omega2)^n (1 - p*)     [eq-17]
    return p_star + (omega1 - omega2) ** n.astype(np.float64) * (1 - p_star)


def metric_1(p) -> np.ndarray:
    r"""Metric 1, :math:`\min(p_1, \dots, p_n)` over the last axis of p (..., n): an upper bound on
    the joint probability of the n argmax tokens (the joint is at most each marginal)."""
    # Metric 1 = min(p_1..p_n)     [eq-metrics]
    return np.min(_check_probabilities(p), axis=-1)


def metric_2(p) -> np.ndarray:
    r"""Metric 2, :math:`\prod_i p_i` over the last axis of p (..., n): the joint probability of the
    n argmax tokens if the masks were independent."""
    # Metric 2 = prod p_i     [eq-metrics]
    return np.prod(_check_probabilities(p), axis=-1)


def metric_3(p) -> np.ndarray:
    r"""Metric 3, :math:`\max(0, \sum_i p_i - (n - 1))` over the last axis of p (..., n): the
    Bonferroni lower bound on the joint probability of the n argmax tokens."""
    p = _check_probabilities(p)
    # Metric 3 = max(0, sum p_i - (n - 1))     [eq-metrics]
    return np.maximum(0.0, p.sum(-1) - (p.shape[-1] - 1))


def _check_probabilities(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim < 1 or p.shape[-1] < 1 or np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p must be probabilities in [0, 1] of shape (..., n) with n >= 1; got {p!r}")
    return p


def perplexity(joint_probability, n) -> np.ndarray:
    r"""The paper's perplexity of an n-token sequence, :math:`P(x_1, \dots, x_n)^{-1/n}` (inf where :math:`P = 0`)."""
    n = check_counts("n", n, 1)
    joint_probability = np.asarray(joint_probability, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return joint_probability ** (-1.0 / n)


def metric_bounds(k, s: float, N: int, metric=None) -> np.ndarray:
    r"""A metric (``metric_1``, ``metric_2`` or ``metric_3``; default Metric 2) applied to the
    Eq. 17 bounds :math:`\bar p_1, \dots, \bar p_k` of the first k masks after the prompt, for each k."""
    return _metric_bounds(check_counts("k", k, 1), *_check_zipf(s, N), metric_2 if metric is None else metric)


def _metric_bounds(k: np.ndarray, s: float, N: int, metric) -> np.ndarray:
    p_bar = _top_probability_bound(np.arange(1, k.max(initial=0) + 1), s, N)  # (k_max,)
    return np.array([metric(p_bar[:j]) for j in k.ravel()], dtype=np.float64).reshape(k.shape)


def parallel_joint_bound(k, s: float, N: int) -> np.ndarray:
    r"""Metric 2 applied to Eq. 17: :math:`J_k = \prod_{n=1}^{k} \bar p_n` for the first k masks."""
    return np.exp(_log_joint_bound(check_counts("k", k, 1), *_check_zipf(s, N)))


def _log_joint_bound(k: np.ndarray, s: float, N: int) -> np.ndarray:
    """The logarithm of J_k, summed in the log domain so that large k does not underflow."""
    log_p = np.log(_top_probability_bound(np.arange(1, k.max(initial=0) + 1), s, N))  # (k_max,)
    return np.cumsum(log_p)[k - 1]


def parallel_perplexity_bound(k, s: float, N: int) -> np.ndarray:
    r"""The perplexity from Metric 2 applied to the Eq. 17 bound, :math:`J_k^{-1/k}`: that of the
    first k masks' argmax tokens if each had the bound's top probability and they were independent
    (the paper's Table 2)."""
    k = check_counts("k", k, 1)
    return _perplexity_bound(k, *_check_zipf(s, N))


def _perplexity_bound(k: np.ndarray, s: float, N: int) -> np.ndarray:
    return np.exp(-_log_joint_bound(k, s, N) / k)


@dataclass(frozen=True)
class PerplexityRow:
    r"""One row of Table 2 recomputed from Eq. 17: the first k masks decoded in parallel, each with
    the bound's top probability :math:`\bar p_1, \dots, \bar p_k`."""

    k: int  # masks decoded in parallel
    p_bound: float  # the Eq. 17 bound \bar p_k on the top probability of the k-th mask
    joint_metric_1: float  # Metric 1, min_i \bar p_i: an upper bound on the joint probability of the k tokens
    joint_metric_2: float  # Metric 2, prod_i \bar p_i: their joint if the masks were independent
    joint_metric_3: float  # Metric 3, max(0, sum_i \bar p_i - (k - 1)): a lower bound
    ppl_metric_1: float  # each joint's perplexity J^(-1/k); inf where the joint is 0
    ppl_metric_2: float  # the paper's Table 2 column
    ppl_metric_3: float


def perplexity_table(s: float, N: int, ks=range(1, 9)) -> list[PerplexityRow]:
    r"""Table 2 recomputed from Eq. 17: for each number k of parallel samples, the bound :math:`\bar p_k` of
    the k-th mask and, for Metrics 1-3, the joint probability of the first k masks and its
    perplexity (``ppl_metric_2`` is the paper's Table 2 column). One row per k."""
    k = check_counts("ks", list(ks), 1)
    s, N = _check_zipf(s, N)
    p_bound = _top_probability_bound(k, s, N)
    joints = [_metric_bounds(k, s, N, metric) for metric in (metric_1, metric_2, metric_3)]
    ppls = [perplexity(joint, k) for joint in joints]
    return [PerplexityRow(int(k[i]), float(p_bound[i]), *(float(j[i]) for j in joints), *(float(p[i]) for p in ppls))
            for i in range(len(k))]


def implied_probabilities(ppl) -> np.ndarray:
    r"""The per-position probabilities :math:`p_k = J_k / J_{k-1}` that a Metric 2 perplexity column
    :math:`\mathrm{PPL}_1, \dots, \mathrm{PPL}_K` implies, with :math:`J_k = \mathrm{PPL}_k^{-k}` and
    :math:`J_0 = 1`: shape (K,)."""
    ppl = np.asarray(ppl, dtype=np.float64)
    if ppl.ndim != 1 or len(ppl) < 1 or np.isnan(ppl).any() or (ppl < 1).any():
        raise ValueError(f"ppl must be a column (K,) of perplexities >= 1 for k = 1..K; got {ppl!r}")
    log_joint = -np.arange(1, len(ppl) + 1) * np.log(ppl)  # (K,) log J_k
    return np.exp(np.diff(log_joint, prepend=0.0))


def largest_within_budget(ppl, ppl_budget: float) -> int:
    r"""The largest k with :math:`\mathrm{PPL}_k \le` ``ppl_budget`` in an increasing column
    :math:`\mathrm{PPL}_1, \dots, \mathrm{PPL}_K` (0 if none)."""
    _check_budget(ppl_budget)
    ppl = np.asarray(ppl, dtype=np.float64)
    if ppl.ndim != 1 or (np.diff(ppl) < 0).any():
        raise ValueError(f"ppl must be an increasing column (K,) of perplexities; got {ppl!r}")
    return _largest_within_budget(ppl, ppl_budget)


def _largest_within_budget(ppl: np.ndarray, ppl_budget: float) -> int:
    return int((ppl <= ppl_budget).sum())


def _check_budget(ppl_budget) -> None:
    check_number("ppl_budget", ppl_budget, at_least=1, meaning="a perplexity")


def max_parallel_samples(ppl_budget: float, s: float, N: int, k_max: int = 10_000) -> float:
    r"""The largest k with :math:`\mathrm{PPL}_k \le` ``ppl_budget`` for Eq. 17 with Metric 2: 0 if
    even one token exceeds it, ``math.inf`` if the limit :math:`1 / p^*` is within the budget
    (:math:`\mathrm{PPL}_k` increases towards it)."""
    _check_budget(ppl_budget)
    check_number("k_max", k_max, integer=True, at_least=1)
    s, N = _check_zipf(s, N)
    if 1 / _bound_limit(s, N) <= ppl_budget:
        return math.inf
    return float(_largest_within_budget(_perplexity_bound(np.arange(1, k_max + 1), s, N), ppl_budget))
