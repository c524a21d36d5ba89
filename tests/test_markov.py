"""Zipf Markov chains: Assumptions 3-4 by construction, exact marginals against path enumeration."""

from __future__ import annotations

import itertools
import math

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
            for a, b in itertools.pairwise(path):
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


@pytest.mark.parametrize("function_words", [5, -1, 1.0, True])
def test_zipf_chain_rejects_function_words_outside_the_vocabulary(function_words):
    with pytest.raises(ValueError, match=r"^function_words must be an int in \[0, 5\) \(fewer than vocab_size = 5\); "
                                         r"got "):
        markov.zipf_chain(5, 1.0, function_words=function_words)


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


def test_function_words_keep_assumptions_3_and_4_and_gain_stationary_mass():
    s, V, f = 1.5, 60, 3
    P = markov.zipf_chain(V, s, torch.Generator().manual_seed(0), function_words=f)
    assert markov.check_assumption_3(P, s) and markov.check_assumption_4(P)
    pi = markov.stationary_distribution(P)
    pmf = torch.as_tensor(zipf.zipf_pmf(s, V))
    # function word j has rank j + 2 or better in every row, so pi_j >= pmf[j + 1]
    assert (pi[:f] >= pmf[1 : f + 1] - 1e-12).all()
    plain = markov.stationary_distribution(chain(V, s, seed=0))
    assert pi[:f].min() > plain.max()  # they outweigh every token of a chain without them
    assert pi.max() <= zipf.bound_limit(s, V)


def test_end_of_text_is_absorbing_and_breaks_assumption_3():
    P = markov.with_end_of_text(chain(8, 1.2), eos_id=7)
    assert P[7, 7] == 1 and P[7, :7].sum() == 0
    assert not markov.check_assumption_3(P, 1.2)
    start = torch.zeros(8, dtype=torch.float64)
    start[0] = 1
    far = markov.distance_marginals(P, start, 300)[-1]
    assert far[7] > 0.999  # everything ends in end-of-text


@pytest.mark.parametrize("eos_id", [8, -1, 2.0, True, None])
def test_end_of_text_outside_the_vocabulary_raises(eos_id):
    with pytest.raises(ValueError, match=r"^eos_id must be an int in \[0, 7\] \(a token id\); got "):
        markov.with_end_of_text(chain(8, 1.2), eos_id=eos_id)


def test_chain_distance_bound_refuses_chains_that_break_its_assumptions():
    P = chain(6, 1.5)
    bound = markov.chain_distance_bound(P, 1.5, 10)
    assert torch.allclose(bound, torch.as_tensor(zipf.top_probability_bound(range(11), 1.5, 6)))
    with pytest.raises(ValueError, match="Assumption 3"):
        markov.chain_distance_bound(P, 2.0, 10)  # rows are Zipf(1.5), not Zipf(2)
    shared = P.clone()
    shared[1] = shared[0]  # tokens 0 and 1 share a favourite: rows still Zipf
    with pytest.raises(ValueError, match="Assumption 4"):
        markov.chain_distance_bound(shared, 1.5, 10)


def test_decay_rate_matches_the_convergence_to_stationarity():
    P = chain(10, 1.0, seed=3)
    lam = markov.decay_rate(P)
    pi = markov.stationary_distribution(P)
    start = torch.zeros(10, dtype=torch.float64)
    start[0] = 1
    rows = markov.distance_marginals(P, start, 60)
    gaps = (rows - pi).abs().sum(-1)  # (61,)
    # measured between n = 10 and 20, before the gap reaches rounding level (about 1e-16 by n = 30)
    empirical = (gaps[20] / gaps[10]) ** (1 / 10)
    assert 0 < lam < 1
    assert empirical == pytest.approx(lam, rel=0.05)


def test_sampled_sequences_follow_the_chain():
    P = chain(3, 1.0, seed=4)
    g = torch.Generator().manual_seed(0)
    x = markov.sample_sequences(P, 20000, 2, g, initial=torch.tensor([1.0, 0.0, 0.0]))
    assert (x[:, 0] == 0).all()
    counts = torch.bincount(x[:, 1], minlength=3).double() / 20000
    std = (P[0] * (1 - P[0]) / 20000).sqrt()
    assert ((counts - P[0]).abs() <= 4 * std + 1e-12).all()
    assert torch.equal(x, markov.sample_sequences(P, 20000, 2, torch.Generator().manual_seed(0),
                                                  initial=torch.tensor([1.0, 0.0, 0.0])))


