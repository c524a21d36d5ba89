"""Fixtures shared by the test files: the paper's toy dataset and its exact denoiser."""

from __future__ import annotations

import pytest

from maskdiff_tutor.toy import toy_dataset


@pytest.fixture(scope="module")
def toy():
    return toy_dataset()


@pytest.fixture(scope="module")
def oracle(toy):
    return toy.oracle()
