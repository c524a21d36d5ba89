"""Numbers read from several training seeds: printed as mean and range, and contrasts judged seed by seed."""

from __future__ import annotations

import pytest

from maskdiff_tutor.seed_values import Contrast, SeedValues


def test_one_value_for_every_seed_prints_as_itself():
    assert format(SeedValues((0, 1, 2), (0.25, 0.25, 0.25)), "") == "0.25"
    assert format(SeedValues((0,), ("AB",)), "") == "AB"


def test_numbers_print_as_mean_and_range_with_the_decimals_they_were_rounded_to():
    values = SeedValues((0, 1, 2), (0.12, 0.47, 1.0))
    assert (values.mean, values.low, values.high) == (pytest.approx(1.59 / 3), 0.12, 1.0)
    assert format(values, "") == "0.53 [0.12 to 1.00]"
    assert format(SeedValues((0, 1, 2), (2, 3, 3)), "") == "2.7 [2 to 3]"  # it would print as 3: one more decimal
    assert format(SeedValues((0, 1, 2), (2, 3, 4)), "") == "3 [2 to 4]"
    assert format(SeedValues((0, 1, 2), (0.03, 0.03, 0.04)), "") == "0.033 [0.03 to 0.04]"
    assert format(SeedValues((0, 1), (0.5, 0.25)), ".3f") == "0.375 [0.250 to 0.500]"  # a spec applies to all three
    assert format(SeedValues((0, 1), (0.004, 0.012)), ".2f") == "0.008 [0.00 to 0.01]"
    assert format(SeedValues((0, 1), (1.0, 2e-5)), ".0e") == "5e-01 [2e-05 to 1e+00]"  # other specs as they are


def test_words_print_with_the_seeds_that_gave_them():
    assert format(SeedValues((0, 1, 2), ("AB", "A'B", "AB")), "") == "AB (seeds 0, 2), A'B (seed 1)"
    with pytest.raises(ValueError, match="not all numbers"):
        assert SeedValues((0, 1), ("AB", "A'B")).mean


def test_seeds_and_values_must_pair_up():
    with pytest.raises(ValueError, match="one entry each"):
        SeedValues((0, 1), (0.5,))


def test_a_contrast_is_within_the_spread_exactly_where_its_sign_is_not_the_same_in_every_seed():
    assert not Contrast(16, "a", "b", "a against b", (0, 1, 2), (0.2, 0.05, 0.4)).within_spread
    assert not Contrast(16, "a", "b", "a against b", (0, 1, 2), (-0.2, -0.05, -0.4)).within_spread
    assert Contrast(16, "a", "b", "a against b", (0, 1, 2), (0.2, -0.05, 0.4)).within_spread
    assert Contrast(16, "a", "b", "a against b", (0, 1), (0.2, 0.0)).within_spread
    assert Contrast(16, "a", "b", "a against b", (0, 1), (0.2, 0.4)).mean == pytest.approx(0.3)
