"""Tests of maskdiff_tutor.experiments.joint_vs_marginal: its helpers against hand computations,
its typed result (saved and loaded back typed; a file of another experiment refused), and the
CI-scale experiment measured on the book's stored models (the ones the chapter shows), whose
metrics must show the paper's claims (Section 3.2.2). Training itself is tested at a tiny scale
here and retrained at full scale by ``maskdiff-tutor book-models --check``. The record format
itself is tested in test_records.py."""

from __future__ import annotations

import json
import math

import pytest
import torch

from maskdiff_tutor.denoiser import DenoiserConfig
from maskdiff_tutor.experiments import joint_vs_marginal, trained_models
from maskdiff_tutor.experiments.joint_vs_marginal import (
    SCALES,
    JointVsMarginalResult,
    Scale,
    ToyFacts,
    pair_distribution,
    pair_name,
    total_variation,
)
from maskdiff_tutor.experiments.result import Environment, ExperimentResult
from maskdiff_tutor.train import History

EXACT_TV = 0.079  # TV between the toy joint of (x^1, x^2) and the product of its marginals


# ----------------------------------------------------------------------------- helpers


def test_pair_distribution_and_total_variation_by_hand():
    # ids: A=0, A'=1, B=2, B'=3; one invalid pair (B at position 1)
    tokens = torch.tensor([[0, 2, 4, 5, 6], [0, 2, 4, 5, 7], [1, 3, 4, 5, 8], [2, 2, 4, 5, 9]])
    table = pair_distribution(tokens)
    torch.testing.assert_close(table, torch.tensor([[0.5, 0.0], [0.0, 0.25]], dtype=torch.float64), rtol=0, atol=0)
    joint = torch.tensor([[0.34, 0.21], [0.35, 0.10]], dtype=torch.float64)
    # 1/2 (|0.5-0.34| + 0.21 + 0.35 + |0.25-0.10| + 0.25 (the mass outside the table)) = 0.56
    assert total_variation(table, joint) == pytest.approx(0.56, abs=1e-12)
    product = torch.outer(joint.sum(1), joint.sum(0))
    assert total_variation(product, joint) == pytest.approx(EXACT_TV, abs=1e-12)
    assert total_variation(joint, joint) == 0.0
    assert [pair_name(i, j) for i in (0, 1) for j in (0, 1)] == ["AB", "AB'", "A'B", "A'B'"]


def test_unknown_scale_raises():
    with pytest.raises(ValueError, match=r"scale must be one of \['ci', 'gpu'\]; got 'bogus'"):
        joint_vs_marginal.run(scale="bogus")


def test_unknown_device_raises_before_training(monkeypatch):
    def no_training(*args, **kwargs):
        pytest.fail("train() was called before the device was checked")

    monkeypatch.setattr(joint_vs_marginal, "train", no_training)
    with pytest.raises(ValueError, match="'banana'"):
        joint_vs_marginal.run(scale="ci", device="banana")


def test_scales():
    assert set(SCALES) == {"ci", "gpu"}
    assert all(isinstance(s, Scale) for s in SCALES.values())


# ----------------------------------------------------------------------------- one real run


@pytest.fixture(scope="module")
def ci_result():
    return joint_vs_marginal.run(scale="ci", seed=0, device="cpu",
                                 models=trained_models.book_folder("joint_vs_marginal"))


def test_ci_run_record(ci_result):
    assert isinstance(ci_result, JointVsMarginalResult)
    assert ci_result.EXPERIMENT == "joint_vs_marginal" and ci_result.scale == "ci" and ci_result.seed == 0
    assert ci_result.config.scale == Scale(preset="toy", steps=1500, batch_size=256, lr=3e-3, samples=4000)
    assert ci_result.config.model == DenoiserConfig.preset("toy", vocab_size=107, max_seq_len=5)
    assert ci_result.config.query == "[MASK] [MASK] C D [MASK]"
    assert ci_result.config.evaluated_in == "float64"
    env = ci_result.environment
    assert isinstance(env, Environment) and isinstance(env.training, Environment)
    assert env.torch == torch.__version__
    assert env.device == "cpu" and env.training.device == "cpu"
    assert env.wall_seconds > 0 and env.training.wall_seconds > 0
    for curve in (ci_result.curves.weighted, ci_result.curves.unweighted):
        assert isinstance(curve, History)
        assert curve.step[-1] == 1500 and len(curve.step) == 100
        assert sum(curve.loss[-10:]) < sum(curve.loss[:10])


