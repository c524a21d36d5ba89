"""Generation order with the exact denoiser: the order statistics, and the experiment's claims on a
small scale (the chapter runs the CI scale under nbval)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import ci_scale

from maskdiff_tutor import markov
from maskdiff_tutor.experiments import generation_order

SMALL = generation_order.Scale(vocab_size=16, s=2.0, function_words=2, lengths=(24,), samples=40,
                               tokens_per_step=(1, 4))


@pytest.fixture(scope="module")
def result():
    with ci_scale(generation_order, SMALL):
        return generation_order.run(scale="ci", seed=0)


def test_order_statistics_of_known_orders():
    forward = torch.tensor([[-1, 0, 1, 2, 3]])
    backward = torch.tensor([[-1, 3, 2, 1, 0]])
    stats = generation_order.order_statistics(forward, slice(1, None))
    assert stats == {"leftmost_share": 1.0, "rightmost_share": 0.25, "spearman_position_vs_step": 1.0}
    stats = generation_order.order_statistics(backward, slice(1, None))
    assert stats["rightmost_share"] == 1.0 and stats["spearman_position_vs_step"] == pytest.approx(-1.0)


def test_greedy_confidence_and_margin_are_left_to_right_on_the_chain(result):
    for name in ("confidence, greedy", "margin, sampled", "entropy, sampled"):
        row = generation_order.measured(result, "zipf chain", 24, name)
        assert row.leftmost_share == 1.0 and row.spearman_position_vs_step == pytest.approx(1.0)


def test_end_of_text_reverses_the_order(result):
    row = generation_order.measured(result, "with end-of-text", 24, "confidence, greedy")
    assert row.spearman_position_vs_step < -0.9 and row.rightmost_share > 0.9


def test_distribution_based_orders_sample_the_chain_and_confidence_of_the_sample_does_not(result):
    P = markov.zipf_chain(SMALL.vocab_size, SMALL.s, torch.Generator().manual_seed(0),
                          function_words=SMALL.function_words)
    pi = markov.stationary_distribution(P)
    entropy_rate = float(-(pi.unsqueeze(-1) * P * torch.log(P)).sum())
    for name in ("random order, sampled", "margin, sampled"):
        ppl = generation_order.measured(result, "zipf chain", 24, name).true_ppl
        assert math.log(ppl) == pytest.approx(entropy_rate, abs=0.15)
    biased = generation_order.measured(result, "zipf chain", 24, "confidence, sampled").true_ppl
    assert math.log(biased) < entropy_rate - 0.3  # choosing by the sampled token's probability favours likely tokens


def test_a_setting_is_read_with_named_fields_and_unknown_settings_are_named(result):
    raw = result.metrics["zipf chain | L=24 | margin, sampled | k=1"]
    row = generation_order.measured(result, "zipf chain", 24, "margin, sampled", 1)
    assert (row.true_ppl, row.nfe, row.example_order) == (raw["true_ppl"], raw["nfe"], tuple(raw["example_order"]))
    assert generation_order.measured(result, "zipf chain", 24, "margin, sampled", 4).leftmost_share is None
    with pytest.raises(ValueError, match=r"language must be one of \['zipf chain', 'with end-of-text'\]; got 'eos'"):
        generation_order.measured(result, "eos", 24, "margin, sampled")
    with pytest.raises(ValueError, match=r"length must be one of \[24\]; got 32"):
        generation_order.measured(result, "zipf chain", 32, "margin, sampled")
    with pytest.raises(ValueError, match="decoding_name must be one of"):
        generation_order.measured(result, "zipf chain", 24, "margin")
    with pytest.raises(ValueError, match=r"tokens_per_step must be one of \[1, 4\]; got 2"):
        generation_order.measured(result, "zipf chain", 24, "margin, sampled", 2)


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="scale"):
        generation_order.run(scale="tiny")
