"""Tests of maskdiff_tutor._checks: the one check of a number in a range and the one check of a
mask id, whose messages every module's bad-input errors share."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from maskdiff_tutor._checks import check_mask_id, check_number, check_positive_int


@pytest.mark.parametrize("value, limits, allowed", [
    (-1, {"at_least": 0}, "a finite number >= 0"),
    (0, {"above": 0}, "a finite number > 0"),
    (1, {"at_least": 0, "below": 1}, "a finite number in [0, 1)"),
    (0, {"above": 0, "at_most": 1}, "a finite number in (0, 1]"),
    (2.5, {"at_most": 2}, "a finite number <= 2"),
    (math.nan, {}, "a finite number"),
    (math.inf, {"at_least": 0}, "a finite number >= 0"),
    (True, {}, "a finite number"),
    ("1", {}, "a finite number"),
    (1.5, {"integer": True, "at_least": 1}, "an int >= 1"),
    (0, {"integer": True, "at_least": 1}, "an int >= 1"),
])
def test_a_number_outside_its_range_is_named_with_the_allowed_values(value, limits, allowed):
    with pytest.raises(ValueError, match=f"^{re.escape(f'x must be {allowed}; got {value!r}')}$"):
        check_number("x", value, **limits)


def test_a_number_in_range_is_returned_as_it_is():
    assert check_number("x", 0, at_least=0, below=1) == 0
    assert check_number("x", np.float64(0.5), above=0, at_most=1) == 0.5
    assert check_number("x", np.int64(3), integer=True, at_least=1) == 3
    assert check_positive_int("steps", 5) == 5


def test_the_meaning_is_added_in_parentheses():
    with pytest.raises(ValueError, match=r"^eta must be a finite number in \[0, 1\) \(the remasking probability\); "
                                         r"got 1.5$"):
        check_number("eta", 1.5, at_least=0, below=1, meaning="the remasking probability")


def test_a_mask_id_is_an_int_in_the_vocabulary():
    assert check_mask_id(3, 4) == 3 and check_mask_id(10**6) == 10**6
    with pytest.raises(ValueError, match=r"^mask_id must be an int in \[0, 3\] \(vocab_size = 4\); got 4$"):
        check_mask_id(4, 4)
    for bad in (-1, True, 1.0, "3"):
        with pytest.raises(ValueError, match=r"^mask_id must be a non-negative int \(the mask token's id\)"):
            check_mask_id(bad, 4)


def test_logits_are_floating_point_on_the_tokens_device_over_the_stated_vocabulary():
    import torch

    from maskdiff_tutor._checks import check_logits

    x = torch.zeros(2, 3, dtype=torch.long)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        check_logits(torch.zeros(2, 3, 5, dtype=dtype), x, 4, vocab_size=5)
    for dtype in (torch.int64, torch.int8, torch.bool, torch.complex64, torch.float8_e4m3fn):
        with pytest.raises(ValueError, match=rf"^the denoiser must return floating-point logits \(float16, bfloat16, "
                                             rf"float32 or float64\); got dtype {dtype}$"):
            check_logits(torch.zeros(2, 3, 5).to(dtype), x, 4)
    with pytest.raises(ValueError, match=r"^the denoiser returned logits on meta for tokens on cpu; it must return "
                                         r"them on its input's device \(move them with \.to\(x\.device\)\)$"):
        check_logits(torch.zeros(2, 3, 5, device="meta"), x, 4)
    with pytest.raises(ValueError, match=r"^vocab_size \(6\) must equal the size of the denoiser's vocabulary, the "
                                         r"last dimension of its logits \(5\)$"):
        check_logits(torch.zeros(2, 3, 5), x, 4, vocab_size=6)
    with pytest.raises(ValueError, match=r"^the denoiser's logits must cover at least 2 ids \(a token and the mask\): "
                                         r"shape \(B, L, V\) with V >= 2; got V = 0$"):
        check_logits(torch.zeros(2, 3, 0), x, 0)
    with pytest.raises(ValueError, match=r"^the denoiser must return logits of shape \(B, L, V\) with \(B, L\) = "
                                         r"\(2, 3\); got \(2, 3\)$"):
        check_logits(torch.zeros(2, 3), x, 0)


def test_the_clean_distribution_takes_floating_point_logits_only():
    import torch

    from maskdiff_tutor.clean_distribution import clean_log_probs, clean_logits, clean_probs

    for function in (clean_logits, clean_log_probs, clean_probs):
        for dtype in (torch.int64, torch.bool, torch.complex64):
            with pytest.raises(ValueError, match=rf"^the denoiser must return floating-point logits .* got dtype "
                                                 rf"{dtype}$"):
                function(torch.zeros(2, 5).to(dtype), 4)
        assert function(torch.zeros(2, 5, dtype=torch.bfloat16), 4).shape == (2, 5)


@pytest.mark.parametrize("value", [10**400, -(10**5000), 10**40], ids=["1e400", "-1e5000", "1e40"])
def test_check_number_names_an_int_of_any_size_by_its_size(value):
    # an int is finite however large (math.isfinite would overflow), and one too long for str()
    # (over 4300 digits) is named by its number of digits, not by Python's conversion error
    with pytest.raises(ValueError, match=r"^N must be an int in \[0, 100\]; got (minus )?an int of about \d+ digits$"):
        check_number("N", value, integer=True, at_least=0, at_most=100)
    assert check_number("N", value, integer=True) == value
    assert check_number("s", value) == value
