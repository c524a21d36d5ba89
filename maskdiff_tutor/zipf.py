"""Zipf's law, the distance bound on a [MASK]'s top probability, and the cost of parallel samples.

Book chapter "The distance bound" (paper Section 3.2.3, Eq. 14-18) and the Table 2 section
(paper Section 3.3, Metrics 1-3). Pure numpy in float64; nothing here imports torch.

The argument, in the book's words:

- Assumption 3: after any token, the next token's distribution, sorted, is Zipf(s) over N
  tokens: the r-th most probable next token has probability r^(-s) / H_{N,s}   [eq-14].
  So the largest conditional probability is omega1 = 1 / H_{N,s} and the second largest is
  omega2 = 2^(-s) / H_{N,s}                                                     [eq-15].
- Assumption 4: a token is the most probable successor of at most one token.
- Then the top probability p_n of a [MASK] at distance n from the last unmasked token obeys
  p_n <= omega2 + (omega1 - omega2) p_(n-1), p_0 = 1 [eq-16]; so
  p_n <= p* + (omega1 - omega2)^n (1 - p*) [eq-17], which tends to
  p* = omega2 / (1 - (omega1 - omega2)) as n grows [eq-18].

Metrics 1-3 as this book reads them (the paper's own text was not available when this was
written; see the chapter): k tokens decoded in parallel after one unmasked token sit at
distances 1..k, so the probability the decoder gives them is at most

- Metric 1: J_k = prod_{n=1}^{k} p_bar_n                                        [eq-metric-1]
- Metric 2: PPL_k = J_k^(-1/k), a lower bound on the perplexity of the block    [eq-metric-2]
- Metric 3: PPL_k / PPL_1, the price of parallelism against one token a step   [eq-metric-3]
"""

from __future__ import annotations

import math

import numpy as np


def _check_zipf(s, N) -> tuple[float, int]:
    if isinstance(s, bool) or not isinstance(s, (int, float, np.floating, np.integer)) or not math.isfinite(s) or s <= 0:
        raise ValueError(f"s (the Zipf exponent) must be a finite number > 0; got {s!r}")
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 2:
        raise ValueError(f"N (the vocabulary size) must be an int >= 2; got {N!r}")
    return float(s), int(N)


def _check_counts(name: str, values, minimum: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu" or (arr < minimum).any():
        raise ValueError(f"{name} must be integers >= {minimum}; got {values!r}")
    return arr.astype(np.int64)


def harmonic(s: float, N: int) -> float:
    """The generalised harmonic number H_{N,s} = sum_{r=1}^{N} r^(-s)."""
    s, N = _check_zipf(s, N)
    return float(np.sum(np.arange(1, N + 1, dtype=np.float64) ** -s))


def zipf_pmf(s: float, N: int) -> np.ndarray:
    """p(r) = r^(-s) / H_{N,s} for ranks r = 1..N, as an array of shape (N,)   [eq-14]."""
    s, N = _check_zipf(s, N)
    unnormalised = np.arange(1, N + 1, dtype=np.float64) ** -s  # (N,)
    return unnormalised / unnormalised.sum()


def omegas(s: float, N: int) -> tuple[float, float]:
    """(omega1, omega2): the largest and second-largest Zipf probabilities   [eq-15]."""
    s, N = _check_zipf(s, N)
    h = harmonic(s, N)
    return 1.0 / h, 2.0**-s / h


def bound_step(p_prev, s: float, N: int):
    """One step of the recursion: omega2 + (omega1 - omega2) p_(n-1)   [eq-16]."""
    omega1, omega2 = omegas(s, N)
    return omega2 + (omega1 - omega2) * np.asarray(p_prev, dtype=np.float64)


def bound_limit(s: float, N: int) -> float:
    """p* = omega2 / (1 - (omega1 - omega2)), the fixed point of the recursion   [eq-18]."""
    omega1, omega2 = omegas(s, N)
    return omega2 / (1 - (omega1 - omega2))


def top_probability_bound(n, s: float, N: int) -> np.ndarray:
    """The bound of Eq. 17 on the top probability of a [MASK] at distance n >= 0 (n = 0 is the
    unmasked token itself, probability 1):  p* + (omega1 - omega2)^n (1 - p*)   [eq-17]."""
    n = _check_counts("n", n, 0)
    omega1, omega2 = omegas(s, N)
    p_star = bound_limit(s, N)
    return p_star + (omega1 - omega2) ** n.astype(np.float64) * (1 - p_star)


def parallel_joint_bound(k, s: float, N: int) -> np.ndarray:
    """Metric 1: J_k = prod_{n=1}^{k} p_bar_n, the most probability a decoder can give k tokens
    decoded at once at distances 1..k from the last unmasked token   [eq-metric-1]."""
    return np.exp(_log_joint_bound(k, s, N))


def _log_joint_bound(k, s: float, N: int) -> np.ndarray:
    """log J_k, summed in the log domain so that large k does not underflow."""
    k = _check_counts("k", k, 1)
    log_p = np.log(top_probability_bound(np.arange(1, int(k.max()) + 1), s, N))  # (k_max,)
    return np.cumsum(log_p)[k - 1]


def parallel_perplexity_bound(k, s: float, N: int) -> np.ndarray:
    """Metric 2: PPL_k = J_k^(-1/k), the least perplexity of k parallel samples   [eq-metric-2]."""
    k = _check_counts("k", k, 1)
    return np.exp(-_log_joint_bound(k, s, N) / k)


def parallel_cost_ratio(k, s: float, N: int) -> np.ndarray:
    """Metric 3: PPL_k / PPL_1, how much parallel decoding multiplies the perplexity of one
    token per step (PPL_1 = 1 / omega1)   [eq-metric-3]."""
    return parallel_perplexity_bound(k, s, N) / parallel_perplexity_bound(1, s, N)


def perplexity_table(s: float, N: int, ks=range(1, 17)) -> dict[str, np.ndarray]:
    """Table 2 recomputed from Eq. 17 and Metric 2: for each number of parallel samples k,
    the joint bound J_k, the perplexity bound PPL_k and the ratio PPL_k / PPL_1."""
    k = _check_counts("ks", list(ks), 1)
    return {"k": k, "joint": parallel_joint_bound(k, s, N), "ppl": parallel_perplexity_bound(k, s, N),
            "ppl_ratio": parallel_cost_ratio(k, s, N)}


def max_parallel_samples(ppl_budget: float, s: float, N: int, k_max: int = 10_000) -> float:
    """The largest k with PPL_k <= ppl_budget: 0 if even one token exceeds it, ``math.inf`` if
    the limit 1 / p* is within the budget (PPL_k increases towards it)."""
    if not (isinstance(ppl_budget, (int, float)) and ppl_budget >= 1):
        raise ValueError(f"ppl_budget must be a number >= 1 (a perplexity); got {ppl_budget!r}")
    _check_counts("k_max", k_max, 1)
    if 1 / bound_limit(s, N) <= ppl_budget:
        return math.inf
    ppl = parallel_perplexity_bound(np.arange(1, k_max + 1), s, N)
    within = np.nonzero(ppl <= ppl_budget)[0]
    return float(within[-1] + 1) if len(within) else 0.0