def test_sequence_log_prob_is_the_product_of_transitions():
    P = chain(4, 1.3, seed=5)
    x = torch.tensor([[0, 1, 2, 3], [3, 3, 0, 1]])
    brute = torch.tensor([math.log(P[0, 1] * P[1, 2] * P[2, 3]), math.log(P[3, 3] * P[3, 0] * P[0, 1])],
                         dtype=torch.float64)
    torch.testing.assert_close(markov.sequence_log_prob(P, x), brute)
    initial = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    torch.testing.assert_close(markov.sequence_log_prob(P, x, initial), brute + torch.log(initial[[0, 3]]))


def test_chain_denoiser_equals_the_oracle_of_the_enumerated_language():
    from maskdiff_tutor.oracle import OracleDenoiser

    V, L = 3, 4
    P = chain(V, 1.0, seed=6)
    initial = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    exact = markov.ChainDenoiser(P, L, initial)
    data = torch.tensor(list(itertools.product(range(V), repeat=L)))  # every sequence
    weights = torch.exp(markov.sequence_log_prob(P, data, initial))
    oracle = OracleDenoiser.from_data(data, mask_id=V, vocab_size=V + 1, weights=weights)
    patterns = torch.tensor(list(itertools.product([False, True], repeat=L)))
    for x in data:
        x_t = torch.where(patterns, V, x)  # (16, L): every mask pattern of x
        torch.testing.assert_close(exact.conditional_probs(x_t), oracle.conditional_probs(x_t), rtol=0, atol=1e-14)


def test_chain_denoiser_rejects_bad_input():
    exact = markov.ChainDenoiser(chain(3, 1.0), max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        exact(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        exact(torch.full((1, 3), 7))


def test_distance_marginals_of_a_batch_of_starts_equal_one_at_a_time():
    P = chain(7, 1.4, seed=8)
    starts = torch.softmax(torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    batched = markov.distance_marginals(P, starts, 6)  # (7, 5, 7)
    for i in range(5):
        torch.testing.assert_close(batched[:, i], markov.distance_marginals(P, starts[i], 6), rtol=0, atol=1e-15)


def test_top_probability_curve_against_matrix_powers():
    P = chain(7, 1.3, seed=4)
    curve = markov.top_probability_curve(P, 12)
    assert curve.shape == (13,)
    for n in (0, 1, 5, 12):
        expected = torch.linalg.matrix_power(P, n).max(-1).values.mean()  # row x: the law of x_n given x_0 = x
        assert curve[n].item() == pytest.approx(expected.item(), abs=1e-14)
    some = markov.top_probability_curve(P, 3, starts=torch.tensor([2, 5]))
    assert some[2].item() == pytest.approx(torch.linalg.matrix_power(P, 2)[[2, 5]].max(-1).values.mean().item())


def test_fall_distance_by_hand():
    curve = [1.0, 0.5, 0.3, 0.15, 0.11, 0.1001]  # floor 0.1: the fall from n = 1 is 0.4
    assert markov.fall_distance(curve, 0.1, 0.5) == 2  # 0.2 <= 0.2
    assert markov.fall_distance(curve, 0.1, 0.9) == 4  # 0.01 <= 0.04
    assert markov.fall_distance(curve, 0.1, 0.99) == 5  # 0.01 > 0.004 at n = 4; 0.0001 at n = 5
    with pytest.raises(ValueError, match="^the curve does not cover"):
        markov.fall_distance(curve, 0.1, 0.9999)
    for fraction in (1.0, 0, math.nan, True, "0.5"):
        with pytest.raises(ValueError, match=r"^fraction must be a finite number in \(0, 1\) \(the share of the "
                                             r"fall\); got "):
            markov.fall_distance(curve, 0.1, fraction)
    with pytest.raises(ValueError, match="^curve must be a 1-d sequence"):
        markov.fall_distance([1.0], 0.1, 0.5)
