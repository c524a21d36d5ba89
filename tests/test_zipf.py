"""Tests of maskdiff_tutor.zipf: Zipf's law, the distance bound (Eq. 17-18) and Metrics 1-3,
including a brute-force check of the bound on exact Markov chains that satisfy Assumptions 3-4
(a first-order chain has the book's Assumption H, under which the recursion is a theorem)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from maskdiff_tutor import zipf
from maskdiff_tutor.zipf import (
    PerplexityRow,
    bound_limit,
    bound_step,
    harmonic,
    implied_probabilities,
    largest_within_budget,
    max_parallel_samples,
    metric_1,
    metric_2,
    metric_3,
    metric_bounds,
    omegas,
    parallel_joint_bound,
    parallel_perplexity_bound,
    perplexity,
    perplexity_table,
    top_probability_bound,
    zipf_pmf,
)

ZIPF_PARAMS = [(1.0, 2), (1.0, 10), (1.2, 1000), (0.5, 50), (2.0, 7), (1.0, 50_000), (3.0, 100)]


def _harmonic_loop(s: float, N: int) -> float:
    return math.fsum(r ** -s for r in range(1, N + 1))


@pytest.mark.parametrize(("s", "N"), ZIPF_PARAMS)
def test_pmf_sums_to_one_is_decreasing_and_matches_the_formula(s, N):
    p = zipf_pmf(s, N)
    assert p.shape == (N,) and p.dtype == np.float64
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (np.diff(p) < 0).all()
    h = _harmonic_loop(s, N)
    assert harmonic(s, N) == pytest.approx(h, rel=1e-12)
    for r in (1, 2, N):
        assert p[r - 1] == pytest.approx(r ** -s / h, rel=1e-12)


@pytest.mark.parametrize(("s", "N"), ZIPF_PARAMS)
def test_omegas_are_the_two_largest_probabilities(s, N):
    omega1, omega2 = omegas(s, N)
    h = _harmonic_loop(s, N)
    assert omega1 == pytest.approx(1 / h, rel=1e-12)
    assert omega2 == pytest.approx(2 ** -s / h, rel=1e-12)
    p = zipf_pmf(s, N)
    assert omega1 == pytest.approx(p[0], rel=1e-12) and omega2 == pytest.approx(p[1], rel=1e-12)


def test_harmonic_special_values():
    assert harmonic(1.0, 2) == pytest.approx(1.5)
    assert harmonic(2.0, 3) == pytest.approx(1 + 1 / 4 + 1 / 9)
    assert harmonic(1.0, 10) == pytest.approx(7381 / 2520)
    assert harmonic(2.0, 100_000) == pytest.approx(math.pi**2 / 6, abs=1.1e-5)  # tail < 1/N


@pytest.mark.parametrize(("s", "N"), ZIPF_PARAMS)
def test_recursion_equals_the_closed_form(s, N):
    n = np.arange(51)
    closed = top_probability_bound(n, s, N)
    assert closed.shape == (51,)
    p = 1.0
    for i in range(51):
        assert closed[i] == pytest.approx(p, rel=1e-12, abs=1e-15), i
        p = float(bound_step(p, s, N))
    assert closed[0] == pytest.approx(1.0, abs=1e-15)
    assert closed[1] == pytest.approx(omegas(s, N)[0], rel=1e-12)  # one step: the top Zipf probability


@pytest.mark.parametrize(("s", "N"), ZIPF_PARAMS)
def test_limit_is_the_fixed_point_and_the_bound_converges_to_it(s, N):
    omega1, omega2 = omegas(s, N)
    p_star = bound_limit(s, N)
    assert p_star == pytest.approx(omega2 / (1 - omega1 + omega2), rel=1e-14)
    assert float(bound_step(p_star, s, N)) == pytest.approx(p_star, rel=1e-13)
    assert omega2 < p_star < omega1
    bound = top_probability_bound(np.arange(0, 2001), s, N)
    exact_gaps = (omega1 - omega2) ** np.arange(0, 2001) * (1 - p_star)
    resolved = exact_gaps > 1e-5  # where float64 resolves the gap to better than 1e-10 relative
    assert resolved[:2].all()
    # strictly decreasing while the gap is resolved; later it meets p* in float64
    assert (np.diff(bound)[resolved[1:]] < 0).all()
    assert (np.diff(bound) <= 1e-16).all()
    assert (bound >= p_star - 1e-15).all()
    # geometric convergence with ratio omega1 - omega2
    gaps = (bound - p_star)[resolved]
    np.testing.assert_allclose(gaps[1:] / gaps[:-1], omega1 - omega2, rtol=1e-9)
    assert bound[-1] == pytest.approx(p_star, rel=1e-12)


def test_bound_step_vectorises():
    p = np.array([1.0, 0.5, 0.1])
    omega1, omega2 = omegas(1.0, 10)
    np.testing.assert_allclose(bound_step(p, 1.0, 10), omega2 + (omega1 - omega2) * p, rtol=1e-15)


# ----------------------------------------------------------------------------- brute force on Markov chains


def _zipf_chain(V: int, s: float, rng: np.random.Generator, distinct_tops: bool = True) -> np.ndarray:
    """A V x V transition matrix whose rows are Zipf(s) over V tokens in a random order per row.

    With ``distinct_tops`` the top successors of the rows form a permutation (Assumption 4: a token
    is the top successor of at most one token); otherwise every row has the same top successor."""
    pmf = zipf_pmf(s, V)
    tops = rng.permutation(V) if distinct_tops else np.zeros(V, dtype=int)
    P = np.empty((V, V))
    for u in range(V):
        rest = rng.permutation([v for v in range(V) if v != tops[u]])
        order = np.concatenate([[tops[u]], rest])  # order[r] = the token of rank r + 1
        P[u, order] = pmf
    return P


@pytest.mark.parametrize("V", [6, 9, 13, 20])
@pytest.mark.parametrize("s", [0.6, 1.0, 1.5, 2.5])
def test_bound_holds_on_random_zipf_markov_chains(V, s):
    rng = np.random.default_rng(1000 * V + int(10 * s))
    n_max = 30
    bound = top_probability_bound(np.arange(n_max + 1), s, V)
    for _ in range(5):
        P = _zipf_chain(V, s, rng)
        np.testing.assert_allclose(P.sum(1), 1.0, rtol=0, atol=1e-14)
        tops = P.argmax(1)
        assert len(set(tops.tolist())) == V  # Assumption 4
        marg = np.eye(V)  # row i: distribution of the token n steps after a known token i
        for n in range(n_max + 1):
            top = marg.max(1)  # (V,) largest marginal probability for each starting token
            assert (top <= bound[n] + 1e-12).all(), (n, top.max(), bound[n])
            if n == 1:  # the bound is attained one step away: the top Zipf probability
                np.testing.assert_allclose(top, omegas(s, V)[0], rtol=1e-12)
            marg = marg @ P


def test_the_brute_force_check_can_fail_without_assumption_4():
    # If every token has the same top successor, its marginal stays omega1 at every distance, which
    # exceeds the bound's limit p*: the check above is not vacuous.
    V, s = 10, 1.0
    P = _zipf_chain(V, s, np.random.default_rng(0), distinct_tops=False)
    marg = np.linalg.matrix_power(P, 30)[0]
    assert marg.max() > top_probability_bound(30, s, V) + 1e-3


# ----------------------------------------------------------------------------- Metrics 1-3


@pytest.mark.parametrize(("s", "N"), [(1.0, 10), (1.2, 1000), (1.0, 50_000)])
def test_joint_bound_is_the_product_of_bounds(s, N):
    ks = np.arange(1, 41)
    joint = parallel_joint_bound(ks, s, N)
    for k in ks:
        expected = math.prod(float(top_probability_bound(n, s, N)) for n in range(1, k + 1))
        assert joint[k - 1] == pytest.approx(expected, rel=1e-12)
    assert float(parallel_joint_bound(1, s, N)) == pytest.approx(omegas(s, N)[0], rel=1e-12)


@pytest.mark.parametrize(("s", "N"), [(1.0, 10), (1.2, 1000), (1.0, 50_000), (2.0, 5)])
def test_perplexity_of_the_metric_2_bound(s, N):
    ks = np.arange(1, 201)
    joint = parallel_joint_bound(ks, s, N)
    ppl = parallel_perplexity_bound(ks, s, N)
    np.testing.assert_allclose(ppl, joint ** (-1.0 / ks), rtol=1e-12)
    assert float(parallel_perplexity_bound(1, s, N)) == pytest.approx(harmonic(s, N), rel=1e-12)  # 1 / omega1
    # increasing in k, toward 1 / p*
    assert (np.diff(ppl) > 0).all()
    limit = 1 / bound_limit(s, N)
    assert (ppl < limit).all()
    far = float(parallel_perplexity_bound(10**6, s, N))
    assert far == pytest.approx(limit, rel=1e-4)
    assert far < limit


def test_large_k_does_not_underflow():
    joint = parallel_joint_bound(100_000, 1.0, 50_000)
    assert joint == 0.0 or joint > 0  # may underflow itself, but the perplexity must not
    ppl = parallel_perplexity_bound(100_000, 1.0, 50_000)
    assert math.isfinite(float(ppl)) and float(ppl) > 1


@pytest.mark.parametrize(("s", "N"), [(1.0, 10), (1.2, 1000), (1.0, 50_000)])
def test_max_parallel_samples_is_consistent_with_the_perplexity(s, N):
    k_max = 2000
    ppl = parallel_perplexity_bound(np.arange(1, k_max + 1), s, N)
    limit = 1 / bound_limit(s, N)
    budgets = [1.0, float(ppl[0]) * (1 - 1e-9), float(ppl[0]), *np.linspace(ppl[0], ppl[-1], 13)[1:-1].tolist()]
    for budget in budgets:
        k = max_parallel_samples(budget, s, N, k_max=k_max)
        expected = int((ppl <= budget).sum())  # ppl is increasing, so this is the largest such k
        assert isinstance(k, float) and k == expected, (budget, k, expected)
        if 0 < k < k_max:
            assert ppl[int(k) - 1] <= budget < ppl[int(k)]
    assert max_parallel_samples(1.0, s, N) == 0.0  # one token already has perplexity H_{N,s} > 1
    assert max_parallel_samples(limit, s, N) == math.inf
    assert max_parallel_samples(limit * 1.01, s, N) == math.inf
    # every k up to k_max is within the budget, but not all k: the answer lies beyond k_max
    with pytest.raises(ValueError, match=r"^k_max = 50 is below the answer: PPL_k <= ppl_budget = .* for every "
                                         r"k <= k_max \(PPL_50 = .*; they rise towards 1/p\* = .*\); pass a "
                                         r"larger k_max$"):
        max_parallel_samples(limit * (1 - 1e-12), s, N, k_max=50)


def test_max_parallel_samples_beyond_k_max_is_refused_not_capped():
    # s = 1, N = 10, a budget between PPL_10 and PPL_11: the answer 10 is found where k_max = 11 shows
    # PPL_11 above the budget; with k_max = 10 every k searched is within it, and the answer unknown
    s, N = 1.0, 10
    ppl = parallel_perplexity_bound(np.arange(1, 12), s, N)
    budget = float(ppl[9] + ppl[10]) / 2
    assert max_parallel_samples(budget, s, N, k_max=11) == 10.0
    for k_max in (10, 3):
        with pytest.raises(ValueError, match=rf"^k_max = {k_max} is below the answer"):
            max_parallel_samples(budget, s, N, k_max=k_max)


def test_max_parallel_samples_known_value():
    # s = 1, N = 10: compute directly from Eq. 17 and Metric 2.
    s, N = 1.0, 10
    omega1, omega2 = 1 / _harmonic_loop(s, N), 0.5 / _harmonic_loop(s, N)
    p_star = omega2 / (1 - omega1 + omega2)
    log_j, ppl = 0.0, []
    for n in range(1, 101):
        log_j += math.log(p_star + (omega1 - omega2) ** n * (1 - p_star))
        ppl.append(math.exp(-log_j / n))
    budget = (ppl[9] + ppl[10]) / 2
    assert max_parallel_samples(budget, s, N) == 10.0


@pytest.mark.parametrize("ks", [range(1, 17), [1, 5, 3], np.array([7])])
def test_perplexity_table(ks):
    table = perplexity_table(1.0, 1000, ks)
    k = np.asarray(list(ks))
    assert all(isinstance(row, PerplexityRow) for row in table)
    assert [row.k for row in table] == k.tolist() and all(type(row.k) is int for row in table)
    column = {name: np.array([getattr(row, name) for row in table]) for name in
              ("p_bound", "joint_metric_1", "joint_metric_2", "joint_metric_3", "ppl_metric_2")}
    np.testing.assert_allclose(column["p_bound"], top_probability_bound(k, 1.0, 1000), rtol=1e-14)
    np.testing.assert_allclose(column["joint_metric_2"], parallel_joint_bound(k, 1.0, 1000), rtol=1e-12)
    np.testing.assert_allclose(column["ppl_metric_2"], parallel_perplexity_bound(k, 1.0, 1000), rtol=1e-12)
    # Metric 1 of a decreasing sequence is its last term; Metric 3 by hand
    np.testing.assert_allclose(column["joint_metric_1"], column["p_bound"], rtol=1e-14)
    for row in table:
        p = [float(top_probability_bound(n, 1.0, 1000)) for n in range(1, row.k + 1)]
        assert row.joint_metric_3 == pytest.approx(max(0.0, sum(p) - (row.k - 1)), abs=1e-15)
        for m in (1, 2, 3):  # each perplexity is its joint's J^(-1/k)
            joint, ppl = getattr(row, f"joint_metric_{m}"), getattr(row, f"ppl_metric_{m}")
            assert ppl == (math.inf if joint == 0 else pytest.approx(joint ** (-1 / row.k), rel=1e-14))


def test_perplexity_table_default_is_k_1_to_8():
    table = perplexity_table(1.0, 50_000)
    assert [row.k for row in table] == list(range(1, 9))


def test_table_2_at_the_paper_settings():
    # s = 1.05, N = 150000 (paper Section 3.3): PPL_1 = H_{N,s} exactly, and a budget of 17 allows 7
    ppl = [row.ppl_metric_2 for row in perplexity_table(1.05, 150_000)]
    assert ppl[0] == pytest.approx(_harmonic_loop(1.05, 150_000), rel=1e-12)
    np.testing.assert_allclose(ppl, [9.5597, 13.0448, 14.7010, 15.6167, 16.1937, 16.5902, 16.8793, 17.0995],
                               atol=6e-5)
    assert max_parallel_samples(17, 1.05, 150_000) == 7.0
    assert largest_within_budget(ppl, 17) == 7


# ----------------------------------------------------------------------------- Metrics 1-3 on vectors


def test_metrics_by_hand():
    p = np.array([0.9, 0.8, 0.7])
    assert float(metric_1(p)) == pytest.approx(0.7)
    assert float(metric_2(p)) == pytest.approx(0.504)
    assert float(metric_3(p)) == pytest.approx(0.4)
    assert float(metric_3([0.5, 0.4])) == 0.0
    batch = np.array([[0.9, 0.8, 0.7], [0.5, 0.5, 1.0]])  # (2, 3): one metric per row
    np.testing.assert_allclose(metric_1(batch), [0.7, 0.5])
    np.testing.assert_allclose(metric_2(batch), [0.504, 0.25])
    np.testing.assert_allclose(metric_3(batch), [0.4, 0.0], atol=1e-15)


def test_metric_3_below_metric_2_below_metric_1():
    rng = np.random.default_rng(0)
    for n in range(1, 9):
        p = rng.uniform(size=(500, n)) ** rng.uniform(0.05, 3, size=(500, 1))  # (500, n)
        assert (metric_3(p) <= metric_2(p) + 1e-15).all() and (metric_2(p) <= metric_1(p) + 1e-15).all()


def test_metric_bounds_and_perplexity():
    s, N = 1.2, 100
    k = np.arange(1, 13)
    p_bar = top_probability_bound(k, s, N)
    for metric in (metric_1, metric_2, metric_3):
        expected = [metric(p_bar[:j]) for j in k]
        np.testing.assert_allclose(metric_bounds(k, s, N, metric), expected, rtol=1e-14)
    np.testing.assert_allclose(metric_bounds(k, s, N), parallel_joint_bound(k, s, N), rtol=1e-12)
    np.testing.assert_allclose(perplexity(metric_bounds(k, s, N), k), parallel_perplexity_bound(k, s, N), rtol=1e-12)
    assert perplexity(0.0, 3) == math.inf
    assert perplexity(0.125, 3) == pytest.approx(2.0)


def test_implied_probabilities_invert_a_metric_2_column():
    s, N = 1.05, 150_000
    k = np.arange(1, 9)
    np.testing.assert_allclose(implied_probabilities(parallel_perplexity_bound(k, s, N)),
                               top_probability_bound(k, s, N), rtol=1e-12)
    np.testing.assert_allclose(implied_probabilities([2.0, 4.0]), [0.5, 0.125])


def test_largest_within_budget():
    assert largest_within_budget([9.66, 13.2, 14.86, 15.86, 16.47, 16.94, 17.30, 17.61], 17) == 6
    assert largest_within_budget([2.0, 3.0], 1.5) == 0 and largest_within_budget([2.0, 3.0], 3.0) == 2
    with pytest.raises(ValueError, match="^ppl must be an increasing column"):
        largest_within_budget([3.0, 2.0], 5)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("N", [1, 0, -5, 2.0, 10.5, True, "10", None])
def test_bad_vocabulary_size_raises(N):
    for f in (harmonic, zipf_pmf, omegas, bound_limit):
        with pytest.raises(ValueError, match=r"^N must be an int >= 2 \(the vocabulary size\); got "):
            f(1.0, N)
    with pytest.raises(ValueError, match=r"^N must be an int >= 2 \(the vocabulary size\)"):
        top_probability_bound(3, 1.0, N)


@pytest.mark.parametrize("s", [0, 0.0, -1.0, math.nan, math.inf, True, "1", None])
def test_bad_exponent_raises(s):
    for f in (harmonic, zipf_pmf, omegas, bound_limit):
        with pytest.raises(ValueError, match=r"^s must be a finite number > 0 \(the Zipf exponent\); got "):
            f(s, 10)
    with pytest.raises(ValueError, match=r"^s must be a finite number > 0 \(the Zipf exponent\)"):
        max_parallel_samples(2.0, s, 10)


@pytest.mark.parametrize("k", [0, -1, [1, 0], 1.5, [2.0]])
def test_bad_k_raises(k):
    for f in (parallel_joint_bound, parallel_perplexity_bound, metric_bounds):
        with pytest.raises(ValueError, match=r"^k(\[\d+\])? must be an int >= 1; got "):
            f(k, 1.0, 10)
    with pytest.raises(ValueError, match=r"^ks\[\d+\] must be an int >= 1; got "):
        perplexity_table(1.0, 10, k if isinstance(k, list) else [k])


@pytest.mark.parametrize(("ks", "shape"), [([[1, 2]], (1, 2)), (3, ()), (np.ones((2, 2), dtype=int), (2, 2))])
def test_perplexity_table_takes_a_sequence_of_ks(ks, shape):
    with pytest.raises(ValueError) as error:
        perplexity_table(1.0, 10, ks)
    assert str(error.value) == ("ks must be a sequence (K,) of ints >= 1 (the numbers of parallel samples); got "
                                f"shape {shape}")


@pytest.mark.parametrize("n", [-1, [0, -3], 0.5])
def test_bad_n_raises(n):
    with pytest.raises(ValueError, match=r"^n(\[\d+\])? must be an int >= 0; got "):
        top_probability_bound(n, 1.0, 10)


def test_a_bad_count_is_named_with_its_index():
    with pytest.raises(ValueError, match=r"^n\[1\] must be an int >= 0; got -3$"):
        top_probability_bound([0, -3], 1.0, 10)
    with pytest.raises(ValueError, match=r"^k must be an int >= 1; got 1.5$"):
        parallel_perplexity_bound(1.5, 1.0, 10)
    with pytest.raises(ValueError, match=r"^ks\[2\] must be an int >= 1; got 0$"):
        perplexity_table(1.0, 10, [1, 2, 0])


@pytest.mark.parametrize("budget", [0.999, 0, -2, math.nan, math.inf, "5", None, True])
def test_bad_ppl_budget_raises(budget):
    with pytest.raises(ValueError, match=r"^ppl_budget must be a finite number >= 1 \(a perplexity\); got "):
        max_parallel_samples(budget, 1.0, 10)


@pytest.mark.parametrize("k_max", [0, -3, 2.5, zipf.K_MAX_LIMIT + 1])
def test_bad_k_max_raises(k_max):
    with pytest.raises(ValueError, match=r"^k_max must be an int in \[1, 1e\+07\] \(the largest k searched\); got "):
        max_parallel_samples(2.0, 1.0, 10, k_max=k_max)


@pytest.mark.parametrize("p", [[], [0.5, 1.5], [-0.1], [math.nan], 0.5])
def test_bad_probabilities_raise(p):
    for f in (metric_1, metric_2, metric_3):
        with pytest.raises(ValueError, match=r"^p must be probabilities in \[0, 1\]"):
            f(p)


@pytest.mark.parametrize(("p", "got"), [([[0.5, 1.5]], "1.5 at p[0, 1]"), ([0.2, -0.1], "-0.1 at p[1]"),
                                        ([0.2, math.nan], "nan at p[1]"), ([math.inf], "inf at p[0]"),
                                        ([], "shape (0,)"), (0.5, "shape ()"), (["a"], "['a']")])
def test_the_metrics_and_perplexity_refuse_the_same_probabilities_alike(p, got):
    # one check of "probabilities in [0, 1]": the first bad value and its index, in one line
    for f in (metric_1, metric_2, metric_3):
        with pytest.raises(ValueError) as error:
            f(p)
        assert str(error.value) == f"p must be probabilities in [0, 1] of shape (..., n) with n >= 1; got {got}"
    if not got.startswith("shape"):
        with pytest.raises(ValueError) as error:
            perplexity(p, 1)
        expected = got.replace(" at p[", " at joint_probability[")
        assert str(error.value) == f"joint_probability must be probabilities in [0, 1] (0 gives perplexity inf); " \
                                   f"got {expected}"


@pytest.mark.parametrize("joint", [-0.5, 1.5, math.nan, -math.inf, [0.5, 2.0]])
def test_perplexity_refuses_what_is_not_a_probability(joint):
    with pytest.raises(ValueError, match=r"^joint_probability must be probabilities in \[0, 1\] \(0 gives perplexity "
                                         r"inf\); got \S+"):
        perplexity(joint, 3)


def test_perplexity_at_the_ends_of_its_range_and_with_shapes_that_do_not_broadcast():
    np.testing.assert_array_equal(perplexity([0.0, 1.0, 0.25], [3, 3, 2]), [math.inf, 1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # beyond the largest float: inf, as for P = 0, without a warning
        np.testing.assert_allclose(perplexity([5e-324, 1e-300, 0.0, -0.0], 1), [math.inf, 1e300, math.inf, math.inf],
                                   rtol=1e-15)
    with pytest.raises(ValueError, match=r"^joint_probability and n must broadcast together \(one n per probability, "
                                         r"or one n for all\); got shapes \(2,\) and \(3,\)$"):
        perplexity([0.5, 0.25], [1, 2, 3])


@pytest.mark.parametrize(("ppl", "got"), [([], "shape (0,)"), ([0.5, 2.0], "0.5 at ppl[0]"), ([[2.0]], "shape (1, 1)"),
                                          ([math.nan], "nan at ppl[0]"), ([2.0, math.inf], "inf at ppl[1]")])
def test_bad_ppl_column_raises(ppl, got):
    # inf (a joint probability 0) implies no probabilities after it: refused as well
    with pytest.raises(ValueError) as error:
        implied_probabilities(ppl)
    assert str(error.value) == f"ppl must be a column (K,) of finite perplexities >= 1 for k = 1..K; got {got}"


@pytest.mark.parametrize(("ppl", "got"), [([1.0, math.nan, 3.0], "nan at ppl[1]"), ([math.nan], "nan at ppl[0]"),
                                          ([0.9, 2.0], "0.9 at ppl[0]"), ([[2.0]], "shape (1, 1)"),
                                          ([2.0, 3.0, 2.5], "2.5 at ppl[2], below the 3.0 before it"),
                                          (["x"], "['x']")])
def test_largest_within_budget_refuses_nan_and_what_is_not_an_increasing_column(ppl, got):
    with pytest.raises(ValueError) as error:
        largest_within_budget(ppl, 2.0)
    assert str(error.value) == f"ppl must be an increasing column (K,) of perplexities >= 1; got {got}"
    for budget in (math.nan, math.inf, 0.5):
        with pytest.raises(ValueError, match=r"^ppl_budget must be a finite number >= 1 \(a perplexity\); got "):
            largest_within_budget([1.0, 2.0], budget)


def test_largest_within_budget_takes_an_infinite_perplexity_and_an_empty_column():
    # Metric 3's joint can be 0: its perplexity inf is beyond every budget (and inf, inf is increasing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert largest_within_budget([1.5, 3.0, math.inf], 4.0) == 2
        assert largest_within_budget([math.inf, math.inf], 4.0) == 0
    assert largest_within_budget([], 4.0) == 0


@pytest.mark.parametrize("metric", ["metric_2", 2, np.min([1])])
def test_metric_bounds_refuses_a_metric_that_is_not_a_function(metric):
    with pytest.raises(ValueError, match=r"^metric must be a function of probabilities p \(\.\.\., n\) such as "
                                         r"metric_1, metric_2 or metric_3 \(None: metric_2\); got "):
        metric_bounds(3, 1.1, 10, metric=metric)


@pytest.mark.parametrize("p_prev", [math.nan, -0.1, [0.5, 1.01]])
def test_bound_step_refuses_what_is_not_a_probability(p_prev):
    with pytest.raises(ValueError, match=r"^p_prev must be probabilities in \[0, 1\]; got "):
        bound_step(p_prev, 1.0, 10)


# --- sums in time and memory independent of N; the limit without cancellation -------------------

@pytest.mark.parametrize("s", [0.5, 0.99, 1.0, 1.01, 1.1, 2.31, 5.0])
@pytest.mark.parametrize("N", [100_000, 100_001, 400_000])
def test_harmonic_beyond_the_direct_terms_matches_an_exact_sum(s, N):
    direct = math.fsum((np.arange(1, N + 1, dtype=np.float64) ** -s).tolist())  # correctly rounded sum
    assert zipf.harmonic(s, N) == pytest.approx(direct, rel=2e-15)


def test_harmonic_of_an_enormous_vocabulary_is_cheap_and_right():
    # H_{N,1} = ln N + Euler's gamma + 1/(2N) - ..., H_{N,2} -> pi^2/6 - 1/N + ...
    N = 10**18
    assert zipf.harmonic(1.0, N) == pytest.approx(math.log(N) + 0.5772156649015329, rel=1e-15)
    assert zipf.harmonic(2.0, N) == pytest.approx(math.pi**2 / 6, rel=1e-15)


# References for enormous N, independent of the code: zeta values to 30 digits (mpmath.zeta at 30
# digits, printed here as constants), and the leading terms of H_{N,s} = zeta(s) + N^(1-s) / (1-s) +
# N^(-s) / 2 + ... (s != 1), H_{N,1} = ln N + gamma + 1/(2N) - ...
EULER_GAMMA = 0.577215664901532860606512090082
ZETA = {1.05: 20.5808443020369848299843450341, 2.0: math.pi**2 / 6, 3.0: 1.20205690315959428539973816151}


def _leading_terms(s: float, exponent: int) -> float:
    """H_{N,s} for N = 10^exponent and s >= 1 to float precision, from its leading terms (exponent >= 62)."""
    log_n = exponent * math.log(10)
    if s == 1:
        return log_n + EULER_GAMMA
    return ZETA[s] + math.exp((1 - s) * log_n) / (1 - s)  # N^(-s) / 2 and beyond are below 10^-31 here


@pytest.mark.parametrize("exponent", [62, 200, 308, 309, 400, 5000])
@pytest.mark.parametrize("s", [1.0, 1.05, 2.0, 3.0])
def test_harmonic_of_any_int_N(s, exponent):
    # N beyond float64 (1.8e308) and N^5 beyond it (N > 1e61): H_{N,s} is finite for s >= 1
    assert harmonic(s, 10**exponent) == pytest.approx(_leading_terms(s, exponent), rel=2e-15)


@pytest.mark.parametrize(("s", "exponent"), [(0.5, 62), (0.5, 200), (0.5, 400), (0.5, 614), (0.875, 400),
                                             (0.875, 2400)])
def test_harmonic_of_an_enormous_N_below_s_one(s, exponent):
    # H = N^(1-s) / (1-s) + zeta(s) + ..., with N^(1-s) a power of ten here (zeta(s) is below 10^-30 of
    # it); in float the relative error is about (1-s) ln N times 1e-16, as s itself is a float
    power = 10 ** round((1 - s) * exponent)
    assert harmonic(s, 10**exponent) == pytest.approx(power / (1 - s), rel=(1 - s) * exponent * math.log(10) * 3e-16)


@pytest.mark.parametrize("N", [2**1000 - 1, 2**1000, 2**1000 + 1])
def test_harmonic_where_log_n_over_lo_changes_its_form(N):
    # below 2^1000, log(N / lo) from the quotient; from there, ln N - ln lo
    assert harmonic(1.0, N) == pytest.approx(math.log(N) + EULER_GAMMA, rel=2e-15)
    assert harmonic(0.5, N) == pytest.approx(2 * 2**500, rel=1e-13)  # 2 sqrt(N) + zeta(1/2) + ...


@pytest.mark.parametrize(("s", "exponent"), [(0.5, 617), (0.1, 400), (0.9, 5000), (0.999, 10**6)])
def test_a_sum_beyond_the_largest_float_is_refused_naming_s_and_N(s, exponent):
    # H_{N,s} ~ N^(1-s) / (1-s) > 1.8e308: no float holds it
    N = 10**exponent
    error = (rf"^s = {s:g} and N = about 10\^{exponent}\.00 give a Zipf sum sum_\(r <= N\) r\^-s beyond the largest "
             r"float \(1\.8e308; for s < 1 it grows like N\^\(1-s\) / \(1-s\)\): take a larger s or a smaller N$")
    for call in (lambda: harmonic(s, N), lambda: omegas(s, N), lambda: bound_limit(s, N),
                 lambda: top_probability_bound(3, s, N), lambda: parallel_perplexity_bound(3, s, N),
                 lambda: perplexity_table(s, N), lambda: max_parallel_samples(17, s, N),
                 lambda: metric_bounds(3, s, N), lambda: bound_step(0.5, s, N)):
        with pytest.raises(ValueError, match=error):
            call()


def test_the_bound_of_an_enormous_vocabulary():
    s, N = 1.05, 10**400
    h = _leading_terms(s, 400)
    assert omegas(s, N) == (pytest.approx(1 / h, rel=2e-15), pytest.approx(2**-s / h, rel=2e-15))
    omega1, omega2 = omegas(s, N)
    assert bound_limit(s, N) == pytest.approx(omega2 / (1 - (omega1 - omega2)), rel=1e-13)
    rows = perplexity_table(s, N)
    assert all(math.isfinite(r.ppl_metric_2) and r.ppl_metric_2 > 1 for r in rows)
    assert max_parallel_samples(2 * rows[0].ppl_metric_2, s, N) >= 1


def test_a_pmf_too_large_to_build_is_refused_naming_N_and_the_limit():
    for N, got in ((10**400, "about 10^400.00"), (zipf.PMF_MAX_N + 1, "100000001")):
        with pytest.raises(ValueError) as error:
            zipf_pmf(1.05, N)
        assert str(error.value) == ("N must be at most 100,000,000 for zipf_pmf, which builds an array of N "
                                    f"probabilities (harmonic, omegas and the bound take any N); got {got}")


@pytest.mark.parametrize("s", [0.5, 1.1, 2.31, 10.0])
@pytest.mark.parametrize("N", [2, 3, 50, 130_000])
def test_bound_limit_is_the_papers_fixed_point(s, N):
    omega1, omega2 = zipf.omegas(s, N)
    assert zipf.bound_limit(s, N) == pytest.approx(omega2 / (1 - (omega1 - omega2)), rel=1e-13)


@pytest.mark.parametrize("s", [53.0, 60.0, 300.0, 2000.0])
def test_bound_limit_for_large_s_tends_to_one_half(s):
    # the paper's form divides 0 by 0 here in float64: omega1 - omega2 rounds to 1
    p_star = zipf.bound_limit(s, 130_000)
    assert 0.5 - 1e-9 < p_star <= 0.5
    assert zipf.bound_limit(s, 2) == 0.5  # two tokens: p* = 1/2 exactly
