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
import sys
from dataclasses import dataclass

import numpy as np

from ._checks import check_counts, check_number


def _check_zipf(s, N) -> tuple[float, int]:
    """The Zipf exponent and vocabulary size as a float > 0 and an int >= 2."""
    check_number("s", s, above=0, meaning="the Zipf exponent")
    check_number("N", N, integer=True, at_least=2, meaning="the vocabulary size")
    return float(s), int(N)


DIRECT_TERMS = 100_000  # power sums up to this many terms are summed term by term
_LOG_FLOAT_MAX = math.log(sys.float_info.max)  # about 709.78: exp of more overflows a float


def _power_sum(s: float, N: int, a: int, c: float = 1.0) -> float:
    """sum_{r=a}^{N} (c / r)^s in float64, in time and memory independent of N: the first
    ``DIRECT_TERMS`` terms one by one, the rest by the Euler-Maclaurin formula (``_add_tail``). N is
    any int; a sum beyond the largest float (s < 1 and an enormous N) is a ``ValueError``."""
    if a > N:
        return 0.0
    last_direct = min(N, a + DIRECT_TERMS - 1)
    ranks = np.arange(a, last_direct + 1, dtype=np.float64)
    total = float(np.sum(ranks ** -s if c == 1 else (c / ranks) ** s))
    if last_direct == N:
        return total
    total = _add_tail(total, s, last_direct + 1, N, c)
    if not math.isfinite(total):
        raise _beyond_float(s, N)
    return total


def _add_tail(total: float, s: float, lo: int, N: int, c: float) -> float:
    """``total`` plus sum_{r=lo}^{N} (c/r)^s for lo > 10^5 by the Euler-Maclaurin formula for
    f(x) = (c/x)^s: the integral, the end corrections and three Bernoulli terms (remainder below
    10^-30 of the sum). The high end enters through log N only, so N may be any int (float(N)
    overflows beyond 1.8e308, and N^5 beyond 1e61)."""
    log_n = math.log(N)
    # log(hi / lo): from the quotient where it is a float (no cancellation for hi near lo)
    log_ratio = math.log(N / lo) if N.bit_length() < 1000 else log_n - math.log(lo)
    integral = _tail_integral(s, c * (c / lo) ** (s - 1) * log_ratio, (1 - s) * log_ratio, N)
    f_lo = (c / lo) ** s

    def f_hi_over(order):  # (c/N)^s / N^order, in logs
        return math.exp(s * math.log(c) - (s + order) * log_n)

    ends = (f_lo + f_hi_over(0)) / 2

    def derivative(order, f_x, x_to_order):  # d^order/dx^order (c/x)^s = -s (s+1) ... (s+order-1) (c/x)^s / x^order
        return -math.prod(s + j for j in range(order)) * f_x / x_to_order

    bernoulli = ((2, 1 / 6), (4, -1 / 30), (6, 1 / 42))  # (2k, B_2k)
    corrections = sum(b / math.factorial(k) * (derivative(k - 1, f_hi_over(k - 1), 1.0)
                                               - derivative(k - 1, f_lo, lo ** (k - 1))) for k, b in bernoulli)
    return total + integral + ends + corrections  # in this order, as the book's numbers were summed


def _tail_integral(s: float, scale: float, t: float, N: int) -> float:
    """int_lo^hi (c/x)^s dx = c^s (hi^(1-s) - lo^(1-s)) / (1-s) = scale (e^t - 1) / t, with
    scale = c (c/lo)^(s-1) log(hi/lo) and t = (1-s) log(hi/lo); exact near s = 1 (t -> 0), and in
    logs where e^t overflows (s < 1, hi enormous)."""
    if t < _LOG_FLOAT_MAX:
        return scale * (math.expm1(t) / t if t != 0 else 1.0)
    log_integral = math.log(scale) + t - math.log(t)  # e^t - 1 = e^t to float precision here
    if log_integral >= _LOG_FLOAT_MAX:
        raise _beyond_float(s, N)
    return math.exp(log_integral)


def _beyond_float(s: float, N: int) -> ValueError:
    """The refusal of a Zipf sum that no float can hold."""
    return ValueError(f"s = {s:g} and N = {_describe_int(N)} give a Zipf sum sum_(r <= N) r^-s beyond the largest "
                      f"float (1.8e308; for s < 1 it grows like N^(1-s) / (1-s)): take a larger s or a smaller N")


def _describe_int(n: int) -> str:
    """n as digits, or as a power of ten where it has more than 15 digits."""
    return str(n) if n < 10**15 else f"about 10^{math.log10(n):.2f}"


