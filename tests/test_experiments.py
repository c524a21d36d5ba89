"""Tests of maskdiff_tutor.experiments: the JSON record, the joint-vs-marginal helpers against
hand computations, and the CI-scale experiment measured on the book's stored models (the ones
the chapter shows), whose metrics must show the paper's claims (Section 3.2.2). Training itself
is tested at a tiny scale here and retrained at full scale by ``maskdiff-tutor book-models --check``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from maskdiff_tutor.experiments import joint_vs_marginal, trained_models
from maskdiff_tutor.experiments.joint_vs_marginal import (
    SCALES,
    Scale,
    pair_distribution,
    pair_name,
    total_variation,
)
from maskdiff_tutor.experiments.result import ExperimentResult, environment

EXACT_TV = 0.079  # TV between the toy joint of (x^1, x^2) and the product of its marginals


# ----------------------------------------------------------------------------- the record


def test_result_save_load_round_trip(tmp_path):
    result = ExperimentResult("demo", "ci", 3, config={"a": 1, "nested": {"b": [1, 2]}},
                              metrics={"tensor": torch.tensor([[0.5, 0.25], [1.0, 2.0]], dtype=torch.float64),
                                       "scalar_tensor": torch.tensor(1.5), "numpy": np.float64(0.125),
                                       "numpy_int": np.int64(7), "plain": 0.1, "text": "AB"},
                              curves={"loss": [3.0, 2.0]}, environment={"device": "cpu"})
    path = result.save(tmp_path / "deep" / "dir" / "r.json")
    assert path == tmp_path / "deep" / "dir" / "r.json" and path.read_text().endswith("\n")
    loaded = ExperimentResult.load(path)
    assert loaded.metrics["tensor"] == [[0.5, 0.25], [1.0, 2.0]]
    assert loaded.metrics["scalar_tensor"] == 1.5
    assert loaded.metrics["numpy"] == 0.125 and loaded.metrics["numpy_int"] == 7
    assert loaded == ExperimentResult("demo", "ci", 3, {"a": 1, "nested": {"b": [1, 2]}},
                                      {"tensor": [[0.5, 0.25], [1.0, 2.0]], "scalar_tensor": 1.5, "numpy": 0.125,
                                       "numpy_int": 7, "plain": 0.1, "text": "AB"},
                                      {"loss": [3.0, 2.0]}, {"device": "cpu"})
    assert json.loads(path.read_text())["experiment"] == "demo"


def test_result_refuses_what_json_cannot_store(tmp_path):
    result = ExperimentResult("demo", "ci", 0, config={"object": object()})
    with pytest.raises(TypeError, match="cannot store object in a result"):
        result.save(tmp_path / "r.json")


def test_environment_record():
    env = environment(torch.device("cpu"), started=0.0)
    assert {"maskdiff_tutor", "numpy", "python", "device", "torch", "wall_seconds", "finished"} <= set(env)
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["wall_seconds"] > 0


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
    assert ci_result.experiment == "joint_vs_marginal" and ci_result.scale == "ci" and ci_result.seed == 0
    assert ci_result.config["scale"] == {"preset": "toy", "steps": 1500, "batch_size": 256, "lr": 3e-3,
                                         "samples": 4000}
    assert ci_result.config["query"] == "[MASK] [MASK] C D [MASK]"
    assert ci_result.config["evaluated_in"] == "float64"
    env = ci_result.environment
    assert env["torch"] == torch.__version__
    assert env["device"] == "cpu" and env["training"]["device"] == "cpu"
    assert env["wall_seconds"] > 0 and env["training"]["wall_seconds"] > 0
    for name in ("weighted", "unweighted"):
        curve = ci_result.curves[name]
        assert curve["step"][-1] == 1500 and len(curve["step"]) == 100
        assert sum(curve["loss"][-10:]) < sum(curve["loss"][:10])


def test_ci_run_exact_references(ci_result):
    metrics = ci_result.metrics
    assert metrics["oracle"]["P(A)"] == pytest.approx(0.55, abs=1e-12)
    assert metrics["oracle"]["P(B)"] == pytest.approx(0.69, abs=1e-12)
    assert metrics["toy"]["joint_mode"] == "A'B"
    assert metrics["toy"]["tv_product_of_exact_marginals_vs_joint"] == pytest.approx(EXACT_TV, abs=1e-12)
    assert metrics["toy"]["true_nll_per_sequence"] == pytest.approx(math.log(100), abs=1e-12)


@pytest.mark.parametrize("name", ["weighted", "unweighted"])
def test_ci_run_shows_the_claims(ci_result, name):
    m = ci_result.metrics[name]
    # the trained models learn the marginals at "[MASK] [MASK] C D [MASK]"
    assert m["P(A)"] == pytest.approx(0.55, abs=0.02)
    assert m["P(B)"] == pytest.approx(0.69, abs=0.02)
    # parallel argmax picks AB; beam search over the model's own conditionals finds A'B
    assert m["parallel_argmax"] == "AB"
    assert m["parallel_argmax_joint_probability"] == pytest.approx(0.34, abs=1e-12)
    assert m["greedy_left_to_right"] == "AB"
    assert m["beam_search_width_2"] == "A'B"
    assert m["beam_model_probability"] == pytest.approx(0.35, abs=0.02)
    # one token per step follows the joint; all at once follows the product of the marginals
    assert m["tv_sequential_vs_joint"] < m["tv_all_at_once_vs_joint"]
    assert m["tv_all_at_once_vs_joint"] == pytest.approx(EXACT_TV, abs=0.03)
    assert m["tv_sequential_vs_joint"] < 0.03
    assert m["tv_all_at_once_vs_product"] < 0.03
    # the model's NELBO bounds the true NLL, log 100
    assert m["exact_nelbo_per_sequence"] >= math.log(100) - 1e-9


def test_ci_run_weighted_and_unweighted_agree(ci_result):
    # Same optimum (Section 3.2.1): the two models' predictions nearly coincide.
    assert ci_result.metrics["weighted_vs_unweighted"]["max_abs_difference"] < 0.05


def test_ci_run_saves_and_loads_back_equal(ci_result, tmp_path):
    path = ci_result.save(tmp_path / "joint_vs_marginal.json")
    loaded = ExperimentResult.load(path)
    assert loaded == ci_result
    stored = json.loads(path.read_text())
    assert {"config", "metrics", "curves", "environment"} <= set(stored)


def test_a_tiny_training_run_saves_models_that_measure_the_same(tmp_path, monkeypatch):
    monkeypatch.setitem(joint_vs_marginal.SCALES, "ci", Scale(preset="toy", steps=8, batch_size=16, lr=3e-3,
                                                              samples=64))
    trained = joint_vs_marginal.run(scale="ci", seed=3, device="cpu", save_models=tmp_path / "models")
    loaded = joint_vs_marginal.run(scale="ci", seed=3, device="cpu", models=tmp_path / "models")
    assert loaded.metrics == trained.metrics and loaded.curves == trained.curves
    assert trained.curves["weighted"]["step"][-1] == 8
    with pytest.raises(ValueError, match=r"settings\.seed: stored 3, now 4"):
        joint_vs_marginal.run(scale="ci", seed=4, device="cpu", models=tmp_path / "models")


def test_the_stored_models_are_measured_in_float64_on_the_cpu():
    from maskdiff_tutor.device import evaluation_dtype

    assert evaluation_dtype(torch.device("cpu")) == torch.float64
    assert evaluation_dtype(torch.device("meta")) == torch.float32  # any accelerator keeps float32
