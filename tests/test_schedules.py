"""Tests of maskdiff_tutor.schedules: alpha(t), alpha'(t) and the NELBO weight w(t)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from maskdiff_tutor.schedules import (
    CosineSchedule,
    LinearSchedule,
    LogLinearSchedule,
    PolynomialSchedule,
    Schedule,
)

# Every schedule the package ships, with a readable id for the test report.
SCHEDULES = [
    pytest.param(LinearSchedule(), id="linear"),
    pytest.param(CosineSchedule(), id="cosine"),
    pytest.param(PolynomialSchedule(exponent=0.5), id="poly0.5"),
    pytest.param(PolynomialSchedule(exponent=2), id="poly2"),
    pytest.param(PolynomialSchedule(exponent=3.0), id="poly3"),
    pytest.param(LogLinearSchedule(), id="loglinear1e-3"),
    pytest.param(LogLinearSchedule(eps=0.2), id="loglinear0.2"),
    pytest.param(LogLinearSchedule(eps=0.0), id="loglinear0"),
]

# Interior times, kept away from 0 and 1 so that a central difference of step h stays in [0, 1].
INTERIOR = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)


def _alpha_at_one(schedule: Schedule) -> float:
    return schedule.eps if isinstance(schedule, LogLinearSchedule) else 0.0


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_end_points(schedule):
    assert float(schedule.alpha(0.0)) == 1.0
    assert float(schedule.alpha(1.0)) == pytest.approx(_alpha_at_one(schedule), abs=1e-15)


def test_cosine_end_point_is_exactly_zero():
    # cos(pi / 2) is 6e-17 in floating point; the schedule pins alpha(1) to 0 exactly.
    assert float(CosineSchedule().alpha(1.0)) == 0.0
    assert float(CosineSchedule().alpha(torch.tensor([1.0]))[0]) == 0.0


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_alpha_is_strictly_decreasing(schedule):
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    a = schedule.alpha(t)
    assert (a[1:] < a[:-1]).all()
    assert (a >= 0).all() and (a <= 1).all()


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_dalpha_matches_central_finite_difference(schedule):
    h = 1e-6
    fd = (schedule.alpha(INTERIOR + h) - schedule.alpha(INTERIOR - h)) / (2 * h)
    # Truncation error h^2 |alpha'''| / 6 and rounding 1e-16 / h are both far below 1e-7 here.
    torch.testing.assert_close(schedule.dalpha(INTERIOR), fd, rtol=1e-7, atol=1e-8)
    assert (schedule.dalpha(INTERIOR) < 0).all()


def test_alpha_closed_forms():
    t = INTERIOR
    torch.testing.assert_close(LinearSchedule().alpha(t), 1 - t, rtol=0, atol=1e-15)
    torch.testing.assert_close(CosineSchedule().alpha(t), torch.cos(math.pi * t / 2), rtol=0, atol=1e-15)
    torch.testing.assert_close(PolynomialSchedule(3.0).alpha(t), 1 - t**3, rtol=0, atol=1e-15)
    torch.testing.assert_close(LogLinearSchedule(eps=0.1).alpha(t), 1 - 0.9 * t, rtol=0, atol=1e-15)
    # exponent 1 is the linear schedule
    torch.testing.assert_close(PolynomialSchedule(1.0).alpha(t), LinearSchedule().alpha(t), rtol=0, atol=0)


def test_loglinear_sigma_is_minus_log_alpha():
    sch = LogLinearSchedule(eps=0.05)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(sch.sigma(t), -torch.log(1 - 0.95 * t), rtol=1e-14, atol=1e-15)
    assert float(sch.sigma(0.0)) == 0.0
    assert float(sch.sigma(1.0)) == pytest.approx(-math.log(0.05), rel=1e-14)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_weight_is_minus_dalpha_over_one_minus_alpha(schedule):
    expected = -schedule.dalpha(INTERIOR) / (1 - schedule.alpha(INTERIOR))
    # The reference loses digits in 1 - alpha(t) where it is small (relative error about
    # 1e-16 / (1 - alpha), 1e-10 for t**3 at t = 0.01); the
    # schedules' closed forms do not, so the two agree to 1e-9 rather than to the last bit.
    torch.testing.assert_close(schedule.weight(INTERIOR), expected, rtol=1e-9, atol=0)
    assert (schedule.weight(INTERIOR) > 0).all()


@pytest.mark.parametrize("schedule", [LinearSchedule(), LogLinearSchedule(), LogLinearSchedule(eps=0.3)],
                         ids=["linear", "loglinear1e-3", "loglinear0.3"])
def test_weight_is_one_over_t_for_linear_and_loglinear(schedule):
    t = torch.linspace(0.001, 1, 500, dtype=torch.float64)
    torch.testing.assert_close(schedule.weight(t), 1 / t, rtol=1e-12, atol=0)


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0, 3.0, 7.5])
def test_weight_is_exponent_over_t_for_polynomial(exponent):
    # Times where t**exponent >= 1e-6, so that 1 - alpha(t) = t**exponent keeps ~10 significant
    # digits in float64 (rounding of alpha near 1 is 1e-16 absolute): rtol 1e-9 is then safe.
    t = torch.linspace(1e-6 ** (1 / exponent), 1, 500, dtype=torch.float64)
    torch.testing.assert_close(PolynomialSchedule(exponent).weight(t), exponent / t, rtol=1e-9, atol=0)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_weight_is_finite_at_small_positive_times(schedule):
    # sample_times draws t = 1 - U with U uniform in [0, 1): t can be as small as 2**-53, and t < 1e-6
    # happens about once per million draws. w(t) is finite for every t > 0 (it is ~ exponent / t,
    # ~ 2 / t for cosine), so the computed weight must be finite too; an infinite weight times the
    # zero NLL of an unmasked token makes the NELBO estimate NaN.
    t = torch.tensor([1e-5, 1e-6, 1e-7], dtype=torch.float64)
    w = schedule.weight(t)
    assert torch.isfinite(w).all(), w
    assert (w > 0).all()


def test_cosine_weight_closed_form():
    # w(t) = (pi/2) sin(pi t / 2) / (1 - cos(pi t / 2)) = (pi/2) cot(pi t / 4)
    t = INTERIOR
    torch.testing.assert_close(CosineSchedule().weight(t), (math.pi / 2) / torch.tan(math.pi * t / 4),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_weight_is_infinite_at_time_zero(schedule):
    # Documented: "infinite where alpha(t) = 1". Every schedule here has w(t) -> +inf as t -> 0
    # (e.g. cosine ~ 2/t, polynomial ~ exponent/t), so the value at t = 0 must be +inf, not NaN.
    assert float(schedule.weight(0.0)) == math.inf


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_shapes_and_dtype_are_kept(schedule):
    for t in (0.3, [0.1, 0.5], torch.rand(2, 3, generator=torch.Generator().manual_seed(0)),
              torch.tensor([0.25, 0.75], dtype=torch.float32)):
        expected_shape = torch.as_tensor(t).shape
        for f in (schedule.alpha, schedule.dalpha, schedule.weight):
            out = f(t)
            assert isinstance(out, torch.Tensor)
            assert out.dtype == torch.float64
            assert out.shape == expected_shape


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("bad", [-1e-9, 1.0 + 1e-9, -1.0, 2.0, math.nan, [0.5, 1.5], [math.nan, 0.5]])
def test_times_outside_unit_interval_raise(schedule, bad):
    for f in (schedule.alpha, schedule.dalpha, schedule.weight):
        with pytest.raises(ValueError, match=r"^t must lie in \[0, 1\]"):
            f(bad)


def test_loglinear_sigma_checks_times():
    with pytest.raises(ValueError, match="^t must"):
        LogLinearSchedule().sigma(1.5)


@pytest.mark.parametrize("exponent", [0, 0.0, -1.0, math.inf, -math.inf, math.nan, "2", None, True])
def test_bad_exponent_raises(exponent):
    with pytest.raises(ValueError, match=r"^exponent must be a finite number > 0; got "):
        PolynomialSchedule(exponent=exponent)


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5, math.nan, math.inf, "0.1", None, False])
def test_bad_eps_raises(eps):
    with pytest.raises(ValueError, match=r"^eps must be a finite number in \[0, 1\) \(the probability that a token "
                                         r"survives to t = 1\); got "):
        LogLinearSchedule(eps=eps)


def test_schedules_are_frozen_values():
    assert PolynomialSchedule(2.0) == PolynomialSchedule(2.0)
    assert LogLinearSchedule(0.1) != LogLinearSchedule(0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PolynomialSchedule(2.0).exponent = 3.0