def harmonic(s: float, N: int) -> float:
    r"""The generalised harmonic number :math:`H_{N,s} = \sum_{r=1}^{N} r^{-s}`, in time and memory
    independent of N (see ``_power_sum``), for any int N: for s > 1 it tends to :math:`\zeta(s)`, for
    s = 1 it grows like :math:`\ln N + \gamma`, and for s < 1 like :math:`N^{1-s} / (1-s)`, which no
    float holds beyond 1.8e308 (then a ``ValueError`` names s and N; so for every function here that
    takes s and N). Relative error about :math:`(1 + |1 - s| \ln N) \cdot 10^{-16}`."""
    return _power_sum(*_check_zipf(s, N), a=1)


PMF_MAX_N = 10**8  # the largest vocabulary zipf_pmf builds: an array of N float64, 800 MB at the limit


def zipf_pmf(s: float, N: int) -> np.ndarray:
    r"""Zipf's law, :math:`p(r) = r^{-s} / H_{N,s}` for ranks :math:`r = 1, \dots, N`, as an array of shape (N,).

    N is at most ``PMF_MAX_N`` (10^8) here, as the array is built; ``harmonic``, ``omegas`` and the
    bound take any N."""
    s, N = _check_zipf(s, N)
    if N > PMF_MAX_N:
        raise ValueError(f"N must be at most {PMF_MAX_N:,} for zipf_pmf, which builds an array of N probabilities "
                         f"(harmonic, omegas and the bound take any N); got {_describe_int(N)}")
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
    p_prev = _probabilities("p_prev", p_prev, "probabilities in [0, 1]")
    omega1, omega2 = omegas(s, N)
    # p_n <= omega2 + (omega1 - omega2) p_(n-1)     [eq-bound-recursion]
    return omega2 + (omega1 - omega2) * p_prev


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
    """The argument of the metrics: probabilities of shape (..., n), n >= 1."""
    allowed = "probabilities in [0, 1] of shape (..., n) with n >= 1"
    p = _probabilities("p", p, allowed)
    if p.ndim < 1 or p.shape[-1] < 1:
        raise ValueError(f"p must be {allowed}; got shape {p.shape}")
    return p


def _probabilities(name: str, values, allowed: str) -> np.ndarray:
    """``values`` as a float64 array if each lies in [0, 1]; otherwise a one-line ``ValueError`` that
    names ``name``, says what is ``allowed`` and shows the first bad value and its index."""
    array = _as_floats(name, values, allowed)
    _refuse_first(name, array, np.isnan(array) | (array < 0) | (array > 1), allowed)
    return array


def _as_floats(name: str, values, allowed: str) -> np.ndarray:
    """``values`` as a float64 array, or a ``ValueError`` naming ``name`` where numpy cannot convert them."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {allowed}; got {' '.join(repr(values).split())[:80]}") from None


def _refuse_first(name: str, array: np.ndarray, bad: np.ndarray, allowed: str) -> None:
    """Raise for the first True of ``bad``: "p must be probabilities in [0, 1] ...; got nan at p[0, 2]"."""
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        at = f" at {name}[{', '.join(str(i) for i in index)}]" if index else ""
        raise ValueError(f"{name} must be {allowed}; got {array[index]}{at}")


def perplexity(joint_probability, n) -> np.ndarray:
    r"""The paper's perplexity of an n-token sequence, :math:`P(x_1, \dots, x_n)^{-1/n}`: inf where
    :math:`P = 0`, or where it exceeds the largest float (:math:`P` below about :math:`10^{-308 n}`).

    ``joint_probability`` must lie in [0, 1] and broadcast against ``n``."""
    n = check_counts("n", n, 1)
    joint_probability = _probabilities("joint_probability", joint_probability,
                                       "probabilities in [0, 1] (0 gives perplexity inf)")
    try:
        np.broadcast_shapes(joint_probability.shape, n.shape)
    except ValueError:
        raise ValueError(f"joint_probability and n must broadcast together (one n per probability, or one n for "
                         f"all); got shapes {joint_probability.shape} and {n.shape}") from None
    with np.errstate(divide="ignore", over="ignore"):  # 0^(-1/n) = inf; 5e-324^(-1) rounds to inf
        return (joint_probability + 0.0) ** (-1.0 / n)  # + 0.0: -0.0 is 0, of perplexity inf (not -inf)


def metric_bounds(k, s: float, N: int, metric=None) -> np.ndarray:
    r"""A metric (``metric_1``, ``metric_2`` or ``metric_3``; default Metric 2) applied to the
    Eq. 17 bounds :math:`\bar p_1, \dots, \bar p_k` of the first k masks after the prompt, for each k."""
    if metric is not None and not callable(metric):
        raise ValueError(f"metric must be a function of probabilities p (..., n) such as metric_1, metric_2 or "
                         f"metric_3 (None: metric_2); got {metric!r:.80}")
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
    perplexity (``ppl_metric_2`` is the paper's Table 2 column). One row per k of ``ks``, a sequence
    of ints >= 1 (a range, a list or a 1-D array)."""
    k = check_counts("ks", ks, 1)
    if k.ndim != 1:
        raise ValueError(f"ks must be a sequence (K,) of ints >= 1 (the numbers of parallel samples); got shape "
                         f"{k.shape}")
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
    allowed = "a column (K,) of finite perplexities >= 1 for k = 1..K"
    ppl = _as_floats("ppl", ppl, allowed)
    if ppl.ndim != 1 or len(ppl) < 1:
        raise ValueError(f"ppl must be {allowed}; got shape {ppl.shape}")
    _refuse_first("ppl", ppl, ~np.isfinite(ppl) | (ppl < 1), allowed)
    log_joint = -np.arange(1, len(ppl) + 1) * np.log(ppl)  # (K,) log J_k
    return np.exp(np.diff(log_joint, prepend=0.0))


