"""Languages with known ground truth: Markov chains whose rows follow Zipf's law.

Book chapter "The distance bound" (paper Section 3.2.3, Assumptions 2-4). An order-1 chain
over V tokens in which every row, sorted, is Zipf(s) over V tokens (Assumption 3), and the
most probable successor differs for every previous token (Assumption 4). For such a chain the
true marginal of a [MASK] n positions after an unmasked token is a row of the n-th power of the
transition matrix, so the paper's bound (Eq. 17) can be compared with exact values.

Everything is float64 torch; randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import torch

from ._checks import check_positive_int
from .zipf import zipf_pmf


def zipf_chain(vocab_size: int, s: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A transition matrix P (V, V), P[i, j] = P(next = j | previous = i), meeting Assumptions 3-4.

    Row i puts the Zipf probabilities r^(-s) / H_{V,s} on a random ranking of the tokens; the
    top-ranked tokens of the rows form a random permutation, so no token is the most probable
    successor of two different tokens.
    """
    check_positive_int("vocab_size", vocab_size, minimum=2)
    pmf = torch.as_tensor(zipf_pmf(s, vocab_size))  # (V,) probabilities by rank
    tops = torch.randperm(vocab_size, generator=generator)  # (V,) top successor of each token
    P = torch.empty(vocab_size, vocab_size, dtype=torch.float64)
    for i in range(vocab_size):
        others = torch.cat([torch.arange(tops[i]), torch.arange(tops[i] + 1, vocab_size)])  # (V - 1,)
        ranking = torch.cat([tops[i : i + 1], others[torch.randperm(vocab_size - 1, generator=generator)]])  # (V,)
        P[i, ranking] = pmf
    return P


def check_assumption_4(P: torch.Tensor) -> bool:
    """True when every token is the strict most probable successor of at most one token."""
    top = P.argmax(-1)  # (V,)
    return len(torch.unique(top)) == len(top)


def distance_marginals(P: torch.Tensor, start: torch.Tensor, max_distance: int) -> torch.Tensor:
    """The exact distribution of the token n positions after a token drawn from ``start`` (V,),
    for n = 0..max_distance: (max_distance + 1, V), row n = start @ P^n.

    With a one-hot ``start`` this is the true marginal of a [MASK] at distance n from an unmasked
    token when everything after it is masked (Assumptions 1-2).
    """
    check_positive_int("max_distance", max_distance, minimum=0)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or start.shape != (P.shape[0],):
        raise ValueError(f"P must be square (V, V) and start of shape (V,); got {tuple(P.shape)} and {tuple(start.shape)}")
    rows = [start.double()]
    for _ in range(max_distance):
        rows.append(rows[-1] @ P)  # (V,)
    return torch.stack(rows)  # (n + 1, V)


def stationary_distribution(P: torch.Tensor, tol: float = 1e-14, max_iter: int = 100_000) -> torch.Tensor:
    """The stationary distribution pi = pi P of an irreducible aperiodic chain, by power iteration (V,)."""
    pi = torch.full((P.shape[0],), 1.0 / P.shape[0], dtype=torch.float64)
    for _ in range(max_iter):
        nxt = pi @ P
        if (nxt - pi).abs().max() < tol:
            return nxt
        pi = nxt
    raise ValueError(f"power iteration did not converge in max_iter = {max_iter} steps; raise max_iter")
