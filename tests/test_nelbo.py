"""Tests of maskdiff_tutor.nelbo: time sampling, the pattern coefficients, the exact NELBO by
enumeration and the Monte Carlo estimators (paper Eq. 10-13, and the count-of-masks estimator),
their exact variances, against quadrature, brute-force expectations over every x_t, and the true
NLL of the toy data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from maskdiff_tutor.nelbo import (
    NelboEstimate,
    batch_variance,
    continuous_nelbo,
    count_nelbo,
    exact_estimator_variance,
    exact_nelbo,
    mask_patterns,
    pattern_coefficients,
    sample_times,
    second_moment_coefficients,
    t_step_nelbo,
)
from maskdiff_tutor.schedules import CosineSchedule, LinearSchedule, LogLinearSchedule, PolynomialSchedule
from maskdiff_tutor.toy import toy_dataset

# Schedules with alpha(0) = 1 and alpha(1) = 0 (the NELBO needs both).
SCHEDULES = [
    pytest.param(LinearSchedule(), id="linear"),
    pytest.param(CosineSchedule(), id="cosine"),
    pytest.param(PolynomialSchedule(exponent=0.5), id="poly0.5"),
    pytest.param(PolynomialSchedule(exponent=2.0), id="poly2"),
    pytest.param(PolynomialSchedule(exponent=3.0), id="poly3"),
    pytest.param(LogLinearSchedule(eps=0.0), id="loglinear0"),
]

# Continuous-time Monte Carlo needs a finite variance of w(t) * (masked NLL). Near t = 0 one token is
# masked with probability ~ 1 - alpha(t), so the variance has the integrand w(t)^2 (1 - alpha(t)) =
# alpha'(t)^2 / (1 - alpha(t)): ~ 1/t (infinite variance) for the linear schedule, but bounded for the
# cosine (-> pi^2 / 2) and quadratic (-> 4) schedules. The MC tests use the latter two.
FINITE_VARIANCE_SCHEDULES = [pytest.param(CosineSchedule(), id="cosine"),
                             pytest.param(PolynomialSchedule(exponent=2.0), id="poly2")]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# A few toy rows covering the four (x^1, x^2) pairs: AB rows 0..33, AB' 34..54, A'B 55..89, A'B' 90..99.
TOY_ROWS = [0, 33, 34, 54, 55, 89, 90, 99]


def _quad(f, n: int = 200) -> float:
    """int_0^1 f(t) dt by Gauss-Legendre quadrature (our own, independent of the package's)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    t = torch.as_tensor((nodes + 1) / 2, dtype=torch.float64)
    return float((torch.as_tensor(weights, dtype=torch.float64) / 2 * f(t)).sum())


class PatternDenoiser:
    """A denoiser that depends on x_t: fixed random logits for each mask pattern of x_t."""

    def __init__(self, seq_len: int, vocab_size: int, mask_id: int, seed: int):
        self.mask_id = mask_id
        self.table = 2 * torch.randn(2**seq_len, seq_len, vocab_size, generator=_gen(seed), dtype=torch.float64)
        self.bits = 2 ** torch.arange(seq_len)

    def __call__(self, x_t):
        index = ((x_t == self.mask_id).long() * self.bits).sum(-1)  # (B,)
        return self.table[index]

    def log_probs(self, x_t):
        """log p_theta(. | x_t) with the mask removed: (B, L, V)."""
        logits = self(x_t).clone()
        logits[..., self.mask_id] = -math.inf
        return torch.log_softmax(logits, -1)


# ----------------------------------------------------------------------------- sample_times


@pytest.mark.parametrize("batch_size", [1, 2, 7, 64, 1000])
def test_antithetic_times_are_evenly_spaced_mod_one(batch_size):
    for seed in range(5):
        t = sample_times(batch_size, _gen(seed), antithetic=True)
        assert t.shape == (batch_size,) and t.dtype == torch.float64
        assert ((t > 0) & (t <= 1)).all()
        # the formula: t_b = 1 - ((u + b / B) mod 1) with u the generator's first float64 draw
        u = torch.rand((), generator=_gen(seed), dtype=torch.float64)
        expected = 1 - torch.remainder(u + torch.arange(batch_size, dtype=torch.float64) / batch_size, 1.0)
        torch.testing.assert_close(t, expected, rtol=0, atol=0)
        # on the circle [0, 1) the sorted times have gaps of exactly 1 / B
        s = torch.sort(torch.remainder(t, 1.0)).values
        gaps = torch.diff(torch.cat([s, s[:1] + 1]))
        torch.testing.assert_close(gaps, torch.full((batch_size,), 1 / batch_size, dtype=torch.float64),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("antithetic", [True, False])
def test_times_are_uniform(antithetic):
    # Each t_b is U(0, 1]: mean 1/2 (sd 1/sqrt(12)) and P(t <= 1/4) = 1/4, within 4 standard errors.
    g = _gen(0)
    n = 4000
    first = torch.stack([sample_times(5, g, antithetic)[0] for _ in range(n)])
    assert ((first > 0) & (first <= 1)).all()
    assert abs(first.mean().item() - 0.5) <= 4 * math.sqrt(1 / 12 / n)
    assert abs((first <= 0.25).double().mean().item() - 0.25) <= 4 * math.sqrt(0.25 * 0.75 / n)


def test_independent_times():
    t = sample_times(100_000, _gen(1), antithetic=False)
    assert t.shape == (100_000,) and ((t > 0) & (t <= 1)).all()
    assert abs(t.mean().item() - 0.5) <= 4 * math.sqrt(1 / 12 / 100_000)
    # not a lattice: the gaps of the sorted times are not all equal
    assert torch.diff(torch.sort(t).values).std() > 1e-7
    torch.testing.assert_close(t, 1 - torch.rand(100_000, generator=_gen(1), dtype=torch.float64), rtol=0, atol=0)


def test_sample_times_is_repeatable():
    assert torch.equal(sample_times(10, _gen(3)), sample_times(10, _gen(3)))
    assert not torch.equal(sample_times(10, _gen(3)), sample_times(10, _gen(4)))


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True, None])
def test_bad_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="^batch_size must be an int >= 1"):
        sample_times(batch_size)


# ----------------------------------------------------------------------------- pattern coefficients


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("seq_len", [1, 2, 5, 8])
def test_weighted_coefficients_are_schedule_invariant(schedule, seq_len):
    # c_k = int_0^1 w(t) (1 - alpha_t)^k alpha_t^(L - k) dt = 1 / (k binom(L, k)) for every schedule.
    closed = torch.tensor([0.0] + [1 / (k * math.comb(seq_len, k)) for k in range(1, seq_len + 1)],
                          dtype=torch.float64)
    coeff = pattern_coefficients(seq_len)
    assert coeff.shape == (seq_len + 1,) and coeff.dtype == torch.float64
    torch.testing.assert_close(coeff, closed, rtol=1e-14, atol=0)
    torch.testing.assert_close(pattern_coefficients(seq_len, schedule), closed, rtol=1e-14, atol=0)

    def integrand(k):
        def f(t):
            a = schedule.alpha(t)
            return schedule.weight(t) * (1 - a) ** k * a ** (seq_len - k)
        return f

    for k in range(1, seq_len + 1):
        if isinstance(schedule, PolynomialSchedule) and schedule.exponent < 1:
            # w(t) (1 - alpha)^k ~ t^(k e - 1) is singular at 0 for k e < 1: substitute t = u^2 (dt = 2u du)
            f = integrand(k)
            value = _quad(lambda u, f=f: f(u**2) * 2 * u)
        else:
            value = _quad(integrand(k))
        assert value == pytest.approx(float(closed[k]), rel=1e-10), k


