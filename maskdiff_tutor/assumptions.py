r"""Assumptions 3-4 with the full history, checked on small languages written out in full.

Book chapter "The distance bound" (paper Section 3.2.3, Eq. 14-17). The paper conditions
Assumptions 3 and 4 on the whole history :math:`T_1, \dots, T_n` after the prompt; this module lets the
book test what follows from them, by exact enumeration, on languages small enough to list every sequence.

A *language* here is what follows one fixed prompt: L random tokens :math:`T_1, \dots, T_L` over N token
ids, given by its conditionals. ``conditionals[k]`` has shape (N,)*(k+1) and holds
:math:`P(T_{k+1} = v \mid T_1 = t_1, \dots, T_k = t_k, \text{prompt})` at index :math:`(t_1, \dots, t_k, v)`.

- Assumption 3: every conditional, sorted, is the Zipf(s) pmf over N tokens.
- Assumption 4: for every history :math:`T_1, \dots, T_{n-1}`, the peaks of
  :math:`P(T_{n+1} \mid T_n = u, T_1, \dots, T_{n-1})` are different tokens for different u (a permutation
  of the N tokens).
- Assumption H (the book's own, "history-free peaks"): the peak of
  :math:`P(T_n \mid T_{n-1} = u, \text{earlier history})` depends on n and u only, not on the earlier
  history. A first-order chain has it.

With 3, 4 and H the recursion :math:`p_n \le \omega_2 + (\omega_1 - \omega_2)\, p_{n-1}` is a
theorem; with 3 and 4 alone the best bound is :math:`\omega_2 + (\omega_1 - \omega_2)\, \omega_1` at
every :math:`n \ge 2` (``full_history_bound``), and :func:`peak_chaining_language` attains it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import check_counts, check_number
from .zipf import omegas, zipf_pmf


@dataclass(frozen=True)
class Language:
    r"""The conditionals of :math:`T_1, \dots, T_L` after one prompt: ``conditionals[k]`` of shape (N,)*(k+1)."""

    conditionals: tuple[np.ndarray, ...]

    def __post_init__(self):
        if not isinstance(self.conditionals, tuple) or not self.conditionals:
            raise ValueError("conditionals must be a non-empty tuple of arrays, conditionals[k] of shape (N,)*(k+1)")
        N = np.shape(self.conditionals[0])[0] if np.ndim(self.conditionals[0]) == 1 else 0
        for k, c in enumerate(self.conditionals):
            if not isinstance(c, np.ndarray) or c.shape != (N,) * (k + 1) or N < 2:
                raise ValueError(f"conditionals[{k}] must be an array of shape (N,)*{k + 1} with N >= 2; "
                                 f"got {getattr(c, 'shape', type(c).__name__)}")
            if (c < 0).any() or not np.allclose(c.sum(-1), 1.0, rtol=0, atol=1e-12):
                raise ValueError(f"conditionals[{k}] must hold probability vectors on its last axis")

    @property
    def vocab_size(self) -> int:
        """N, the number of token ids."""
        return self.conditionals[0].shape[0]

    @property
    def length(self) -> int:
        """L, the number of tokens after the prompt."""
        return len(self.conditionals)


def _check_position(lang: Language, n, minimum: int) -> int:
    check_number("n", n, integer=True, at_least=minimum, at_most=lang.length,
                 meaning=f"the language has L = {lang.length}")
    return int(n)


# ----------------------------------------------------------------------------- building languages


def _zipf_rows(pmf: np.ndarray, rankings: np.ndarray) -> np.ndarray:
    """Rows (..., N) that put the Zipf probabilities ``pmf`` (N,) on the given rankings (..., N):
    ranking[r] is the token of rank r + 1."""
    rows = np.empty(rankings.shape, dtype=np.float64)
    np.put_along_axis(rows, rankings, np.broadcast_to(pmf, rankings.shape), axis=-1)
    return rows


def language_from_chain(P: np.ndarray, first: np.ndarray, length: int) -> Language:
    r"""A first-order chain as a language: :math:`T_1 \sim` ``first`` (N,),
    :math:`T_{k+1} \mid T_k = u \sim P[u]` (N, N)."""
    P, first = np.asarray(P, dtype=np.float64), np.asarray(first, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or first.shape != P.shape[:1]:
        raise ValueError(f"P must be (N, N) and first (N,); got {P.shape} and {first.shape}")
    check_number("length", length, integer=True, at_least=1)
    N = P.shape[0]
    conditionals = [first.copy()]
    for k in range(1, length):
        conditionals.append(np.broadcast_to(P, (N,) * (k - 1) + (N, N)).copy())  # (N,)*(k+1)
    return Language(tuple(conditionals))


def random_language(N: int, s: float, length: int, rng: np.random.Generator,
                    history_free: bool = False) -> Language:
    r"""A random language meeting Assumptions 3 and 4 with the full history.

    Every conditional is Zipf(s) over a ranking of the N tokens. For each history :math:`T_1, \dots, T_{k-1}`
    the peaks of :math:`T_{k+1}` over the N values of :math:`T_k` are a random permutation (Assumption 4); the
    other ranks are random for every history. With ``history_free`` one permutation per position
    serves every history (Assumption H); the lower ranks still depend on the whole history, so the
    language is not a first-order chain.
    """
    pmf = zipf_pmf(s, N)  # (N,); checks s and N
    check_number("length", length, integer=True, at_least=1)
    conditionals = [_zipf_rows(pmf, rng.permutation(N))]
    for k in range(1, length):
        rankings = np.empty((N,) * (k + 1), dtype=np.int64)  # rankings[g, u] : ranking of T_(k+1)
        fixed = rng.permutation(N)
        for g in np.ndindex(*(N,) * (k - 1)):  # every history T_1..T_(k-1)
            peaks = fixed if history_free else rng.permutation(N)  # (N,): peak after T_k = u
            for u in range(N):
                rest = rng.permutation(np.delete(np.arange(N), peaks[u]))
                rankings[g + (u,)] = np.concatenate([[peaks[u]], rest])
        conditionals.append(_zipf_rows(pmf, rankings))
    return Language(tuple(conditionals))


def peak_chaining_language(N: int, s: float, length: int, target: int = 0) -> Language:
    r"""The book's counterexample to Eq. 16-17: Assumptions 3 and 4 hold, and the token ``target``
    keeps probability :math:`\omega_2 + (\omega_1 - \omega_2)\, \omega_1` at every position :math:`n \ge 2`.

    The peak :math:`m(h)` of the next token after history h is chosen as :math:`m(()) = \mathtt{target}` and
    :math:`m(h + (u,)) = (u - m(h) + \mathtt{target}) \bmod N`: for each h a permutation of u (Assumption 4)
    that sends the likely token :math:`u = m(h)` to ``target``. Every conditional is Zipf(s) (Assumption 3) with
    ``target`` ranked second wherever it is not the peak, the other tokens in increasing order.
    """
    pmf = zipf_pmf(s, N)  # (N,); checks s and N
    check_number("length", length, integer=True, at_least=1)
    check_number("target", target, integer=True, at_least=0, at_most=N - 1, meaning="a token id")
    rankings = np.empty((N, N), dtype=np.int64)  # rankings[m]: ranking of a conditional with peak m
    for m in range(N):
        second = [target] if m != target else []
        rankings[m] = [m, *second, *(v for v in range(N) if v not in (m, target))]
    rows = _zipf_rows(pmf, rankings)  # (N, N)
    peaks = np.array(target)  # m(h) for the empty history
    conditionals = [rows[peaks]]
    for _ in range(1, length):
        peaks = (np.arange(N) - peaks[..., None] + target) % N  # (N,)*k: m(h + (u,))
        conditionals.append(rows[peaks])  # (N,)*(k+1)
    return Language(tuple(conditionals))


# ----------------------------------------------------------------------------- checking the assumptions


def satisfies_assumption_3(lang: Language, s: float, atol: float = 1e-12) -> bool:
    r"""True when every conditional :math:`P(T_{k+1} \mid T_1, \dots, T_k, \text{prompt})`, sorted, is Zipf(s)
    over N tokens."""
    expected = zipf_pmf(s, lang.vocab_size)
    return all(np.abs(-np.sort(-c, axis=-1) - expected).max() <= atol for c in lang.conditionals)


def _peaks(c: np.ndarray) -> np.ndarray:
    """argmax over the last axis, or -1 where the largest probability is shared (no single peak)."""
    top2 = -np.sort(-c, axis=-1)[..., :2]
    return np.where(top2[..., 0] > top2[..., 1], c.argmax(-1), -1)


def satisfies_assumption_4(lang: Language) -> bool:
    r"""True when, for every history :math:`T_1, \dots, T_{n-1}`, the peaks of
    :math:`P(T_{n+1} \mid T_n = u, T_1, \dots, T_{n-1})` are single and different for the N values of u
    (:math:`n = 1, \dots, L - 1`)."""
    N = lang.vocab_size
    for c in lang.conditionals[1:]:
        peaks = _peaks(c)  # (N,)*k: peak after the history, indexed by T_1..T_k
        if (peaks < 0).any() or not (np.sort(peaks, axis=-1) == np.arange(N)).all():
            return False
    return True


def satisfies_assumption_h(lang: Language) -> bool:
    r"""Assumption H (history-free peaks, the book's own): the peak of
    :math:`P(T_{n+1} \mid T_n = u, \text{earlier history})` is the same token for every earlier history
    :math:`T_1, \dots, T_{n-1}`."""
    for c in lang.conditionals[2:]:
        peaks = _peaks(c).reshape(-1, lang.vocab_size)  # (N^(k-1), N): one row per earlier history
        if not (peaks == peaks[0]).all():
            return False
    return True


# ----------------------------------------------------------------------------- exact probabilities


def joint(lang: Language, n: int | None = None) -> np.ndarray:
    r""":math:`P(T_1, \dots, T_n \mid \text{prompt})` for every sequence, shape (N,)*n (default :math:`n = L`)."""
    n = lang.length if n is None else _check_position(lang, n, 1)
    p = lang.conditionals[0]
    # P(T_1..T_n | prompt) = prod_k P(T_k | T_1..T_(k-1), prompt), summed over T_1..T_(n-1) for Eq. 14     [eq-14]
    for c in lang.conditionals[1:n]:
        p = p[..., None] * c  # (N,)*(k+1)
    return p


def marginals(lang: Language) -> np.ndarray:
    r""":math:`P(T_n = v \mid \text{prompt})` for :math:`n = 1, \dots, L`: (L, N), each row the sum of the joint
    over :math:`T_1, \dots, T_{n-1}` (the paper's Eq. 14)."""
    rows, p = [], None
    for c in lang.conditionals:
        p = c if p is None else p[..., None] * c  # (N,)*n: the joint of T_1..T_n
        rows.append(p.reshape(-1, lang.vocab_size).sum(0))  # (N,)
    return np.stack(rows)  # (L, N)


def _conditional_two_ahead(lang: Language, n: int) -> np.ndarray:
    """P(T_n = v | T_1..T_(n-2), prompt), shape (N,)*(n-2) + (N,), summing over T_(n-1)."""
    return (lang.conditionals[n - 2][..., None] * lang.conditionals[n - 1]).sum(-2)


def eq15_sides(lang: Language, n: int, s: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Both sides of Eq. 15 for every history :math:`h = (T_1, \dots, T_{n-2})`, :math:`n \ge 2`, as arrays
    (N,)*(n-2): :math:`\max_v P(T_n = v \mid h)` and
    :math:`\omega_2 + (\omega_1 - \omega_2) \max_u P(T_{n-1} = u \mid h)`."""
    n = _check_position(lang, n, 2)
    omega1, omega2 = omegas(s, lang.vocab_size)
    # max_v P(T_n = v | h) <= omega2 + (omega1 - omega2) max_u P(T_(n-1) = u | h)     [eq-15]
    lhs = _conditional_two_ahead(lang, n).max(-1)
    rhs = omega2 + (omega1 - omega2) * lang.conditionals[n - 2].max(-1)
    return lhs, rhs


def eq16_sides(lang: Language, n: int, s: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Both sides of Eq. 16 as the paper writes it, for every history
    :math:`g = (T_1, \dots, T_{n-3})`, :math:`n \ge 3`, as arrays (N,)*(n-3):

    .. math::

       \begin{aligned}
       \text{left} &= \sum_{T_{n-2}} \big[(\omega_1 - \omega_2)
         \max_u P(T_{n-1} = u \mid T_{n-2}, g) \\
       &\qquad + \omega_2\big] \, P(T_{n-2} \mid g), \\
       \text{right} &= (\omega_1 - \omega_2) \big[(\omega_1 - \omega_2)
         \max_w P(T_{n-2} = w \mid g) \\
       &\qquad + \omega_2\big] + \omega_2.
       \end{aligned}
    """
    n = _check_position(lang, n, 3)
    omega1, omega2 = omegas(s, lang.vocab_size)
    # the two sides of Eq. 16 as the paper writes them     [eq-16]
    d = omega1 - omega2
    inner = d * lang.conditionals[n - 2].max(-1) + omega2  # (N,)*(n-2)
    lhs = (inner * lang.conditionals[n - 3]).sum(-1)  # (N,)*(n-3)
    rhs = d * (d * lang.conditionals[n - 3].max(-1) + omega2) + omega2
    return lhs, rhs


def full_history_bound(n, s: float, N: int) -> np.ndarray:
    r"""The best bound on :math:`\max_v P(T_n = v \mid \text{prompt})` that Assumptions 3-4 with
    the full history give: :math:`\omega_1` at :math:`n = 1`, :math:`\omega_2 + (\omega_1 - \omega_2)\, \omega_1`
    at every :math:`n \ge 2`."""
    n = check_counts("n", n, 1)
    omega1, omega2 = omegas(s, N)
    # omega1 at n = 1, omega2 + (omega1 - omega2) omega1 for n >= 2     [eq-full-history-bound]
    return np.where(n == 1, omega1, omega2 + (omega1 - omega2) * omega1)


def argmax_joint(lang: Language, n: int) -> tuple[np.ndarray, float]:
    r"""For the first n masks decoded in parallel, each by its own argmax: the top marginal
    probabilities :math:`p_1, \dots, p_n` (n,) and the true joint probability of that token combination."""
    n = _check_position(lang, n, 1)
    marg = marginals(lang)[:n]  # (n, N)
    tokens = tuple(int(t) for t in marg.argmax(-1))
    return marg.max(-1), float(joint(lang, n)[tokens])
