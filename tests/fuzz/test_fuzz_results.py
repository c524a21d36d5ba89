"""Fuzz tests of result files (``ExperimentResult.save`` and ``load``, ``records.to_json`` and
``from_json``): generated typed and untyped results round-trip or are refused naming the place;
damaged files (wrong types, missing and unknown fields, odd keys, a bogus list of non-finite
places, another experiment or schema, truncated text, NaN and infinity literals, duplicate keys)
are refused naming the file, or read as exactly what they say."""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import tempfile

import numpy as np
import torch
from fuzzing import OWN_ERRORS, attempt, case, check_refusal, fuzz
from hypothesis import example, given
from hypothesis import strategies as st
from result_cases import (
    ANYTHING,
    ENVIRONMENT,
    FUZZ_RESULTS,
    LOOSE_RESULTS,
    FuzzConfig,
    FuzzMetrics,
    FuzzResult,
    LooseResult,
    Row,
)

from maskdiff_tutor.experiments.result import ExperimentResult
from maskdiff_tutor.records import from_json, to_json

PLACES = ("scale", "seed", "config", "metrics", "curves", "environment", "path")  # what a refusal of a result names


def _leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@fuzz(60)
@given(result=FUZZ_RESULTS)
def test_a_typed_result_round_trips_exactly(result):
    """A typed result with any values its fields allow (NaN and infinities, ints beyond 64 bits,
    negative int keys, float keys, -0.0, any text) saves and loads back equal, value for value."""
    with case(), tempfile.TemporaryDirectory() as folder:
        path = result.save(pathlib.Path(folder) / "r.json")
        loaded = FuzzResult.load(path)
        assert repr(dataclasses.replace(loaded, environment=ENVIRONMENT)) == repr(result), \
            f"saved {result}\nloaded {loaded}"


def _plain(value):
    """``value`` as JSON can hold it, keys kept as they are: arrays and tensors as lists, tuples as lists."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@fuzz(60)
@given(result=LOOSE_RESULTS)
@example(result=LooseResult("ci", 0, {}, {1: 2.5, "x": float("nan")}, {}, ENVIRONMENT))  # issue 22, every run
def test_an_untyped_result_loads_back_as_saved_or_is_refused_naming_the_place(result):
    """Metrics of any kind (numpy arrays and scalars, tensors of any dtype, sets, bytes, complex
    numbers, int, float, bool or tuple keys, NaN): saved, they load back as the same values
    (arrays as lists), keys included; or the save is refused naming the place, and nothing is written."""
    with case(), tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "r.json"
        saved, error = attempt(lambda: result.save(path), PLACES)
        if error is not None:
            assert not path.exists() and _leftovers(pathlib.Path(folder)) == [], "a refused save wrote a file"
            return
        loaded = LooseResult.load(path)
        for name in ("config", "metrics", "curves"):
            before, after = _plain(getattr(result, name)), getattr(loaded, name)
            assert repr(after) == repr(before), f"{name} saved as {before!r:.300}, loaded as {after!r:.300}"


# --- damaged files ---------------------------------------------------------------------------------

BASE = FuzzResult("ci", 3, FuzzConfig(10, "demo", None),
                  FuzzMetrics({1: 2.5, 8: float("nan")}, {0.5: 1.0}, [Row(1, 2.5), Row(2, float("inf"), "y")],
                              Row(1, 2.5), (3, "AB"), (1.0, 2.0), [True]),
                  {"loss": [3.0, 2.0]}, ENVIRONMENT).to_json()
ODD_VALUES = (None, True, 0, -1, 1.5, 1e308, 2**70, "x", "", [], {}, [1, "a"], {"k": 1})
ODD_KEYS = ("x", "1.5", "", "01", " 1", "1_0", "\u0663", "-0", "+1", "1e3", "9" * 30)
ODD_PLACES = (["metrics.ppl.1: abc"], [1], [None], "metrics", [["a"]], ["nowhere: nan"], ["metrics.ppl.1: 5.0"],
              ["metrics.rows[0].ppl: inf"], [])
ENVELOPES = (None, "", "ground_truth", "fuzz_loose_result", 1, 2.0, True, "2", 3)


def _paths(data, here=()):
    """The place of every value in a JSON tree, as tuples of keys and indices."""
    yield here
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, item in children:
        yield from _paths(item, (*here, key))


def _at(data, path):
    for key in path:
        data = data[key]
    return data


@st.composite
def damaged_files(draw):
    """(what was done, the text of a damaged result file)."""
    record = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(("value", "delete", "unknown field", "non-finite list", "key", "envelope",
                                 "truncate", "constant", "duplicate key")))
    places = [p for p in _paths(record) if p]
    if kind == "value":
        path = draw(st.sampled_from(places))
        _at(record, path[:-1])[path[-1]] = draw(st.sampled_from(ODD_VALUES))
    elif kind == "delete":
        path = draw(st.sampled_from(places))
        del _at(record, path[:-1])[path[-1]]
    elif kind == "unknown field":
        path = draw(st.sampled_from([p for p in _paths(record) if isinstance(_at(record, p), dict)]))
        _at(record, path)["zzz"] = 1
    elif kind == "non-finite list":
        record["environment"]["non_finite_values"] = draw(st.sampled_from(ODD_PLACES))
    elif kind == "key":
        record["metrics"]["ppl"][draw(st.sampled_from(ODD_KEYS))] = 1.0
    elif kind == "envelope":
        record[draw(st.sampled_from(("experiment", "schema")))] = draw(st.sampled_from(ENVELOPES))
    text = json.dumps(record, indent=1)
    if kind == "truncate":
        text = text[:draw(st.integers(0, len(text) - 1))]
    elif kind == "constant":
        anchor = draw(st.sampled_from(('"samples": 10', '"ppl": 2.5', '"seed": 3', '2.0\n')))
        number = draw(st.sampled_from(("NaN", "Infinity", "-Infinity", "1e999", "-1e999")))
        text = text.replace(anchor, anchor.split(":")[0] + ": " + number if ":" in anchor else number + "\n", 1)
    elif kind == "duplicate key":
        text = text.replace(*draw(st.sampled_from(((' "seed": 3,', ' "seed": 3,\n "seed": 4,'),
                                                   ('"ppl": {', '"ppl": {\n   "1": 0.5,')))), 1)
    return kind, text


def _says(file, read, where="the file") -> None:
    """Every value of the file's JSON ``file`` is what was ``read`` (read holds no more than defaults)."""
    if isinstance(file, dict):
        assert isinstance(read, dict), f"{where}: {file!r:.80} read as {read!r:.80}"
        for key, value in file.items():
            assert key in read, f"{where}: key {key!r} was read as another (keys read: {sorted(read)})"
            _says(value, read[key], f"{where}.{key}")
    elif isinstance(file, list):
        assert isinstance(read, list) and len(read) == len(file), f"{where}: {file!r:.80} read as {read!r:.80}"
        for i, (a, b) in enumerate(zip(file, read)):
            _says(a, b, f"{where}[{i}]")
    else:
        assert file == read and isinstance(file, bool) == isinstance(read, bool), f"{where}: {file!r} read as {read!r}"