@pytest.mark.parametrize("seq_len", [1, 3, 6])
def test_unweighted_coefficients(seq_len):
    # Linear: int_0^1 t^k (1 - t)^(L - k) dt = B(k + 1, L - k + 1) = 1 / ((L + 1) binom(L, k)).
    coeff = pattern_coefficients(seq_len, LinearSchedule(), weighted=False)
    expected = torch.tensor([0.0] + [1 / ((seq_len + 1) * math.comb(seq_len, k)) for k in range(1, seq_len + 1)],
                            dtype=torch.float64)
    torch.testing.assert_close(coeff, expected, rtol=1e-12, atol=0)
    # Cosine: our own quadrature; it differs from the linear schedule's (the unweighted loss depends on it)
    cos = CosineSchedule()
    coeff_cos = pattern_coefficients(seq_len, cos, weighted=False)
    for k in range(1, seq_len + 1):
        value = _quad(lambda t, k=k: (1 - cos.alpha(t)) ** k * cos.alpha(t) ** (seq_len - k))
        assert float(coeff_cos[k]) == pytest.approx(value, rel=1e-10)
    assert coeff_cos[0] == 0
    assert not torch.allclose(coeff_cos, coeff)


def _t_step_coefficients_loop(seq_len, schedule, T):
    """Eq. 10 coefficients by an explicit loop over steps and pattern sizes."""
    out = [0.0] * (seq_len + 1)
    for i in range(1, T + 1):
        a_s, a_t = float(schedule.alpha((i - 1) / T)), float(schedule.alpha(i / T))
        for k in range(1, seq_len + 1):
            out[k] += (1 - a_t) ** k * a_t ** (seq_len - k) * (a_s - a_t) / (1 - a_t)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("T", [1, 2, 3, 10, 64])
def test_t_step_coefficients_match_the_definition(schedule, T):
    seq_len = 5
    coeff = pattern_coefficients(seq_len, schedule, num_steps=T)
    torch.testing.assert_close(coeff, _t_step_coefficients_loop(seq_len, schedule, T), rtol=1e-12, atol=1e-15)
    # sum_k binom(L, k) k c_k = L for every T: each token is revealed exactly once
    total = sum(math.comb(seq_len, k) * k * float(coeff[k]) for k in range(seq_len + 1))
    assert total == pytest.approx(seq_len, rel=1e-12)
    if T == 1:  # one step: everything is masked at t = 1 and revealed at once
        torch.testing.assert_close(coeff, torch.tensor([0, 0, 0, 0, 0, 1], dtype=torch.float64))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_t_step_coefficients_converge_to_the_continuous_ones(schedule):
    seq_len = 6
    continuous = pattern_coefficients(seq_len)
    # the continuous coefficients satisfy the same identity sum_k binom(L, k) k c_k = L
    assert sum(math.comb(seq_len, k) * k * float(continuous[k]) for k in range(seq_len + 1)) == pytest.approx(6)
    errors = [float((pattern_coefficients(seq_len, schedule, num_steps=T) - continuous).abs().max())
              for T in (1, 4, 16, 64, 256, 1024, 4096)]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 2e-3, errors  # O(1/T)


# ----------------------------------------------------------------------------- exact NELBO on the toy data


def test_continuous_nelbo_of_the_exact_denoiser_is_the_true_nll(toy, oracle):
    # The ELBO is tight for the exact denoiser: every toy sequence has NLL log 100.
    nelbo = exact_nelbo(oracle, toy.data, toy.mask_id)
    assert nelbo.shape == (100,) and nelbo.dtype == torch.float64
    torch.testing.assert_close(nelbo, -oracle.log_prob(toy.data), rtol=1e-12, atol=0)
    torch.testing.assert_close(nelbo, torch.full((100,), math.log(100), dtype=torch.float64), rtol=1e-12, atol=0)
    # the same with any valid schedule
    for schedule in (CosineSchedule(), PolynomialSchedule(3.0)):
        torch.testing.assert_close(exact_nelbo(oracle, toy.data[TOY_ROWS], toy.mask_id, schedule),
                                   torch.full((len(TOY_ROWS),), math.log(100), dtype=torch.float64),
                                   rtol=1e-12, atol=0)


def test_one_step_nelbo_is_the_sum_of_marginal_nlls(toy, oracle):
    # T = 1: all five tokens are revealed at once from the fully masked sequence, each from its marginal.
    x0 = toy.data[TOY_ROWS]
    p1, p2 = toy.pair_marginals()
    expected = torch.tensor([-math.log(p1[int(r[0])]) - math.log(p2[int(r[1]) - 2]) + math.log(100) for r in x0],
                            dtype=torch.float64)
    for schedule in (LinearSchedule(), CosineSchedule()):
        torch.testing.assert_close(exact_nelbo(oracle, x0, toy.mask_id, schedule, num_steps=1), expected,
                                   rtol=1e-12, atol=0)


@pytest.mark.parametrize("schedule", [pytest.param(LinearSchedule(), id="linear"),
                                      pytest.param(CosineSchedule(), id="cosine"),
                                      pytest.param(PolynomialSchedule(2.0), id="poly2")])
def test_t_step_nelbo_decreases_to_the_continuous_one(toy, oracle, schedule):
    x0 = toy.data[TOY_ROWS]
    continuous = exact_nelbo(oracle, x0, toy.mask_id)
    values = [exact_nelbo(oracle, x0, toy.mask_id, schedule, num_steps=T) for T in (1, 2, 4, 16, 256)]
    for v in values:
        assert (v >= continuous - 1e-12).all()
    for coarse, fine in itertools.pairwise(values):
        assert (fine < coarse).all()
    assert (values[-1] - continuous).max() < 0.02


# ----------------------------------------------------------------------------- exact NELBO against brute force


