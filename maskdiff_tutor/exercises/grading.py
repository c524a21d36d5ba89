"""How an exercise is graded: the student's function against the package's reference, input by input.

A check runs both functions on the same inputs (seeded random ones and edge cases), in order, and
stops at the first input where the student's answer differs from the reference: an exception, a
value that is not a number or an array, another shape, or numbers that differ by more than the
tolerance. Its answer is a ``Grade``, one line when printed:

    PASS check_metric_2: right on all 14 inputs
    FAIL check_metric_2: wrong on input p=[0.5, 0.25]: got 0.75, expected 0.125

Each input reaches each function as a fresh copy, so a function that changes its arguments in
place cannot change what the other one sees.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

RTOL = 1e-6  # relative tolerance of a numeric answer
ATOL = 1e-9  # absolute tolerance, for answers near 0
SHOWN = 90  # characters of a value shown in a message


@dataclass(frozen=True)
class Case:
    """One input of a check: the arguments and how they read in a message."""

    label: str  # e.g. "t=0.25, CosineSchedule()"
    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Grade:
    """The outcome of one check: true when the student's function passed."""

    check: str  # the check's name, e.g. "check_metric_2"
    passed: bool
    detail: str  # what was right, or the first input it gets wrong and how
    inputs: int  # how many inputs were tried (up to the first wrong one)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.check}: {self.detail}"

    def __repr__(self) -> str:  # a notebook prints the one line
        return str(self)


def grade(check: str, student: Callable, reference: Callable, cases: Sequence[Case], *,
          rtol: float = RTOL, atol: float = ATOL) -> Grade:
    """Run ``student`` and ``reference`` on every case; the first difference fails the check.

    Answers are compared as float64 arrays (tensors, numpy arrays, numbers, and tuples or lists of
    them, element by element), booleans and integers exactly.
    """
    if not callable(student):
        raise TypeError(f"{check} takes the function to check (a callable); got {shown(student)}")
    for tried, case in enumerate(cases, start=1):
        expected = reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        try:
            got = student(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        except Exception as error:  # noqa: BLE001 - a student's error is an answer to report
            return Grade(check, False, f"raised {type(error).__name__}: {error} on input {case.label}", tried)
        wrong = difference(got, expected, rtol, atol)
        if wrong is not None:
            return Grade(check, False, f"wrong on input {case.label}: {wrong}", tried)
    return Grade(check, True, f"right on all {len(cases)} inputs", len(cases))


def difference(got, expected, rtol: float = RTOL, atol: float = ATOL, where: str = "") -> str | None:
    """How ``got`` differs from ``expected`` in words, or None where they agree; ``where`` names the
    part of a tuple answer being compared ("answer[0]")."""
    at = f"{where}: " if where else ""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{at}got {shown(got)}, expected a tuple of {len(expected)} values"
        for i, (g, e) in enumerate(zip(got, expected)):
            wrong = difference(g, e, rtol, atol, f"{where or 'answer'}[{i}]")
            if wrong is not None:
                return wrong
        return None
    expected_array = _array(expected)
    try:
        got_array = _array(got)
    except (TypeError, ValueError):
        return f"{at}got {shown(got)}, which is not a number or an array of numbers"
    if got_array.shape != expected_array.shape:
        return f"{at}got shape {got_array.shape}, expected shape {expected_array.shape}"
    wrong = _values_differ(got_array, expected_array, rtol, atol)
    return None if wrong is None else at + wrong


def _values_differ(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> str | None:
    if expected.dtype.kind in "biu":  # booleans, token ids, positions: exactly
        bad = got != expected
    else:
        bad = ~np.isclose(got.astype(np.float64), expected, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    if expected.ndim == 0:
        return f"got {shown(got.item())}, expected {shown(expected.item())}"
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"at index {index} got {shown(got[index].item())}, expected {shown(expected[index].item())}"


def _array(value) -> np.ndarray:
    """``value`` as a numpy array: booleans and integers keep their kind, floats become float64, anything else
    raises ``TypeError``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        value = [_array(v) for v in value]
    array = np.asarray(value)
    if array.dtype.kind in "biu":
        return array
    if array.dtype.kind != "f":  # text, None, objects: not an answer, even where float() would read it
        raise TypeError(f"not a number: {array.dtype}")
    return array.astype(np.float64)


def shown(value) -> str:
    """``value`` as a message shows it: short, on one line, floats (alone or in a list) to 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, float) for v in value):
        value = [float(f"{v:.6g}") for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        text = np.array2string(value, precision=6, separator=", ", threshold=12)
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."
