"""Zipf Markov chains: Assumptions 3-4 by construction, exact marginals against path enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from maskdiff_tutor import markov, zipf


def chain(V=6, s=1.5, seed=0):
    return markov.zipf_chain(V, s, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("V,s", [(2, 1.0), (6, 1.5), (30, 2.31)])
def test_rows_are_permuted_zipf_with_distinct_favourites(V, s):
    P = chain(V, s)
    torch.testing.assert_close(P.sum(-1), torch.ones(V, dtype=torch.float64), rtol=0, atol=1e-14)
    expected = torch.as_tensor(zipf.zipf_pmf(s, V))
    for row in P:
        torch.testing.assert_close(row.sort(descending=True).values, expected, rtol=0, atol=0)
    assert markov.check_assumption_4(P)


def test_chains_are_seeded():
    assert torch.equal(chain(seed=3), chain(seed=3))
    assert not torch.equal(chain(seed=3), chain(seed=4))


def test_check_assumption_4_detects_a_shared_favourite():
    P = chain(5)
    P[1] = P[0]  # tokens 0 and 1 now share their favourite successor
    assert not markov.check_assumption_4(P)


def test_distance_marginals_against_path_enumeration():
    V, n_max = 4, 4
    P = chain(V, 1.2, seed=1)
    start = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    exact = markov.distance_marginals(P, start, n_max)  # (n_max + 1, V)
    for n in range(n_max + 1):
        brute = torch.zeros(V, dtype=torch.float64)
        for path in itertools.product(range(V), repeat=n + 1):  # x_0, ..., x_n
            prob = start[path[0]]
            for a, b in zip(path, path[1:]):
                prob = prob * P[a, b]
            brute[path[-1]] += prob
        torch.testing.assert_close(exact[n], brute, rtol=0, atol=1e-15)


def test_stationary_distribution_is_a_fixed_point_and_the_long_run_limit():
    P = chain(12, 1.1, seed=2)
    pi = markov.stationary_distribution(P)
    torch.testing.assert_close(pi @ P, pi, rtol=0, atol=1e-13)
    assert pi.sum().item() == pytest.approx(1.0, abs=1e-12)
    start = torch.zeros(12, dtype=torch.float64)
    start[5] = 1.0
    far = markov.distance_marginals(P, start, 400)[-1]
    torch.testing.assert_close(far, pi, rtol=0, atol=1e-10)


def test_the_bound_holds_and_its_limit_exceeds_the_true_limit():
    s, V = 1.3, 40
    P = chain(V, s, seed=5)
    marginals = torch.stack([markov.distance_marginals(P, e, 30) for e in torch.eye(V, dtype=torch.float64)])
    top = marginals.max(-1).values  # (V, 31)
    bound = torch.as_tensor(zipf.top_probability_bound(np.arange(31), s, V))
    assert (top <= bound + 1e-12).all()
    assert markov.stationary_distribution(P).max() <= zipf.bound_limit(s, V)


@pytest.mark.parametrize("kwargs,match", [
    (dict(vocab_size=1, s=1.0), "vocab_size"),
    (dict(vocab_size=5, s=0.0), "s"),
])
def test_zipf_chain_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        markov.zipf_chain(**kwargs)


def test_distance_marginals_rejects_bad_input():
    P = chain(4)
    with pytest.raises(ValueError, match="max_distance"):
        markov.distance_marginals(P, torch.ones(4) / 4, -1)
    with pytest.raises(ValueError, match="start"):
        markov.distance_marginals(P, torch.ones(5) / 5, 3)


def test_stationary_distribution_reports_non_convergence():
    # period 2 and not doubly stochastic: from the uniform start it oscillates for ever
    periodic = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="max_iter"):
        markov.stationary_distribution(periodic, max_iter=50)