def _brute_force_nelbo(denoiser, x0_row, mask_id, schedule, num_steps=None, weighted=True):
    """E over every x_t of the NELBO integrand, summing q(x_t | x_0) explicitly (2^L states x_t),
    by our own quadrature in continuous time and by the sum over steps of Eq. 10 for T steps."""
    L = x0_row.shape[0]
    states = []  # (x_t, masked positions)
    for pattern in itertools.product([False, True], repeat=L):
        x_t = torch.tensor([mask_id if m else int(v) for m, v in zip(pattern, x0_row, strict=True)])
        states.append((x_t, pattern))
    x_ts = torch.stack([x for x, _ in states])
    log_p = denoiser.log_probs(x_ts)  # (2^L, L, V)
    nll = [sum(-float(log_p[j, pos, x0_row[pos]]) for pos in range(L) if pattern[pos]) for j, (_, pattern) in
           enumerate(states)]
    n_masked = [sum(pattern) for _, pattern in states]

    def expected_nll(t):  # sum over x_t of q(x_t | x_0) * masked NLL, at a tensor of times
        a = schedule.alpha(t)
        return sum((1 - a) ** k * a ** (L - k) * v for k, v in zip(n_masked, nll, strict=True))

    if num_steps is None:
        if weighted:
            return _quad(lambda t: schedule.weight(t) * expected_nll(t))
        return _quad(expected_nll)
    total = 0.0
    for i in range(1, num_steps + 1):
        a_s, a_t = float(schedule.alpha((i - 1) / num_steps)), float(schedule.alpha(i / num_steps))
        total += (a_s - a_t) / (1 - a_t) * float(expected_nll(torch.tensor(i / num_steps, dtype=torch.float64)))
    return total


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_nelbo_against_brute_force_expectation(seed):
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed)
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1]])
    lin, cos = LinearSchedule(), CosineSchedule()
    cont = exact_nelbo(den, x0, mask_id)
    unweighted_lin = exact_nelbo(den, x0, mask_id, lin, weighted=False)
    unweighted_cos = exact_nelbo(den, x0, mask_id, cos, weighted=False)
    for b in range(2):
        # the linear schedule makes the integrand a polynomial: Gauss-Legendre is exact
        assert float(cont[b]) == pytest.approx(_brute_force_nelbo(den, x0[b], mask_id, lin), rel=1e-11)
        assert float(cont[b]) == pytest.approx(_brute_force_nelbo(den, x0[b], mask_id, cos), rel=1e-9)
        assert float(unweighted_lin[b]) == pytest.approx(
            _brute_force_nelbo(den, x0[b], mask_id, lin, weighted=False), rel=1e-11)
        assert float(unweighted_cos[b]) == pytest.approx(
            _brute_force_nelbo(den, x0[b], mask_id, cos, weighted=False), rel=1e-10)
        for schedule, T in ((lin, 1), (lin, 3), (cos, 5), (PolynomialSchedule(2.0), 8)):
            value = float(exact_nelbo(den, x0[b:b + 1], mask_id, schedule, num_steps=T)[0])
            assert value == pytest.approx(_brute_force_nelbo(den, x0[b], mask_id, schedule, T), rel=1e-12)


def test_context_free_denoiser_nelbo_is_the_sum_of_its_nlls():
    # A denoiser that ignores x_t costs c_l = -log p_l(x0^l) per position, and every token is revealed once:
    # continuous and T-step NELBO both equal sum_l c_l.
    L, V, mask_id = 5, 6, 5
    logits = torch.randn(L, V, generator=_gen(3), dtype=torch.float64)
    den = lambda x_t: logits.expand(x_t.shape[0], -1, -1)  # noqa: E731
    x0 = torch.tensor([[0, 1, 2, 3, 4], [4, 4, 4, 0, 0]])
    log_p = torch.log_softmax(logits[:, :mask_id], -1)
    expected = -log_p.gather(-1, x0.T).T.sum(-1)  # (B,)
    torch.testing.assert_close(exact_nelbo(den, x0, mask_id), expected, rtol=1e-12, atol=0)
    for schedule, T in ((LinearSchedule(), 1), (CosineSchedule(), 7)):
        torch.testing.assert_close(exact_nelbo(den, x0, mask_id, schedule, num_steps=T), expected, rtol=1e-12, atol=0)


def test_mask_patterns():
    p = mask_patterns(3)
    assert p.shape == (8, 3) and p.dtype == torch.bool
    assert len({tuple(r) for r in p.tolist()}) == 8
    assert mask_patterns(16).shape == (2**16, 16)


# ----------------------------------------------------------------------------- Monte Carlo vs exact


def _assert_within_standard_errors(est: NelboEstimate, exact: torch.Tensor, n_se: float = 4.0):
    """The batch mean of the per-sequence estimates against the mean of their exact values.

    The standard error is the sample sd over sqrt(B). Under antithetic times the estimates are
    stratified, which can only make this i.i.d. standard error larger than the true one (conservative)."""
    B = est.per_sequence.shape[0]
    se = est.per_sequence.std().item() / math.sqrt(B)
    diff = abs(est.value.item() - exact.mean().item())
    assert se > 0
    assert diff <= n_se * se, (diff, se, est.value.item(), exact.mean().item())


@pytest.mark.parametrize("antithetic", [True, False], ids=["antithetic", "independent"])
@pytest.mark.parametrize("schedule", FINITE_VARIANCE_SCHEDULES)
def test_continuous_nelbo_mc_matches_exact_on_toy(toy, oracle, schedule, antithetic):
    x0 = toy.data.repeat(200, 1)  # B = 20000: standard error ~0.05 nats against log 100 = 4.6
    est = continuous_nelbo(oracle, x0, schedule, toy.mask_id, _gen(11), antithetic)
    _assert_within_standard_errors(est, torch.full((x0.shape[0],), math.log(100), dtype=torch.float64))


@pytest.mark.parametrize("antithetic", [True, False], ids=["antithetic", "independent"])
@pytest.mark.parametrize(("schedule", "T"), [(LinearSchedule(), 4), (CosineSchedule(), 16), (LinearSchedule(), 1)],
                         ids=["linear-4", "cosine-16", "linear-1"])
def test_t_step_nelbo_mc_matches_exact_on_toy(toy, oracle, schedule, T, antithetic):
    exact_rows = exact_nelbo(oracle, toy.data, toy.mask_id, schedule, num_steps=T)  # (100,)
    x0 = toy.data.repeat(100, 1)
    est = t_step_nelbo(oracle, x0, schedule, toy.mask_id, T, _gen(12), antithetic)
    _assert_within_standard_errors(est, exact_rows.repeat(100))


@pytest.mark.parametrize("antithetic", [True, False], ids=["antithetic", "independent"])
def test_mc_matches_exact_for_random_denoisers(antithetic):
    L, V, mask_id = 4, 5, 2
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1], [3, 3, 3, 3]]).repeat(3000, 1)  # B = 9000
    fixed = torch.randn(L, V, generator=_gen(21))
    context_free = lambda x_t: fixed.expand(x_t.shape[0], -1, -1)  # noqa: E731
    pattern = PatternDenoiser(L, V, mask_id, seed=22)
    for k, den in enumerate((context_free, pattern)):
        exact_cont = exact_nelbo(den, x0[:3], mask_id).repeat(3000)
        for j, schedule in enumerate((CosineSchedule(), PolynomialSchedule(2.0))):
            est = continuous_nelbo(den, x0, schedule, mask_id, _gen(100 * k + j), antithetic)
            _assert_within_standard_errors(est, exact_cont)
        for j, (schedule, T) in enumerate(((LinearSchedule(), 3), (CosineSchedule(), 10))):
            exact_t = exact_nelbo(den, x0[:3], mask_id, schedule, num_steps=T).repeat(3000)
            est = t_step_nelbo(den, x0, schedule, mask_id, T, _gen(100 * k + 10 + j), antithetic)
            _assert_within_standard_errors(est, exact_t)


