"""Tests of decoders.sample_with_remasking (left-to-right remasking, claim 10, Section 3.3): with no
remasking it is left-to-right decoding draw for draw; it fills every mask in exactly ``steps``
calls and never emits the mask; each call sees the schedule's number of masks, remasks only
tokens decoded earlier and decodes the leftmost masks; argument errors."""

from __future__ import annotations

import pytest
import torch
from helpers import RandomLogits

from maskdiff_tutor.decoders import sample_left_to_right, sample_with_remasking
from maskdiff_tutor.markov import ChainDenoiser, zipf_chain


@pytest.mark.parametrize("k", [1, 2, 4])
def test_no_remasking_is_left_to_right_decoding_draw_for_draw(k):
    P = zipf_chain(6, 1.5, torch.Generator().manual_seed(0))
    exact = ChainDenoiser(P, 9)
    x = torch.full((40, 9), exact.mask_id)
    x[:, 0] = torch.arange(40) % 6
    ours = sample_with_remasking(exact, x, exact.mask_id, 8 // k, 0.0, torch.Generator().manual_seed(2))
    plain = sample_left_to_right(exact, x, exact.mask_id, k, torch.Generator().manual_seed(2))
    assert torch.equal(ours.tokens, plain.tokens) and torch.equal(ours.order, plain.order) and ours.nfe == plain.nfe
    assert (ours.remasked == 0).all()


@pytest.mark.parametrize("steps, eta", [(1, 0.3), (3, 0.0), (4, 0.5), (8, 0.3), (8, 0.9)])
def test_every_mask_is_filled_in_exactly_steps_calls(steps, eta):
    model, m = RandomLogits(10, 7), 6
    x = torch.full((6, 10), m)
    x[:, 0], x[:3, 5] = 1, 4  # some sequences have a given token in the middle
    decoded = sample_with_remasking(model, x, m, steps, eta, torch.Generator().manual_seed(0))
    assert decoded.nfe == len(model.calls) == steps
    assert not (decoded.tokens == m).any()
    assert torch.equal(decoded.tokens[x != m], x[x != m]) and (decoded.order[x != m] == -1).all()


def test_each_call_follows_the_schedule_and_remasks_only_decoded_tokens():
    model, m, steps = RandomLogits(13, 7), 6, 5
    x = torch.full((8, 13), m)
    x[:, 0] = 3
    decoded = sample_with_remasking(model, x, m, steps, 0.4, torch.Generator().manual_seed(1))
    inputs = [call[0] for call in model.calls] + [decoded.tokens]
    total_remasked = torch.zeros(8, dtype=torch.long)
    for step in range(steps):
        before, after = inputs[step] == m, inputs[step + 1] == m  # (B, L)
        assert (before.sum(-1) == (12 * (steps - step)) // steps).all()  # the schedule, by hand
        again = after & ~before  # tokens masked again in this step
        assert not again[:, 0].any()  # never the prompt
        decoded_now = before & ~after
        for row in range(8):
            masks = before[row].nonzero().flatten()
            assert torch.equal(decoded_now[row].nonzero().flatten(), masks[: int(decoded_now[row].sum())])
        total_remasked += again.sum(-1)
    assert torch.equal(total_remasked, decoded.remasked) and decoded.remasked.sum() > 0
    assert (decoded.order[:, 1:] >= 0).all()


def test_remasking_decodes_more_tokens_than_there_are_masks():
    model, m = RandomLogits(33, 9), 8
    x = torch.full((50, 33), m)
    decoded = sample_with_remasking(model, x, m, 16, 0.2, torch.Generator().manual_seed(0))
    assert decoded.remasked.double().mean() > 5  # eta * (tokens decoded) per step, summed


def test_same_seed_same_result():
    model, m = RandomLogits(8, 7), 6
    x = torch.full((3, 8), m)
    runs = [sample_with_remasking(model, x, m, 4, 0.3, torch.Generator().manual_seed(9)).tokens for _ in range(2)]
    assert torch.equal(*runs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps must be an int >= 1"),
    (dict(eta=1.0), r"eta must be a finite number in \[0, 1\)"),
    (dict(eta=-0.2), r"eta must be a finite number in \[0, 1\)"),
    (dict(eta=True), r"eta must be a finite number in \[0, 1\)"),
    (dict(steps=5), r"steps \(5\) must not exceed the masks of any sequence \(the fewest here: 4\)"),
])
def test_bad_arguments_raise(kwargs, match):
    args = dict(steps=2, eta=0.1) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_with_remasking(RandomLogits(8, 7), torch.full((2, 4), 6), 6, **args)
