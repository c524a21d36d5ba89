"""Tests of maskdiff_tutor.assumptions: Assumptions 3-4 with the full history, by enumeration on
small languages written out in full; Eq. 15 holds, Eq. 16 does not, and the counterexample."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from maskdiff_tutor import assumptions as A
from maskdiff_tutor import zipf


def _brute_marginals(lang: A.Language) -> np.ndarray:
    """P(T_n = v | prompt) by a loop over every sequence, independent of A.marginals."""
    N, L = lang.vocab_size, lang.length
    out = np.zeros((L, N))
    for seq in itertools.product(range(N), repeat=L):
        prob = 1.0
        for k in range(len(seq)):
            prob *= lang.conditionals[k][seq[: k + 1]]
        for n, t in enumerate(seq):
            out[n, t] += prob
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("history_free", [False, True])
def test_random_languages_meet_the_assumptions(seed, history_free):
    lang = A.random_language(4, 1.3, 4, np.random.default_rng(seed), history_free=history_free)
    assert (lang.vocab_size, lang.length) == (4, 4)
    assert A.satisfies_assumption_3(lang, 1.3) and not A.satisfies_assumption_3(lang, 1.0)
    assert A.satisfies_assumption_4(lang)
    assert A.satisfies_assumption_h(lang) == history_free  # random peaks per history break H (w.p. ~1)


def test_marginals_and_joint_against_brute_force():
    lang = A.random_language(3, 0.8, 4, np.random.default_rng(5))
    np.testing.assert_allclose(A.marginals(lang), _brute_marginals(lang), rtol=0, atol=1e-15)
    assert A.joint(lang).shape == (3,) * 4 and A.joint(lang).sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(A.joint(lang, 2), A.joint(lang).sum((2, 3)), atol=1e-15)


def test_a_chain_as_a_language():
    rng = np.random.default_rng(3)
    V, s, L = 4, 1.1, 5
    P = np.empty((V, V))
    tops = rng.permutation(V)
    pmf = zipf.zipf_pmf(s, V)
    for u in range(V):
        P[u, np.concatenate([[tops[u]], rng.permutation(np.delete(np.arange(V), tops[u]))])] = pmf
    first = P[2]  # the prompt's last token is 2
    lang = A.language_from_chain(P, first, L)
    assert A.satisfies_assumption_3(lang, s) and A.satisfies_assumption_4(lang) and A.satisfies_assumption_h(lang)
    expected = np.stack([first @ np.linalg.matrix_power(P, n) for n in range(L)])  # (L, V)
    np.testing.assert_allclose(A.marginals(lang), expected, atol=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_eq15_holds_for_every_history(seed):
    s = 1.0
    lang = A.random_language(4, s, 5, np.random.default_rng(seed))
    for n in range(2, 6):
        lhs, rhs = A.eq15_sides(lang, n, s)
        assert lhs.shape == (4,) * (n - 2)
        assert (lhs <= rhs + 1e-15).all()
        # with Assumption 3 the right side is omega2 + (omega1 - omega2) omega1 for every history
        np.testing.assert_allclose(rhs, A.full_history_bound(2, s, 4), rtol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_eq16_fails_under_assumption_3(seed):
    # left side = p_bar_2 and right side = p_bar_3 < p_bar_2 for every language meeting Assumption 3
    s, N = 1.0, 4
    lang = A.random_language(N, s, 5, np.random.default_rng(seed))
    p_bar = zipf.top_probability_bound(np.arange(4), s, N)
    for n in range(3, 6):
        lhs, rhs = A.eq16_sides(lang, n, s)
        np.testing.assert_allclose(lhs, p_bar[2], rtol=1e-14)
        np.testing.assert_allclose(rhs, p_bar[3], rtol=1e-14)
        assert (lhs > rhs).all()


@pytest.mark.parametrize(("N", "s"), [(4, 1.0), (5, 1.05), (5, 2.31), (3, 0.7)])
def test_peak_chaining_language_breaks_eq17(N, s):
    L = 5
    lang = A.peak_chaining_language(N, s, L, target=1)
    assert A.satisfies_assumption_3(lang, s) and A.satisfies_assumption_4(lang)
    assert not A.satisfies_assumption_h(lang)
    marg = _brute_marginals(lang)
    np.testing.assert_allclose(marg, A.marginals(lang), atol=1e-15)
    omega1, omega2 = zipf.omegas(s, N)
    attained = omega1**2 + (1 - omega1) * omega2
    np.testing.assert_allclose(marg[1:, 1], attained, rtol=1e-13)  # the target keeps p_bar_2 at n >= 2
    np.testing.assert_allclose(marg.max(1), A.full_history_bound(np.arange(1, L + 1), s, N), rtol=1e-13)
    eq17 = zipf.top_probability_bound(np.arange(1, L + 1), s, N)
    assert (marg.max(1)[2:] > eq17[2:] + 1e-6).all()  # Eq. 17 fails at every n >= 3


@pytest.mark.parametrize("seed", range(6))
def test_full_history_bound_holds_on_random_languages(seed):
    s, N, L = 1.2, 4, 5
    lang = A.random_language(N, s, L, np.random.default_rng(seed))
    top = A.marginals(lang).max(1)
    assert (top <= A.full_history_bound(np.arange(1, L + 1), s, N) + 1e-15).all()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("s", [0.6, 1.0, 2.0])
def test_history_free_peaks_make_eq17_a_theorem(seed, s):
    N, L = 4, 5
    lang = A.random_language(N, s, L, np.random.default_rng(100 * seed + int(10 * s)), history_free=True)
    marg = A.marginals(lang)  # (L, N)
    omega1, omega2 = zipf.omegas(s, N)
    for n in range(2, L + 1):  # P(T_n = v) <= omega1 P(T_(n-1) = u_v) + omega2 (1 - P(T_(n-1) = u_v))
        peaks = lang.conditionals[n - 1].reshape(-1, N, N)[0].argmax(-1)  # (N,) peak after T_(n-1) = u
        u_of = np.argsort(peaks)  # u_of[v]: the token after which v is the peak
        step = omega1 * marg[n - 2, u_of] + omega2 * (1 - marg[n - 2, u_of])
        assert (marg[n - 1] <= step + 1e-15).all()
    assert (marg.max(1) <= zipf.top_probability_bound(np.arange(1, L + 1), s, N) + 1e-15).all()


@pytest.mark.parametrize("seed", range(5))
def test_metrics_bracket_the_true_joint_of_the_argmax_tokens(seed):
    rng = np.random.default_rng(seed)
    V, L = 4, 5
    P = rng.dirichlet(np.full(V, 0.7), size=V)  # an arbitrary exact chain
    lang = A.language_from_chain(P, P[0], L)
    for n in range(1, L + 1):
        p, true_joint = A.argmax_joint(lang, n)
        tokens = A.marginals(lang)[:n].argmax(-1)
        brute = sum(pr for seq, pr in np.ndenumerate(A.joint(lang)) if tuple(seq[:n]) == tuple(tokens))
        assert true_joint == pytest.approx(brute, abs=1e-15)
        assert zipf.metric_3(p) - 1e-15 <= true_joint <= zipf.metric_1(p) + 1e-15


@pytest.mark.parametrize("bad", [0, 6, -1, 2.0, True])
def test_bad_position_raises(bad):
    lang = A.peak_chaining_language(3, 1.0, 5)
    with pytest.raises(ValueError, match=r"^n must be an int in"):
        A.argmax_joint(lang, bad)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"^target must be an int in \[0, 2\] \(a token id\); got 3$"):
        A.peak_chaining_language(3, 1.0, 4, target=3)
    with pytest.raises(ValueError, match=r"^N must be an int >= 2 \(the vocabulary size\); got 1$"):
        A.random_language(1, 1.0, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="^length must be an int >= 1; got 0$"):
        A.peak_chaining_language(3, 1.0, 0)
    with pytest.raises(ValueError, match=r"^conditionals\[1\] must be an array of shape"):
        A.Language((np.full(3, 1 / 3), np.full((3, 2), 0.5)))
    with pytest.raises(ValueError, match=r"^conditionals\[0\] must hold probability vectors"):
        A.Language((np.array([0.5, 0.6]),))
    with pytest.raises(ValueError, match="^n must be an int >= 1; got 0$"):
        A.full_history_bound(0, 1.0, 4)
    with pytest.raises(ValueError, match="^n must be an int in"):
        A.eq16_sides(A.peak_chaining_language(3, 1.0, 4), 2, 1.0)