def test_t_step_antithetic_covers_every_step_equally():
    # With B = m T antithetic times, each step i = 1..T is drawn exactly m times.
    T, m = 8, 5
    x0 = torch.zeros(T * m, 2, dtype=torch.long)
    den = lambda x_t: torch.zeros(x_t.shape[0], 2, 3)  # noqa: E731
    for seed in range(5):
        est = t_step_nelbo(den, x0, LinearSchedule(), 2, T, _gen(seed), antithetic=True)
        steps = torch.round(est.t * T).long()
        assert torch.equal(torch.bincount(steps, minlength=T + 1)[1:], torch.full((T,), m))


# ----------------------------------------------------------------------------- parts of an estimate


def _check_parts(est: NelboEstimate, x0, mask_id, log_probs_fn):
    B, L = x0.shape
    assert est.per_sequence.shape == (B,) and est.per_token.shape == (B, L) and est.nll.shape == (B, L)
    assert est.weight.shape == (B,) and est.t.shape == (B,) and est.x_t.shape == (B, L) and est.value.shape == ()
    torch.testing.assert_close(est.per_sequence, est.per_token.sum(-1), rtol=1e-14, atol=0)
    torch.testing.assert_close(est.per_token, est.weight[:, None] * est.nll, rtol=0, atol=0)
    torch.testing.assert_close(est.value, est.per_sequence.mean(), rtol=1e-14, atol=0)
    masked = est.x_t == mask_id
    assert torch.equal(est.x_t[~masked], x0[~masked])  # x_t is reachable from x0
    assert (est.nll[~masked] == 0).all()
    log_p = log_probs_fn(est.x_t).gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, L)
    torch.testing.assert_close(est.nll[masked], -log_p[masked], rtol=1e-12, atol=1e-14)
    assert ((est.t > 0) & (est.t <= 1)).all()


def test_continuous_estimate_parts(toy, oracle):
    x0 = toy.data.repeat(3, 1)
    schedule = CosineSchedule()
    est = continuous_nelbo(oracle, x0, schedule, toy.mask_id, _gen(5))
    _check_parts(est, x0, toy.mask_id, lambda x_t: torch.log(oracle.conditional_probs(x_t)))
    torch.testing.assert_close(est.weight, schedule.weight(est.t), rtol=0, atol=0)
    assert est.x_t.eq(toy.mask_id).any() and est.x_t.ne(toy.mask_id).any()


@pytest.mark.parametrize("T", [1, 3, 10])
def test_t_step_estimate_parts(T):
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed=7)
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1]]).repeat(50, 1)
    schedule = CosineSchedule()
    est = t_step_nelbo(den, x0, schedule, mask_id, T, _gen(8), antithetic=False)
    _check_parts(est, x0, mask_id, den.log_probs)
    step = est.t * T
    torch.testing.assert_close(step, torch.round(step), rtol=0, atol=1e-12)  # t = i / T
    s = est.t - 1 / T
    a_s, a_t = schedule.alpha(s.clamp(min=0)), schedule.alpha(est.t)
    torch.testing.assert_close(est.weight, T * (a_s - a_t) / (1 - a_t), rtol=1e-12, atol=1e-14)


def test_estimators_are_repeatable():
    toy = toy_dataset()
    oracle = toy.oracle()
    a = continuous_nelbo(oracle, toy.data, CosineSchedule(), toy.mask_id, _gen(1))
    b = continuous_nelbo(oracle, toy.data, CosineSchedule(), toy.mask_id, _gen(1))
    assert torch.equal(a.per_sequence, b.per_sequence) and torch.equal(a.x_t, b.x_t)
    c = t_step_nelbo(oracle, toy.data, LinearSchedule(), toy.mask_id, 4, _gen(1))
    d = t_step_nelbo(oracle, toy.data, LinearSchedule(), toy.mask_id, 4, _gen(1))
    assert torch.equal(c.per_sequence, d.per_sequence)


def test_continuous_estimate_is_finite_for_a_large_batch():
    # 10^6 antithetic times always include one t < 1e-6. For alpha(t) = 1 - t^3 the weight there is
    # 3 / t (finite) and the token is unmasked (NLL 0), so its term is 0: the estimate must not be NaN.
    # (The true NELBO is log 2: a uniform denoiser over the two data ids.)
    x0 = torch.zeros(1_000_000, 1, dtype=torch.long)
    den = lambda x_t: torch.zeros(x_t.shape[0], 1, 3)  # noqa: E731
    est = continuous_nelbo(den, x0, PolynomialSchedule(3.0), 2, _gen(0))
    assert torch.isfinite(est.per_sequence).all()
    assert torch.isfinite(est.value)


# ----------------------------------------------------------------------------- errors


def test_schedule_with_alpha_one_not_zero_is_rejected(toy, oracle):
    sch = LogLinearSchedule(eps=1e-3)  # alpha(1) = 1e-3
    with pytest.raises(ValueError, match="^schedule must satisfy alpha"):
        continuous_nelbo(oracle, toy.data, sch, toy.mask_id)
    with pytest.raises(ValueError, match="^schedule must satisfy alpha"):
        t_step_nelbo(oracle, toy.data, sch, toy.mask_id, 4)
    with pytest.raises(ValueError, match="^schedule must satisfy alpha"):
        exact_nelbo(oracle, toy.data[:2], toy.mask_id, sch)
    with pytest.raises(ValueError, match="^schedule must satisfy alpha"):
        exact_nelbo(oracle, toy.data[:2], toy.mask_id, sch, num_steps=4)


@pytest.mark.parametrize("num_steps", [0, -2, 2.0, True])
def test_bad_num_steps_raises(toy, oracle, num_steps):
    with pytest.raises(ValueError, match="^num_steps must be an int >= 1"):
        t_step_nelbo(oracle, toy.data, LinearSchedule(), toy.mask_id, num_steps)
    with pytest.raises(ValueError, match="^num_steps must be an int >= 1"):
        exact_nelbo(oracle, toy.data[:2], toy.mask_id, LinearSchedule(), num_steps=num_steps)
    with pytest.raises(ValueError, match="^num_steps must be an int >= 1"):
        pattern_coefficients(4, LinearSchedule(), num_steps=num_steps)


def test_x0_containing_the_mask_raises(toy, oracle):
    bad = toy.data[:2].clone()
    bad[0, 4] = toy.mask_id
    with pytest.raises(ValueError, match="^x0 is clean data"):
        continuous_nelbo(oracle, bad, CosineSchedule(), toy.mask_id)
    with pytest.raises(ValueError, match="^x0 is clean data"):
        t_step_nelbo(oracle, bad, LinearSchedule(), toy.mask_id, 2)
    with pytest.raises(ValueError, match="^x0 is clean data"):
        exact_nelbo(oracle, bad, toy.mask_id)
    with pytest.raises(ValueError, match="^x0 is clean data"):
        exact_nelbo(oracle, bad, toy.mask_id, LinearSchedule(), num_steps=2)