def test_ci_run_exact_references(ci_result):
    metrics = ci_result.metrics
    assert metrics.oracle.p_a == pytest.approx(0.55, abs=1e-12)
    assert metrics.oracle.p_b == pytest.approx(0.69, abs=1e-12)
    # 34 of the 100 sequences start A B, 21 A B', 35 A' B, 10 A' B'
    assert [p for row in metrics.toy.joint for p in row] == pytest.approx([0.34, 0.21, 0.35, 0.10], abs=1e-12)
    assert metrics.toy.joint_mode == "A'B"
    assert metrics.toy.tv_product_of_exact_marginals_vs_joint == pytest.approx(EXACT_TV, abs=1e-12)
    assert metrics.toy.true_nll_per_sequence == pytest.approx(math.log(100), abs=1e-12)
    assert metrics.models() == (metrics.weighted, metrics.unweighted)
    assert [m.objective for m in metrics.models()] == ["weighted", "unweighted"]


@pytest.mark.parametrize("name", ["weighted", "unweighted"])
def test_ci_run_shows_the_claims(ci_result, name):
    m = getattr(ci_result.metrics, name)
    # the trained models learn the marginals at "[MASK] [MASK] C D [MASK]"
    assert m.p_a == pytest.approx(0.55, abs=0.02)
    assert m.p_b == pytest.approx(0.69, abs=0.02)
    assert m.max_error_at_query == pytest.approx(max(abs(m.p_a - 0.55), abs(m.p_b - 0.69)), abs=1e-12)
    assert m.max_error_at_query <= m.max_error_over_inputs < 0.05
    # parallel argmax picks AB; beam search over the model's own conditionals finds A'B
    assert m.decoding.parallel_pair == "AB"
    assert m.decoding.parallel_pair_joint_probability == pytest.approx(0.34, abs=1e-12)
    assert m.decoding.greedy_pair == "AB"
    assert m.decoding.beam_pair == "A'B"
    assert m.decoding.beam_model_probability == pytest.approx(0.35, abs=0.02)
    # one token per step follows the joint; all at once follows the product of the marginals
    sampling = m.sampling
    assert sampling.tv_sequential_vs_joint < sampling.tv_all_at_once_vs_joint
    assert sampling.tv_all_at_once_vs_joint == pytest.approx(EXACT_TV, abs=0.03)
    assert sampling.tv_sequential_vs_joint < 0.03
    assert sampling.tv_all_at_once_vs_product < 0.03
    # the pair tables are shares of all samples: the invalid share is what they miss
    assert sum(map(sum, sampling.pair_sequential)) == pytest.approx(1 - sampling.invalid_pairs_sequential, abs=1e-12)
    assert sum(map(sum, sampling.pair_all_at_once)) == pytest.approx(1 - sampling.invalid_pairs_all_at_once,
                                                                     abs=1e-12)
    product = sampling.pair_product_of_marginals  # rows A, A'; columns B, B'
    assert product[0][0] == pytest.approx(m.p_a * m.p_b, abs=1e-12)
    # the model's NELBO bounds the true NLL, log 100
    assert m.exact_nelbo_per_sequence >= math.log(100) - 1e-9


def test_ci_run_weighted_and_unweighted_agree(ci_result):
    # Same optimum (Section 3.2.1): the two models' predictions nearly coincide.
    comparison = ci_result.metrics.weighted_vs_unweighted
    assert comparison.max_abs_difference < 0.05
    assert 0 < comparison.mean_tv_at_masks < comparison.max_abs_difference
    # every distinct masked version of the 100 sequences: all 2^5 patterns, repeats counted once
    assert comparison.inputs_compared == 1636


def test_the_marginals_table_rows(ci_result):
    metrics = ci_result.metrics
    rows = metrics.marginals_rows()
    assert [row.denoiser for row in rows] == ["exact (oracle)", "trained, weighted", "trained, unweighted"]
    assert (rows[0].p_a, rows[0].p_b, rows[0].max_error_at_query) == (metrics.oracle.p_a, metrics.oracle.p_b, None)
    assert rows[2].max_error_at_query == metrics.unweighted.max_error_at_query


