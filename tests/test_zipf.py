"""Tests of maskdiff_tutor.zipf: Zipf's law, the distance bound (Eq. 17-18) and Metrics 1-3,
including a brute-force check of the bound on exact Markov chains that satisfy Assumptions 3-4
(a first-order chain has the book's Assumption H, under which the recursion is a theorem)."""

from __future__ import annotations

import math

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
    below = max_parallel_samples(limit * (1 - 1e-12), s, N, k_max=50)
    assert below == 50  # every k up to k_max is within the budget, but not all k


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


@pytest.mark.parametrize("k_max", [0, -3, 2.5])
def test_bad_k_max_raises(k_max):
    with pytest.raises(ValueError, match="^k_max must be an int >= 1; got "):
        max_parallel_samples(2.0, 1.0, 10, k_max=k_max)


@pytest.mark.parametrize("p", [[], [0.5, 1.5], [-0.1], [math.nan], 0.5])
def test_bad_probabilities_raise(p):
    for f in (metric_1, metric_2, metric_3):
        with pytest.raises(ValueError, match=r"^p must be probabilities in \[0, 1\]"):
            f(p)


@pytest.mark.parametrize("ppl", [[], [0.5, 2.0], [[2.0]], [math.nan]])
def test_bad_ppl_column_raises(ppl):
    with pytest.raises(ValueError, match="^ppl must be a column"):
        implied_probabilities(ppl)


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