def test_x0_of_the_wrong_rank_raises(toy, oracle):
    with pytest.raises(ValueError, match=r"^x0 must have shape \(B, L\)"):
        continuous_nelbo(oracle, toy.data[0], CosineSchedule(), toy.mask_id)
    with pytest.raises(ValueError, match=r"^x0 must have shape \(B, L\)"):
        t_step_nelbo(oracle, toy.data[None], LinearSchedule(), toy.mask_id, 2)
    with pytest.raises(ValueError, match=r"^x0 must have shape \(B, L\)"):
        exact_nelbo(oracle, toy.data[0], toy.mask_id, LinearSchedule())
    with pytest.raises(ValueError, match=r"^x0 must be a torch.long \(int64\) tensor of token ids"):
        continuous_nelbo(oracle, toy.data.double(), CosineSchedule(), toy.mask_id)


def _every_estimator(denoiser, x0, mask_id):
    """A call of each NELBO function on x0: the three Monte Carlo estimators, the exact NELBO (continuous
    and T-step) and the exact variance."""
    return [lambda: continuous_nelbo(denoiser, x0, CosineSchedule(), mask_id, _gen(0), samples=2),
            lambda: t_step_nelbo(denoiser, x0, LinearSchedule(), mask_id, 2, _gen(0)),
            lambda: count_nelbo(denoiser, x0, mask_id, _gen(0)),
            lambda: exact_nelbo(denoiser, x0, mask_id),
            lambda: exact_nelbo(denoiser, x0, mask_id, LinearSchedule(), num_steps=3),
            lambda: exact_estimator_variance(denoiser, x0, mask_id, CosineSchedule())]


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (0, 0)])
def test_an_empty_batch_is_refused(toy, oracle, shape):
    # no sequence (B = 0) or empty sequences (L = 0): named as x0, never as an argument the caller did not pass
    empty = torch.zeros(shape, dtype=torch.long)
    for call in _every_estimator(oracle, empty, toy.mask_id):
        with pytest.raises(ValueError, match=rf"^x0 must have shape \(B, L\) with B >= 1 and L >= 1; got "
                                             rf"\({shape[0]}, {shape[1]}\)$"):
            call()


def _logits_where(value: float, where):
    """Uniform logits over V = 4 (mask id 3), ``value`` for token 1 where ``where(x_t)`` (B, L) holds."""
    def denoiser(x_t):
        logits = torch.zeros(*x_t.shape, 4, dtype=torch.float64)  # (B, L, V)
        logits[..., 1] = torch.where(where(x_t), value, 0.0)
        return logits
    return denoiser


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_or_infinite_logits_are_refused_by_every_estimator(value):
    # NaN, or +inf (softmax: inf - inf), at a masked position: the NELBO would be NaN
    x0 = torch.tensor([[0, 1, 2, 0, 1]] * 3)
    broken = _logits_where(value, lambda x_t: torch.ones_like(x_t, dtype=torch.bool))
    for call in _every_estimator(broken, x0, 3):
        with pytest.raises(ValueError, match=r"^the denoiser's logits give no distribution \(NaN, \+inf, or -inf for "
                                             r"every token but the mask\) at batch row \d+.*, position \d+ of its "
                                             r"input x_t, a masked position whose -log p\(x_0 \| x_t\) the NELBO "
                                             r"needs$"):
            call()


def test_the_refusal_names_the_first_masked_position_with_no_distribution():
    x0 = torch.tensor([[0, 1, 0, 0, 1], [2, 2, 2, 2, 2]])
    all_minus_inf = lambda x_t: torch.full((*x_t.shape, 4), -math.inf)  # noqa: E731
    # count_nelbo masks k >= 1 of L = 1 position: always row 0, position 0
    with pytest.raises(ValueError, match=r"at batch row 0, position 0 of its input x_t"):
        count_nelbo(all_minus_inf, x0[:1, :1], 3)
    # the patterns of exact_nelbo in order 00000, 00001, 00010, ...: the first that masks position 3
    # of x0 row 1 is pattern 2 (00010); a row of x_t holds a 2 only where it comes from x0 row 1
    nan_at_3_of_row_1 = _logits_where(math.nan, lambda x_t: (torch.arange(5) == 3) & (x_t == 2).any(-1, keepdim=True))
    with pytest.raises(ValueError, match=r"at batch row 2 \(mask pattern 2 of x0 row 1\), position 3 of its input"):
        exact_nelbo(nan_at_3_of_row_1, x0, 3)


def test_nan_logits_where_no_token_is_scored_are_not_consulted():
    # the NELBO needs the logits at masked positions only; NaN elsewhere leaves it as it is:
    # uniform over the 3 clean tokens at every masked position gives L log 3 (sum_M c_|M| |M| = L)
    x0 = torch.tensor([[0, 1, 2, 0, 1]])
    nan_where_clean = _logits_where(math.nan, lambda x_t: x_t != 3)
    assert float(exact_nelbo(nan_where_clean, x0, 3)[0]) == pytest.approx(5 * math.log(3), rel=1e-12)
    assert float(count_nelbo(nan_where_clean, x0, 3, _gen(0), samples=50).value) == pytest.approx(5 * math.log(3))


def test_a_clean_token_of_probability_zero_costs_infinitely_much():
    # a logit of -inf for the clean token 1: -log p = inf, a true value, not NaN
    x0 = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 2, 2, 2]])
    never_1 = _logits_where(-math.inf, lambda x_t: torch.ones_like(x_t, dtype=torch.bool))
    for call in _every_estimator(never_1, x0, 3)[:5]:
        result = call()
        per_sequence = result.per_sequence if isinstance(result, NelboEstimate) else result
        assert not torch.isnan(per_sequence).any() and torch.isfinite(per_sequence[1])  # row 1 holds no token 1
    # uniform over the two clean tokens 0 and 2 left: L log 2 for row 1, inf for row 0
    assert exact_nelbo(never_1, x0, 3).tolist() == [math.inf, pytest.approx(5 * math.log(2), rel=1e-12)]
    variance = exact_estimator_variance(never_1, x0, 3)
    assert variance[0] == math.inf and variance[1] == 0.0  # infinite mean, infinite variance


def test_a_pattern_of_weight_zero_adds_nothing_even_at_infinite_cost():
    # T = 1: only the fully masked pattern has weight (alpha_0 = 1, alpha_1 = 0), so the NELBO is
    # sum_l -log p(x_0^l | all masked) = L log 3, whatever the denoiser does at partial patterns
    x0 = torch.tensor([[0, 1, 2, 0, 1]])
    partly_masked = lambda x_t: ((x_t == 3).any(-1) & (x_t != 3).any(-1))[:, None].expand_as(x_t)  # noqa: E731
    never_1_when_partial = _logits_where(-math.inf, partly_masked)
    assert float(exact_nelbo(never_1_when_partial, x0, 3, LinearSchedule(), num_steps=1)[0]) == pytest.approx(
        5 * math.log(3), rel=1e-12)


