"""Tests of maskdiff_tutor.records (typed records as strict JSON) and of the typed result envelope
(experiments.result): round trips, every kind of field, non-finite values, and the refusals that
name the place, the experiment and the schema."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from maskdiff_tutor.experiments.result import Environment, ExperimentResult
from maskdiff_tutor.records import from_json, non_finite_places, to_json


@dataclass(frozen=True)
class Row:
    k: int
    ppl: float
    label: str = "x"


@dataclass(frozen=True)
class Tree:
    rows: list[Row]
    by_k: dict[int, Row]
    by_eta: dict[float, float]
    maybe: float | None
    pair: tuple[int, str]
    many: tuple[float, ...]
    flags: list[bool]
    free: dict = field(default_factory=dict)


TREE = Tree(rows=[Row(1, 2.5), Row(2, 3.0, "y")], by_k={1: Row(1, 2.5), 8: Row(8, 9.0)}, by_eta={0.0: 1.0, 0.4: 2.0},
            maybe=None, pair=(3, "AB"), many=(1.0, 2.0), flags=[True, False], free={"a": [1, {"b": None}]})


def test_a_tree_of_records_round_trips_through_json():
    data = to_json(TREE)
    assert data["by_k"] == {"1": {"k": 1, "ppl": 2.5, "label": "x"}, "8": {"k": 8, "ppl": 9.0, "label": "x"}}
    assert data["by_eta"] == {"0.0": 1.0, "0.4": 2.0}
    assert from_json(Tree, json.loads(json.dumps(data, allow_nan=False))) == TREE


def test_tensors_and_numpy_values_become_plain_json():
    data = to_json({"t": torch.tensor([[0.5, 0.25]], dtype=torch.float64), "s": torch.tensor(1.5),
                    "f": np.float64(0.125), "i": np.int64(7)})
    assert data == {"t": [[0.5, 0.25]], "s": 1.5, "f": 0.125, "i": 7}
    assert type(data["i"]) is int


def test_an_int_is_read_as_a_float_but_not_the_other_way():
    assert from_json(Row, {"k": 1, "ppl": 3}) == Row(1, 3.0)
    with pytest.raises(ValueError, match=r"^k: expected an integer; got 1.5$"):
        from_json(Row, {"k": 1.5, "ppl": 3})


@pytest.mark.parametrize("data, error", [
    ({"k": True, "ppl": 1.0}, r"^k: expected an integer; got True$"),
    ({"k": 1, "ppl": "abc"}, r"^ppl: expected a number; got 'abc'$"),
    ({"k": 1, "ppl": None}, r"^ppl: expected a number; got None$"),
    ({"k": 1}, r"^Row: missing field 'ppl' of Row$"),
    ({"k": 1, "ppl": 1.0, "extra": 2}, r"^Row: unknown field\(s\) \['extra'\] for Row \(its fields: "),
    ([1, 2], r"^: expected an object \(Row\); got \[1, 2\]$"),
])
def test_a_value_that_does_not_fit_is_named_by_its_place(data, error):
    with pytest.raises(ValueError, match=error):
        from_json(Row, data)


def test_the_place_of_a_nested_misfit_is_a_path():
    data = to_json(TREE)
    data["rows"][1]["ppl"] = "bad"
    with pytest.raises(ValueError, match=r"^rows\[1\]\.ppl: expected a number; got 'bad'$"):
        from_json(Tree, data)
    data = to_json(TREE)
    data["by_k"]["one"] = data["by_k"].pop("1")
    with pytest.raises(ValueError, match=r"^by_k: key 'one' is not an integer as a result writes it \('12' or '-3': "
                                         r"no sign, space, leading zero or underscore\)$"):
        from_json(Tree, data)
    data = to_json(TREE)
    data["pair"] = [3]
    with pytest.raises(ValueError, match=r"^pair: expected a list of 2 values; got 1$"):
        from_json(Tree, data)


def test_non_finite_floats_are_null_and_restored_from_their_places():
    found = []
    data = to_json({"ppl": [1.5, math.nan, math.inf], "x": -math.inf}, "metrics", found)
    assert data == {"ppl": [1.5, None, None], "x": None}
    assert found == ["metrics.ppl[1]: nan", "metrics.ppl[2]: inf", "metrics.x: -inf"]
    places = non_finite_places(found)
    values = from_json(dict[str, list[float] | float], data, "metrics", places)
    assert values["ppl"][0] == 1.5 and math.isnan(values["ppl"][1]) and values["ppl"][2] == math.inf
    assert values["x"] == -math.inf


def test_what_json_cannot_hold_is_refused_with_its_place():
    with pytest.raises(TypeError, match=r"^a\.b: cannot store object in a JSON result$"):
        to_json({"b": object()}, "a")
    with pytest.raises(TypeError, match=r"dict keys must be strings or numbers; got \(1, 2\)"):
        to_json({(1, 2): 1.0})


# --- the typed envelope ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DemoConfig:
    samples: int


@dataclass(frozen=True)
class DemoMetrics:
    ppl: dict[int, float]
    best: Row


@dataclass(frozen=True)
class DemoResult(ExperimentResult):
    EXPERIMENT = "demo_records"
    config: DemoConfig
    metrics: DemoMetrics
    curves: dict[str, list[float]]


@dataclass(frozen=True)
class OtherResult(ExperimentResult):
    EXPERIMENT = "other_records"
    config: DemoConfig
    metrics: DemoMetrics
    curves: dict[str, list[float]]


def _demo(**ppl) -> DemoResult:
    env = Environment.now(torch.device("cpu"), started=0.0)
    return DemoResult("ci", 3, DemoConfig(10), DemoMetrics({1: 4.5, 8: ppl.get("eight", 20.0)}, Row(1, 4.5)),
                      {"loss": [3.0, 2.0]}, env)


def test_a_typed_result_saves_and_loads_equal(tmp_path):
    result = _demo()
    path = result.save(tmp_path / "deep" / "r.json")
    assert path.read_text().endswith("\n")
    loaded = DemoResult.load(path)
    assert loaded == result and loaded.metrics.ppl[8] == 20.0 and loaded.metrics.best.k == 1
    stored = json.loads(path.read_text())
    assert list(stored)[:4] == ["experiment", "schema", "scale", "seed"]
    assert stored["experiment"] == "demo_records" and stored["schema"] == DemoResult.SCHEMA


def test_a_non_finite_metric_reads_back_as_it_was(tmp_path):
    path = _demo(eight=math.nan).save(tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text
    loaded = DemoResult.load(path)
    assert math.isnan(loaded.metrics.ppl[8])
    assert loaded.environment.non_finite_values == ("metrics.ppl.8: nan",)


def test_a_file_of_another_experiment_is_refused_naming_both(tmp_path):
    path = _demo().save(tmp_path / "r.json")
    with pytest.raises(ValueError, match=rf"^{path} holds a result of experiment 'demo_records', not of "
                                         r"'other_records'"):
        OtherResult.load(path)


def test_a_file_of_an_older_schema_is_refused_naming_both(tmp_path):
    path = tmp_path / "r.json"
    record = _demo().to_json()
    del record["schema"]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"^{path} holds a result of 'demo_records' written under schema 1 .*"
                                         rf"this version reads schema {DemoResult.SCHEMA} of 'demo_records'"):
        DemoResult.load(path)


@pytest.mark.parametrize("text, error", [
    (None, r"no such file \(expected an experiment result\)"),
    ("{not json", r"not readable as an experiment result \(JSONDecodeError"),
    ("[1, 2]", r"a result is a JSON object; got list"),
    ('{"experiment": "x"}', r"not an experiment result \(experiment 'x'; results are of "),
])
def test_a_file_that_is_not_a_result_is_named_in_the_error(tmp_path, text, error):
    path = tmp_path / "r.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{path}: {error}"):
        ExperimentResult.load(path)


def test_a_field_of_the_wrong_kind_is_named_with_the_file(tmp_path):
    path = tmp_path / "r.json"
    record = _demo().to_json()
    record["metrics"]["ppl"]["8"] = "twenty"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"^{path}: metrics\.ppl\.8: expected a number; got 'twenty'$"):
        DemoResult.load(path)


def test_the_environment_names_the_hardware():
    env = Environment.now(torch.device("cpu"), started=0.0)
    assert env.device == "cpu" and env.torch == torch.__version__ and env.numpy == np.__version__
    assert env.wall_seconds > 0 and env.hardware.startswith("CPU (")
    gpu = Environment(**{**env.__dict__, "gpu": "NVIDIA H100 80GB HBM3"})
    assert gpu.hardware == "NVIDIA H100 80GB HBM3"


def test_distinct_keeps_each_value_once_in_the_order_first_seen():
    from maskdiff_tutor.records import distinct

    assert distinct([4, 1, 4, 8, 1]) == [4, 1, 8] and distinct(row.k for row in TREE.rows) == [1, 2]


# --- what a result file may hold, strictly -----------------------------------------------------------

def test_numpy_values_and_keys_are_converted_and_other_types_refused_with_their_place():
    assert to_json({np.int64(3): np.arange(2), "s": np.float32(0.5)}) == {"3": [0, 1], "s": 0.5}
    with pytest.raises(TypeError, match=r"^metrics\.ppl\[0\]: cannot store complex in a JSON result$"):
        to_json({"ppl": np.array([1.0, 1j])}, "metrics")  # a complex array
    with pytest.raises(TypeError, match=r"^metrics\.best: cannot store set in a JSON result$"):
        to_json({"best": {1}}, "metrics")


def test_a_numpy_scalar_in_a_float_field_saves_and_loads_as_a_float(tmp_path):
    result = _demo()
    result = DemoResult(**{**result.__dict__, "metrics": DemoMetrics({1: np.float32(4.5), 8: np.float64(20.0)},
                                                                      Row(np.int64(1), 4.5))})
    loaded = DemoResult.load(result.save(tmp_path / "r.json"))
    assert loaded.metrics.ppl == {1: 4.5, 8: 20.0} and type(loaded.metrics.ppl[1]) is float
    assert type(loaded.metrics.best.k) is int


@pytest.mark.parametrize("metrics, error", [
    (DemoMetrics({1: np.array([4.5, 5.0])}, Row(1, 4.5)),
     r"^DemoResult not saved, as it would not load: metrics\.ppl\.1: expected a number; got \[4\.5, 5\.0\]$"),
    (DemoMetrics({1: object()}, Row(1, 4.5)), r"^metrics\.ppl\.1: cannot store object in a JSON result$"),
])
def test_a_result_that_would_not_load_is_refused_before_the_file_is_opened(tmp_path, metrics, error):
    path = tmp_path / "r.json"
    path.write_text("earlier")
    with pytest.raises(TypeError, match=error):
        DemoResult(**{**_demo().__dict__, "metrics": metrics}).save(path)
    assert path.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_save_checks_its_path_before_the_result(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    unstorable = DemoResult(**{**_demo().__dict__, "metrics": DemoMetrics({1: object()}, Row(1, 4.5))})
    with pytest.raises(ValueError, match=rf"^path {tmp_path / 'pipe'} is a FIFO, not a regular file"):
        unstorable.save(tmp_path / "pipe")
    with pytest.raises(ValueError, match=rf"^path {tmp_path} is a folder; give the path of a file$"):
        _demo().save(tmp_path)


@pytest.mark.parametrize("edit, error", [
    (lambda text: text.replace('"8": 20.0', '"8": NaN'), r"metrics\.ppl\.8: NaN \(strict JSON has no NaN"),
    (lambda text: text.replace('"8": 20.0', '"8": Infinity'), r"metrics\.ppl\.8: Infinity \("),
    (lambda text: text.replace('"8": 20.0', '"8": -Infinity'), r"metrics\.ppl\.8: -Infinity \("),
    (lambda text: text.replace('"8": 20.0', '"8": 20.0, "1": 3.0'), r"metrics\.ppl\.1: the key appears twice"),
    (lambda text: text.replace('"seed": 3,', '"seed": 3, "seed": 4,'), r"seed: the key appears twice"),
])
def test_load_refuses_nan_infinities_and_duplicate_keys_naming_file_and_key(tmp_path, edit, error):
    path = _demo().save(tmp_path / "r.json")
    text = path.read_text().replace("\n", "").replace("  ", "")
    path.write_text(edit(text))
    assert path.read_text() != text
    with pytest.raises(ValueError, match=rf"^{path}: not strict JSON \(an experiment result\): {error}"):
        DemoResult.load(path)


BOOK_RESULTS = sorted((pathlib.Path(__file__).resolve().parents[1] / "book" / "results").glob("*.json"))


@pytest.mark.parametrize("path", BOOK_RESULTS, ids=[p.name for p in BOOK_RESULTS])
def test_each_book_result_round_trips_exactly(path):
    loaded = ExperimentResult.load(path)
    record = loaded.to_json()
    assert record == json.loads(path.read_text())  # written again, the file is the same
    assert type(loaded).from_json(json.loads(json.dumps(record, allow_nan=False))) == loaded


def test_integer_keys_come_back_as_integers():
    path = pathlib.Path(__file__).resolve().parents[1] / "book" / "results" / "ground_truth_ci.json"
    loaded = ExperimentResult.load(path)
    assert loaded.metrics.cost_of_k and all(type(k) is int for k in loaded.metrics.cost_of_k)
    assert list(loaded.metrics.cost_of_k) == [int(k) for k in json.loads(path.read_text())["metrics"]["cost_of_k"]]


def test_a_headline_given_another_experiments_result_names_both_types():
    from maskdiff_tutor.experiments import blocks, book, ground_truth, joint_vs_marginal

    folder = pathlib.Path(__file__).resolve().parents[1] / "book" / "results"
    other = ExperimentResult.load(folder / "blocks_ci.json")
    with pytest.raises(TypeError, match=r"^result must be a GroundTruthResult \(a result of 'ground_truth'\); got "
                                        r"BlocksResult \(a result of 'blocks'\)$"):
        ground_truth.headline(other)
    with pytest.raises(TypeError, match=r"^result must be a BlocksResult \(a result of 'blocks'\); got dict$"):
        blocks.headline({"metrics": {}})
    with pytest.raises(TypeError, match=r"^result must be a JointVsMarginalResult \(a result of 'joint_vs_marginal'\); "
                                        r"got BlocksResult"):
        joint_vs_marginal.headline(other)
    with pytest.raises(TypeError, match=r"^numbers must be an experiment's headline\(result\), a dict name -> "
                                        r"\(value, tolerance\); got BlocksResult$"):
        book.headline_table(other)
    assert blocks.headline(other)  # its own experiment's result is read as before


# --- what a result file says is what is read ---------------------------------------------------------

def _edited(tmp_path, edit) -> pathlib.Path:
    """A saved demo result (ppl[8] NaN) whose JSON ``edit`` changed in place."""
    path = _demo(eight=math.nan).save(tmp_path / "r.json")
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("places, error", [
    ([1], r"environment\.non_finite_values\[0\]: expected '<place>: <nan, inf or -inf>'; got 1$"),
    (["metrics.ppl.8"], r"environment\.non_finite_values\[0\]: expected '<place>: <nan, inf or -inf>'; got "),
    (["metrics.ppl.8: abc"], r"environment\.non_finite_values\[0\]: expected '<place>: <nan, inf or -inf>'"),
    (["metrics.ppl.8: 5.0"], r"environment\.non_finite_values\[0\]: expected '<place>: <nan, inf or -inf>'"),
    (["metrics.ppl.8: nan", "metrics.ppl.8: inf"], r"environment\.non_finite_values\[1\]: the place metrics\.ppl\.8 "
                                                   r"is listed twice$"),
    ("metrics.ppl.8: nan", r"environment\.non_finite_values: expected a list of places; got 'metrics\.ppl\.8: nan'$"),
    (["metrics.ppl.8: nan", "metrics.ppl.1: inf"], r"non_finite_values: metrics\.ppl\.1 is not the place of a null "
                                                   r"number in the record"),
    (["metrics.ppl.8: nan", "nowhere: nan"], r"non_finite_values: nowhere is not the place of a null number"),
])
def test_a_bad_list_of_non_finite_places_is_refused_naming_it(tmp_path, places, error):
    path = _edited(tmp_path, lambda record: record["environment"].update(non_finite_values=places))
    with pytest.raises(ValueError, match=rf"^{path}: {error}"):
        DemoResult.load(path)


@pytest.mark.parametrize("key", ["+1", " 1", "1 ", "-0", "01", "1_0", "\u0661", "1.0", "1e3"])
def test_an_int_key_is_read_only_as_a_result_writes_it(tmp_path, key):
    path = _edited(tmp_path, lambda record: record["metrics"]["ppl"].update({key: 1.0}))
    with pytest.raises(ValueError, match=rf"^{path}: metrics\.ppl: key {re.escape(repr(key))} is not an integer as "
                                         r"a result writes it \('12' or '-3': no sign, space, leading zero or "
                                         r"underscore\)$"):
        DemoResult.load(path)
    assert from_json(dict[int, float], {"-3": 1.0, "0": 2.0, "9" * 30: 3.0}) == {-3: 1.0, 0: 2.0, int("9" * 30): 3.0}


@pytest.mark.parametrize("key", ["1", "1e3", " 0.5", "0.50", "+0.5", "Infinity", "NaN", "1_0.5"])
def test_a_float_key_is_read_only_as_a_result_writes_it(key):
    with pytest.raises(ValueError, match=rf"^by_eta: key {re.escape(repr(key))} is not a number as a result writes "
                                         r"it \(Python's repr, like '0\.5', '1e-05', '-0\.0' or 'inf'\)$"):
        from_json(dict[float, float], {key: 1.0}, "by_eta")
    keys = {0.5: 1.0, -0.0: 2.0, 1e-05: 3.0, 1e300: 4.0, math.inf: 5.0, -math.inf: 6.0}
    read = from_json(dict[float, float], to_json(keys))
    assert read == keys and [repr(k) for k in read] == [repr(k) for k in keys]


def test_a_nan_in_an_optional_float_reads_back_as_nan():
    found = []
    data = to_json(TREE.__class__(**{**TREE.__dict__, "maybe": math.nan}), "", found)
    assert data["maybe"] is None and found == ["maybe: nan"]
    assert math.isnan(from_json(Tree, data, "", non_finite_places(found, "found")).maybe)
    assert from_json(Tree, data).maybe is None  # without the record of its place, a null is None


@dataclass(frozen=True)
class UntypedResult(ExperimentResult):  # config, metrics and curves typed Any, as in ExperimentResult
    EXPERIMENT = "untyped_records"


@pytest.mark.parametrize("metrics, error", [
    ({1: 2.5}, r"^metrics: key 1 in an untyped field would read back as the string '1'; type the field "
               r"\(dict\[int, \.\.\.\]\) or use string keys$"),
    ({"a": {0.5: 1}}, r"^metrics\.a: key 0\.5 in an untyped field would read back as the string '0\.5'"),
    ({"x": [1.0, math.nan]}, r"^metrics\.x\[1\]: nan in an untyped field would read back as null; type the field "
                             r"\(float\) to store it$"),
    ({"x": np.array([math.inf])}, r"^metrics\.x\[0\]: inf in an untyped field would read back as null"),
])
def test_an_untyped_field_refuses_what_would_not_read_back_as_it_was(tmp_path, metrics, error):
    result = UntypedResult("ci", 0, {}, metrics, None, _demo().environment)
    with pytest.raises(TypeError, match=error):
        result.save(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def test_an_untyped_field_reads_back_as_plain_json(tmp_path):
    metrics = {"a": (1, 2.5), "b": np.arange(2), "c": {"d": [None, True, "x"]}}
    result = UntypedResult("ci", 0, {"k": 1}, metrics, [1.5], _demo().environment)
    loaded = UntypedResult.load(result.save(tmp_path / "r.json"))
    assert loaded.metrics == {"a": [1, 2.5], "b": [0, 1], "c": {"d": [None, True, "x"]}}
    assert (loaded.config, loaded.curves) == ({"k": 1}, [1.5])