@fuzz(80)
@given(damage=damaged_files())
@example(damage=("key", json.dumps({**BASE, "metrics": {**BASE["metrics"], "ppl": {"1": 2.5, "8": None, "+1": 1.0}}})))
@example(damage=("non-finite list", json.dumps({**BASE, "environment": {**BASE["environment"],
                                                                   "non_finite_values": [1]}})))
def test_a_damaged_result_file_is_refused_naming_it_or_read_as_it_says(damage):
    """``load`` on a damaged file (by the subclass and by ``ExperimentResult``) raises one of the
    package's errors naming the file, or returns a result whose every value is the file's (no key
    read as another, no number changed, the list of non-finite places the true one); NaN and
    infinity literals and duplicate keys are always refused."""
    kind, text = damage
    with case(), tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "r.json"
        path.write_text(text)
        attempt(lambda: ExperimentResult.load(path), (str(path),))
        loaded, error = attempt(lambda: FuzzResult.load(path), (str(path),))
        if error is None:
            assert kind not in ("constant", "duplicate key"), f"a file with {kind} was read: {loaded}"
            _says(json.loads(text), json.loads(json.dumps(loaded.to_json())))


# --- records ---------------------------------------------------------------------------------------

ROW_FIELDS = tuple(f.name for f in dataclasses.fields(Row)) + tuple(f.name for f in dataclasses.fields(FuzzMetrics))
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.sampled_from(ROW_FIELDS) | st.text(max_size=3), children, max_size=4),
                           max_leaves=10)


@fuzz(60)
@given(data=JSON_VALUES | st.builds(lambda value, key: {**BASE["metrics"], key: value},
                                    JSON_VALUES, st.sampled_from(ROW_FIELDS)))
def test_from_json_reads_a_record_or_names_the_place(data):
    """Any JSON value read as a typed record gives the record, or a ``ValueError`` naming the
    place (a field, an index, the record's type) of the first value that does not fit."""
    with case():
        read, error = attempt(lambda: from_json(FuzzMetrics, data), (*ROW_FIELDS, "FuzzMetrics"))
        if error is None:
            assert isinstance(read, FuzzMetrics)


@fuzz(60)
@given(value=ANYTHING)
def test_to_json_gives_strict_json_or_names_the_place(value):
    """Any value (numpy arrays and scalars, tensors of any dtype, sets, bytes, complex numbers, odd
    keys) becomes plain JSON values that strict JSON can write, or is refused naming its place."""
    with case():
        found: list = []
        try:
            plain = to_json(value, "metrics", found)
        except OWN_ERRORS as error:
            check_refusal(error, ("metrics",))
            return
        json.dumps(plain, allow_nan=False)
        assert all(isinstance(item, str) and item.startswith("metrics") for item in found), found
        assert not any(isinstance(v, (np.generic, torch.Tensor)) for v in _leaves(plain)), plain


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value