@pytest.mark.parametrize("schedule", ["linear", 1.0, LinearSchedule])
def test_a_schedule_that_is_not_one_is_refused_naming_it(schedule):
    x0 = torch.tensor([[0, 1, 2]])
    uniform = _logits_where(0.0, lambda x_t: torch.ones_like(x_t, dtype=torch.bool))
    for call in (lambda: continuous_nelbo(uniform, x0, schedule, 3), lambda: t_step_nelbo(uniform, x0, schedule, 3, 2),
                 lambda: exact_nelbo(uniform, x0, 3, schedule), lambda: exact_nelbo(uniform, x0, 3, schedule, 2),
                 lambda: exact_estimator_variance(uniform, x0, 3, schedule),
                 lambda: pattern_coefficients(3, schedule, weighted=False),
                 lambda: second_moment_coefficients(3, schedule)):
        with pytest.raises(ValueError, match=r"^schedule must be a Schedule, an instance such as LinearSchedule\(\) or "
                                             r"CosineSchedule\(\); got "):
            call()


def test_a_denoiser_that_edits_its_input_changes_nothing():
    # the estimators give the denoiser a copy of x_t: the estimate is that of the same denoiser left alone
    x0 = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 0, 1, 1]])
    table = PatternDenoiser(5, 4, 3, seed=7)

    def vandal(x_t):
        logits = table(x_t)
        x_t.fill_(3)  # masks every position of its input, after reading it
        return logits

    for estimator in (lambda d: continuous_nelbo(d, x0, CosineSchedule(), 3, _gen(1), samples=2),
                      lambda d: t_step_nelbo(d, x0, LinearSchedule(), 3, 4, _gen(1)),
                      lambda d: count_nelbo(d, x0, 3, _gen(1))):
        edited, pure = estimator(vandal), estimator(table)
        for part in ("per_sequence", "per_token", "nll", "weight", "t", "x_t"):
            assert torch.equal(getattr(edited, part), getattr(pure, part)), part
    assert torch.equal(exact_nelbo(vandal, x0, 3), exact_nelbo(table, x0, 3))


def test_ids_outside_the_denoisers_vocabulary_are_refused():
    x0 = torch.tensor([[0, 1, 7]])  # the denoiser has V = 4
    uniform = _logits_where(0.0, lambda x_t: torch.ones_like(x_t, dtype=torch.bool))
    for call in _every_estimator(uniform, x0, 3):
        with pytest.raises(ValueError, match=r"^x0 holds ids outside \[0, 3\], the denoiser's vocabulary \(its logits "
                                             r"have V = 4\); got 7$"):
            call()


def test_the_inputs_are_checked_once(toy, oracle, monkeypatch):
    # x0 and the times enter once: the forward process and the schedule trust them
    from maskdiff_tutor import _checks, forward_process, nelbo, schedules

    calls = []
    for module in (forward_process, nelbo, schedules):
        for name in ("check_tokens", "check_times"):
            if hasattr(module, name):
                original = getattr(_checks, name)
                monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    for call in (lambda: continuous_nelbo(oracle, toy.data[:3], CosineSchedule(), toy.mask_id, samples=2),
                 lambda: t_step_nelbo(oracle, toy.data[:3], LinearSchedule(), toy.mask_id, 4),
                 lambda: count_nelbo(oracle, toy.data[:3], toy.mask_id),
                 lambda: exact_nelbo(oracle, toy.data[:2], toy.mask_id, CosineSchedule(), num_steps=3),
                 lambda: exact_estimator_variance(oracle, toy.data[:2], toy.mask_id, CosineSchedule())):
        calls.clear()
        call()
        assert calls == ["check_tokens"]


def test_exact_nelbo_without_schedule_checks_the_rank_of_x0(toy, oracle):
    # Without a schedule exact_nelbo still needs x0 of shape (B, L); a 1-D x0 must be refused with a
    # message that names x0, as it is when a schedule is given.
    with pytest.raises(ValueError, match="x0"):
        exact_nelbo(oracle, toy.data[0], toy.mask_id)


def test_denoiser_returning_the_wrong_shape_raises(toy, oracle):
    wrong_len = lambda x_t: oracle(x_t)[:, :4]  # noqa: E731
    wrong_batch = lambda x_t: oracle(x_t)[:1]  # noqa: E731
    for den in (wrong_len, wrong_batch):
        with pytest.raises(ValueError, match="^the denoiser must return logits of shape"):
            continuous_nelbo(den, toy.data, CosineSchedule(), toy.mask_id, _gen(0))
        with pytest.raises(ValueError, match="^the denoiser must return logits of shape"):
            t_step_nelbo(den, toy.data, LinearSchedule(), toy.mask_id, 4, _gen(0))
        with pytest.raises(ValueError, match="^the denoiser must return logits of shape"):
            exact_nelbo(den, toy.data[:2], toy.mask_id)


def test_sequences_too_long_to_enumerate_raise():
    with pytest.raises(ValueError, match="^seq_len must be <= 16"):
        mask_patterns(17)
    den = lambda x_t: torch.zeros(*x_t.shape, 3)  # noqa: E731
    with pytest.raises(ValueError, match="^seq_len must be <= 16"):
        exact_nelbo(den, torch.zeros(1, 17, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="^seq_len must be an int >= 1"):
        mask_patterns(0)


def test_pattern_coefficient_argument_errors():
    with pytest.raises(ValueError, match="^seq_len must be an int >= 1"):
        pattern_coefficients(0)
    with pytest.raises(ValueError, match="^seq_len must be an int >= 1"):
        pattern_coefficients(2.5)
    with pytest.raises(ValueError, match="^num_steps needs a schedule"):
        pattern_coefficients(3, None, num_steps=4)
    with pytest.raises(ValueError, match="^num_steps needs a schedule and weighted=True"):
        pattern_coefficients(3, LinearSchedule(), num_steps=4, weighted=False)
    with pytest.raises(ValueError, match="^weighted=False needs a schedule"):
        pattern_coefficients(3, weighted=False)
    with pytest.raises(ValueError, match="^num_steps needs a schedule"):
        exact_nelbo(lambda x: torch.zeros(*x.shape, 3), torch.zeros(1, 2, dtype=torch.long), 2, num_steps=3)


# ----------------------------------------------------------------------------- the count-of-masks estimator


def _count_distribution(denoiser, x0_row, mask_id):
    """Every outcome of one count_nelbo draw, by brute force: [(probability, value)].

    k ~ U{1..L}, then each k-subset M with probability 1 / binom(L, k); value (L / k) S_M."""
    L = x0_row.shape[0]
    outcomes = []
    for k in range(1, L + 1):
        for subset in itertools.combinations(range(L), k):
            x_t = x0_row.clone()
            x_t[list(subset)] = mask_id
            log_p = denoiser.log_probs(x_t[None])[0]  # (L, V)
            s_m = sum(-float(log_p[pos, x0_row[pos]]) for pos in subset)
            outcomes.append((1 / (L * math.comb(L, k)), L / k * s_m))
    return outcomes


class _OracleLogProbs:
    """The toy oracle with the log_probs method the brute-force helpers call."""

    def __init__(self, oracle):
        self.oracle = oracle

    def __call__(self, x_t):
        return self.oracle(x_t)

    def log_probs(self, x_t):
        return torch.log(self.oracle.conditional_probs(x_t))


@pytest.mark.parametrize("seed", [0, 1])
def test_count_nelbo_expectation_by_enumerating_its_distribution(seed):
    # The exact mean of one draw, summed over every (k, M) it can draw, is the exact NELBO.
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed)
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1]])
    exact = exact_nelbo(den, x0, mask_id)
    for b in range(2):
        outcomes = _count_distribution(den, x0[b], mask_id)
        assert sum(p for p, _ in outcomes) == pytest.approx(1, rel=1e-14)
        assert sum(p * v for p, v in outcomes) == pytest.approx(float(exact[b]), rel=1e-12)


