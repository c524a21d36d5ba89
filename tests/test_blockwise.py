"""Blockwise training: the block-causal mask against a brute-force rule, and the one-pass
(vectorised) loss against its per-block loop, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import RandomLogits

from maskdiff_tutor import blockwise
from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
from maskdiff_tutor.schedules import CosineSchedule, LinearSchedule

MASK = 10
LINEAR = LinearSchedule()


def model(n_layers=2, rotary=False, seed=0):
    torch.manual_seed(seed)
    return Denoiser(DenoiserConfig(vocab_size=MASK + 1, max_seq_len=24, d_model=32, n_layers=n_layers, n_heads=2,
                                   rotary=rotary)).eval()


def batch(seq_len=24, block_length=4, seed=0, schedule=LINEAR):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, MASK, (3, seq_len), generator=g)
    x_t, t = blockwise.sample_block_noise(x0, block_length, schedule, MASK, g)
    return x0, x_t, t


@pytest.mark.parametrize("seq_len,block_length", [(4, 1), (6, 2), (8, 4), (8, 8)])
def test_vectorised_mask_against_the_rule_written_out(seq_len, block_length):
    mask = blockwise.vectorised_mask(seq_len, block_length)
    for q in range(2 * seq_len):
        for k in range(2 * seq_len):
            q_clean, k_clean = q >= seq_len, k >= seq_len
            qb, kb = (q % seq_len) // block_length, (k % seq_len) // block_length
            # a clean query sees clean keys up to its block; a noisy one noisy keys of its block, clean ones before
            allowed = (k_clean and kb <= qb) if q_clean else ((not k_clean and kb == qb) or (k_clean and kb < qb))
            assert bool(mask[q, k]) == allowed, (q, k)


@pytest.mark.parametrize("block_length", [1, 2, 4, 8, 24])
@pytest.mark.parametrize("rotary", [False, True])
def test_one_pass_equals_the_per_block_loop(block_length, rotary):
    net = model(rotary=rotary)
    x0, x_t, t = batch(block_length=block_length)
    fast = blockwise.blockwise_loss(net, x0, x_t, t, block_length, LinearSchedule(), MASK)
    slow = blockwise.blockwise_loss_loop(net, x0, x_t, t, block_length, LinearSchedule(), MASK)
    torch.testing.assert_close(fast.nll, slow.nll, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.loss, slow.loss, rtol=1e-5, atol=1e-6)


def test_one_pass_and_loop_give_the_same_gradients():
    x0, x_t, t = batch(block_length=6, schedule=CosineSchedule())
    grads = []
    for loss_fn in (blockwise.blockwise_loss, blockwise.blockwise_loss_loop):
        net = model().train()
        loss_fn(net, x0, x_t, t, 6, CosineSchedule(), MASK).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_the_papers_scheme_differs_once_the_prefix_is_processed_by_two_layers():
    x0, x_t, t = batch(block_length=4)
    for n_layers, same in ((1, True), (2, False)):
        net = model(n_layers=n_layers)
        literal = blockwise.blockwise_loss_loop(net, x0, x_t, t, 4, LinearSchedule(), MASK, causal_prefix=False)
        causal = blockwise.blockwise_loss_loop(net, x0, x_t, t, 4, LinearSchedule(), MASK, causal_prefix=True)
        # with one layer the prefix's keys and values are its embeddings, untouched by the noisy block
        assert torch.allclose(literal.nll, causal.nll, atol=1e-5) == same


def test_a_single_block_is_the_ordinary_bidirectional_loss():
    net = model()
    x0, x_t, t = batch(block_length=24)
    parts = blockwise.blockwise_loss(net, x0, x_t, t, 24, LinearSchedule(), MASK)
    logits = net(x_t).index_fill(-1, torch.tensor([MASK]), float("-inf"))
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x0, reduction="none")
    torch.testing.assert_close(parts.nll, torch.where(x_t == MASK, nll, torch.zeros_like(nll)).detach(),
                               rtol=1e-5, atol=1e-5)


def test_each_block_is_masked_at_its_own_rate():
    g = torch.Generator().manual_seed(1)
    x0 = torch.zeros(4000, 8, dtype=torch.long)
    x_t, t = blockwise.sample_block_noise(x0, 4, LinearSchedule(), MASK, g)
    assert t.shape == (4000, 2)
    masked = (x_t == MASK).double().view(4000, 2, 4).mean(-1)  # (4000, 2) per-block mask rate
    # E[mask rate | t] = t for the linear schedule: regress the rate on t
    residual = masked - t
    assert abs(residual.mean().item()) < 4 * residual.std().item() / 8000**0.5
    assert (t > 0).all() and (t <= 1).all()


def test_lengths_that_do_not_split_into_blocks_are_refused():
    with pytest.raises(ValueError, match="block_length"):
        blockwise.vectorised_mask(10, 4)
    x0 = torch.zeros(2, 10, dtype=torch.long)
    with pytest.raises(ValueError, match="divisible by block_length"):
        blockwise.sample_block_noise(x0, 3, LinearSchedule(), MASK)
    with pytest.raises(ValueError, match="block_length"):
        blockwise.sample_block_noise(x0, 0, LinearSchedule(), MASK)


# ----------------------------------------------------------------------------- semi-AR NELBO


@pytest.mark.parametrize("block_length", [1, 5])
def test_semi_ar_nelbo_of_the_exact_toy_oracle_is_the_true_nll(toy, oracle, block_length):
    x0 = toy.data  # (100, 5) every sequence once; each has probability 1/100
    estimate = blockwise.semi_autoregressive_nelbo(oracle, x0, block_length, LinearSchedule(), toy.mask_id,
                                         torch.Generator().manual_seed(block_length), repeats=400)
    assert estimate.mean().item() == pytest.approx(math.log(100) / 5, rel=0.03)


def test_semi_ar_nelbo_with_blocks_of_one_is_the_left_to_right_nll_written_out():
    model, mask, length = RandomLogits(6, 5), 4, 6
    x0 = torch.randint(0, 4, (3, length), generator=torch.Generator().manual_seed(0))
    exact = torch.zeros(3, dtype=torch.float64)
    for i in range(length):  # -log p(x_i | x_<i, masks after): the model decoding left to right
        x_t = torch.cat([x0[:, :i], torch.full((3, length - i), mask)], 1)
        logits = model(x_t)[:, i].double()
        logits[:, mask] = -torch.inf
        exact -= torch.log_softmax(logits, -1).gather(-1, x0[:, i:i + 1]).squeeze(-1)
    estimate = blockwise.semi_autoregressive_nelbo(model, x0, 1, LinearSchedule(), mask,
                                                   torch.Generator().manual_seed(1), repeats=6000)
    assert torch.allclose(estimate, exact / length, rtol=0.05)


def test_semi_ar_nelbo_checks_its_arguments():
    x0 = torch.zeros(2, 6, dtype=torch.long)
    with pytest.raises(ValueError, match=r"divisible by block_length \(4\)"):
        blockwise.semi_autoregressive_nelbo(RandomLogits(6, 5), x0, 4, LinearSchedule(), 4)
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        blockwise.semi_autoregressive_nelbo(RandomLogits(6, 5), x0, 2, LinearSchedule(), 4, repeats=0)
    bad_batches = (torch.zeros(0, 6, dtype=torch.long), torch.zeros(3, 0, dtype=torch.long),
                   torch.zeros(6, dtype=torch.long))
    for bad in bad_batches:  # the NELBO estimators' one message, L = 0 included
        with pytest.raises(ValueError, match=r"^x0 must have shape \(B, L\) with B >= 1 and L >= 1; got "):
            blockwise.semi_autoregressive_nelbo(RandomLogits(6, 5), bad, 2, LinearSchedule(), 4)
        with pytest.raises(ValueError, match=r"^x0 must have shape \(B, L\) with B >= 1 and L >= 1; got "):
            blockwise.sample_block_noise(bad, 2, LinearSchedule(), 4)


def test_semi_ar_nelbo_refuses_logits_that_give_no_distribution_where_it_needs_one():
    x0 = torch.zeros(2, 6, dtype=torch.long)

    def nan_logits(x):
        return torch.full((*x.shape, 5), float("nan"))

    undefined = r"^the denoiser's logits give no distribution .* at batch row \d, position \d of its input x_t"
    with pytest.raises(ValueError, match=undefined):
        blockwise.semi_autoregressive_nelbo(nan_logits, x0, 2, LinearSchedule(), 4, torch.Generator().manual_seed(0))


def test_semi_ar_nelbo_is_not_changed_by_a_model_that_edits_its_input():
    x0 = torch.randint(4, (3, 6), generator=torch.Generator().manual_seed(0))
    model = RandomLogits(6, 5)

    def editing(x):
        logits = model(x)
        x.fill_(0)  # a careless model overwrites its input
        return logits

    def estimate(denoiser):
        return blockwise.semi_autoregressive_nelbo(denoiser, x0, 2, LinearSchedule(), 4,
                                                   torch.Generator().manual_seed(3), repeats=4)

    assert torch.equal(estimate(editing), estimate(model))


def test_the_inputs_are_checked_once(monkeypatch):
    # x0 and the times enter once: the forward process, the schedule and the objective trust them
    from maskdiff_tutor import _checks, forward_process, nelbo, objectives, schedules

    calls = []
    for module in (blockwise, forward_process, nelbo, objectives, schedules):
        for name in ("check_tokens", "check_times"):
            if hasattr(module, name):
                original = getattr(_checks, name)
                monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    x0 = torch.zeros(2, 6, dtype=torch.long)
    blockwise.semi_autoregressive_nelbo(RandomLogits(6, 5), x0, 2, LinearSchedule(), 4, repeats=3)
    assert calls == ["check_tokens"]
    calls.clear()
    x_t, t = blockwise.sample_block_noise(x0, 2, CosineSchedule(), 4, torch.Generator().manual_seed(0))
    assert calls == ["check_tokens"]
    calls.clear()
    blockwise.blockwise_loss(model(n_layers=1), x0, x_t, t, 2, CosineSchedule(), 4)
    assert calls == ["check_times"]
