"""Tests of the training objectives of maskdiff_tutor.train (random masking, blockwise,
the paper's literal blockwise scheme, left to right): each loss against its reference written
out, the unit of equal compute counted by brute force, exact repeatability, each objective
learning a deterministic language, and the argument checks."""

from __future__ import annotations

import pytest
import torch

from maskdiff_tutor.blockwise import blockwise_loss_loop, sample_block_noise
from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
from maskdiff_tutor.schedules import LinearSchedule
from maskdiff_tutor.train import OBJECTIVES, TrainConfig, forward_tokens_per_sequence, train, training_loss

V, MASK, L = 6, 5, 8


def _model(seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(DenoiserConfig(vocab_size=V, max_seq_len=L, d_model=16, n_layers=2, n_heads=2))


def _data(n: int = 64) -> torch.Tensor:
    """A deterministic language: x_{i+1} = x_i + 1 mod 5, from a random first token."""
    first = torch.randint(0, 5, (n, 1), generator=torch.Generator().manual_seed(0))
    return (first + torch.arange(L)) % 5  # (n, L)


def test_left_to_right_is_the_next_token_nll_written_out():
    model, x0 = _model(), _data(4)
    parts = training_loss(model, x0, TrainConfig(objective="left_to_right"), LinearSchedule(), MASK)
    expected = []
    with torch.no_grad():
        for i in range(L):  # position i sees x0[:i] clean and itself masked, nothing after it
            inputs = torch.cat([x0[:, :i], torch.full((4, 1), MASK)], dim=1)
            clean = torch.arange(i + 1) < i
            causal = clean.unsqueeze(0) | (torch.arange(i + 1) == i).unsqueeze(-1)  # (i + 1, i + 1)
            lower = torch.tril(torch.ones(i + 1, i + 1, dtype=torch.bool))
            causal = causal & (clean.unsqueeze(-1).logical_not() | lower)
            logits = model(inputs, attn_mask=causal, position_ids=torch.arange(i + 1))[:, i].clone()
            logits[:, MASK] = -torch.inf
            expected.append(-torch.log_softmax(logits, -1).gather(-1, x0[:, i:i + 1]).squeeze(-1))
    assert torch.allclose(parts.nll, torch.stack(expected, 1), atol=1e-5)
    assert parts.loss.item() == pytest.approx(torch.stack(expected).mean().item(), abs=1e-5)
    assert parts.masked.all()


@pytest.mark.parametrize("objective, causal_prefix", [("blockwise", True), ("blockwise_literal", False)])
def test_blockwise_objectives_are_their_loop_with_the_same_noise(objective, causal_prefix):
    model, x0, schedule = _model(), _data(4), LinearSchedule()
    config = TrainConfig(objective=objective, block_length=4)
    parts = training_loss(model, x0, config, schedule, MASK, torch.Generator().manual_seed(3))
    x_t, t = sample_block_noise(x0, 4, schedule, MASK, torch.Generator().manual_seed(3))
    reference = blockwise_loss_loop(model, x0, x_t, t, 4, schedule, MASK, causal_prefix=causal_prefix)
    assert torch.equal(parts.masked, reference.masked)
    assert parts.loss.item() == pytest.approx(reference.loss.item(), abs=1e-5)


@pytest.mark.parametrize("objective, block_length", [("random", None), ("blockwise", 2), ("blockwise", 8),
                                                     ("blockwise_literal", 2), ("blockwise_literal", 4),
                                                     ("left_to_right", None)])
def test_forward_tokens_per_sequence_counts_every_pass(objective, block_length):
    expected = {"random": L, "blockwise": 2 * L, "left_to_right": 2 * L}.get(objective)
    if objective == "blockwise_literal":  # pass j runs the j clean blocks before it and block j
        expected = sum((j + 1) * block_length for j in range(L // block_length))
    assert forward_tokens_per_sequence(objective, L, block_length) == expected


@pytest.mark.parametrize("objective, block_length",
                         [("blockwise", 2), ("blockwise_literal", 4), ("left_to_right", None)])
def test_each_objective_learns_a_deterministic_language(objective, block_length):
    model = _model()
    config = TrainConfig(steps=150, batch_size=32, lr=1e-2, warmup_steps=10, log_every=10,
                         objective=objective, block_length=block_length)
    history = train(model, _data(), MASK, config, progress=False)
    # after the first token everything is determined: the loss falls from ~log 5 per masked token
    assert history.loss[-1] < 0.35 * history.loss[0]


def test_same_seed_same_blockwise_training():
    config = TrainConfig(steps=5, batch_size=8, warmup_steps=1, log_every=1, objective="blockwise", block_length=2)
    runs = []
    for _ in range(2):
        model = _model()
        train(model, _data(), MASK, config, seed=4, progress=False)
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


@pytest.mark.parametrize("kwargs, match", [
    (dict(objective="causal"), "objective must be one of"),
    (dict(objective="blockwise"), "block_length must be an int >= 1"),
    (dict(objective="blockwise_literal", block_length=0), "block_length must be an int >= 1"),
    (dict(objective="random", block_length=4), "block_length is only for the blockwise objectives"),
    (dict(objective="left_to_right", block_length=1), "block_length is only for the blockwise objectives"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_objectives_are_documented():
    assert set(OBJECTIVES) == {"random", "blockwise", "blockwise_literal", "left_to_right"}


def test_block_length_must_divide_the_sequence():
    with pytest.raises(ValueError, match=r"sequence length \(8\) must be divisible by block_length \(3\)"):
        train(_model(), _data(), MASK, TrainConfig(steps=1, objective="blockwise", block_length=3), progress=False)


@pytest.mark.parametrize("objective", ["blockwise", "left_to_right"])
def test_blockwise_objectives_refuse_padding(objective):
    config = TrainConfig(steps=1, objective=objective, block_length=2 if objective == "blockwise" else None)
    with pytest.raises(ValueError, match="supports neither padding"):
        train(_model(), _data(), MASK, config, pad_id=0, progress=False)