def test_count_nelbo_expectation_on_toy_is_the_true_nll(toy, oracle):
    den = _OracleLogProbs(oracle)
    for row in TOY_ROWS[:4]:
        outcomes = _count_distribution(den, toy.data[row], toy.mask_id)
        assert sum(p * v for p, v in outcomes) == pytest.approx(math.log(100), rel=1e-12)


def test_count_nelbo_mc_matches_exact_on_toy(toy, oracle):
    est = count_nelbo(oracle, toy.data, toy.mask_id, _gen(31), samples=100)  # 10,000 draws
    _assert_within_standard_errors(est, torch.full((100,), math.log(100), dtype=torch.float64))


def test_count_nelbo_mc_matches_exact_for_a_random_denoiser():
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed=23)
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1], [3, 3, 3, 3]])
    exact = exact_nelbo(den, x0, mask_id)
    est = count_nelbo(den, x0.repeat(3000, 1), mask_id, _gen(32))
    _assert_within_standard_errors(est, exact.repeat(3000))
    # per sequence too, from many draws of each: within 4 standard errors of its own exact value
    est = count_nelbo(den, x0, mask_id, _gen(33), samples=4000)
    draws = est.per_token.sum(-1).reshape(4000, 3)  # (S, B)
    se = draws.std(0) / math.sqrt(4000)
    assert ((est.per_sequence - exact).abs() <= 4 * se).all(), (est.per_sequence, exact, se)


def test_count_nelbo_draws_k_uniformly_and_positions_without_replacement():
    L, mask_id, n = 4, 3, 60_000
    den = lambda x_t: torch.zeros(*x_t.shape, 4)  # noqa: E731
    est = count_nelbo(den, torch.zeros(n, L, dtype=torch.long), mask_id, _gen(34))
    masked = est.x_t == mask_id
    k = masked.sum(-1)  # (n,)
    assert ((k >= 1) & (k <= L)).all()
    torch.testing.assert_close(est.weight, L / k.double(), rtol=0, atol=0)
    torch.testing.assert_close(est.t, k.double() / L, rtol=0, atol=0)
    # every (k, M) has probability 1 / (L binom(L, k)): counts within 5 binomial standard deviations
    bits = (masked.long() * 2 ** torch.arange(L)).sum(-1)
    counts = torch.bincount(bits, minlength=2**L)
    for pattern in range(1, 2**L):
        kk = bin(pattern).count("1")
        p = 1 / (L * math.comb(L, kk))
        assert abs(counts[pattern].item() - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (pattern, counts[pattern])
    assert counts[0] == 0


def test_count_estimate_parts():
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed=9)
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1]]).repeat(50, 1)
    est = count_nelbo(den, x0, mask_id, _gen(10))
    _check_parts(est, x0, mask_id, den.log_probs)
    assert torch.equal(est.x_t.eq(mask_id).sum(-1), torch.round(est.t * L).long())


def test_samples_average_draws_per_sequence():
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed=12)
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1], [3, 3, 3, 3]])
    for estimate in (lambda g, s: count_nelbo(den, x0, mask_id, g, samples=s),
                     lambda g, s: continuous_nelbo(den, x0, CosineSchedule(), mask_id, g, samples=s)):
        est = estimate(_gen(13), 7)
        assert est.per_token.shape == (21, L) and est.x_t.shape == (21, L) and est.weight.shape == (21,)
        assert est.per_sequence.shape == (3,)
        assert torch.equal(est.x_t[~est.x_t.eq(mask_id)], x0.repeat(7, 1)[~est.x_t.eq(mask_id)])
        torch.testing.assert_close(est.per_sequence, est.per_token.sum(-1).reshape(7, 3).mean(0), rtol=1e-14, atol=0)
        # one sample is the old behaviour: the same draws as an explicitly repeated batch
        one = estimate(_gen(14), 1)
        assert one.per_sequence.shape == (3,) and torch.equal(one.per_sequence, one.per_token.sum(-1))
    a = count_nelbo(den, x0, mask_id, _gen(15), samples=5)
    b = count_nelbo(den, x0.repeat(5, 1), mask_id, _gen(15))
    assert torch.equal(a.x_t, b.x_t)
    a = continuous_nelbo(den, x0, CosineSchedule(), mask_id, _gen(16), samples=5)
    b = continuous_nelbo(den, x0.repeat(5, 1), CosineSchedule(), mask_id, _gen(16))
    assert torch.equal(a.x_t, b.x_t) and torch.equal(a.t, b.t)


def test_count_nelbo_is_repeatable(toy, oracle):
    a = count_nelbo(oracle, toy.data, toy.mask_id, _gen(2))
    b = count_nelbo(oracle, toy.data, toy.mask_id, _gen(2))
    assert torch.equal(a.x_t, b.x_t) and torch.equal(a.per_sequence, b.per_sequence)


def test_count_nelbo_bad_input_raises(toy, oracle):
    bad = toy.data[:2].clone()
    bad[0, 4] = toy.mask_id
    with pytest.raises(ValueError, match="^x0 is clean data"):
        count_nelbo(oracle, bad, toy.mask_id)
    with pytest.raises(ValueError, match=r"^x0 must have shape \(B, L\)"):
        count_nelbo(oracle, toy.data[0], toy.mask_id)
    with pytest.raises(ValueError, match=r"^x0 must have shape \(B, L\) with B >= 1 and L >= 1"):
        count_nelbo(oracle, torch.zeros(3, 0, dtype=torch.long), toy.mask_id)
    with pytest.raises(ValueError, match=r"^x0 must be a torch.long \(int64\) tensor of token ids"):
        count_nelbo(oracle, toy.data.double(), toy.mask_id)
    for samples in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="^samples must be an int >= 1"):
            count_nelbo(oracle, toy.data, toy.mask_id, samples=samples)
        with pytest.raises(ValueError, match="^samples must be an int >= 1"):
            continuous_nelbo(oracle, toy.data, CosineSchedule(), toy.mask_id, samples=samples)
    with pytest.raises(ValueError, match="^the denoiser must return logits of shape"):
        count_nelbo(lambda x_t: oracle(x_t)[:, :4], toy.data, toy.mask_id, _gen(0))