def test_sampling_noise_by_hand():
    # one pair of probability 1/2 (the other three 1/6): n = 100 draws
    toy = ToyFacts(joint=[[0.5, 1 / 6], [1 / 6, 1 / 6]], joint_mode="AB", tv_product_of_exact_marginals_vs_joint=0.0,
                   true_nll_per_sequence=0.0)
    # 1/2 (sqrt(2 * 1/4 / (100 pi)) + 3 sqrt(2 * 5/36 / (100 pi)))
    expected = 0.5 * (math.sqrt(0.5 / (100 * math.pi)) + 3 * math.sqrt(10 / 36 / (100 * math.pi)))
    assert toy.sampling_noise(100) == pytest.approx(expected, rel=1e-12)
    assert toy.sampling_noise(400) == pytest.approx(expected / 2, rel=1e-12)
    with pytest.raises(ValueError, match="draws must be"):
        toy.sampling_noise(0)


def test_the_sampling_noise_of_the_run(ci_result):
    # the chapter's number: 4,000 exact draws land about 0.0105 from the toy's joint
    assert ci_result.sampling_noise() == pytest.approx(0.0104583, abs=1e-7)
    assert ci_result.sampling_noise() == ci_result.metrics.toy.sampling_noise(4000)


def test_headline_reads_the_typed_fields(ci_result):
    numbers = joint_vs_marginal.headline(ci_result)
    metrics = ci_result.metrics
    assert numbers["weighted: P(A)"] == (metrics.weighted.p_a, 0.02)
    assert numbers["weighted: beam search finds A'B (1 = yes)"] == (1.0, 0.0)
    assert numbers["unweighted: TV(all at once, joint)"] == (metrics.unweighted.sampling.tv_all_at_once_vs_joint, 0.02)
    assert numbers["largest weighted-unweighted difference"] == (metrics.weighted_vs_unweighted.max_abs_difference,
                                                                 0.015)
    assert len(numbers) == 15


def test_ci_run_saves_and_loads_back_equal_and_typed(ci_result, tmp_path):
    path = ci_result.save(tmp_path / "joint_vs_marginal.json")
    loaded = JointVsMarginalResult.load(path)
    assert loaded == ci_result
    assert loaded.metrics.weighted.p_a == ci_result.metrics.weighted.p_a
    assert isinstance(loaded.metrics.weighted.sampling.tv_all_at_once_vs_joint, float)
    assert isinstance(loaded.curves.weighted, History) and isinstance(loaded.config.model, DenoiserConfig)
    assert ExperimentResult.load(path) == ci_result  # the file names its experiment
    stored = json.loads(path.read_text())
    assert stored["experiment"] == "joint_vs_marginal" and stored["schema"] == JointVsMarginalResult.SCHEMA
    assert stored["metrics"]["weighted"]["p_a"] == ci_result.metrics.weighted.p_a


def test_a_file_of_another_experiment_or_schema_is_refused(ci_result, tmp_path):
    record = ci_result.to_json()
    other = tmp_path / "ground_truth.json"
    other.write_text(json.dumps({**record, "experiment": "ground_truth"}))
    with pytest.raises(ValueError, match=r"ground_truth\.json holds a result of experiment 'ground_truth', "
                                         r"not of 'joint_vs_marginal'"):
        JointVsMarginalResult.load(other)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({key: value for key, value in record.items() if key != "schema"}))
    with pytest.raises(ValueError, match=r"old\.json holds a result of 'joint_vs_marginal' written under schema 1"):
        JointVsMarginalResult.load(old)


def test_a_tiny_training_run_saves_models_that_measure_the_same(tmp_path, monkeypatch):
    monkeypatch.setitem(joint_vs_marginal.SCALES, "ci", Scale(preset="toy", steps=8, batch_size=16, lr=3e-3,
                                                              samples=64))
    trained = joint_vs_marginal.run(scale="ci", seed=3, device="cpu", save_models=tmp_path / "models")
    loaded = joint_vs_marginal.run(scale="ci", seed=3, device="cpu", models=tmp_path / "models")
    assert loaded.metrics == trained.metrics and loaded.curves == trained.curves
    assert trained.curves.weighted.step[-1] == 8
    with pytest.raises(ValueError, match=r"settings\.seed: stored 3, now 4"):
        joint_vs_marginal.run(scale="ci", seed=4, device="cpu", models=tmp_path / "models")


def test_the_stored_models_are_measured_in_float64_on_the_cpu():
    from maskdiff_tutor.device import evaluation_dtype

    assert evaluation_dtype(torch.device("cpu")) == torch.float64
    assert evaluation_dtype(torch.device("meta")) == torch.float32  # any accelerator keeps float32
