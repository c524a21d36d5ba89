"""The ground-truth experiment: its exact parts against independent computations, on a small scale.

The chapter book/parallel_sampling.ipynb runs the real CI scale under nbval; here a smaller
language and a few training steps keep the test fast while every exact quantity is still exact."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from helpers import ci_scale

from maskdiff_tutor import decoders, markov, zipf
from maskdiff_tutor.experiments import ground_truth

SMALL = ground_truth.Scale(vocab_size=12, s=2.0, function_words=2, seq_len=9, train_sequences=500, preset="toy",
                           steps=20, batch_size=16, lr=3e-3, samples=300, tokens_per_step=(1, 2, 8),
                           remask_steps=(2, 4, 8))


@pytest.fixture(scope="module")
def result():
    with ci_scale(ground_truth, SMALL):
        return ground_truth.run(scale="ci", seed=0)


def chain_of(seed=0):
    return markov.zipf_chain(SMALL.vocab_size, SMALL.s, torch.Generator().manual_seed(seed),
                             function_words=SMALL.function_words)


def test_exact_curve_is_below_the_bound_and_ends_at_the_stationary_maximum(result):
    d, chain = result.metrics["distance"], result.metrics["chain"]
    assert all(e <= b + 1e-12 for e, b in zip(d["exact_top"], d["bound"]))
    assert d["exact_top"][0] == pytest.approx(1.0)
    assert d["exact_top"][1] == pytest.approx(zipf.omegas(SMALL.s, SMALL.vocab_size)[0])  # every row's top is omega1
    assert d["exact_top"][-1] == pytest.approx(chain["max_stationary"], abs=1e-3)
    assert chain["max_stationary"] <= chain["bound_limit"]


def test_exact_curve_matches_an_independent_matrix_power(result):
    P = chain_of()  # the experiment draws the chain first from the same seed
    pi = markov.stationary_distribution(P)
    n = 3
    top = torch.stack([torch.linalg.matrix_power(P, n)[v].max() for v in range(SMALL.vocab_size)])
    assert result.metrics["distance"]["exact_top"][n] == pytest.approx(float((pi * top).sum()), abs=1e-12)


def test_far_masks_homogenise_onto_the_most_frequent_token(result):
    exact_arg = np.array(result.metrics["distance"]["exact_argmax"])
    assert (exact_arg[:, -1] == result.metrics["chain"]["argmax_stationary"]).all()
    assert len(set(exact_arg[:, 1])) == SMALL.vocab_size  # distance 1: each prompt its own favourite


def test_end_of_text_curve_falls_then_rises(result):
    top = result.metrics["end_of_text"]["top_by_n"]
    low = int(np.argmin(top))
    assert 0 < low < len(top) - 1 and top[-1] > top[low] + 0.3


def test_one_token_per_step_from_exact_marginals_samples_the_chain(result):
    p, chain = result.metrics["parallel"], result.metrics["chain"]
    # true perplexity of k = 1 exact decoding is exp(entropy rate) up to sampling noise and the
    # prompt-dependence of the first steps (the prompt is drawn from pi, so there is none)
    assert math.log(p["exact"]["true_ppl"][0]) == pytest.approx(chain["entropy_rate_nats"], abs=0.1)
    assert p["exact"]["decoder_ppl"][0] == pytest.approx(p["exact"]["true_ppl"][0], rel=1e-9)  # same probabilities
    assert p["exact"]["true_ppl"][-1] > 1.5 * p["exact"]["true_ppl"][0]  # all at once costs
    assert p["exact"]["nfe"] == [8, 4, 1]


def test_result_records_settings_and_round_trips(result, tmp_path):
    assert result.config["scale"] == dataclasses.asdict(SMALL)
    path = result.save(tmp_path / "r.json")
    loaded = type(result).load(path)
    assert loaded.metrics["parallel"]["k"] == [1, 2, 8]
    assert "torch" in loaded.environment


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="scale"):
        ground_truth.run(scale="huge")


def test_sample_left_to_right_decodes_the_leftmost_k_masks_each_step():
    P = chain_of()
    exact = markov.ChainDenoiser(P, 9)
    x = torch.full((5, 9), exact.mask_id)
    x[:, 0] = 3
    decoded = decoders.sample_left_to_right(exact, x, exact.mask_id, 3, torch.Generator().manual_seed(0))
    assert decoded.nfe == 3
    assert decoded.order[0].tolist() == [-1, 0, 0, 0, 1, 1, 1, 2, 2]
    assert (decoded.tokens[:, 0] == 3).all() and (decoded.tokens != exact.mask_id).all()


def test_sample_left_to_right_with_k_1_follows_the_chain():
    P = chain_of(1)
    exact = markov.ChainDenoiser(P, 2)
    x = torch.full((20000, 2), exact.mask_id)
    x[:, 0] = 4
    tokens = decoders.sample_left_to_right(exact, x, exact.mask_id, 1, torch.Generator().manual_seed(0)).tokens
    freq = torch.bincount(tokens[:, 1], minlength=SMALL.vocab_size).double() / 20000
    std = (P[4] * (1 - P[4]) / 20000).sqrt()
    assert ((freq - P[4]).abs() <= 4 * std + 1e-12).all()


def test_sample_left_to_right_rejects_bad_tokens_per_step():
    with pytest.raises(ValueError, match="tokens_per_step"):
        decoders.sample_left_to_right(lambda x: torch.zeros(*x.shape, 4), torch.full((1, 3), 3), 3, 0)


def test_seeded_runs_repeat_exactly(result):
    with ci_scale(ground_truth, SMALL):
        again = ground_truth.run(scale="ci", seed=0)
    assert again.metrics == result.metrics
    assert again.curves == result.curves


def test_random_initialisation_needs_more_calls_than_one_token_per_step(result):
    r = result.metrics["random_init"]
    masks = SMALL.seq_len - 1
    assert r["calls"] == [n * masks for n in (1, 2, 4, 8)]
    one_at_a_time = r["exact one at a time"]
    # with as many calls as one-at-a-time decoding, random initialisation is still far worse ...
    assert r["exact k=1"][0] > 1.2 * one_at_a_time
    # ... and it improves with more calls, toward the chain
    assert r["exact k=1"][-1] < r["exact k=1"][0] and r["one_call_ppl"] > r["exact k=1"][0]
    assert r["exact k=1"][-1] == pytest.approx(one_at_a_time, rel=0.25)


def test_paper_random_initialisation_sweep(result):
    r, p = result.metrics["partial_random_init"], result.metrics["parallel"]
    assert r["fractions"] == list(SMALL.init_fractions) and r["k"] == list(SMALL.init_tokens_per_step)
    masks = SMALL.seq_len - 1
    # no initialised masks: ordinary left-to-right decoding, ceil(masks / k) calls
    assert r["nfe"][0] == [-(-masks // k) for k in SMALL.init_tokens_per_step]
    # half initialised, k = 8 on 8 masks: 4 + 2 + 1 + 1 masks decoded in four calls (by hand)
    assert r["nfe"][r["fractions"].index(0.5)][r["k"].index(8)] == 4
    # one token per call from the exact marginals samples the chain; random tokens only hurt it
    assert math.log(r["true_ppl"][0][0]) == pytest.approx(result.metrics["chain"]["entropy_rate_nats"], abs=0.15)
    assert r["true_ppl"][-1][0] > 1.3 * r["true_ppl"][0][0]
    assert all(ppl > 1 for row in r["true_ppl"] for ppl in row)
    assert p["k"] == [1, 2, 8]


def test_remasking_sweep(result):
    r = result.metrics["remasking"]
    assert r["steps"] == list(SMALL.remask_steps) and r["etas"] == list(SMALL.remask_etas)
    masks = SMALL.seq_len - 1
    no_remasking = r["etas"].index(0.0)
    assert r["decoded_per_call"][no_remasking] == [masks / n for n in SMALL.remask_steps]
    for row in r["decoded_per_call"]:  # remasking decodes the masks and the remasked tokens again
        assert all(per_call * n >= masks for per_call, n in zip(row, SMALL.remask_steps))
    one_per_call = r["steps"].index(masks)
    assert math.log(r["true_ppl"][no_remasking][one_per_call]) == pytest.approx(
        result.metrics["chain"]["entropy_rate_nats"], abs=0.15)
