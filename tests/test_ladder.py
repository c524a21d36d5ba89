"""The ladder of denoisers: its exact rung against the ground-truth experiment's exact denoiser, its
gaps, its storage and its refusals, on a small scale (the book's ci scale runs under
``maskdiff-tutor book-results``)."""

from __future__ import annotations

import statistics

import pytest
import torch
from helpers import ci_scale

from maskdiff_tutor import markov
from maskdiff_tutor.experiments import ground_truth, ladder, trained_models
from maskdiff_tutor.experiments.ladder import EXACT, LadderResult
from maskdiff_tutor.experiments.result import ExperimentResult

SMALL = ladder.Scale(vocab_size=10, s=2.0, function_words=2, seq_len=9, train_sequences=100, batch_size=8, lr=3e-3,
                     rungs=(ladder.Step("toy", 2), ladder.Step("toy", 4)), valid_sequences=32, nelbo_samples=2)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ladder") / "models"
    with ci_scale(ladder, SMALL):
        trained = ladder.run(scale="ci", seed=0, device="cpu", save_models=folder)
    return folder, trained


@pytest.fixture(scope="module")
def result(stored):
    with ci_scale(ladder, SMALL):
        return ladder.run(scale="ci", seed=0, device="cpu", models=stored[0])


def exact_decay():
    """ground_truth's exact decay on the chain it builds from seed 0 at the small scale."""
    P = markov.zipf_chain(SMALL.vocab_size, SMALL.s, torch.Generator().manual_seed(0),
                          function_words=SMALL.function_words)
    exact = markov.ChainDenoiser(P, SMALL.seq_len)
    return P, ground_truth.measure_decay(exact, exact, P, SMALL.s, SMALL.function_words)


def test_the_rungs_are_the_trained_ones_then_the_exact_denoiser(result):
    assert result.metrics.names == ["toy 2 steps", "toy 4 steps", EXACT]
    assert [rung.name for rung in result.metrics.trained] == ["toy 2 steps", "toy 4 steps"]
    assert result.metrics.exact.parameters == 0 and all(rung.parameters > 0 for rung in result.metrics.trained)


def test_the_exact_rung_has_gap_0_and_ground_truths_exact_numbers(result):
    P, decay = exact_decay()
    exact, far = result.metrics.exact, SMALL.seq_len - 1
    assert exact.gap == 0 and exact.gap_standard_error == 0
    assert exact.top_by_distance == pytest.approx(decay.exact_top, abs=1e-14)
    assert exact.far_function_word_share == decay.exact_function_word_share(far)
    assert exact.far_tv_to_stationary == pytest.approx(decay.exact_tv_to_stationary[far], abs=1e-14)
    assert result.metrics.max_stationary == pytest.approx(float(markov.stationary_distribution(P).max()), abs=1e-15)


def test_floor_and_fall_distance_by_brute_force(result):
    for rung in result.metrics.rungs:
        curve = rung.top_by_distance  # n = 0 .. L - 1
        far_half = sorted(curve[1 + (SMALL.seq_len - 1) // 2:])
        assert rung.floor == statistics.median(far_half)
        fall = curve[1] - rung.floor
        n = next(n for n in range(1, len(curve)) if curve[n] - rung.floor <= 0.1 * fall)
        assert rung.fall_distance == n


def test_gaps_are_paired_differences_of_the_nelbo_and_positive_for_trained_rungs(result):
    exact = result.metrics.exact
    for rung in result.metrics.trained:
        assert rung.gap == pytest.approx(rung.nelbo - exact.nelbo, abs=1e-12)
        assert rung.gap > 0 and rung.gap_standard_error > 0  # a few steps of training: far from the chain


def test_shares_and_the_true_nll_lie_where_they_must(result):
    metrics = result.metrics
    for rung in metrics.rungs:
        assert 0 <= rung.far_function_word_share <= 1 and 0 <= rung.far_tv_to_stationary <= 1
        assert 0 <= rung.leftmost_share <= 1 and 0 <= rung.rightmost_share <= 1
        assert rung.top_by_distance[0] == 1.0
    # sequences of L tokens: the first from pi, then L - 1 transitions, so the NLL per token lies
    # between the entropy rate and the entropy of pi, and near the entropy rate for long sequences
    assert 0 < metrics.entropy_rate_nats < metrics.true_nll + 0.5


def test_measuring_stored_models_repeats_the_training_run(stored, result):
    assert stored[1].metrics == result.metrics
    assert result.environment.training == stored[1].environment.training  # where the models were trained


def test_save_and_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "ladder.json")
    loaded = ExperimentResult.load(path)
    assert isinstance(loaded, LadderResult)
    assert loaded.metrics == result.metrics and loaded.config == result.config
    assert loaded.curves.training.keys() == result.curves.training.keys()


def test_headline_reads_the_typed_fields_of_every_trained_rung(result):
    numbers = ladder.headline(result)
    rung = result.metrics.rung("toy 4 steps")
    assert numbers["toy 4 steps: NELBO gap"] == (rung.gap, ladder.GAP_TOLERANCE)
    assert numbers["toy 4 steps: greedy after a prompt, leftmost share"] == (rung.leftmost_share,
                                                                               ladder.LEFTMOST_TOLERANCE)
    assert len(numbers) == 6 * len(result.metrics.trained) and not any(EXACT in name for name in numbers)


def test_bad_inputs_are_refused(result, stored, tmp_path):
    with pytest.raises(ValueError, match=r"scale must be one of \['ci'\]; got 'gpu'"):
        ladder.run(scale="gpu")
    with pytest.raises(ValueError, match="seed"):
        ladder.run(seed=-1)
    with pytest.raises(ValueError, match=r"name must be one of \['toy 2 steps', 'toy 4 steps', 'exact'\]"):
        result.metrics.rung("toy 3 steps")
    with pytest.raises(TypeError, match="result must be a LadderResult"):
        ladder.headline(object())
    other = ladder.Scale(**{**vars(SMALL), "rungs": (ladder.Step("toy", 3),)})
    with ci_scale(ladder, other), pytest.raises(ValueError, match="trained with other settings"):
        ladder.run(device="cpu", models=stored[0])
    with pytest.raises(ValueError, match="holds models of experiment 'ladder', not 'ground_truth'"):
        trained_models.load(stored[0], "ground_truth", {})
