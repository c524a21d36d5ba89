"""The distance-bound chapter's typed records (maskdiff_tutor.experiments.distance_bound), against
closed forms, brute force and the numbers the chapter states; every record reads back from strict JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from maskdiff_tutor import records
from maskdiff_tutor.experiments import distance_bound as db


def _omegas(s: float, N: int) -> tuple[float, float]:
    """omega1 and omega2 by a plain sum, independent of zipf.py."""
    harmonic = math.fsum(r**-s for r in range(1, N + 1))
    return 1 / harmonic, 2**-s / harmonic


def _round_trip(record):
    """The record written as strict JSON and read back into its type."""
    found: list = []
    text = json.dumps(records.to_json(record, found=found), allow_nan=False)
    return records.from_json(type(record), json.loads(text), non_finite=records.non_finite_places(found))


def test_counterexample_keeps_a_token_at_p_bar_2_above_eq_17():
    ce = db.counterexample(N=5, s=2.31, length=6)
    omega1, omega2 = _omegas(2.31, 5)
    p_bar_2 = omega2 + (omega1 - omega2) * omega1
    assert (ce.assumption_3, ce.assumption_4, ce.assumption_h) == (True, True, False)
    assert [r.n for r in ce.rows] == list(range(1, 7))
    assert ce.rows[0].exact_top == pytest.approx(omega1, rel=1e-12)
    for row in ce.rows[1:]:  # the target keeps p_bar_2 at every n >= 2, and it is the top token
        assert row.target == pytest.approx(p_bar_2, rel=1e-12) and row.exact_top == row.target
        assert row.full_history_bound == pytest.approx(p_bar_2, rel=1e-12)
    assert ce.last.eq17_bound < ce.last.exact_top and ce.last_excess == ce.last.exact_top - ce.last.eq17_bound
    assert (round(ce.last.full_history_bound, 4), round(ce.last.eq17_bound, 4)) == (0.5907, 0.396)  # the chapter's
    assert ce.eq15_histories == 25 and ce.eq15_largest_excess <= 1e-15  # Eq. 15 holds at every history
    assert ce.eq16_histories == 5 and ce.eq16_left_min > ce.eq16_right_max  # Eq. 16 fails at every history
    assert _round_trip(ce) == ce


def test_random_languages_break_eq_17_only_without_assumption_h():
    languages = db.random_languages(N=3, s=1.5, length=4, count=6, seed=3)
    full, free = languages.full_history, languages.history_free
    assert (full.history_free, free.history_free) == (False, True)
    assert full.total == free.total == 6
    assert full.broken == sum(e > 1e-12 for e in full.excess)
    assert free.broken == 0 and free.largest_excess <= 1e-12  # Eq. 17 is a theorem under Assumption H
    assert full.largest_excess == max(*full.excess, 0.0)
    chapter = db.random_languages()  # the chapter's setting: 9 of 20, then 0 of 20
    assert (chapter.full_history.broken, chapter.full_history.total, chapter.history_free.broken) == (9, 20, 0)
    assert _round_trip(languages) == languages


def test_bound_curve_against_the_recursion_written_out():
    curve = db.bound_curve(2.31, 1000, max_distance=30)
    omega1, omega2 = _omegas(2.31, 1000)
    p, expected = 1.0, [1.0]
    for _ in range(30):
        p = omega2 + (omega1 - omega2) * p
        expected.append(p)
    np.testing.assert_allclose(curve.bound, expected, rtol=1e-12)
    assert curve.p_star == pytest.approx(omega2 / (1 - omega1 + omega2), rel=1e-12)
    n = curve.first_within(1.01)
    assert curve.bound[n] <= 1.01 * curve.p_star < curve.bound[n - 1]
    assert _round_trip(curve) == curve


def test_exact_chain_stays_below_its_bound_and_ends_at_its_stationary_maximum():
    chain = db.exact_chain(V=40, s=1.5, seed=2, starts=10, max_distance=12)
    omega1, omega2 = _omegas(1.5, 40)
    assert chain.assumption_4 and (chain.omega1, chain.omega2) == pytest.approx((omega1, omega2), rel=1e-12)
    assert len(chain.top) == len(chain.bound) == 13
    assert chain.top[0] == 1.0 and chain.top[1] == pytest.approx(omega1, rel=1e-12)  # every row's top is omega1
    assert chain.largest_excess <= 1e-15
    assert all(t <= b + 1e-15 for t, b in zip(chain.top, chain.bound, strict=True))
    # the stationary distribution by an eigenvector, independent of the power iteration
    from maskdiff_tutor import markov

    P = markov.zipf_chain(40, 1.5, torch.Generator().manual_seed(2)).numpy()
    values, vectors = np.linalg.eig(P.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    assert chain.max_pi == pytest.approx((pi / pi.sum()).max(), rel=1e-9)
    assert _round_trip(chain) == chain


def test_fall_by_task_selects_by_exponent_and_function_words():
    falls = db.fall_by_task(exponents=(1.5, 3.0), function_words=(0, 3), V=60, max_distance=40, starts=20, seed=1)
    assert [(r.s, r.function_words) for r in falls.rows] == [(1.5, 0), (1.5, 3), (3.0, 0), (3.0, 3)]
    for row in falls.rows:
        assert len(row.curve) == 41 and row.curve[0] == 1.0
        assert 1 <= row.n90 <= row.n99  # 99% of the fall takes at least as long as 90%
        left = (1 - 0.99) * (row.curve[1] - row.floor)  # what is left of the fall from n = 1 after 99% of it
        assert row.curve[row.n99] - row.floor <= left
        assert row.n99 == 1 or row.curve[row.n99 - 1] - row.floor > left
    floors = [r.floor for r in falls.rows]
    assert falls.lowest_floor() == min(floors) and falls.highest_floor() == max(floors)
    assert falls.highest_floor(function_words=False) == max(floors[0], floors[2])
    assert falls.lowest_floor(function_words=True) == min(floors[1], floors[3])
    assert falls.longest_fall(99, s_max=1.5) == max(r.n99 for r in falls.rows[:2])
    assert falls.longest_fall(90, s_min=3.0, s_max=3.0) == max(r.n90 for r in falls.rows[2:])
    with pytest.raises(ValueError, match=r"^percent must be 90 or 99 \(the falls measured\); got 95$"):
        falls.longest_fall(95)
    assert _round_trip(falls) == falls


def test_table_2_at_the_papers_settings():
    t2 = db.table_2()
    assert [r.k for r in t2.rows] == list(range(1, 9))
    assert tuple(r.printed for r in t2.rows) == db.PAPER_TABLE_2  # the reference, carried and labelled
    omega1, omega2 = _omegas(1.05, 150_000)
    assert t2.row(1).ppl_metric_2 == pytest.approx(1 / omega1, rel=1e-12) == pytest.approx(t2.harmonic, rel=1e-12)
    assert t2.p_star == pytest.approx(omega2 / (1 - omega1 + omega2), rel=1e-12)
    assert (round(t2.row(7).ppl_metric_2, 2), round(t2.row(8).ppl_metric_2, 2)) == (16.88, 17.1)
    assert (t2.allowed, t2.allowed_printed) == (7.0, 6)  # a budget of 17: 7 recomputed, 6 printed
    # the printed column's implied probabilities p_k = J_k / J_(k-1), J_k = PPL_k^-k, written out
    joint = [ppl ** -k for k, ppl in enumerate(db.PAPER_TABLE_2, start=1)]
    implied = [joint[0]] + [b / a for a, b in zip(joint, joint[1:], strict=False)]
    np.testing.assert_allclose(t2.implied, implied, rtol=1e-12)
    assert t2.first_rise() == 5 and t2.implied_at(5) > t2.implied_at(4)
    assert t2.first_below_p_star() == 3 and t2.implied_at(3) < t2.p_star <= t2.implied_at(2)
    assert t2.largest_difference() == pytest.approx(max(abs(r.printed - r.ppl_metric_2) for r in t2.rows))
    assert round(t2.largest_difference(), 4) == 0.5071
    assert math.isinf(t2.row(2).ppl_metric_3) and _round_trip(t2) == t2


def test_allowed_k_scan_reads_its_rows():
    scan = db.allowed_k_scan((1.0, 1.045, 1.046, 1.05, 1.06, 1.08, 1.1))
    assert [r.k for r in scan.rows][:4] == [1.0, 6.0, 6.0, 7.0] and scan.rows[-1].k == math.inf
    assert scan.exponents_allowing(6) == [1.045, 1.046]
    assert scan.last_exponent_allowing_at_most(1) == 1.0
    assert scan.unlimited_from() == 1.08  # 1/p* <= 17 there
    assert [r.s for r in scan.finite_beyond(6)] == [1.05, 1.06]
    assert db.SCAN_EXPONENTS[0] == 0.98 and db.SCAN_EXPONENTS[-1] == 1.12 and len(db.SCAN_EXPONENTS) == 141
    assert _round_trip(scan) == scan


def test_every_record_is_a_frozen_dataclass():
    for record in (db.Counterexample, db.CounterexampleRow, db.LanguageSample, db.RandomLanguages, db.BoundCurve,
                   db.ExactChain, db.TaskFall, db.TaskFalls, db.Table2Row, db.Table2, db.AllowedK, db.AllowedKScan):
        assert dataclasses.is_dataclass(record) and record.__dataclass_params__.frozen