# ----------------------------------------------------------------------------- exact variances of the estimators


def test_count_second_moment_coefficients_by_enumeration():
    for L in (1, 3, 6):
        d = second_moment_coefficients(L)
        assert d.shape == (L + 1,) and d[0] == 0
        for k in range(1, L + 1):  # probability 1 / (L binom(L, k)) times (L / k)^2
            assert float(d[k]) == pytest.approx((L / k) ** 2 / (L * math.comb(L, k)), rel=1e-14)


def test_linear_second_moment_coefficients_are_beta_functions():
    L = 6
    d = second_moment_coefficients(L, LinearSchedule())
    assert d[1] == math.inf  # int_0 dt / t
    for k in range(2, L + 1):  # int t^(k-2) (1-t)^(L-k) dt = B(k - 1, L - k + 1)
        beta = math.gamma(k - 1) * math.gamma(L - k + 1) / math.gamma(L)
        assert float(d[k]) == pytest.approx(beta, rel=1e-10)


@pytest.mark.parametrize("schedule", FINITE_VARIANCE_SCHEDULES)
def test_finite_second_moment_coefficients_by_quadrature(schedule):
    L = 5
    d = second_moment_coefficients(L, schedule)
    assert torch.isfinite(d).all()
    for k in range(1, L + 1):
        ref = _quad(lambda t, k=k: schedule.weight(t) ** 2 * (1 - schedule.alpha(t)) ** k
                    * schedule.alpha(t) ** (L - k), 300)
        assert float(d[k]) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_count_variance_by_enumerating_its_distribution(seed):
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed)
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1]])
    var = exact_estimator_variance(den, x0, mask_id)
    for b in range(2):
        outcomes = _count_distribution(den, x0[b], mask_id)
        mean = sum(p * v for p, v in outcomes)
        assert float(var[b]) == pytest.approx(sum(p * (v - mean) ** 2 for p, v in outcomes), rel=1e-11)


def test_exact_bernoulli_variance_by_brute_force():
    # E[X^2] = int_0^1 sum over x_t of q(x_t | x_0) (w(t) S(x_t))^2 dt, by our own quadrature.
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed=5)
    x0 = torch.tensor([[0, 1, 3, 4], [4, 4, 0, 1]])
    schedule = CosineSchedule()
    var = exact_estimator_variance(den, x0, mask_id, schedule)
    for b in range(2):
        states = list(itertools.product([False, True], repeat=L))
        x_ts = torch.stack([torch.tensor([mask_id if m else int(v) for m, v in zip(p, x0[b], strict=True)])
                            for p in states])
        log_p = den.log_probs(x_ts)
        s = [sum(-float(log_p[j, pos, x0[b, pos]]) for pos in range(L) if p[pos]) for j, p in enumerate(states)]

        def second(t, states=states, s=s):
            a = schedule.alpha(t)
            return schedule.weight(t) ** 2 * sum((1 - a) ** sum(p) * a ** (L - sum(p)) * v**2
                                                 for p, v in zip(states, s, strict=True))

        mean = _brute_force_nelbo(den, x0[b], mask_id, schedule)
        assert float(var[b]) == pytest.approx(_quad(second, 400) - mean**2, rel=1e-6)


def test_exact_variances_against_sampling():
    L, V, mask_id = 4, 5, 2
    den = PatternDenoiser(L, V, mask_id, seed=6)
    x0 = torch.tensor([[0, 1, 3, 4]])
    n = 40_000
    for schedule, draw in ((None, lambda g: count_nelbo(den, x0, mask_id, g, samples=n)),
                           (CosineSchedule(), lambda g: continuous_nelbo(den, x0, CosineSchedule(), mask_id, g,
                                                                         antithetic=False, samples=n))):
        exact = float(exact_estimator_variance(den, x0, mask_id, schedule)[0])
        sample, se = batch_variance(draw(_gen(40)).per_token.sum(-1), 20)
        assert abs(sample - exact) <= 4 * se, (schedule, sample, exact, se)


def test_exact_variance_on_toy(toy, oracle):
    x0 = toy.data[TOY_ROWS]
    count = exact_estimator_variance(oracle, x0, toy.mask_id)
    cosine = exact_estimator_variance(oracle, x0, toy.mask_id, CosineSchedule())
    assert torch.isfinite(count).all() and (count > 0).all() and (count < cosine).all()
    # the lone masked last token costs log(number of sequences sharing the first four): weight 1/t
    # on a pattern of probability ~ t makes the linear schedule's variance infinite
    assert (exact_estimator_variance(oracle, x0, toy.mask_id, LinearSchedule()) == math.inf).all()


def test_denoiser_that_is_sure_of_every_token_has_zero_variance():
    # S_M = 0 for every pattern: the infinite d_1 of the linear schedule must not give NaN
    V, mask_id = 4, 3
    x0 = torch.tensor([[0, 1, 2]])
    sure = lambda x_t: torch.where(torch.arange(V) == x0[0, :, None], 0.0, -1e4).expand(x_t.shape[0], -1, -1)  # noqa: E731
    for schedule in (None, LinearSchedule(), CosineSchedule()):
        assert float(exact_estimator_variance(sure, x0, mask_id, schedule)[0]) == 0.0


def test_batch_variance():
    values = torch.randn(100_000, generator=_gen(50), dtype=torch.float64) * 3
    var, se = batch_variance(values, 20)
    assert var == pytest.approx(values.var().item(), rel=1e-14)
    # Gaussian: sd of a variance estimate from n values is sigma^2 sqrt(2 / (n - 1)); the mean of 20
    # batch variances has sigma^2 sqrt(2 / 5000) / sqrt(20) ~ 0.057 (up to the spread of 20 batches)
    assert 0.03 < se < 0.09 and abs(var - 9) < 4 * se
    for bad in ((values[:10], 3), (values.reshape(2, -1), 2), (values[:3], 2)):
        with pytest.raises(ValueError, match="^values must be 1-D"):
            batch_variance(*bad)
    with pytest.raises(ValueError, match="^num_batches must be an int >= 1"):
        batch_variance(values, 0)
    with pytest.raises(ValueError, match="^values must be 1-D"):
        batch_variance(values, 1)


def test_exact_variance_bad_input_raises(toy, oracle):
    with pytest.raises(ValueError, match="^schedule must satisfy alpha"):
        exact_estimator_variance(oracle, toy.data[:2], toy.mask_id, LogLinearSchedule(1e-3))
    with pytest.raises(ValueError, match="^schedule must satisfy alpha"):
        second_moment_coefficients(3, LogLinearSchedule(1e-3))
    with pytest.raises(ValueError, match=r"^x0 must have shape \(B, L\)"):
        exact_estimator_variance(oracle, toy.data[0], toy.mask_id)
    with pytest.raises(ValueError, match="^seq_len must be an int >= 1"):
        second_moment_coefficients(0)
