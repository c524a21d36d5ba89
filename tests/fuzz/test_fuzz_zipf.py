"""Fuzz tests of the Zipf helpers (``maskdiff_tutor.zipf``) with generated exponents, vocabulary sizes
(up to 10^400), counts, probabilities, perplexity columns and budgets, in and out of their domains
(NaN, infinities, negatives, strings, None, bools, numpy scalars, complex numbers, nested and empty
arrays). Numpy's warnings of an invalid value (a NaN made on the way) or a dropped complex part are
errors here: a value that only warns is silent garbage."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from fuzzing import attempt, case, fuzz
from hypothesis import given
from hypothesis import strategies as st

from maskdiff_tutor import zipf

NAN, INF = float("nan"), float("inf")
ODD = (None, "1.5", True, 1j, [1.5])  # not numbers at all
EXPONENTS = (st.floats(0.01, 8) | st.sampled_from((1.0, 1.05, 2, Fraction(3, 2), np.float32(1.5), 1e-300, 5e-324,
                                                   1e3, 1e308))
             | st.sampled_from((0, -1.0, -0.0, NAN, INF, -INF, *ODD)))
SIZES = (st.integers(2, 10**6) | st.integers(10**6, 10**400) | st.sampled_from((2, np.int64(50), 10**20, 10**400))
         | st.sampled_from((1, 0, -5, 2.0, 2.5, NAN, INF, *ODD)))
COUNT = st.integers(1, 300)
COUNTS = (COUNT | st.lists(COUNT, min_size=1, max_size=6) | st.lists(st.lists(COUNT, min_size=2, max_size=2),
                                                                      min_size=1, max_size=3)
          | st.sampled_from((0, -1, 1.5, NAN, INF, [], [[]], [1, 0], [1, -2], np.array([2.0, 3.5]), *ODD)))
PROBABILITY = st.floats(0, 1)
PROBABILITIES = (st.lists(PROBABILITY, min_size=1, max_size=6)
                 | st.lists(st.lists(PROBABILITY, min_size=3, max_size=3), min_size=1, max_size=3)
                 | st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=4)
                 | st.sampled_from((0.5, [], [[]], [0.5, NAN], [-0.1], [1.1], [0.2, 1j], ["0.5"], [None],
                                    [[0.5], [0.5, 0.5]],
                                    np.array([0.5, 0.25], dtype=np.float16), np.array([True, False]), *ODD)))
PERPLEXITY = st.floats(1, 1e6)
COLUMNS = (st.lists(PERPLEXITY, min_size=1, max_size=8).map(sorted)
           | st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5)
           | st.sampled_from(([], [1.0, INF], [INF, INF], [2.0, NAN], [[2.0, 3.0]], [3.0, 2.0], [0.5], 2.0, *ODD)))
BUDGETS = st.floats(1, 1e4) | st.sampled_from((1, 0.5, 0, -1, NAN, INF, *ODD))


def _finite(value) -> bool:
    return bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))


def _no_nan(value) -> bool:
    return not bool(np.any(np.isnan(np.asarray(value, dtype=np.float64))))


# --- what each helper's output must satisfy ----------------------------------------------------------

def _harmonic(out, s, N):
    assert isinstance(out, float) and math.isfinite(out) and 1 <= out <= N, f"H = {out}"
    if N <= 2000:  # the sum itself, term by term
        reference = math.fsum(r ** -float(s) for r in range(1, int(N) + 1))
        assert math.isclose(out, reference, rel_tol=1e-12), f"H = {out}, the sum is {reference}"


def _omegas(out, s, N):
    omega1, omega2 = out
    assert 0 <= omega2 <= omega1 <= 1 and omega1 > 0, f"omegas {out}"


def _bound_limit(out, s, N):
    assert 0 < out <= 0.5 + 1e-15, f"p* = {out}"


def _top_probability_bound(out, n, s, N):
    assert _no_nan(out) and bool(np.all((np.asarray(out) > 0) & (np.asarray(out) <= 1 + 1e-12))), f"bound {out}"


def _metric(out, p):
    assert _no_nan(out) and bool(np.all((np.asarray(out) >= 0) & (np.asarray(out) <= 1))), f"metric {out}"


def _perplexity(out, joint_probability, n):
    out = np.asarray(out, dtype=np.float64)
    assert _no_nan(out) and bool(np.all(out >= 1 - 1e-12)), f"perplexity {out} from {joint_probability!r}"


def _joint(out, k, s, N, **metric):
    assert _no_nan(out) and bool(np.all((np.asarray(out) >= 0) & (np.asarray(out) <= 1))), f"joint {out}"


def _perplexity_bound(out, k, s, N):
    assert _no_nan(out) and bool(np.all(np.asarray(out) >= 1 - 1e-12)), f"perplexity bound {out}"


def _table(out, s, N, ks):
    for row in out:
        assert all(not math.isnan(value) for value in vars(row).values()), f"NaN in {row}"


def _largest(out, ppl, ppl_budget):
    column = np.asarray(ppl, dtype=np.float64)
    assert _no_nan(column), f"a column with NaN was read: {ppl!r} -> {out}"
    assert isinstance(out, int) and out == int((column <= ppl_budget).sum()), f"{out} of {ppl!r}"


def _most_parallel(out, ppl_budget, s, N, k_max):
    if out == INF:
        return
    assert out == int(out) and 0 <= out <= k_max, f"{out}"
    ppl = zipf.parallel_perplexity_bound(np.arange(1, k_max + 2), s, N)  # one beyond the search
    assert out == int((ppl[:k_max] <= ppl_budget).sum()), f"{out}: PPL_1..{k_max} = {ppl[:k_max]}"
    assert ppl[int(out)] > ppl_budget, (f"returned {out}, but PPL_{int(out) + 1} = {ppl[int(out)]} is within the "
                                        f"budget {ppl_budget}: the answer lies beyond k_max")


def _implied(out, ppl):
    assert _no_nan(out) and bool(np.all(np.asarray(out) >= 0)), f"implied probabilities {out} from {ppl!r}"


HELPERS = {  # name -> (its keyword arguments, the check of its output)
    "harmonic": (st.fixed_dictionaries({"s": EXPONENTS, "N": SIZES}), _harmonic),
    "omegas": (st.fixed_dictionaries({"s": EXPONENTS, "N": SIZES}), _omegas),
    "bound_limit": (st.fixed_dictionaries({"s": EXPONENTS, "N": SIZES}), _bound_limit),
    "top_probability_bound": (st.fixed_dictionaries({"n": COUNTS | st.just(0), "s": EXPONENTS, "N": SIZES}),
                              _top_probability_bound),
    "metric_1": (st.fixed_dictionaries({"p": PROBABILITIES}), _metric),
    "metric_2": (st.fixed_dictionaries({"p": PROBABILITIES}), _metric),
    "metric_3": (st.fixed_dictionaries({"p": PROBABILITIES}), _metric),
    "perplexity": (st.fixed_dictionaries({"joint_probability": PROBABILITIES, "n": COUNTS}), _perplexity),
    "metric_bounds": (st.fixed_dictionaries({"k": COUNTS, "s": EXPONENTS, "N": SIZES}, optional={
        "metric": st.sampled_from((zipf.metric_1, zipf.metric_3, None, "metric_2"))}), _joint),
    "parallel_joint_bound": (st.fixed_dictionaries({"k": COUNTS, "s": EXPONENTS, "N": SIZES}), _joint),
    "parallel_perplexity_bound": (st.fixed_dictionaries({"k": COUNTS, "s": EXPONENTS, "N": SIZES}),
                                  _perplexity_bound),
    "perplexity_table": (st.fixed_dictionaries({"s": EXPONENTS, "N": SIZES, "ks": COUNTS.map(
        lambda k: k if isinstance(k, (list, np.ndarray)) else [k])}), _table),
    "largest_within_budget": (st.fixed_dictionaries({"ppl": COLUMNS, "ppl_budget": BUDGETS}), _largest),
    "max_parallel_samples": (st.fixed_dictionaries({"ppl_budget": BUDGETS, "s": EXPONENTS, "N": SIZES,
                                                    "k_max": st.integers(1, 2000) | st.sampled_from((0, -1, 2.5))}),
                             _most_parallel),
    "implied_probabilities": (st.fixed_dictionaries({"ppl": COLUMNS}), _implied),
}


@pytest.mark.parametrize("helper", HELPERS)
@fuzz(20)
@given(data=st.data())
def test_a_zipf_helper_returns_numbers_or_names_the_bad_argument(helper, data):
    """Each helper returns numbers in its range without NaN (the harmonic number its sum, the
    largest k within a budget the one the bound's column says), or raises one of the package's
    errors, on one line, naming one of its arguments; no numpy warning."""
    arguments, check = HELPERS[helper]
    kwargs = data.draw(arguments, label="arguments")
    with case(), warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN made on the way ("invalid value"), a complex part dropped
        warnings.filterwarnings("ignore", "(overflow|divide by zero) encountered")  # inf, which the checks see
        out, error = attempt(lambda: getattr(zipf, helper)(**kwargs), tuple(kwargs))
        if error is None:
            check(out, **kwargs)


def test_every_public_zipf_helper_is_fuzzed():
    """Each public function of ``zipf`` is fuzzed, but the pmf (an array of N values: memory grows with N)
    and ``bound_step`` (the recursion, checked by its own tests)."""
    public = {name for name, value in vars(zipf).items() if callable(value) and not name.startswith("_")
              and getattr(value, "__module__", "") == zipf.__name__ and not isinstance(value, type)}
    assert public - set(HELPERS) == {"zipf_pmf", "bound_step"}
