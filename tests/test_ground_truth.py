"""The ground-truth experiment: its exact parts against independent computations, on a small scale.

The chapter book/parallel_sampling.ipynb runs the real CI scale under nbval; here a smaller
language and a few training steps keep the test fast while every exact quantity is still exact."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import ci_scale

from maskdiff_tutor import decoders, markov, zipf
from maskdiff_tutor.experiments import ground_truth
from maskdiff_tutor.experiments.ground_truth import GroundTruthResult
from maskdiff_tutor.experiments.result import ExperimentResult
from maskdiff_tutor.train import History

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
    decay, chain = result.metrics.decay, result.metrics.chain
    assert all(e <= b + 1e-12 for e, b in zip(decay.exact_top, decay.bound, strict=True))
    assert decay.exact_top[0] == pytest.approx(1.0)
    assert decay.exact_top[1] == pytest.approx(zipf.omegas(SMALL.s, SMALL.vocab_size)[0])  # every row's top is omega1
    assert chain.omega1 == pytest.approx(zipf.omegas(SMALL.s, SMALL.vocab_size)[0])
    assert decay.exact_top[-1] == pytest.approx(chain.max_stationary, abs=1e-3)
    assert chain.max_stationary <= chain.bound_limit


def test_exact_curve_matches_an_independent_matrix_power(result):
    P = chain_of()  # the experiment draws the chain first from the same seed
    pi = markov.stationary_distribution(P)
    n = 3
    top = torch.stack([torch.linalg.matrix_power(P, n)[v].max() for v in range(SMALL.vocab_size)])
    assert result.metrics.decay.exact_top[n] == pytest.approx(float((pi * top).sum()), abs=1e-12)


def test_chain_record_against_the_chain(result):
    P, chain = chain_of(), result.metrics.chain
    pi = markov.stationary_distribution(P)
    assert chain.argmax_stationary == int(pi.argmax()) == chain.most_frequent[0]
    assert sorted(pi[chain.most_frequent].tolist(), reverse=True) == pi[chain.most_frequent].tolist()
    entropy = -sum(float(pi[a] * P[a, b] * math.log(P[a, b])) for a in range(12) for b in range(12))
    assert chain.entropy_rate_nats == pytest.approx(entropy, rel=1e-12)
    assert chain.perplexity == pytest.approx(math.exp(entropy), rel=1e-12)
    assert chain.stationary_entropy == pytest.approx(-sum(float(p * math.log(p)) for p in pi), rel=1e-12)


def test_every_decoding_records_the_entropy_of_its_tokens_near_the_language_when_sampled(result):
    # every sweep samples at temperature 1, so no setting collapses the token entropy: each lies
    # within sampling noise (300 sequences of 8 tokens) of the stationary entropy, or above it where
    # random tokens were initialised
    language, metrics = result.metrics.chain.stationary_entropy, result.metrics
    one_at_a_time = metrics.cost_of_k[1].entropy
    assert one_at_a_time.exact == pytest.approx(language, abs=0.1)
    entropies = [*(c.entropy.exact for c in metrics.cost_of_k.values()),
                 *(x.entropy for x in metrics.remasking.settings),
                 *(x.entropy for x in metrics.partial_random_init.settings)]
    assert all(language - 0.3 < h <= math.log(SMALL.vocab_size) for h in entropies), (language, entropies)


def test_far_masks_homogenise_onto_the_most_frequent_token(result):
    exact_arg = np.array(result.metrics.decay.exact_argmax)
    assert (exact_arg[:, -1] == result.metrics.chain.argmax_stationary).all()
    assert len(set(exact_arg[:, 1])) == SMALL.vocab_size  # distance 1: each prompt its own favourite


def test_end_of_text_curve_falls_then_rises(result):
    top = result.metrics.end_of_text.top
    low = int(np.argmin(top))
    assert 0 < low < len(top) - 1 and top[-1] > top[low] + 0.3
    assert len(top) == 4 * SMALL.seq_len + 1 and result.metrics.end_of_text.eos_id == SMALL.vocab_size - 1


def test_one_token_per_step_from_exact_marginals_samples_the_chain(result):
    cost, chain = result.metrics.cost_of_k, result.metrics.chain
    # true perplexity of k = 1 exact decoding is exp(entropy rate) up to sampling noise and the
    # prompt-dependence of the first steps (the prompt is drawn from pi, so there is none)
    assert math.log(cost[1].true_ppl.exact) == pytest.approx(chain.entropy_rate_nats, abs=0.1)
    assert cost[1].decoder_ppl == pytest.approx(cost[1].true_ppl.exact, rel=1e-9)  # same probabilities
    assert cost[8].true_ppl.exact > 1.5 * cost[1].true_ppl.exact  # all at once costs
    assert list(cost) == [1, 2, 8] and [row.k for row in cost.values()] == [1, 2, 8]
    assert [row.calls for row in cost.values()] == [8, 4, 1]
    bounds = zipf.parallel_perplexity_bound([1, 2, 8], SMALL.s, SMALL.vocab_size).tolist()
    assert [row.bound_ppl for row in cost.values()] == bounds


def test_repeats_are_exact_for_every_k_on_the_chain_and_its_stationary_prompts(result):
    P, repeats, cost = chain_of(), result.metrics.repeats, result.metrics.cost_of_k
    pi = markov.stationary_distribution(P)
    assert list(repeats) == [1, 2, 8] and [row.k for row in repeats.values()] == [1, 2, 8]
    assert repeats[1].decoded_share == repeats[1].language_share  # one token per step is the language
    assert repeats[1].language_share == pytest.approx(float((pi * P.diagonal()).sum()), abs=1e-12)
    for k in (1, 2, 8):  # the exact NLL per pair against the sampled true perplexity (300 sequences)
        assert repeats[k].decoded_nll == pytest.approx(math.log(cost[k].true_ppl.exact), abs=0.1)


def test_result_records_settings(result):
    assert result.config.scale == SMALL
    assert result.config.model.vocab_size == SMALL.vocab_size + 1 and result.config.model.max_seq_len == SMALL.seq_len
    assert result.config.evaluated_in == "float64"
    assert isinstance(result.curves.training, History) and len(result.curves.training.step) > 0
    assert result.environment.torch == torch.__version__
    assert result.environment.training is not None  # the environment that trained the measured model


def test_save_and_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "r.json")
    loaded = GroundTruthResult.load(path)
    assert loaded == result
    assert isinstance(loaded.config.scale.tokens_per_step, tuple)
    assert list(loaded.metrics.cost_of_k) == [1, 2, 8]  # int keys, in order
    assert ExperimentResult.load(path) == result  # the file names its experiment
    assert ground_truth.headline(loaded) == ground_truth.headline(result)


def test_a_file_of_another_experiment_or_schema_is_refused(result, tmp_path):
    record = result.to_json()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**record, "experiment": "joint_vs_marginal"}))
    with pytest.raises(ValueError, match=r"other\.json holds a result of experiment 'joint_vs_marginal', "
                                         r"not of 'ground_truth'"):
        GroundTruthResult.load(other)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**record, "schema": 1}))
    with pytest.raises(ValueError, match=r"old\.json holds a result of 'ground_truth' written under schema 1"):
        GroundTruthResult.load(old)


def test_a_file_with_a_wrong_value_names_its_place(result, tmp_path):
    record = result.to_json()
    record["metrics"]["cost_of_k"]["2"]["true_ppl"]["exact"] = "high"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"metrics\.cost_of_k\.2\.true_ppl\.exact: expected a number"):
        GroundTruthResult.load(path)


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
    gibbs = result.metrics.gibbs_from_random_start
    masks = SMALL.seq_len - 1
    assert gibbs.masks == masks
    assert list(gibbs.by_calls) == [n * masks for n in (1, 2, 4, 8)]
    first, last = gibbs.by_calls[masks], gibbs.by_calls[8 * masks]
    # with as many calls as one-at-a-time decoding, random initialisation is still far worse ...
    assert first.exact[1] > 1.2 * gibbs.one_at_a_time.exact
    # ... and it improves with more calls, toward the chain
    assert last.exact[1] < first.exact[1] and gibbs.after_one_call > first.exact[1]
    assert last.exact[1] == pytest.approx(gibbs.one_at_a_time.exact, rel=0.25)
    assert all(set(row.exact) == {1, 4} and set(row.trained) == {1} for row in gibbs.by_calls.values())


def test_paper_random_initialisation_sweep(result):
    partial = result.metrics.partial_random_init
    assert partial.shares == list(SMALL.init_fractions) and partial.tokens_per_call == list(SMALL.init_tokens_per_step)
    masks = SMALL.seq_len - 1
    # no initialised masks: ordinary left-to-right decoding, ceil(masks / k) calls
    assert [s.calls for s in partial.row(0.0)] == [-(-masks // k) for k in SMALL.init_tokens_per_step]
    # half initialised, k = 8 on 8 masks: 4 + 2 + 1 + 1 masks decoded in four calls (by hand)
    assert partial.at(f=0.5, k=8).calls == 4
    # one token per call from the exact marginals samples the chain; random tokens only hurt it
    f0_k1 = partial.at(f=0.0, k=1).true_ppl
    assert math.log(f0_k1) == pytest.approx(result.metrics.chain.entropy_rate_nats, abs=0.15)
    assert partial.at(f=0.75, k=1).true_ppl > 1.3 * f0_k1
    assert all(s.true_ppl > 1 for s in partial.settings)


def test_remasking_sweep(result):
    remasking = result.metrics.remasking
    assert remasking.calls == list(SMALL.remask_steps) and remasking.etas == list(SMALL.remask_etas)
    masks = SMALL.seq_len - 1
    assert [s.decoded_per_call for s in remasking.ordinary_decoding()] == [masks / n for n in SMALL.remask_steps]
    for s in remasking.settings:  # remasking decodes the masks and the remasked tokens again
        assert s.decoded_per_call * s.calls >= masks
    assert math.log(remasking.ordinary(masks).true_ppl) == pytest.approx(result.metrics.chain.entropy_rate_nats,
                                                                         abs=0.15)


# --- the lookups the chapter reads, against brute-force reads of the lists ------------------------

def test_decay_rows_and_function_word_shares_by_brute_force(result):
    decay = result.metrics.decay
    for n in range(SMALL.seq_len):
        row = decay.at(n)
        assert (row.n, row.exact_top, row.trained_top, row.bound, row.trained_vs_exact_tv,
                row.exact_tv_to_stationary) == (n, decay.exact_top[n], decay.trained_top[n], decay.bound[n],
                                                decay.trained_vs_exact_tv[n], decay.exact_tv_to_stationary[n])
        exact = np.array(decay.exact_argmax)[:, n]
        assert decay.exact_function_word_share(n) == np.mean(exact < SMALL.function_words)
        if n > 0:
            trained = np.array(decay.trained_argmax)[:, n]
            assert decay.trained_function_word_share(n) == np.mean(trained < SMALL.function_words)
    assert decay.trained_top[0] is None and decay.trained_vs_exact_tv[0] is None
    assert decay.function_words == SMALL.function_words
    with pytest.raises(ValueError, match=r"n must be a distance in \[0, 8\]; got 9"):
        decay.at(9)
    with pytest.raises(ValueError, match=r"n must be a distance in \[0, 8\]; got -1"):
        decay.exact_function_word_share(-1)


def test_end_of_text_dip_and_rise_by_brute_force(result):
    eos = result.metrics.end_of_text
    top = np.array(eos.top)
    assert eos.dip == top.min() and eos.dip_n == int(np.argmin(top))
    assert eos.far_n == len(top) - 1 == 4 * SMALL.seq_len and eos.far == top[-1]


def test_upturn_by_length_starts_from_the_end_of_text_curve(result):
    # the run's record, one row per ground_truth.UPTURN_EXTRAS; its e = 0 row is end_of_text itself
    eos, upturn = result.metrics.end_of_text, result.metrics.upturn_by_length
    assert [row.extra for row in upturn.rows] == list(ground_truth.UPTURN_EXTRAS)
    assert upturn.seq_len == SMALL.seq_len and upturn.eos_id == eos.eos_id
    assert upturn.row(0.0).dip_n == eos.dip_n and upturn.row(0.0).dip == pytest.approx(eos.dip, abs=1e-12)
    assert upturn.row(0.0).top_at_end == pytest.approx(eos.top[SMALL.seq_len - 1], abs=1e-12)
    lengths = [row.mean_length for row in upturn.rows]
    assert all(a > b for a, b in zip(lengths, lengths[1:]))  # more end-of-text, shorter answers


def test_gibbs_equal_budget_by_brute_force(result):
    gibbs = result.metrics.gibbs_from_random_start
    (row,) = [r for r in gibbs.by_calls.values() if r.calls == SMALL.seq_len - 1]
    assert gibbs.equal_budget == row
    assert all(calls == r.calls for calls, r in gibbs.by_calls.items())


def test_random_initialisation_lookups_by_brute_force(result):
    partial = result.metrics.partial_random_init
    assert len(partial.settings) == len(SMALL.init_fractions) * len(SMALL.init_tokens_per_step)
    for i, f in enumerate(SMALL.init_fractions):
        for j, k in enumerate(SMALL.init_tokens_per_step):
            setting = partial.settings[i * len(SMALL.init_tokens_per_step) + j]  # by share, then by k
            assert (setting.share, setting.k) == (f, k) and partial.at(f=f, k=k) is setting
        assert partial.row(f) == partial.settings[i * 3: i * 3 + 3]
    for at_least_k in (1, 4, 8):
        assert partial.lowest_ppl(at_least_k) == min(s.true_ppl for s in partial.settings if s.k >= at_least_k)
    for ppl in (5.0, 10.0, 1e9):
        below = [s.calls for s in partial.settings if s.share > 0 and s.true_ppl < ppl]
        assert partial.fewest_calls_below(ppl) == (min(below) if below else None)
    assert partial.fewest_calls_below(1.0) is None  # no perplexity is below 1
    with pytest.raises(ValueError, match=r"no setting with f = 0.3 and k = 8; the shares are \[0.0, 0.1"):
        partial.at(f=0.3, k=8)
    with pytest.raises(ValueError, match="f must be one of the shares measured"):
        partial.row(0.3)
    with pytest.raises(ValueError, match=r"no setting decodes 16 or more per call \(the k are \[1, 4, 8\]\)"):
        partial.lowest_ppl(16)


def test_remasking_lookups_by_brute_force(result):
    remasking = result.metrics.remasking
    steps = SMALL.remask_steps
    for i, eta in enumerate(SMALL.remask_etas):
        for j, n in enumerate(steps):
            setting = remasking.settings[i * len(steps) + j]  # by eta, then by calls
            assert (setting.eta, setting.calls) == (eta, n) and remasking.at(eta, n) is setting
        assert remasking.row(eta) == remasking.settings[i * len(steps): (i + 1) * len(steps)]
    assert remasking.highest_eta == max(SMALL.remask_etas)
    assert remasking.ordinary_decoding() == [s for s in remasking.settings if s.eta == 0.0]
    assert all(remasking.ordinary(n) is remasking.at(0.0, n) for n in steps)
    with pytest.raises(ValueError, match=r"no setting with eta = 0.0 and 3 calls; the etas are \[0.0, 0.1, 0.4\] "
                                         r"and the calls \[2, 4, 8\]"):
        remasking.ordinary(3)
    with pytest.raises(ValueError, match="eta must be one of the remasking probabilities measured"):
        remasking.row(0.2)


def test_headline_reads_the_typed_fields(result):
    numbers = ground_truth.headline(result)
    decay, cost, gibbs = result.metrics.decay, result.metrics.cost_of_k, result.metrics.gibbs_from_random_start
    assert numbers["trained top probability, n = 2"] == (decay.trained_top[2], 0.06)
    share = sum(row[3] < SMALL.function_words for row in decay.trained_argmax) / SMALL.vocab_size
    assert numbers["trained: share of prompts whose argmax is a function word, n = 3"] == (share, 0.1)
    assert numbers["trained: true PPL, k = 1"] == (cost[1].true_ppl.trained, 0.3 * cost[1].true_ppl.trained)
    assert "trained: true PPL, k = 2" in numbers and "trained: true PPL, k = 8" not in numbers  # no tolerance for 8
    assert numbers["trained: Gibbs from a random start, true PPL after 16 calls"] == (
        gibbs.by_calls[16].trained[1], 0.2 * gibbs.by_calls[16].trained[1])
    assert numbers["trained: one token per step in random order, true PPL"] == (
        gibbs.one_at_a_time.trained, 0.05 * gibbs.one_at_a_time.trained)
    # n = 1, 2, 3, 4, 8 (32 lies beyond L = 9); three shares; k = 1, 2; four Gibbs rows; one at a time
    assert len(numbers) == 5 + 3 + 2 + 4 + 1
