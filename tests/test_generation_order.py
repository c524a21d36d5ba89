"""Generation order with the exact denoiser: the order statistics, and the experiment's claims on a
small scale (the chapter runs the CI scale under nbval)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import ci_scale

from maskdiff_tutor import markov
from maskdiff_tutor.experiments import generation_order
from maskdiff_tutor.experiments.result import ExperimentResult

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
        row = result.metrics.measured("zipf chain", 24, name)
        assert row.leftmost_share == 1.0 and row.spearman_position_vs_step == pytest.approx(1.0)


def test_end_of_text_reverses_the_order(result):
    row = result.metrics.measured("with end-of-text", 24, "confidence, greedy")
    assert row.spearman_position_vs_step < -0.9 and row.rightmost_share > 0.9


def test_distribution_based_orders_sample_the_chain_and_confidence_of_the_sample_does_not(result):
    P = markov.zipf_chain(SMALL.vocab_size, SMALL.s, torch.Generator().manual_seed(0),
                          function_words=SMALL.function_words)
    pi = markov.stationary_distribution(P)
    entropy_rate = float(-(pi.unsqueeze(-1) * P * torch.log(P)).sum())
    for name in ("random order, sampled", "margin, sampled"):
        ppl = result.metrics.measured("zipf chain", 24, name).true_ppl
        assert math.log(ppl) == pytest.approx(entropy_rate, abs=0.15)
    biased = result.metrics.measured("zipf chain", 24, "confidence, sampled").true_ppl
    assert math.log(biased) < entropy_rate - 0.3  # choosing by the sampled token's probability favours likely tokens


def test_every_setting_records_its_token_entropy_beside_the_chains_own(result):
    P = markov.zipf_chain(SMALL.vocab_size, SMALL.s, torch.Generator().manual_seed(0),
                          function_words=SMALL.function_words)
    pi = markov.stationary_distribution(P)
    assert result.metrics.stationary_entropy == pytest.approx(float(-(pi * pi.log()).sum()), rel=1e-12)
    for row in result.metrics.settings:
        assert 0 <= row.entropy <= math.log(SMALL.vocab_size) + 1e-12
    sampled = result.metrics.measured("zipf chain", 24, "random order, sampled")  # 40 x 24 tokens from the chain
    assert sampled.entropy == pytest.approx(result.metrics.stationary_entropy, abs=0.2)


def test_every_setting_is_one_typed_row_in_the_order_run(result):
    rows = result.metrics.settings
    assert len(rows) == 2 * 1 * 5 * 2  # languages x lengths x decodings x k
    assert [(r.language, r.length, r.decoding, r.tokens_per_step) for r in rows[:3]] == [
        ("zipf chain", 24, "confidence, greedy", 1), ("zipf chain", 24, "confidence, greedy", 4),
        ("zipf chain", 24, "confidence, sampled", 1)]
    assert result.metrics.lengths == (24,) and result.metrics.tokens_per_step == (1, 4)
    assert result.metrics.languages == generation_order.LANGUAGES
    assert result.metrics.decodings == tuple(generation_order.DECODINGS)
    for row in rows:
        assert row.nfe == math.ceil(24 / row.tokens_per_step) and 0 <= row.impossible_share <= 1
        one_per_step = row.tokens_per_step == 1
        assert (row.leftmost_share is not None) == one_per_step and (row.example_order is not None) == one_per_step
        if one_per_step:  # each step decodes one position: the example order is a permutation of the steps
            assert sorted(row.example_order) == list(range(24))
    table = result.metrics.table("with end-of-text", 24, 4)
    assert [r.decoding for r in table] == list(generation_order.DECODINGS)
    assert all((r.language, r.length, r.tokens_per_step) == ("with end-of-text", 24, 4) for r in table)


def test_by_language_gives_one_row_per_language_and_decoding(result):
    header, rows = result.metrics.by_language(24, [("PPL, k = 4", 4, "true_ppl"), ("leftmost", 1, "leftmost_share")])
    assert header == ["language", "decoding", "PPL, k = 4", "leftmost"]
    assert [row[:2] for row in rows] == [[language, name] for language in generation_order.LANGUAGES
                                         for name in generation_order.DECODINGS]
    for language, name, ppl, leftmost in rows:  # each cell is the setting's own record, read again one by one
        assert ppl == result.metrics.measured(language, 24, name, 4).true_ppl
        assert leftmost == result.metrics.measured(language, 24, name, 1).leftmost_share
    with pytest.raises(ValueError, match=r"field of column 'x' must be one of \[.*'true_ppl'.*\]; got 'ppl'"):
        result.metrics.by_language(24, [("x", 1, "ppl")])
    with pytest.raises(ValueError, match="length must be one of"):
        result.metrics.by_language(32, [("x", 1, "true_ppl")])


def test_a_setting_is_read_with_named_fields_and_unknown_settings_are_named(result):
    row = result.metrics.measured("zipf chain", 24, "margin, sampled", 1)
    assert (row.language, row.length, row.decoding, row.tokens_per_step) == ("zipf chain", 24, "margin, sampled", 1)
    assert isinstance(row.example_order, tuple) and len(row.example_order) == 24
    assert result.metrics.measured("zipf chain", 24, "margin, sampled", 4).leftmost_share is None
    with pytest.raises(ValueError, match=r"language must be one of \['zipf chain', 'with end-of-text'\]; got 'eos'"):
        result.metrics.measured("eos", 24, "margin, sampled")
    with pytest.raises(ValueError, match=r"length must be one of \[24\]; got 32"):
        result.metrics.measured("zipf chain", 32, "margin, sampled")
    with pytest.raises(ValueError, match="decoding_name must be one of"):
        result.metrics.measured("zipf chain", 24, "margin")
    with pytest.raises(ValueError, match=r"tokens_per_step must be one of \[1, 4\]; got 2"):
        result.metrics.measured("zipf chain", 24, "margin, sampled", 2)


def test_the_result_saves_and_loads_typed_and_refuses_another_experiments_file(result, tmp_path):
    path = result.save(tmp_path / "order.json")
    again = generation_order.GenerationOrderResult.load(path)
    assert again == result and isinstance(again.config.scale, generation_order.Scale)
    assert again.metrics.measured("zipf chain", 24, "margin, sampled").example_order == \
        result.metrics.measured("zipf chain", 24, "margin, sampled").example_order
    assert isinstance(ExperimentResult.load(path), generation_order.GenerationOrderResult)
    record = json.loads(path.read_text())
    (tmp_path / "other.json").write_text(json.dumps({**record, "experiment": "real_model"}))
    with pytest.raises(ValueError, match="experiment 'real_model', not of 'generation_order'"):
        generation_order.GenerationOrderResult.load(tmp_path / "other.json")
    (tmp_path / "old.json").write_text(json.dumps({**record, "schema": 1}))
    with pytest.raises(ValueError, match="'generation_order' written under schema 1"):
        generation_order.GenerationOrderResult.load(tmp_path / "old.json")


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="scale"):
        generation_order.run(scale="tiny")
