"""Tests of maskdiff_tutor.forward_process: q(x_t | x_0), q(x_t | x_s), the posterior, the
reverse step and their KL (paper Eq. 3-7), against brute-force references."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from maskdiff_tutor.forward_process import (
    categorical_kl,
    denoiser_probs,
    forward_probs,
    posterior_probs,
    reverse_kl,
    reverse_probs,
    sample_xt,
    transition_probs,
)
from maskdiff_tutor.schedules import CosineSchedule, LinearSchedule, LogLinearSchedule, PolynomialSchedule

SCHEDULES = [
    pytest.param(LinearSchedule(), id="linear"),
    pytest.param(CosineSchedule(), id="cosine"),
    pytest.param(PolynomialSchedule(exponent=2.0), id="poly2"),
    pytest.param(LogLinearSchedule(eps=0.1), id="loglinear"),
]

V = 5  # vocabulary of the small exact tests: data ids 0..3, mask 4
MASK = 4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_x0(batch: int, length: int, seed: int, vocab: int = V, mask_id: int = MASK) -> torch.Tensor:
    """Clean ids in [0, vocab) without the mask."""
    data_ids = torch.tensor([v for v in range(vocab) if v != mask_id])
    return data_ids[torch.randint(len(data_ids), (batch, length), generator=_gen(seed))]


def _random_xt(x0: torch.Tensor, seed: int, mask_id: int = MASK) -> torch.Tensor:
    """x0 with a random half of its positions masked (reachable from x0 at any t > 0)."""
    masked = torch.rand(x0.shape, generator=_gen(seed)) < 0.5
    return torch.where(masked, torch.full_like(x0, mask_id), x0)


# ----------------------------------------------------------------------------- sample_xt


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("t", [0.1, 0.37, 0.5, 0.9])
def test_sample_xt_mask_rate_matches_one_minus_alpha(schedule, t):
    x0 = torch.zeros(1000, 1000, dtype=torch.long)  # n = 1e6 independent Bernoulli draws
    x_t = sample_xt(x0, t, schedule, mask_id=7, generator=_gen(123))
    p = 1 - float(schedule.alpha(t))
    n = x0.numel()
    rate = (x_t == 7).double().mean().item()
    se = math.sqrt(p * (1 - p) / n)  # binomial standard error of the rate
    assert abs(rate - p) <= 4 * se, (rate, p, se)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_sample_xt_end_points(schedule):
    x0 = _random_x0(50, 40, seed=1)
    # t = 0: alpha = 1, nothing is masked
    assert torch.equal(sample_xt(x0, 0.0, schedule, MASK, _gen(0)), x0)
    if not isinstance(schedule, LogLinearSchedule):  # alpha(1) = 0: everything is masked
        assert (sample_xt(x0, 1.0, schedule, MASK, _gen(0)) == MASK).all()


def test_sample_xt_per_row_times():
    sch = LinearSchedule()
    ts = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    x0 = torch.randint(0, 10, (5, 200_000), generator=_gen(2))
    x_t = sample_xt(x0, ts, sch, mask_id=10, generator=_gen(3))
    assert x_t.shape == x0.shape and x_t.dtype == x0.dtype
    n = x0.shape[1]
    for b, t in enumerate(ts.tolist()):
        rate = (x_t[b] == 10).double().mean().item()
        p = 1 - float(sch.alpha(t))
        se = math.sqrt(p * (1 - p) / n)
        assert abs(rate - p) <= 4 * se + 1e-15, (b, rate, p)
    assert (x_t[0] == x0[0]).all()  # t = 0
    assert (x_t[4] == 10).all()  # t = 1


def test_sample_xt_unmasked_tokens_equal_x0_and_masks_use_mask_id():
    x0 = _random_x0(64, 33, seed=4)
    x_t = sample_xt(x0, 0.6, CosineSchedule(), MASK, _gen(5))
    kept = x_t != MASK
    assert torch.equal(x_t[kept], x0[kept])
    assert set(x_t.unique().tolist()) <= set(x0.unique().tolist()) | {MASK}
    assert 0 < (~kept).sum() < x0.numel()


def test_sample_xt_is_repeatable_with_a_seeded_generator():
    x0 = _random_x0(32, 32, seed=6)
    a = sample_xt(x0, 0.5, LinearSchedule(), MASK, _gen(99))
    b = sample_xt(x0, 0.5, LinearSchedule(), MASK, _gen(99))
    c = sample_xt(x0, 0.5, LinearSchedule(), MASK, _gen(100))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sample_xt_positions_masked_independently():
    # The masks of two different positions are independent: P(both masked) = p^2.
    x0 = torch.zeros(400_000, 2, dtype=torch.long)
    x_t = sample_xt(x0, 0.5, LinearSchedule(), mask_id=1, generator=_gen(8))
    both = ((x_t[:, 0] == 1) & (x_t[:, 1] == 1)).double().mean().item()
    p = 0.25
    se = math.sqrt(p * (1 - p) / x0.shape[0])
    assert abs(both - p) <= 4 * se


# ----------------------------------------------------------------------------- forward_probs


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_forward_probs_rows_and_values(schedule):
    x0 = _random_x0(3, 6, seed=9)
    t = 0.4
    q = forward_probs(x0, t, schedule, MASK, V)
    assert q.shape == (3, 6, V) and q.dtype == torch.float64
    torch.testing.assert_close(q.sum(-1), torch.ones(3, 6, dtype=torch.float64), rtol=0, atol=1e-15)
    a = float(schedule.alpha(t))
    for b, pos in itertools.product(range(3), range(6)):
        for v in range(V):
            expected = a if v == int(x0[b, pos]) else (1 - a if v == MASK else 0.0)
            assert q[b, pos, v].item() == pytest.approx(expected, abs=1e-15)


def test_forward_probs_per_row_times():
    sch = CosineSchedule()
    x0 = _random_x0(4, 3, seed=10)
    ts = torch.tensor([0.0, 0.2, 0.7, 1.0], dtype=torch.float64)
    q = forward_probs(x0, ts, sch, MASK, V)
    for b in range(4):
        torch.testing.assert_close(q[b], forward_probs(x0[b:b + 1], float(ts[b]), sch, MASK, V)[0])
    assert (q[3, :, MASK] == 1).all()  # t = 1
    assert (q[0].gather(-1, x0[0].unsqueeze(-1)) == 1).all()  # t = 0


# ----------------------------------------------------------------------------- transition_probs


def _all_states(length: int, vocab: int = V):
    """Every sequence over the full vocabulary (mask included): tensor (vocab^length, length)."""
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_transition_probs_values(schedule):
    s, t = 0.2, 0.7
    x_s = torch.tensor([[0, MASK, 3, 1]])
    q = transition_probs(x_s, s, t, schedule, MASK, V)
    keep = float(schedule.alpha(t) / schedule.alpha(s))
    torch.testing.assert_close(q.sum(-1), torch.ones(1, 4, dtype=torch.float64))
    # a mask stays a mask
    assert q[0, 1, MASK].item() == 1.0 and q[0, 1].sum().item() == 1.0
    # an unmasked token survives with probability alpha_t / alpha_s
    for pos in (0, 2, 3):
        assert q[0, pos, int(x_s[0, pos])].item() == pytest.approx(keep, abs=1e-15)
        assert q[0, pos, MASK].item() == pytest.approx(1 - keep, abs=1e-15)
    # s = t is the identity
    torch.testing.assert_close(transition_probs(x_s, t, t, schedule, MASK, V)[0],
                               torch.eye(V, dtype=torch.float64)[x_s[0]])


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(("s", "t"), [(0.0, 0.5), (0.3, 0.6), (0.25, 1.0), (0.5, 0.5)])
def test_chapman_kolmogorov_by_enumeration(schedule, s, t):
    # q(x_t | x_0) = sum over x_s of q(x_s | x_0) q(x_t | x_s): a brute-force sum over all V^L states x_s
    # (the transition factorises over positions, so we check the full sequence probabilities).
    L = 2
    x0 = torch.tensor([[2, 0]])
    q_t0 = forward_probs(x0, t, schedule, MASK, V)[0]  # (L, V)
    q_s0 = forward_probs(x0, s, schedule, MASK, V)[0]  # (L, V)
    states = _all_states(L)  # (V^L, L)
    q_ts = transition_probs(states, s, t, schedule, MASK, V)  # (V^L, L, V): q(x_t^l | x_s)
    for x_t in states:
        direct = math.prod(q_t0[pos, x_t[pos]].item() for pos in range(L))
        composed = 0.0
        for i, x_s in enumerate(states):
            p_s = math.prod(q_s0[pos, x_s[pos]].item() for pos in range(L))
            p_ts = math.prod(q_ts[i, pos, x_t[pos]].item() for pos in range(L))
            composed += p_s * p_ts
        assert composed == pytest.approx(direct, abs=1e-14), (x_t, s, t)


def test_transition_probs_per_row_times():
    sch = LinearSchedule()
    x_s = torch.tensor([[0, 1], [2, MASK], [3, 3]])
    s = torch.tensor([0.0, 0.1, 0.5], dtype=torch.float64)
    t = torch.tensor([0.5, 0.1, 0.75], dtype=torch.float64)
    q = transition_probs(x_s, s, t, sch, MASK, V)
    for b in range(3):
        torch.testing.assert_close(q[b], transition_probs(x_s[b:b + 1], float(s[b]), float(t[b]), sch, MASK, V)[0])
    assert q[2, 0, 3].item() == pytest.approx(0.25 / 0.5)


# ----------------------------------------------------------------------------- posterior_probs


def _bayes_posterior(x_t_l: int, x0_l: int, s: float, t: float, schedule) -> list[float]:
    """q(x_s | x_t, x_0) = q(x_t | x_s) q(x_s | x_0) / q(x_t | x_0) for one position, by a loop over x_s."""
    x0 = torch.tensor([[x0_l]])
    q_s0 = forward_probs(x0, s, schedule, MASK, V)[0, 0]  # q(x_s | x_0)
    q_t0 = forward_probs(x0, t, schedule, MASK, V)[0, 0]  # q(x_t | x_0)
    out = []
    for x_s in range(V):
        q_ts = transition_probs(torch.tensor([[x_s]]), s, t, schedule, MASK, V)[0, 0]  # q(x_t | x_s)
        out.append(q_ts[x_t_l].item() * q_s0[x_s].item() / q_t0[x_t_l].item())
    return out


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(("s", "t"), [(0.0, 0.3), (0.2, 0.7), (0.6, 1.0), (0.4, 0.4)])
def test_posterior_is_bayes_rule(schedule, s, t):
    x0 = torch.tensor([[0, 1, 2, 3, 1, 2]])
    x_t = torch.tensor([[MASK, 1, MASK, 3, MASK, 2]])
    if float(schedule.alpha(t)) == 0:  # at alpha(t) = 0 only the fully masked x_t is reachable
        x_t = torch.full_like(x0, MASK)
    post = posterior_probs(x_t, x0, s, t, schedule, MASK, V)
    assert post.shape == (1, 6, V)
    torch.testing.assert_close(post.sum(-1), torch.ones(1, 6, dtype=torch.float64), rtol=0, atol=1e-14)
    for pos in range(6):
        expected = _bayes_posterior(int(x_t[0, pos]), int(x0[0, pos]), s, t, schedule)
        torch.testing.assert_close(post[0, pos], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-14)


def test_posterior_closed_form_values():
    sch = LinearSchedule()
    s, t = 0.3, 0.8
    post = posterior_probs(torch.tensor([[MASK, 2]]), torch.tensor([[1, 2]]), s, t, sch, MASK, V)
    reveal = ((1 - s) - (1 - t)) / t  # (alpha_s - alpha_t) / (1 - alpha_t)
    assert post[0, 0, 1].item() == pytest.approx(reveal)
    assert post[0, 0, MASK].item() == pytest.approx(1 - reveal)
    torch.testing.assert_close(post[0, 1], torch.eye(V, dtype=torch.float64)[2])
    # s = 0: a masked token is revealed for sure
    post0 = posterior_probs(torch.tensor([[MASK]]), torch.tensor([[3]]), 0.0, t, sch, MASK, V)
    torch.testing.assert_close(post0[0, 0], torch.eye(V, dtype=torch.float64)[3])


def test_posterior_per_row_times():
    sch = CosineSchedule()
    x0 = _random_x0(4, 5, seed=11)
    x_t = _random_xt(x0, seed=12)
    s = torch.tensor([0.0, 0.1, 0.3, 0.9], dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.3, 1.0], dtype=torch.float64)
    post = posterior_probs(x_t, x0, s, t, sch, MASK, V)
    for b in range(4):
        torch.testing.assert_close(post[b], posterior_probs(x_t[b:b + 1], x0[b:b + 1], float(s[b]), float(t[b]),
                                                            sch, MASK, V)[0])


# ----------------------------------------------------------------------------- reverse_probs and the KL


def test_denoiser_probs_removes_the_mask():
    logits = torch.randn(2, 3, V, generator=_gen(13))
    p = denoiser_probs(logits, MASK)
    assert p.dtype == torch.float64
    assert (p[..., MASK] == 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    # softmax over the other ids
    keep = [v for v in range(V) if v != MASK]
    torch.testing.assert_close(p[..., keep], torch.softmax(logits.double()[..., keep], -1))
    # the input is not modified
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_reverse_probs_with_one_hot_x0_is_the_posterior(schedule):
    x0 = _random_x0(3, 7, seed=14)
    x_t = _random_xt(x0, seed=15)
    onehot = torch.eye(V, dtype=torch.float64)[x0]
    s = torch.tensor([0.0, 0.25, 0.5], dtype=torch.float64)
    t = torch.tensor([0.5, 0.75, 1.0], dtype=torch.float64)
    torch.testing.assert_close(reverse_probs(x_t, onehot, s, t, schedule, MASK),
                               posterior_probs(x_t, x0, s, t, schedule, MASK, V), rtol=0, atol=1e-15)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_reverse_probs_values(schedule):
    x0_probs = denoiser_probs(torch.randn(1, 3, V, generator=_gen(16)), MASK)
    x_t = torch.tensor([[MASK, 2, MASK]])
    s, t = 0.2, 0.6
    p = reverse_probs(x_t, x0_probs, s, t, schedule, MASK)
    reveal = float((schedule.alpha(s) - schedule.alpha(t)) / (1 - schedule.alpha(t)))
    torch.testing.assert_close(p.sum(-1), torch.ones(1, 3, dtype=torch.float64))
    for pos in (0, 2):
        expected = reveal * x0_probs[0, pos]
        expected[MASK] = 1 - reveal
        torch.testing.assert_close(p[0, pos], expected)
    torch.testing.assert_close(p[0, 1], torch.eye(V, dtype=torch.float64)[2])  # unmasked: carried over


def test_categorical_kl_against_definition():
    g = _gen(17)
    p = torch.softmax(torch.randn(4, 6, generator=g), -1).double()
    q = torch.softmax(torch.randn(4, 6, generator=g), -1).double()
    expected = torch.tensor([sum(p[i, j] * math.log(p[i, j] / q[i, j]) for j in range(6)) for i in range(4)],
                            dtype=torch.float64)
    torch.testing.assert_close(categorical_kl(p, q), expected)
    torch.testing.assert_close(categorical_kl(p, p), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-15)
    # 0 log 0 = 0, and zeros of p may meet zeros of q
    p0 = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    q0 = torch.tensor([0.0, 0.25, 0.75], dtype=torch.float64)
    assert categorical_kl(p0, q0).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75))


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reverse_kl_closed_form_equals_kl_of_the_distributions(schedule, seed):
    # Eq. 7: KL(q(x_s | x_t, x_0) || p_theta(x_s | x_t)) in closed form equals the KL computed by definition.
    B, L, vocab, mask_id = 4, 6, 7, 3
    x0 = _random_x0(B, L, seed=seed, vocab=vocab, mask_id=mask_id)
    x_t = _random_xt(x0, seed=seed + 50, mask_id=mask_id)
    x0_probs = denoiser_probs(3 * torch.randn(B, L, vocab, generator=_gen(seed + 100)), mask_id)
    s = torch.tensor([0.0, 0.1, 0.4, 0.7], dtype=torch.float64)
    t = torch.tensor([0.3, 0.9, 0.5, 1.0], dtype=torch.float64)
    closed = reverse_kl(x_t, x0, x0_probs, s, t, schedule, mask_id)
    direct = categorical_kl(posterior_probs(x_t, x0, s, t, schedule, mask_id, vocab),
                            reverse_probs(x_t, x0_probs, s, t, schedule, mask_id))
    assert closed.shape == (B, L)
    torch.testing.assert_close(closed, direct, rtol=1e-12, atol=1e-14)
    assert (closed[x_t != mask_id] == 0).all()
    assert (closed[x_t == mask_id] > 0).all()


def test_reverse_kl_scalar_times():
    x0 = torch.tensor([[1, 2]])
    x_t = torch.tensor([[MASK, MASK]])
    x0_probs = torch.tensor([[[0.1, 0.6, 0.3, 0.0, 0.0], [0.25, 0.25, 0.5, 0.0, 0.0]]], dtype=torch.float64)
    kl = reverse_kl(x_t, x0, x0_probs, 0.5, 0.75, LinearSchedule(), MASK)
    reveal = (0.5 - 0.25) / 0.75
    torch.testing.assert_close(kl, torch.tensor([[-reveal * math.log(0.6), -reveal * math.log(0.5)]],
                                                dtype=torch.float64))


# ----------------------------------------------------------------------------- errors


def test_times_out_of_range_name_the_argument():
    x0 = torch.tensor([[0, 1]])
    sch = LinearSchedule()
    with pytest.raises(ValueError, match="^t must lie in"):
        sample_xt(x0, 1.5, sch, MASK)
    with pytest.raises(ValueError, match="^t must lie in"):
        forward_probs(x0, -0.1, sch, MASK, V)
    with pytest.raises(ValueError, match="^t must lie in"):
        forward_probs(x0, math.nan, sch, MASK, V)
    with pytest.raises(ValueError, match="^s must lie in"):
        transition_probs(x0, -0.5, 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match="^t must lie in"):
        transition_probs(x0, 0.2, 1.2, sch, MASK, V)
    with pytest.raises(ValueError, match="^s must lie in"):
        posterior_probs(x0, x0, math.nan, 0.5, sch, MASK, V)


def test_s_greater_than_t_raises():
    sch = LinearSchedule()
    x0 = torch.tensor([[0, 1]])
    x_t = torch.tensor([[MASK, 1]])
    probs = torch.eye(V, dtype=torch.float64)[x0]
    with pytest.raises(ValueError, match="^s must not exceed t"):
        transition_probs(x0, 0.6, 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match="^s must not exceed t"):
        posterior_probs(x_t, x0, 0.6, 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match="^s must not exceed t"):
        reverse_probs(x_t, probs, 0.6, 0.5, sch, MASK)
    with pytest.raises(ValueError, match="^s must not exceed t"):
        reverse_kl(x_t, x0, probs, 0.6, 0.5, sch, MASK)
    # per row: one offending row suffices
    with pytest.raises(ValueError, match="^s must not exceed t"):
        transition_probs(torch.tensor([[0], [1]]), torch.tensor([0.1, 0.9]), torch.tensor([0.5, 0.5]), sch, MASK, V)


def test_degenerate_times_raise():
    sch = LinearSchedule()
    x0 = torch.tensor([[0, 1]])
    x_t = torch.tensor([[MASK, 1]])
    with pytest.raises(ValueError, match="^s must satisfy alpha"):
        transition_probs(x0, 1.0, 1.0, sch, MASK, V)
    with pytest.raises(ValueError, match="^t must satisfy alpha"):
        posterior_probs(x_t, x0, 0.0, 0.0, sch, MASK, V)
    with pytest.raises(ValueError, match="^t must satisfy alpha"):
        reverse_probs(x_t, torch.eye(V, dtype=torch.float64)[x0], 0.0, 0.0, sch, MASK)


def test_x0_containing_the_mask_raises():
    sch = LinearSchedule()
    bad = torch.tensor([[0, MASK]])
    good = torch.tensor([[0, 1]])
    with pytest.raises(ValueError, match="^x0 is clean data"):
        sample_xt(bad, 0.5, sch, MASK)
    with pytest.raises(ValueError, match="^x0 is clean data"):
        forward_probs(bad, 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match="^x0 is clean data"):
        posterior_probs(good, bad, 0.2, 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match="^x0 is clean data"):
        reverse_kl(good, bad, torch.full((1, 2, V), 0.25, dtype=torch.float64), 0.2, 0.5, sch, MASK)


def test_bad_token_tensors_raise():
    sch = LinearSchedule()
    with pytest.raises(ValueError, match=r"^x0 must be a torch.long \(int64\) tensor of token ids"):
        sample_xt(torch.zeros(2, 3), 0.5, sch, MASK)
    with pytest.raises(ValueError, match=r"^x0 must be a torch.long \(int64\) tensor of token ids"):
        forward_probs([[0, 1]], 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match="^x0 holds negative ids"):
        sample_xt(torch.tensor([[0, -1]]), 0.5, sch, MASK)
    with pytest.raises(ValueError, match=r"^x0 holds ids outside \[0, 4\]"):
        forward_probs(torch.tensor([[0, 5]]), 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match="^x_s holds ids outside"):
        transition_probs(torch.tensor([[0, 9]]), 0.2, 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match="^x_t holds negative ids"):
        reverse_probs(torch.tensor([[-1]]), torch.full((1, 1, V), 0.0, dtype=torch.float64), 0.2, 0.5, sch, MASK)


@pytest.mark.parametrize("mask_id", [V, V + 3, -1, 2.0, None])
def test_mask_id_outside_the_vocabulary_raises(mask_id):
    sch = LinearSchedule()
    x0 = torch.tensor([[0, 1]])
    probs = torch.full((1, 2, V), 0.25, dtype=torch.float64)
    probs[..., 4] = 0.0
    error = r"^mask_id must be (an int in \[0, 4\] \(vocab_size = 5\)|a non-negative int \(the mask token's id\)); got "
    with pytest.raises(ValueError, match=error):
        forward_probs(x0, 0.5, sch, mask_id, V)
    with pytest.raises(ValueError, match=error):
        transition_probs(x0, 0.2, 0.5, sch, mask_id, V)
    with pytest.raises(ValueError, match=error):
        posterior_probs(x0, x0, 0.2, 0.5, sch, mask_id, V)
    with pytest.raises(ValueError, match=error):
        denoiser_probs(torch.zeros(1, 2, V), mask_id)


@pytest.mark.parametrize("mask_id", [V, V + 3])
def test_reverse_probs_rejects_mask_id_outside_the_vocabulary(mask_id):
    # The vocabulary is x0_probs.shape[-1] = V; a mask id >= V is not a valid index of the
    # probability vectors and must be a ValueError naming mask_id (as in every other function).
    probs = torch.full((1, 2, V), 0.2, dtype=torch.float64)
    with pytest.raises(ValueError, match="mask_id"):
        reverse_probs(torch.tensor([[0, 1]]), probs, 0.2, 0.5, LinearSchedule(), mask_id)


@pytest.mark.parametrize("mask_id", [V, V + 3])
def test_reverse_kl_rejects_mask_id_outside_the_vocabulary(mask_id):
    # With a mask id outside [0, V) no position of x_t can be "masked", and the KL would silently be 0:
    # the function must refuse it like the others do.
    probs = torch.full((1, 2, V), 0.2, dtype=torch.float64)
    x0 = torch.tensor([[0, 1]])
    x_t = torch.tensor([[mask_id, 1]])
    with pytest.raises(ValueError, match="mask_id"):
        reverse_kl(x_t, x0, probs, 0.2, 0.5, LinearSchedule(), mask_id)


def test_x0_probs_with_mass_on_the_mask_raises():
    probs = torch.full((1, 2, V), 0.2, dtype=torch.float64)  # uniform, including the mask
    with pytest.raises(ValueError, match="^x0_probs must put zero probability on mask_id"):
        reverse_probs(torch.tensor([[MASK, 1]]), probs, 0.2, 0.5, LinearSchedule(), MASK)


def test_shape_mismatches_raise():
    sch = LinearSchedule()
    x0 = torch.tensor([[0, 1, 2]])
    probs = denoiser_probs(torch.zeros(1, 3, V), MASK)
    with pytest.raises(ValueError, match=r"^x_t and x0 must have the same shape"):
        posterior_probs(torch.tensor([[MASK, 1]]), x0, 0.2, 0.5, sch, MASK, V)
    with pytest.raises(ValueError, match=r"^x0_probs must have shape \(B, L, V\)"):
        reverse_probs(torch.tensor([[MASK, 1]]), probs, 0.2, 0.5, sch, MASK)
    with pytest.raises(ValueError, match=r"^x_t and x0 must have the same shape"):
        reverse_kl(torch.tensor([[MASK, 1]]), x0, probs, 0.2, 0.5, sch, MASK)
    with pytest.raises(ValueError, match=r"^p and q must have the same shape"):
        categorical_kl(torch.ones(3) / 3, torch.ones(4) / 4)


def test_reverse_kl_rejects_x0_probs_of_the_wrong_shape():
    # x0_probs must be (B, L, V) with (B, L) = x0.shape; with a longer L the gather silently reads the
    # first positions and returns a number that belongs to no pair of distributions.
    x0 = torch.tensor([[0, 1, 2]])
    x_t = torch.tensor([[MASK, 1, MASK]])
    probs = denoiser_probs(torch.zeros(1, 4, V), MASK)  # L = 4, not 3
    with pytest.raises(ValueError, match="x0_probs"):
        reverse_kl(x_t, x0, probs, 0.2, 0.5, LinearSchedule(), MASK)


def test_unreachable_x_t_raises():
    with pytest.raises(ValueError, match="^x_t is not reachable from x0"):
        posterior_probs(torch.tensor([[2, MASK]]), torch.tensor([[1, 0]]), 0.2, 0.5, LinearSchedule(), MASK, V)


@pytest.mark.parametrize("bad_t", [torch.tensor([0.5, 0.5, 0.5]), torch.tensor([[0.5], [0.5]]),
                                   torch.tensor([0.5]), torch.full((2, 3), 0.5)])
def test_times_of_the_wrong_shape_raise(bad_t):
    sch = LinearSchedule()
    x0 = torch.tensor([[0, 1, 2], [1, 2, 3]])  # B = 2
    x_t = torch.tensor([[MASK, 1, 2], [1, MASK, 3]])
    probs = torch.eye(V, dtype=torch.float64)[x0]
    with pytest.raises(ValueError, match=r"^t must be a float or a tensor of shape \(B,\) = \(2,\)"):
        sample_xt(x0, bad_t, sch, MASK)
    with pytest.raises(ValueError, match=r"^t must be a float or a tensor of shape \(B,\)"):
        forward_probs(x0, bad_t, sch, MASK, V)
    with pytest.raises(ValueError, match=r"^t must be a float or a tensor of shape \(B,\)"):
        transition_probs(x_t, 0.0, bad_t, sch, MASK, V)
    with pytest.raises(ValueError, match=r"^s must be a float or a tensor of shape \(B,\)"):
        transition_probs(x_t, bad_t * 0, 1.0, sch, MASK, V)
    with pytest.raises(ValueError, match=r"^t must be a float or a tensor of shape \(B,\)"):
        posterior_probs(x_t, x0, 0.0, bad_t, sch, MASK, V)
    with pytest.raises(ValueError, match=r"^t must be a float or a tensor of shape \(B,\)"):
        reverse_probs(x_t, probs, 0.0, bad_t, sch, MASK)
    with pytest.raises(ValueError, match=r"^t must be a float or a tensor of shape \(B,\)"):
        reverse_kl(x_t, x0, probs, 0.0, bad_t, sch, MASK)