def largest_within_budget(ppl, ppl_budget: float) -> int:
    r"""The largest k with :math:`\mathrm{PPL}_k \le` ``ppl_budget`` in an increasing column
    :math:`\mathrm{PPL}_1, \dots, \mathrm{PPL}_K` of perplexities >= 1 (inf allowed: a joint
    probability 0), 0 if none."""
    _check_budget(ppl_budget)
    allowed = "an increasing column (K,) of perplexities >= 1"
    ppl = _as_floats("ppl", ppl, allowed)
    if ppl.ndim != 1:
        raise ValueError(f"ppl must be {allowed}; got shape {ppl.shape}")
    _refuse_first("ppl", ppl, np.isnan(ppl) | (ppl < 1), allowed)
    falls = np.flatnonzero(ppl[1:] < ppl[:-1])  # not np.diff: inf - inf is NaN, with a warning
    if len(falls):
        k = int(falls[0]) + 1
        raise ValueError(f"ppl must be {allowed}; got {ppl[k]} at ppl[{k}], below the {ppl[k - 1]} before it")
    return _largest_within_budget(ppl, ppl_budget)


def _largest_within_budget(ppl: np.ndarray, ppl_budget: float) -> int:
    return int((ppl <= ppl_budget).sum())


def _check_budget(ppl_budget) -> None:
    check_number("ppl_budget", ppl_budget, at_least=1, meaning="a perplexity")


K_MAX_LIMIT = 10**7  # the most k max_parallel_samples searches: a few arrays of k_max float64


def max_parallel_samples(ppl_budget: float, s: float, N: int, k_max: int = 10_000) -> float:
    r"""The largest k with :math:`\mathrm{PPL}_k \le` ``ppl_budget`` for Eq. 17 with Metric 2: 0 if
    even one token exceeds it, ``math.inf`` if the limit :math:`1 / p^*` is within the budget
    (:math:`\mathrm{PPL}_k` increases towards it).

    Otherwise the answer is finite, and searched for among :math:`k \le` ``k_max`` (at most
    ``K_MAX_LIMIT``); a ``ValueError`` says so when every such k is within the budget, since the
    answer then lies beyond ``k_max``."""
    _check_budget(ppl_budget)
    check_number("k_max", k_max, integer=True, at_least=1, at_most=K_MAX_LIMIT, meaning="the largest k searched")
    s, N = _check_zipf(s, N)
    limit = 1 / _bound_limit(s, N)
    if limit <= ppl_budget:
        return math.inf
    ppl = _perplexity_bound(np.arange(1, k_max + 1), s, N)  # (k_max,) increasing towards the limit
    if ppl[-1] <= ppl_budget:
        raise ValueError(f"k_max = {k_max} is below the answer: PPL_k <= ppl_budget = {ppl_budget:.8g} for every k <= "
                         f"k_max (PPL_{k_max} = {ppl[-1]:.8g}; they rise towards 1/p* = {limit:.8g}); pass a larger "
                         f"k_max")
    return float(_largest_within_budget(ppl, ppl_budget))
