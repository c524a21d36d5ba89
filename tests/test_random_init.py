"""Tests of samplers.sample_random_init (the SEDD-inspired random initialisation, Section 3.3):
its law after n steps equals the random-scan Gibbs chain computed exactly over all sequences, it
converges to the true joint with k = 1 and an exact denoiser, and its bookkeeping and errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from helpers import RandomLogits

from maskdiff_tutor.markov import ChainDenoiser, sequence_log_prob, stationary_distribution, zipf_chain
from maskdiff_tutor.samplers import _clean_log_probs, sample_random_init

V, L, N = 3, 3, 40_000


@pytest.fixture(scope="module")
def chain():
    P = zipf_chain(V, 1.0, torch.Generator().manual_seed(0))
    return P, ChainDenoiser(P, L)


def _all_sequences() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(V), repeat=L)))  # (V^L, L)


def _index(tokens: torch.Tensor) -> torch.Tensor:
    """The row of each sequence (..., L) in ``_all_sequences``."""
    return (tokens * V ** torch.arange(L - 1, -1, -1)).sum(-1)


def _empirical(tokens: torch.Tensor) -> torch.Tensor:
    return torch.bincount(_index(tokens), minlength=V ** L).double() / tokens.shape[0]


def _gibbs_law(denoiser, steps: int) -> torch.Tensor:
    """The exact law after ``steps`` random-scan updates from a uniform start, by brute force:
    a (V^L, V^L) transition matrix built state by state."""
    states = _all_sequences()
    kernel = torch.zeros(len(states), len(states), dtype=torch.float64)
    for a, state in enumerate(states):
        for i in range(L):
            remasked = state.clone()
            remasked[i] = denoiser.mask_id
            probs = _clean_log_probs(denoiser, remasked[None], denoiser.mask_id)[0, i].exp()  # (V + 1,)
            for v in range(V):
                moved = state.clone()
                moved[i] = v
                kernel[a, int(_index(moved))] += probs[v] / L
    law = torch.full((len(states),), 1.0 / len(states), dtype=torch.float64)
    for _ in range(steps):
        law = law @ kernel
    return law


def _tv(p, q) -> float:
    return 0.5 * float((p - q).abs().sum())


@pytest.mark.parametrize("steps", [1, 3])
def test_law_after_n_steps_is_the_exact_gibbs_law(chain, steps):
    P, denoiser = chain
    x = torch.full((N, L), denoiser.mask_id)
    decoded = sample_random_init(denoiser, x, denoiser.mask_id, V + 1, steps, 1, torch.Generator().manual_seed(steps))
    assert _tv(_empirical(decoded.tokens), _gibbs_law(denoiser, steps)) < 0.015  # Monte Carlo error ~0.005


def test_converges_to_the_true_joint_only_as_steps_grow(chain):
    P, denoiser = chain
    truth = sequence_log_prob(P, _all_sequences(), stationary_distribution(P)).exp()  # (V^L,)
    x = torch.full((N, L), denoiser.mask_id)
    tv = {n: _tv(_empirical(sample_random_init(denoiser, x, denoiser.mask_id, V + 1, n, 1,
                                                torch.Generator().manual_seed(n)).tokens), truth) for n in (1, 30)}
    assert tv[30] < 0.015
    assert tv[1] > 0.1  # after as many calls as an exact ancestral sampler needs (L = 3) it is far off
    assert _tv(_gibbs_law(denoiser, L), truth) > 0.01  # exact law, no sampling error: not yet the joint


def test_given_tokens_stay_and_bookkeeping(chain):
    P, denoiser = chain
    m = denoiser.mask_id
    x = torch.tensor([[0, m, 2], [m, m, m], [1, 1, 1]])
    decoded = sample_random_init(denoiser, x, m, V + 1, 5, 1, torch.Generator().manual_seed(0))
    assert decoded.nfe == 5
    assert torch.equal(decoded.tokens[x != m], x[x != m])
    assert not (decoded.tokens == m).any()
    assert (decoded.order[x != m] == -1).all()
    assert ((decoded.order[x == m] >= -2) & (decoded.order[x == m] < 5)).all()
    written = decoded.order >= 0
    assert torch.isfinite(decoded.confidence[written]).all() and torch.isnan(decoded.confidence[~written]).all()


def test_two_positions_per_step_are_redrawn_together():
    model, m = RandomLogits(8, 7), 6
    x = torch.full((4, 6), m)
    decoded = sample_random_init(model, x, m, 7, 1, 2, torch.Generator().manual_seed(0))
    assert ((decoded.order == 0).sum(-1) == 2).all() and ((decoded.order == -2).sum(-1) == 4).all()


def test_same_seed_same_result():
    model, m = RandomLogits(8, 7), 6
    x = torch.full((3, 8), m)
    runs = [sample_random_init(model, x, m, 7, 4, 2, torch.Generator().manual_seed(9)).tokens for _ in range(2)]
    assert torch.equal(*runs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps must be an int >= 1"),
    (dict(tokens_per_step=5), r"tokens_per_step \(5\) must not exceed the number of masks"),
    (dict(vocab_size=1), "vocab_size must be an int >= 2"),
    (dict(vocab_size=6), "mask_id must be one of the vocab_size = 6 ids"),
])
def test_bad_arguments_raise(kwargs, match):
    args = dict(steps=2, tokens_per_step=1, vocab_size=7) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_random_init(RandomLogits(8, 7), torch.full((2, 4), 6), 6, args["vocab_size"], args["steps"],
                           args["tokens_per_step"])
