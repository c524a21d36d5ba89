"""Typed results for the fuzz tests of result files, and strategies that generate them: every kind of
field a result may hold (ints, floats with NaN and infinities, strings, optional values, lists,
tuples, ``dict[int, ...]`` and ``dict[float, ...]``, nested records) and an untyped result whose
metrics are anything (numpy arrays, tensors, int keys)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from maskdiff_tutor.experiments.result import Environment, ExperimentResult


@dataclass(frozen=True)
class Row:
    k: int
    ppl: float
    label: str = "x"


@dataclass(frozen=True)
class FuzzConfig:
    samples: int
    name: str
    eta: float | None


@dataclass(frozen=True)
class FuzzMetrics:
    ppl: dict[int, float]
    by_eta: dict[float, float]
    rows: list[Row]
    best: Row | None
    pair: tuple[int, str]
    many: tuple[float, ...]
    flags: list[bool]


@dataclass(frozen=True)
class FuzzResult(ExperimentResult):
    EXPERIMENT = "fuzz_result"
    config: FuzzConfig
    metrics: FuzzMetrics
    curves: dict[str, list[float]]


@dataclass(frozen=True)
class LooseResult(ExperimentResult):
    """Config, metrics and curves of any kind (``Any``), as an experiment that has not typed them."""

    EXPERIMENT = "fuzz_loose_result"


ENVIRONMENT = Environment.now(torch.device("cpu"), time.time())
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from((0.0, -0.0, 5e-324, 1e308))
FINITE = st.floats(allow_nan=False, allow_infinity=False)
INTS = st.integers(-(2**70), 2**70) | st.sampled_from((0, -1, 2**63))
TEXT = st.text(max_size=8) | st.sampled_from(("", "\ud800", "é", "a\x00b", "NaN", "1"))
ROWS = st.builds(Row, INTS, FLOATS, TEXT)

FUZZ_RESULTS = st.builds(
    FuzzResult, scale=TEXT, seed=INTS,
    config=st.builds(FuzzConfig, INTS, TEXT, st.none() | FLOATS),
    metrics=st.builds(FuzzMetrics, st.dictionaries(INTS, FLOATS, max_size=4),
                      st.dictionaries(FINITE | st.sampled_from((math.inf, -math.inf)), FLOATS, max_size=3),
                      st.lists(ROWS, max_size=3), st.none() | ROWS, st.tuples(INTS, TEXT),
                      st.lists(FLOATS, max_size=4).map(tuple), st.lists(st.booleans(), max_size=3)),
    curves=st.dictionaries(TEXT, st.lists(FLOATS, max_size=4), max_size=3), environment=st.just(ENVIRONMENT))

ANYTHING = st.recursive(
    st.none() | st.booleans() | INTS | FLOATS | TEXT
    | st.sampled_from((np.float32(1.5), np.int64(3), np.bool_(True), np.float64("nan"), np.arange(3),
                       np.array([[0.5, np.nan]]), np.array([1 + 2j]), np.array(["a"]), np.array([1], dtype=object),
                       torch.tensor([0.5], dtype=torch.bfloat16), torch.tensor(True), torch.tensor([1j]),
                       {1, 2}, b"bytes", 1j, object)),
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children)
    | st.dictionaries(TEXT | INTS | FINITE | st.sampled_from((True, None, (1, 2))), children, max_size=3),
    max_leaves=8)

LOOSE_RESULTS = st.builds(LooseResult, scale=st.just("ci"), seed=st.just(0), config=ANYTHING, metrics=ANYTHING,
                          curves=ANYTHING, environment=st.just(ENVIRONMENT))
