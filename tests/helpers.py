"""Test helpers importable by every test file (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib

import torch


class RandomLogits:
    """A denoiser with fixed random logits per (position, input token), recording its inputs
    (``calls``: one tuple of arguments per call)."""

    def __init__(self, length: int, vocab_size: int, seed: int = 0):
        self.table = 2 * torch.randn(length, vocab_size, vocab_size, generator=torch.Generator().manual_seed(seed))
        self.calls = []

    def __call__(self, x_t, *args):
        self.calls.append((x_t.clone(), *args))
        return self.table[torch.arange(x_t.shape[1]), x_t]  # (B, L, V)


@contextlib.contextmanager
def ci_scale(experiment, scale):
    """Run an experiment module's ``scale="ci"`` with the smaller ``scale`` inside the block."""
    original = experiment.SCALES["ci"]
    experiment.SCALES["ci"] = scale
    try:
        yield
    finally:
        experiment.SCALES["ci"] = original
