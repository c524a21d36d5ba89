"""Tests of maskdiff_tutor.objectives.masked_diffusion_loss: against the continuous-time NELBO
of maskdiff_tutor.nelbo with the exact toy oracle, against a brute-force recomputation of its
parts, padding, gradients, the time input, and its argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import RandomLogits

from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
from maskdiff_tutor.nelbo import continuous_nelbo
from maskdiff_tutor.objectives import LossParts, masked_diffusion_loss
from maskdiff_tutor.schedules import CosineSchedule, LinearSchedule, PolynomialSchedule

SCHEDULES = [pytest.param(LinearSchedule(), id="linear"), pytest.param(CosineSchedule(), id="cosine"),
             pytest.param(PolynomialSchedule(exponent=2.0), id="poly2")]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("antithetic", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_loss_is_the_continuous_nelbo_per_token_with_the_oracle(toy, oracle, schedule, antithetic, seed):
    # Same generator seed: the same times and the same x_t, so one Monte Carlo sample each, equal
    # up to the float32 weight of the loss. The oracle's float64 logits keep the loss in float64
    # (half-precision logits are raised to float32; see test_loss_precision_follows_the_logits).
    x0 = toy.data[torch.randint(0, 100, (64,), generator=_gen(100 + seed))]
    parts = masked_diffusion_loss(oracle, x0, schedule, toy.mask_id, _gen(seed), antithetic=antithetic)
    estimate = continuous_nelbo(oracle, x0, schedule, toy.mask_id, _gen(seed), antithetic=antithetic)
    assert isinstance(parts, LossParts) and parts.loss.dtype == torch.float64
    assert torch.equal(parts.t, estimate.t)
    assert torch.equal(parts.masked, estimate.x_t == toy.mask_id)
    assert parts.num_tokens == x0.numel()
    torch.testing.assert_close(parts.loss.double(), estimate.value / x0.shape[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts.nll.double(), estimate.nll, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts.weight.double(), estimate.weight, rtol=1e-6, atol=0)


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("antithetic", [True, False])
def test_loss_against_a_brute_force_recomputation(weighted, antithetic):
    # Re-draw the times and masks from an identically seeded generator, exactly as documented,
    # and recompute the loss position by position.
    length, vocab, mask = 6, 9, 8
    model, schedule = RandomLogits(length, vocab), CosineSchedule()
    x0 = torch.randint(0, mask, (10, length), generator=_gen(3))
    parts = masked_diffusion_loss(model, x0, schedule, mask, _gen(4), weighted=weighted, antithetic=antithetic)

    g = _gen(4)
    if antithetic:
        u = torch.rand((), generator=g, dtype=torch.float64)
        t = 1 - torch.remainder(u + torch.arange(10, dtype=torch.float64) / 10, 1.0)
    else:
        t = 1 - torch.rand(10, generator=g, dtype=torch.float64)
    draws = torch.rand(x0.shape, generator=g, dtype=torch.float64)
    total = 0.0
    for b in range(10):
        alpha = float(schedule.alpha(t[b]))
        w = float(schedule.weight(t[b])) if weighted else 1.0
        x_t = x0[b].clone()
        x_t[draws[b] < 1 - alpha] = mask
        logits = model.table[torch.arange(length), x_t].double()
        logits[:, mask] = -math.inf
        log_p = torch.log_softmax(logits, -1)
        for position in range(length):
            assert bool(parts.masked[b, position]) == (int(x_t[position]) == mask)
            expected = -float(log_p[position, x0[b, position]]) if x_t[position] == mask else 0.0
            assert parts.nll[b, position].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
            total += w * expected
        assert parts.weight[b].item() == pytest.approx(w, rel=1e-6)
    assert torch.equal(parts.t, t)
    assert parts.loss.item() == pytest.approx(total / x0.numel(), rel=1e-5)


def test_unweighted_loss_is_the_summed_nll_per_token():
    model = RandomLogits(5, 7)
    x0 = torch.randint(0, 6, (16, 5), generator=_gen(0))
    parts = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1), weighted=False)
    assert torch.equal(parts.weight, torch.ones(16))
    assert parts.num_tokens == 80
    assert parts.loss.item() == (parts.nll.sum() / parts.num_tokens).item()
    assert (parts.nll[~parts.masked] == 0).all() and (parts.nll[parts.masked] > 0).all()


def test_weighted_and_unweighted_see_the_same_masks():
    model = RandomLogits(5, 7)
    x0 = torch.randint(0, 6, (16, 5), generator=_gen(0))
    weighted = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1), weighted=True)
    unweighted = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1), weighted=False)
    assert torch.equal(weighted.masked, unweighted.masked) and torch.equal(weighted.nll, unweighted.nll)
    torch.testing.assert_close(weighted.weight, (1 / weighted.t).float())  # linear schedule: w(t) = 1/t


def test_the_mask_logit_is_ignored():
    # A huge logit on the mask changes nothing: a clean token is never the mask.
    model = RandomLogits(5, 7)
    boosted = RandomLogits(5, 7)
    boosted.table[..., 6] = 1e4
    x0 = torch.randint(0, 6, (8, 5), generator=_gen(0))
    a = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1))
    b = masked_diffusion_loss(boosted, x0, LinearSchedule(), 6, _gen(1))
    assert torch.equal(a.loss, b.loss)


def test_same_seed_same_loss_and_different_seed_different_masks():
    model = RandomLogits(5, 7)
    x0 = torch.randint(0, 6, (32, 5), generator=_gen(0))
    a = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1))
    b = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1))
    c = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(2))
    assert torch.equal(a.loss, b.loss) and torch.equal(a.masked, b.masked)
    assert not torch.equal(a.masked, c.masked)


# ----------------------------------------------------------------------------- padding


def test_padding_is_never_masked_and_never_counted():
    length, vocab, mask, pad = 6, 9, 8, 7
    x0 = torch.randint(0, pad, (200, length), generator=_gen(5))
    lengths = torch.randint(1, length + 1, (200,), generator=_gen(6))
    padding = torch.arange(length) >= lengths.unsqueeze(1)  # (B, L) the tail of each row
    x0[padding] = pad
    assert padding.any()
    model = RandomLogits(length, vocab)
    parts = masked_diffusion_loss(model, x0, LinearSchedule(), mask, _gen(7), pad_id=pad)
    assert parts.num_tokens == int((~padding).sum())
    assert not (parts.masked & padding).any()
    (x_t,) = model.calls[-1]
    assert torch.equal(x_t[padding], x0[padding])  # the model saw the padding itself
    assert (parts.nll[padding] == 0).all()
    # brute force: the weighted NLL of masked non-padding tokens over the number of non-padding tokens
    expected = (parts.weight.double().unsqueeze(-1) * parts.nll.double()).sum() / int((~padding).sum())
    assert parts.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # the same draws without pad_id do mask some padding: the check above could fail
    unpadded = masked_diffusion_loss(model, x0, LinearSchedule(), mask, _gen(7))
    assert (unpadded.masked & padding).any()
    assert unpadded.num_tokens == x0.numel()
    assert torch.equal(unpadded.masked & ~padding, parts.masked)


# ----------------------------------------------------------------------------- gradients and time input


def _small_denoiser(**overrides) -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(DenoiserConfig(vocab_size=9, max_seq_len=6, d_model=16, n_layers=1, n_heads=2, **overrides))


@pytest.mark.parametrize("weighted", [True, False])
def test_gradients_flow_to_every_parameter(weighted):
    model = _small_denoiser()
    x0 = torch.randint(0, 8, (16, 6), generator=_gen(0))
    parts = masked_diffusion_loss(model, x0, LinearSchedule(), 8, _gen(1), weighted=weighted)
    assert parts.loss.requires_grad and not parts.nll.requires_grad
    parts.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0
    assert model.embed.weight.grad.abs().amax() > 0


def test_time_input_calls_the_model_with_t():
    model = RandomLogits(5, 7)
    x0 = torch.randint(0, 6, (8, 5), generator=_gen(0))
    parts = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1), time_input=True)
    x_t, t = model.calls[-1]
    assert t.dtype == torch.float32 and torch.equal(t, parts.t.float())
    assert torch.equal(x_t == 6, parts.masked)
    # without time_input the model gets x_t alone
    masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1))
    assert len(model.calls[-1]) == 1


def test_time_conditioned_denoiser_trains_with_time_input():
    model = _small_denoiser(time_conditioning=True)
    x0 = torch.randint(0, 8, (8, 6), generator=_gen(0))
    parts = masked_diffusion_loss(model, x0, LinearSchedule(), 8, _gen(1), time_input=True)
    parts.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.time_mlp.parameters())
    with pytest.raises(ValueError, match="t is required"):
        masked_diffusion_loss(model, x0, LinearSchedule(), 8, _gen(1))


def test_float32_cross_entropy_matches_float64_reference():
    # The loss uses float32 logits; a float64 cross-entropy gives the same value to float32 precision.
    model = RandomLogits(5, 7)
    x0 = torch.randint(0, 6, (8, 5), generator=_gen(0))
    parts = masked_diffusion_loss(model, x0, LinearSchedule(), 6, _gen(1), weighted=False)
    (x_t,) = model.calls[-1]
    logits = model(x_t).double()
    logits[..., 6] = -math.inf
    nll = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none") * (x_t == 6)
    torch.testing.assert_close(parts.nll.double(), nll, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_x0_containing_the_mask_raises():
    x0 = torch.zeros(2, 5, dtype=torch.long)
    x0[1, 3] = 6
    with pytest.raises(ValueError, match="x0 .*mask id 6"):
        masked_diffusion_loss(RandomLogits(5, 7), x0, LinearSchedule(), 6, _gen(0))


def test_the_inputs_are_checked_once(monkeypatch):
    # x0 enters once; the times and masks drawn for it are not checked again
    from maskdiff_tutor import _checks, forward_process, objectives, schedules

    calls = []
    for module in (forward_process, objectives, schedules):
        for name in ("check_tokens", "check_times"):
            if hasattr(module, name):
                original = getattr(_checks, name)
                monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    masked_diffusion_loss(RandomLogits(5, 7), torch.zeros(3, 5, dtype=torch.long), CosineSchedule(), 6, _gen(0))
    assert calls == ["check_tokens"]


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (0, 0)])
def test_empty_x0_raises(shape):
    with pytest.raises(ValueError, match="x0 must be a non-empty batch"):
        masked_diffusion_loss(RandomLogits(5, 7), torch.zeros(shape, dtype=torch.long), LinearSchedule(), 6, _gen(0))


@pytest.mark.parametrize("x0", [torch.zeros(5, dtype=torch.long), torch.zeros(1, 2, 5, dtype=torch.long)],
                         ids=["1d", "3d"])
def test_x0_of_the_wrong_rank_raises(x0):
    with pytest.raises(ValueError, match=r"x0 must be a non-empty batch of shape \(B, L\)"):
        masked_diffusion_loss(RandomLogits(5, 7), x0, LinearSchedule(), 6, _gen(0))


@pytest.mark.parametrize("x0", [torch.zeros(2, 5), torch.full((2, 5), -1)], ids=["float", "negative"])
def test_x0_that_is_not_token_ids_raises(x0):
    with pytest.raises(ValueError, match="x0"):
        masked_diffusion_loss(RandomLogits(5, 7), x0, LinearSchedule(), 6, _gen(0))


@pytest.mark.parametrize("dtype, expected", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                             (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_loss_precision_follows_the_logits(dtype, expected):
    # Autocast's half-precision logits are raised to float32; float64 logits (a model measured in
    # float64, the oracle) are not lowered.
    model = RandomLogits(4, 6)
    x0 = torch.randint(0, 5, (3, 4), generator=_gen(0))
    parts = masked_diffusion_loss(lambda x: model(x).to(dtype), x0, CosineSchedule(), 5, _gen(1))
    assert parts.loss.dtype == expected and parts.nll.dtype == expected
