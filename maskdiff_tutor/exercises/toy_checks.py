"""Checks for the exercises of the chapter "Joint versus marginal" (paper Section 3.2.2, Assumption 1)."""

from __future__ import annotations

import numpy as np
import torch

from ..oracle import OracleDenoiser
from ..toy import PAPER_COUNTS, toy_dataset
from .grading import Case, Grade, grade

SEED = 0  # every check draws the same inputs


def _count_cases(rng: np.random.Generator) -> list[Case]:
    """The paper's counts, random ones, and edge cases (a pair never seen; ties between the marginals)."""
    counts = [dict(PAPER_COUNTS)]
    counts += [dict(zip(PAPER_COUNTS, map(int, rng.integers(0, 50, 4)))) for _ in range(5)]
    counts += [{"AB": 0, "AB'": 30, "A'B": 40, "A'B'": 30}, {"AB": 25, "AB'": 25, "A'B": 25, "A'B'": 25},
               {"AB": 1, "AB'": 0, "A'B": 0, "A'B'": 0}]
    return [Case(f"counts={c}", (c,)) for c in counts if sum(c.values()) > 0]


def check_toy_marginals(student_function) -> Grade:
    """``student_function(counts)`` returns the two marginals of the toy's first two tokens as a
    tuple ``((P(A), P(A')), (P(B), P(B')))``, from ``counts``, a dict mapping "AB", "AB'", "A'B" and
    "A'B'" to their numbers of sequences."""
    def reference(counts):
        first, second = toy_dataset(counts).pair_marginals()
        return tuple(first.tolist()), tuple(second.tolist())
    return grade("check_toy_marginals", student_function, reference, _count_cases(np.random.default_rng(SEED)))


def check_parallel_pick(student_function) -> Grade:
    """``student_function(counts)`` returns the probability, under the data, of the pair that
    decoding both masks at once picks: each position takes the argmax of its own marginal, ties to
    the unprimed token (A, B). ``counts`` as in ``check_toy_marginals``; 0.34 for the paper's."""
    def reference(counts):
        data = toy_dataset(counts)
        first, second = data.pair_marginals()
        # argmax returns the first of equal values: the unprimed token
        return float(data.pair_joint()[int(first.argmax()), int(second.argmax())])
    return grade("check_parallel_pick", student_function, reference, _count_cases(np.random.default_rng(SEED)))


def check_exact_marginals(student_function) -> Grade:
    """``student_function(data, x_t, mask_id, vocab_size)`` returns the exact denoiser's output
    (Assumption 1) for one partly masked sequence: an (L, V) tensor whose row l is the distribution of
    token l given the unmasked tokens of ``x_t``, over the sequences of ``data`` (N, L), each equally
    likely. An unmasked position puts all its mass on its own token."""
    rng = np.random.default_rng(SEED)
    cases = []
    for n, length, vocab_size in ((6, 3, 4), (12, 4, 5), (30, 5, 3), (8, 6, 7)):
        mask_id = vocab_size - 1
        data = torch.from_numpy(rng.integers(0, mask_id, (n, length)))
        for masked in (length - 1, length, 1):  # most, all, and one position masked
            x_t = data[int(rng.integers(0, n))].clone()
            x_t[torch.from_numpy(rng.permutation(length)[:masked])] = mask_id
            cases.append(Case(f"data of {n} sequences {tuple(data.shape)}, x_t={x_t.tolist()}, mask_id={mask_id}, "
                              f"vocab_size={vocab_size}", (data, x_t, mask_id, vocab_size)))
    return grade("check_exact_marginals", student_function, _exact_reference, cases)


def _exact_reference(data, x_t, mask_id, vocab_size) -> torch.Tensor:
    oracle = OracleDenoiser.from_data(data, mask_id=mask_id, vocab_size=vocab_size)
    return oracle.conditional_probs(x_t.unsqueeze(0))[0]
