"""The NELBO chapter's typed records of Section 3.2.1 (maskdiff_tutor.experiments.nelbo_checks), against
the toy's counts and closed forms; every record reads back from strict JSON."""

from __future__ import annotations

import json
import math

import pytest

from maskdiff_tutor import records
from maskdiff_tutor.experiments import nelbo_checks
from maskdiff_tutor.schedules import CosineSchedule, PolynomialSchedule
from maskdiff_tutor.toy import toy_dataset


def _round_trip(record):
    text = json.dumps(records.to_json(record), allow_nan=False)
    return records.from_json(type(record), json.loads(text))


def test_both_weightings_are_minimised_by_the_true_conditional():
    m = nelbo_checks.weighting_minimisers()
    # with C D known and the last token masked, P(A) is the share of sequences starting with A: (34 + 21) / 100
    assert m.true_conditional == pytest.approx(0.55, abs=1e-12)
    assert (m.pattern, m.position, m.token) == ("[MASK] [MASK] C D [MASK]", 0, "A")
    assert len(m.grid) == 981 and m.grid[0] == pytest.approx(0.01) and m.grid[-1] == pytest.approx(0.99)
    step = m.grid[1] - m.grid[0]
    for loss in (m.nelbo, m.unweighted):
        assert abs(loss.minimiser - m.true_conditional) <= step / 2 + 1e-12
        assert loss.minimiser in m.grid and len(loss.loss) == len(m.grid)
    # the NELBO's coefficients 1 / (k C(L, k)); the unweighted ones differ but are positive
    assert m.nelbo.coefficients == pytest.approx([0.0] + [1 / (k * math.comb(5, k)) for k in range(1, 6)], rel=1e-12)
    assert m.unweighted.coefficients[0] == 0.0 and all(c > 0 for c in m.unweighted.coefficients[1:])
    assert m.unweighted.coefficients != pytest.approx(m.nelbo.coefficients)
    # each loss is its coefficient (3 masks) times the cross-entropy of 0.55 and the prediction
    q = m.grid[100]
    cross_entropy = -(0.55 * math.log(q) + 0.45 * math.log(1 - q))
    assert m.nelbo.loss[100] == pytest.approx(m.nelbo.coefficients[3] * cross_entropy, rel=1e-9)
    assert _round_trip(m) == m


def test_another_token_and_toy():
    toy = toy_dataset({"AB": 10, "AB'": 10, "A'B": 60, "A'B'": 20})
    m = nelbo_checks.weighting_minimisers(toy, pattern="A [MASK] C D [MASK]", position=1, token="B", points=101)
    assert m.true_conditional == pytest.approx(0.5, abs=1e-12)  # after A: AB 10 and AB' 10
    assert m.nelbo.minimiser == pytest.approx(0.5, abs=1e-9) and m.unweighted.minimiser == pytest.approx(0.5, abs=1e-9)


def test_the_time_cancels_from_the_posterior():
    check = nelbo_checks.time_free_gap()
    assert len(check.rows) == len(check.times) * len(check.schedules) == 8 and len(check.inputs) == 3
    assert check.largest_gap == max(r.gap for r in check.rows) < 1e-12
    assert check.within() == 1e-12 and check.within(1e-20) == check.largest_gap
    assert {r.schedule for r in check.rows} == {"LinearSchedule()", "CosineSchedule()"}
    other = nelbo_checks.time_free_gap(times=(0.5,), schedules=(PolynomialSchedule(3.0), CosineSchedule()))
    assert [r.time for r in other.rows] == [0.5, 0.5] and other.largest_gap < 1e-12
    assert _round_trip(check) == check
