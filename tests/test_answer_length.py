"""answer_length: the book's shorter-answer chain, its mean answer length, and where the end-of-text
curve turns up (paper Observation 2), against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from maskdiff_tutor import answer_length, markov
from maskdiff_tutor.answer_length import UpturnByLength, UpturnRow
from maskdiff_tutor.experiments import ground_truth

CI = ground_truth.SCALES["ci"]


def eos_chain(vocab_size=8, seed=0):
    P = markov.zipf_chain(vocab_size, 2.0, torch.Generator().manual_seed(seed), function_words=2)
    return markov.with_end_of_text(P, vocab_size - 1)


@pytest.mark.parametrize("extra", [0.0, 0.05, 0.3, 1.0])
def test_earlier_end_of_text_keeps_rows_summing_to_one_and_moves_exactly_e(extra):
    P = eos_chain()
    Q = answer_length.with_earlier_end_of_text(P, 7, extra)
    assert (Q >= 0).all() and torch.allclose(Q.sum(-1), torch.ones(8, dtype=torch.float64), atol=1e-12)
    assert torch.equal(Q[7], P[7])  # end-of-text stays absorbing
    for i in range(7):
        for j in range(8):
            expected = (1 - extra) * float(P[i, j]) + (extra if j == 7 else 0.0)
            assert float(Q[i, j]) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("extra", [-0.01, 1.5, math.nan, math.inf, True, "0.1"])
def test_earlier_end_of_text_refuses_a_bad_extra(extra):
    with pytest.raises(ValueError, match=r"^extra must be a finite number in \[0, 1\]"):
        answer_length.with_earlier_end_of_text(eos_chain(), 7, extra)


def test_earlier_end_of_text_refuses_a_bad_eos_id():
    with pytest.raises(ValueError, match="^eos_id must be an int in"):
        answer_length.with_earlier_end_of_text(eos_chain(), 8, 0.1)


def test_mean_answer_length_is_the_sum_of_the_chances_of_not_having_ended():
    # E[tokens before end-of-text] = sum_{n >= 1} P(x_n != eos), eos absorbing: a series, summed far
    # enough that its tail is below 1e-12, from the powers of the chain alone
    for extra in (0.0, 0.1):
        Q = answer_length.with_earlier_end_of_text(eos_chain(), 7, extra)
        starts = torch.eye(8, dtype=torch.float64)[:7]  # every prompt but end-of-text
        not_ended = 1 - markov.distance_marginals(Q, starts, 3000)[1:, :, 7].mean(-1)  # (3000,)
        assert float(not_ended[-1]) < 1e-14
        assert answer_length.mean_answer_length(Q, 7) == pytest.approx(float(not_ended.sum()), abs=1e-10)


def test_mean_answer_length_matches_monte_carlo():
    # 10,000 sampled answers, prompts uniform over the non-end-of-text tokens, seeded; the tolerance is
    # 4 standard errors of the sample mean (an answer runs past 99 tokens with probability below 0.75^99)
    Q = answer_length.with_earlier_end_of_text(eos_chain(), 7, 0.25)
    initial = torch.tensor([1.0] * 7 + [0.0], dtype=torch.float64) / 7
    x = markov.sample_sequences(Q, 10_000, 100, torch.Generator().manual_seed(0), initial=initial)
    assert (x[:, -1] == 7).all()  # every sampled answer ended within the 99 positions drawn
    lengths = (x[:, 1:] != 7).sum(-1).double()  # tokens after the prompt before end-of-text (it absorbs)
    standard_error = float(lengths.std()) / math.sqrt(len(lengths))
    assert abs(answer_length.mean_answer_length(Q, 7) - float(lengths.mean())) < 4 * standard_error


def test_mean_answer_length_refuses_a_chain_that_never_ends():
    with pytest.raises(ValueError, match="^P must reach eos_id = 2 from every token"):
        answer_length.mean_answer_length(torch.eye(3, dtype=torch.float64), 2)


def test_the_row_without_extra_is_the_experiments_end_of_text_curve():
    P = markov.zipf_chain(CI.vocab_size, CI.s, torch.Generator().manual_seed(0), function_words=CI.function_words)
    eos = ground_truth.measure_end_of_text(P, CI.seq_len)
    row = answer_length.upturn_by_length(P, CI.seq_len, [0.0]).rows[0]
    assert row.dip_n == eos.dip_n
    assert row.dip == pytest.approx(eos.dip, abs=1e-12)
    assert row.top_at_end == pytest.approx(eos.top[CI.seq_len - 1], abs=1e-12)


def test_on_the_chapters_chain_shorter_answers_turn_up_earlier():
    # Observation 2, measured on the book's CI chain (V = 32, L = 33, seed 0): the pinned numbers are
    # what the chapter shows; the upturn comes at n = 4, 3, 3, 2 as the mean answer length falls
    P = markov.zipf_chain(CI.vocab_size, CI.s, torch.Generator().manual_seed(0), function_words=CI.function_words)
    record = answer_length.upturn_by_length(P, CI.seq_len, ground_truth.UPTURN_EXTRAS)
    assert [row.extra for row in record.rows] == [0.0, 0.02, 0.05, 0.1]
    assert [round(row.mean_length, 2) for row in record.rows] == [15.79, 11.83, 8.48, 5.61]
    assert [row.dip_n for row in record.rows] == [4, 3, 3, 2]
    assert [round(row.dip, 3) for row in record.rows] == [0.207, 0.260, 0.271, 0.334]
    assert [round(row.top_at_end, 3) for row in record.rows] == [0.863, 0.928, 0.974, 0.995]
    assert record.moves_earlier
    assert record.row(0.05).dip_n == 3


def test_moves_earlier_reads_the_rows_by_length_not_by_order():
    def record(*rows):
        return UpturnByLength(eos_id=7, seq_len=9, rows=[UpturnRow(e, length, n, 0.2, 0.9) for e, length, n in rows])

    assert record((0.1, 5.0, 2), (0.0, 15.0, 4)).moves_earlier
    assert not record((0.0, 15.0, 4), (0.1, 5.0, 4)).moves_earlier  # the upturn stays put
    assert not record((0.0, 15.0, 3), (0.05, 9.0, 4), (0.1, 5.0, 2)).moves_earlier  # later on the way
    with pytest.raises(ValueError, match=r"^extra must be one of \[0.1, 0.0\]; got 0.2"):
        record((0.1, 5.0, 2), (0.0, 15.0, 4)).row(0.2)


def test_upturn_by_length_refuses_no_extras_and_a_short_sequence():
    with pytest.raises(ValueError, match="^extras must hold at least one"):
        answer_length.upturn_by_length(eos_chain(), 9, [])
    with pytest.raises(ValueError, match="^seq_len must be an int"):
        answer_length.upturn_by_length(eos_chain(), 1, [0.0])
