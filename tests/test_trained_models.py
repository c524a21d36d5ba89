"""Stored trained models (maskdiff_tutor.experiments.trained_models and .book): saving and loading a
set with its settings, refusing a set trained under other settings, atomic replacement, the
comparison of headline numbers, the book's stored sets against today's settings, and the retrain
check on a tiny scale (where retraining on the same machine is exact)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
from maskdiff_tutor.experiments import blocks, book, ground_truth, joint_vs_marginal, ladder, trained_models
from maskdiff_tutor.experiments.result import Environment
from maskdiff_tutor.experiments.trained_models import Comparison, TrainedModels
from maskdiff_tutor.train import History

TINY_JOINT = joint_vs_marginal.Scale(preset="toy", steps=6, batch_size=8, lr=3e-3, samples=40)


def two_models(seed=0):
    torch.manual_seed(seed)
    config = DenoiserConfig(vocab_size=7, max_seq_len=4, d_model=16, n_layers=1, n_heads=2)
    return {"first": Denoiser(config), "second model B=2": Denoiser(config)}


ENVIRONMENT = Environment(maskdiff_tutor="0", numpy="1", python="3", torch="2", device="cpu", platform="Linux",
                          processor="x86_64", cpu_threads=2, wall_seconds=1.5, finished="2026-01-01T00:00:00Z")


def a_set(seed=0):
    models = two_models(seed)
    histories = {name: History([1, 2], [2.0, 1.5], [1e-3, 2e-3], [0.5, 0.25], [8, 16]) for name in models}
    return TrainedModels(models, histories, ENVIRONMENT)


def test_save_then_load_gives_the_same_weights_histories_and_environment(tmp_path):
    saved = a_set()
    settings = {"steps": 6, "blocks": (4, 8), "seed": 0}
    trained_models.save(tmp_path / "set", "demo", settings, saved)
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == ["first", "second_model_B_2", "training.json"]
    loaded = trained_models.load(tmp_path / "set", "demo", settings)
    assert list(loaded.models) == ["first", "second model B=2"]
    for name, model in saved.models.items():
        for (key, a), b in zip(model.state_dict().items(), loaded.models[name].state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    assert loaded.histories == saved.histories and loaded.environment == ENVIRONMENT
    assert isinstance(loaded.histories["first"], History) and isinstance(loaded.environment, Environment)


def test_a_stored_history_of_the_wrong_kind_is_named(tmp_path):
    trained_models.save(tmp_path / "set", "demo", {"seed": 0}, a_set())
    path = tmp_path / "set" / "training.json"
    record = json.loads(path.read_text())
    record["models"]["first"]["history"]["loss"][1] = "low"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"models\.first\.history.*loss\[1\]"):
        trained_models.load(tmp_path / "set", "demo", {"seed": 0})


def test_load_refuses_other_settings_and_names_the_first_difference(tmp_path):
    trained_models.save(tmp_path / "set", "demo", {"steps": 6, "model": {"d_model": 16}}, a_set())
    with pytest.raises(ValueError, match=r"settings\.model\.d_model: stored 16, now 32"):
        trained_models.load(tmp_path / "set", "demo", {"steps": 6, "model": {"d_model": 32}})
    with pytest.raises(ValueError, match=r"settings\.lr is missing from the stored record"):
        trained_models.load(tmp_path / "set", "demo", {"steps": 6, "model": {"d_model": 16}, "lr": 0.1})
    with pytest.raises(ValueError, match="holds models of experiment 'demo', not 'other'"):
        trained_models.load(tmp_path / "set", "other", {"steps": 6, "model": {"d_model": 16}})
    with pytest.raises(ValueError, match="has no training.json"):
        trained_models.load(tmp_path, "demo", {})


def test_save_replaces_an_earlier_set_whole_and_leaves_no_staging_folder(tmp_path):
    trained_models.save(tmp_path / "set", "demo", {"seed": 0}, a_set(0))
    (tmp_path / "set" / "stray.txt").write_text("from the earlier set")
    trained_models.save(tmp_path / "set", "demo", {"seed": 1}, a_set(1))
    assert not (tmp_path / "set" / "stray.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
    assert json.loads((tmp_path / "set" / "training.json").read_text())["settings"] == {"seed": 1}


def test_a_failed_save_keeps_the_earlier_set(tmp_path):
    trained_models.save(tmp_path / "set", "demo", {"seed": 0}, a_set(0))
    broken = TrainedModels(two_models(), {}, ENVIRONMENT)  # no histories: the record cannot be written
    with pytest.raises(KeyError):
        trained_models.save(tmp_path / "set", "demo", {"seed": 1}, broken)
    assert json.loads((tmp_path / "set" / "training.json").read_text())["settings"] == {"seed": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_compare_by_hand():
    rows = trained_models.compare({"a": (0.5, 0.01), "b": (1.0, 0.0), "c": (2.0, 0.1)},
                                  {"a": (0.509, 0.01), "b": (1.0, 0.0), "c": (float("nan"), 0.1)})
    assert rows[1] == Comparison("b", 1.0, 1.0, 0.0, 0.0, True)
    assert [(r.name, r.within) for r in rows] == [("a", True), ("b", True), ("c", False)]
    assert rows[0].difference == pytest.approx(0.009) and rows[0].stored == 0.5 and rows[0].retrained == 0.509


def test_book_folder_of_an_unknown_experiment_is_an_error():
    with pytest.raises(ValueError, match="no trained models for experiment 'nope'.*book-models"):
        trained_models.book_folder("nope")


@pytest.mark.parametrize("seed", book.SEEDS)
@pytest.mark.parametrize("module", [joint_vs_marginal, ground_truth, blocks, ladder])
def test_the_books_stored_models_were_trained_with_todays_settings(module, seed):
    name = module.__name__.rsplit(".", 1)[1]
    record = json.loads((book.model_folder(name, seed) / "training.json").read_text())
    scale = module.SCALES[book.SCALE]
    assert record["experiment"] == name and record["settings"]["seed"] == seed
    for field in module.TRAINING_FIELDS:
        assert record["settings"][field] == json.loads(json.dumps(getattr(scale, field))), field
    for entry in record["models"].values():
        assert entry["history"]["step"], "every stored model has its training history"


def test_book_experiment_names_are_checked():
    with pytest.raises(ValueError, match="experiment must be one of"):
        book.make("bogus")


@pytest.fixture
def tiny_book(tmp_path, monkeypatch):
    """The joint-vs-marginal experiment at a tiny scale, its 'book' set stored under tmp_path."""
    monkeypatch.setitem(joint_vs_marginal.SCALES, "ci", TINY_JOINT)
    monkeypatch.setattr(trained_models, "BOOK_MODELS", tmp_path / "book_models")
    book.make("joint_vs_marginal", device="cpu")
    return tmp_path / "book_models" / "joint_vs_marginal"


def test_measuring_the_stored_set_equals_the_run_that_trained_it(tiny_book):
    trained_then = joint_vs_marginal.run(scale="ci", seed=0, device="cpu")
    stored = book.measure("joint_vs_marginal", device="cpu")
    assert stored.metrics == trained_then.metrics and stored.curves == trained_then.curves
    assert stored.environment.training.device == "cpu"


def test_check_passes_when_retraining_is_exact_and_fails_when_the_stored_weights_moved(tiny_book):
    report = book.check("joint_vs_marginal", device="cpu")
    assert isinstance(report, book.Check) and report.experiment == "joint_vs_marginal"
    assert report.passed and all(row.difference == 0 for row in report.rows)
    assert "every number within its tolerance" in book.format_check(report)
    assert book.format_check(report).startswith("joint_vs_marginal: retrained in ")
    # replace the stored weighted model by a differently initialised one: the check must see it
    record = json.loads((tiny_book / "training.json").read_text())
    torch.manual_seed(123)
    other = Denoiser(DenoiserConfig(**record["settings"]["model"]))
    from maskdiff_tutor.denoiser import save_denoiser

    save_denoiser(other, tiny_book / "weighted")
    report = book.check("joint_vs_marginal", device="cpu")
    assert not report.passed
    assert "outside" in book.format_check(report)


def test_measure_refuses_stored_models_of_another_scale(tiny_book, monkeypatch):
    monkeypatch.setitem(joint_vs_marginal.SCALES, "ci", dataclasses.replace(TINY_JOINT, steps=7))
    with pytest.raises(ValueError, match=r"settings\.steps: stored 6, now 7"):
        book.measure("joint_vs_marginal", device="cpu")


def test_spread_measures_each_number_across_seeds(tiny_book):
    report = book.spread("joint_vs_marginal", seeds=(1,), device="cpu")
    assert isinstance(report, book.Spread) and report.seeds == [0, 1]
    stored = joint_vs_marginal.headline(book.measure("joint_vs_marginal", device="cpu"))
    other = joint_vs_marginal.headline(joint_vs_marginal.run(scale="ci", seed=1, device="cpu"))
    assert [row.name for row in report.rows] == list(stored)
    for row in report.rows:
        assert row.values == [stored[row.name][0], other[row.name][0]] and row.tolerance == stored[row.name][1]
        assert row.spread == pytest.approx(abs(row.values[0] - row.values[1]))
        assert row.within == (row.spread <= row.tolerance)
    assert "seed 1" in book.format_spread(report)


def test_other_seeds_are_stored_beside_the_books_with_their_seed_in_the_record(tiny_book):
    result = book.make("joint_vs_marginal", device="cpu", seed=1)
    folder = tiny_book.parent / "joint_vs_marginal_seed_1"
    assert book.model_folder("joint_vs_marginal", 1) == folder
    assert json.loads((folder / "training.json").read_text())["settings"]["seed"] == 1
    measured = book.measure("joint_vs_marginal", device="cpu", seed=1)
    assert measured.seed == 1 and measured.metrics == result.metrics
    assert measured.metrics != book.measure("joint_vs_marginal", device="cpu").metrics
    report = book.spread("joint_vs_marginal", seeds=(1,), device="cpu")  # measured on the stored seed-1 models
    stored_1 = joint_vs_marginal.headline(measured)
    assert [row.values[1] for row in report.rows] == [value for value, _ in stored_1.values()]


def test_a_seed_the_book_does_not_store_is_named_with_the_command_that_makes_it(tiny_book):
    with pytest.raises(ValueError, match=r"no models of 'joint_vs_marginal' trained with seed 2 .*"
                                         r"book-models --experiment joint-vs-marginal --seed 2"):
        book.measure("joint_vs_marginal", device="cpu", seed=2)
    with pytest.raises(ValueError, match=r"seed must be one of the book's seeds \(0, 1, 2\); got 7"):
        book.model_folder("joint_vs_marginal", 7)


def test_book_results_are_written_for_every_seed_of_the_stored_models(tiny_book, tmp_path):
    for seed in (1, 2):
        book.make("joint_vs_marginal", device="cpu", seed=seed)
    written = book.save_results(tmp_path / "results", device="cpu", report=lambda line: None,
                                only=("joint_vs_marginal",))
    assert [p.name for p in written] == ["joint_vs_marginal_ci.json", "joint_vs_marginal_ci_seed1.json",
                                         "joint_vs_marginal_ci_seed2.json"]
    assert book.seed_file("blocks_ci.json", 0) == "blocks_ci.json"
    rows = book._stored_seed_rows("joint_vs_marginal", "cpu", tmp_path / "results")  # what check adds
    assert rows and all(row.within for row in rows)
    assert {row.name.split(":")[0] for row in rows} == {"seed 1 stored result", "seed 2 stored result"}
    with pytest.raises(ValueError, match="only must name experiments of the book's results"):
        book.save_results(tmp_path / "results", only=("joint_vs_marginal", "bogus"))


def test_train_or_load_refuses_both_folders_and_trains_only_when_asked(tmp_path):
    calls = []

    def train():
        calls.append(1)
        return a_set()

    trained_models.train_or_load("demo", {"seed": 0}, train, save_models=tmp_path / "set")
    loaded = trained_models.train_or_load("demo", {"seed": 0}, train, models=tmp_path / "set")
    assert len(calls) == 1 and list(loaded.models) == ["first", "second model B=2"]
    with pytest.raises(ValueError, match="at most one of models= .* and save_models="):
        trained_models.train_or_load("demo", {"seed": 0}, train, save_models=tmp_path / "x", models=tmp_path / "set")
    assert len(calls) == 1


def test_training_settings_by_hand():
    config = DenoiserConfig(vocab_size=7, max_seq_len=4, d_model=16, n_layers=1, n_heads=2)
    settings = trained_models.training_settings(TINY_JOINT, ("steps", "lr"), 3, config, language={"kind": "toy"})
    assert settings == {"steps": 6, "lr": 3e-3, "seed": 3, "model": dataclasses.asdict(config),
                        "language": {"kind": "toy"}}


def test_headline_numbers_show_as_a_table_with_their_tolerances():
    table = book.headline_table({"weighted: P(A)": (0.55612, 0.02), "weighted: P(B)": (0.6871, 0.01)})
    assert table.columns == ["number", "value", "retraining may move it by"]
    assert table.cells() == [["weighted: P(A)", "0.556", "0.020"], ["weighted: P(B)", "0.687", "0.010"]]
