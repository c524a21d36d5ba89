"""Tests of the two random-start samplers of Section 3.3.

decoders.sample_gibbs_from_random_start: its law after n steps
equals the random-scan Gibbs chain computed exactly over all sequences, it converges to the true
joint with k = 1 and an exact denoiser, and its bookkeeping and errors.

decoders.sample_partial_random_init (the paper's SEDD-inspired strategy): with no initialised
masks it is left-to-right decoding draw for draw; the random tokens are masked again and never
reach the output; its law on a tiny chain matches an enumeration; calls and errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import RandomLogits

from maskdiff_tutor.clean_distribution import clean_log_probs
from maskdiff_tutor.decoders import sample_gibbs_from_random_start
from maskdiff_tutor.markov import ChainDenoiser, sequence_log_prob, stationary_distribution, zipf_chain

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
            probs = clean_log_probs(denoiser(remasked[None]), denoiser.mask_id)[0, i].exp()  # (V + 1,)
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
    decoded = sample_gibbs_from_random_start(denoiser, x, denoiser.mask_id, V + 1, steps, 1,
                                             torch.Generator().manual_seed(steps))
    assert _tv(_empirical(decoded.tokens), _gibbs_law(denoiser, steps)) < 0.015  # Monte Carlo error ~0.005


def test_converges_to_the_true_joint_only_as_steps_grow(chain):
    P, denoiser = chain
    truth = sequence_log_prob(P, _all_sequences(), stationary_distribution(P)).exp()  # (V^L,)
    x = torch.full((N, L), denoiser.mask_id)
    tv = {n: _tv(_empirical(sample_gibbs_from_random_start(denoiser, x, denoiser.mask_id, V + 1, n, 1,
                                                torch.Generator().manual_seed(n)).tokens), truth) for n in (1, 30)}
    assert tv[30] < 0.015
    assert tv[1] > 0.1  # after as many calls as an exact ancestral sampler needs (L = 3) it is far off
    assert _tv(_gibbs_law(denoiser, L), truth) > 0.01  # exact law, no sampling error: not yet the joint


def test_given_tokens_stay_and_bookkeeping(chain):
    P, denoiser = chain
    m = denoiser.mask_id
    x = torch.tensor([[0, m, 2], [m, m, m], [1, 1, 1]])
    decoded = sample_gibbs_from_random_start(denoiser, x, m, V + 1, 5, 1, torch.Generator().manual_seed(0))
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
    decoded = sample_gibbs_from_random_start(model, x, m, 7, 1, 2, torch.Generator().manual_seed(0))
    assert ((decoded.order == 0).sum(-1) == 2).all() and ((decoded.order == -2).sum(-1) == 4).all()


def test_same_seed_same_result():
    model, m = RandomLogits(8, 7), 6
    x = torch.full((3, 8), m)
    runs = [sample_gibbs_from_random_start(model, x, m, 7, 4, 2, torch.Generator().manual_seed(9)).tokens
            for _ in range(2)]
    assert torch.equal(*runs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps must be an int >= 1"),
    (dict(tokens_per_step=5), r"tokens_per_step \(5\) must not exceed the number of masks"),
    (dict(vocab_size=1), "vocab_size must be an int >= 2"),
    (dict(vocab_size=6), r"mask_id must be an int in \[0, 5\] \(vocab_size = 6\); got 6"),
])
def test_bad_arguments_raise(kwargs, match):
    args = dict(steps=2, tokens_per_step=1, vocab_size=7) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_gibbs_from_random_start(RandomLogits(8, 7), torch.full((2, 4), 6), 6, args["vocab_size"], args["steps"],
                           args["tokens_per_step"])


# --- the paper's strategy: decoders.sample_partial_random_init -------------------------------------

from maskdiff_tutor.decoders import sample_left_to_right, sample_partial_random_init  # noqa: E402


@pytest.mark.parametrize("k", [1, 3])
def test_fraction_zero_is_left_to_right_decoding_draw_for_draw(chain, k):
    P, denoiser = chain
    m = denoiser.mask_id
    x = torch.tensor([[0, m, m], [m, m, m], [2, m, 1]]).repeat(50, 1)
    ours = sample_partial_random_init(denoiser, x, m, V + 1, 0.0, k, torch.Generator().manual_seed(4))
    plain = sample_left_to_right(denoiser, x, m, k, torch.Generator().manual_seed(4))
    assert torch.equal(ours.tokens, plain.tokens) and torch.equal(ours.order, plain.order) and ours.nfe == plain.nfe


def _calls_needed(masks: int, fraction: float, k: int) -> int:
    """Denoiser calls of the strategy, counted by hand: each step initialises floor(f * left) and
    decodes min(k, the rest)."""
    calls = 0
    while masks:
        masks -= min(k, masks - int(fraction * masks))
        calls += 1
    return calls


@pytest.mark.parametrize("fraction, k", [(0.5, 8), (0.75, 4), (0.25, 1), (0.1, 2)])
def test_every_mask_is_filled_and_the_calls_are_counted(fraction, k):
    model, m = RandomLogits(32, 7), 6
    x = torch.full((5, 32), m)
    x[:, 0] = 2
    decoded = sample_partial_random_init(model, x, m, 7, fraction, k, torch.Generator().manual_seed(1))
    assert not (decoded.tokens == m).any() and (decoded.tokens[:, 0] == 2).all()
    assert decoded.nfe == len(model.calls) == _calls_needed(31, fraction, k)
    assert ((decoded.order[:, 1:] >= 0) & (decoded.order[:, 1:] < decoded.nfe)).all()


def test_initialised_tokens_are_masked_again_and_outputs_come_from_the_denoiser():
    """Greedy decoding with recorded inputs: in every call, the positions decoded earlier hold
    their final tokens, a floor(f * left) share of the others holds random tokens, the leftmost k
    masks are decoded from that very call, and no random token survives."""
    model, m, fraction, k = RandomLogits(12, 7), 6, 0.5, 2
    x = torch.full((3, 12), m)
    decoded = sample_partial_random_init(model, x, m, 7, fraction, k, torch.Generator().manual_seed(3), temperature=0)
    for step, (seen,) in enumerate(model.calls):
        earlier, later = decoded.order < step, decoded.order >= step  # (B, L)
        assert torch.equal(seen[earlier], decoded.tokens[earlier])
        for row in range(3):
            left = int(later[row].sum())
            initialised = later[row] & (seen[row] != m)
            assert int(initialised.sum()) == int(fraction * left)
            open_ = (later[row] & (seen[row] == m)).nonzero().flatten()[:k]
            assert torch.equal((decoded.order[row] == step).nonzero().flatten(), open_)
            logits = model.table[open_, seen[row, open_]]  # (k, V) what this call said there
            logits[:, m] = -torch.inf
            assert torch.equal(decoded.tokens[row, open_], logits.argmax(-1))


def test_random_tokens_never_reach_the_output():
    m = 6

    def always_zero(x_t):  # a denoiser certain that every token is 0
        logits = torch.full((*x_t.shape, 7), -30.0)
        logits[..., 0] = 0.0
        return logits

    x = torch.full((20, 16), m)
    decoded = sample_partial_random_init(always_zero, x, m, 7, 0.75, 3, torch.Generator().manual_seed(0), temperature=0)
    assert (decoded.tokens == 0).all()


def test_law_with_one_random_token_matches_enumeration(chain):
    """Prompt, then two masks, fraction 0.5, k = 1: the first step initialises one of the two masks
    (each with probability 1/2) with a uniform token r, decodes the other from the exact
    conditional given the prompt and r, and the second step decodes the remaining one given all
    else. The law of the output, by enumeration, against 40,000 samples."""
    P, denoiser = chain
    m, prompt = denoiser.mask_id, 1
    law = torch.zeros(V, V, dtype=torch.float64)
    for r in range(V):
        # initialised at position 2: position 1 drawn given prompt and r, then position 2 given position 1
        first = P[prompt] * P[:, r] / (P[prompt] * P[:, r]).sum()  # (V,)
        law += 0.5 / V * first.unsqueeze(-1) * P  # (V, V): [x1, x2]
        # initialised at position 1: position 2 drawn given x1 = r (the Markov property), then position 1
        second = P[r]  # (V,) x2 given x1 = r
        middle = P[prompt].unsqueeze(-1) * P / (P[prompt].unsqueeze(-1) * P).sum(0)  # (V, V): x1 given x2 (columns)
        law += 0.5 / V * middle * second.unsqueeze(0)
    x = torch.full((N, 3), m)
    x[:, 0] = prompt
    tokens = sample_partial_random_init(denoiser, x, m, V + 1, 0.5, 1, torch.Generator().manual_seed(5)).tokens
    empirical = torch.bincount(tokens[:, 1] * V + tokens[:, 2], minlength=V * V).double().view(V, V) / N
    assert _tv(empirical, law) < 0.015  # Monte Carlo error ~0.005
    assert _tv(law, P[prompt].unsqueeze(-1) * P) > 0.03  # exact: it is not the chain's own law (TV 0.036)


@pytest.mark.parametrize("kwargs, match", [
    (dict(init_fraction=1.0), r"init_fraction must be a finite number in \[0, 1\)"),
    (dict(init_fraction=-0.1), r"init_fraction must be a finite number in \[0, 1\)"),
    (dict(init_fraction=True), r"init_fraction must be a finite number in \[0, 1\)"),
    (dict(tokens_per_step=0), "tokens_per_step must be an int >= 1"),
    (dict(vocab_size=6), r"mask_id must be an int in \[0, 5\] \(vocab_size = 6\); got 6"),
])
def test_partial_random_init_bad_arguments_raise(kwargs, match):
    args = dict(vocab_size=7, init_fraction=0.5, tokens_per_step=1) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_partial_random_init(RandomLogits(8, 7), torch.full((2, 4), 6), 6, **args)


# --- vocab_size against the model's vocabulary --------------------------------------------------------

@pytest.mark.parametrize("vocab_size", [5, 12])
@pytest.mark.parametrize("sampler", [
    lambda d, x, m, v: sample_gibbs_from_random_start(d, x, m, v, 3, 1, torch.Generator().manual_seed(0)),
    lambda d, x, m, v: sample_partial_random_init(d, x, m, v, 0.5, 1, torch.Generator().manual_seed(0)),
], ids=["gibbs", "partial random init"])
def test_a_vocab_size_other_than_the_models_is_refused_naming_both(sampler, vocab_size):
    # with vocab_size 12 and a model of 7 ids, Gibbs returned random starts 7..11, outside the model's vocabulary
    model = RandomLogits(4, 12)  # reads ids up to 11, returns logits over 12 ids: sliced to the first 7

    def seven_ids(x):
        return model(x)[..., :7]
    with pytest.raises(ValueError, match=rf"^vocab_size \({vocab_size}\) must equal the size of the denoiser's "
                                         rf"vocabulary, the last dimension of its logits \(7\)$"):
        sampler(seven_ids, torch.full((2, 4), 3), 3, vocab_size)


def test_random_tokens_are_ids_of_the_vocabulary_other_than_the_mask():
    from maskdiff_tutor.decoders import random_tokens

    tokens = random_tokens((2000,), 5, 2, torch.Generator().manual_seed(0), "cpu")
    assert set(tokens.tolist()) == {0, 1, 3, 4}
    with pytest.raises(ValueError, match=r"^vocab_size must be an int >= 2; got 1$"):
        random_tokens((3,), 1, 0, None, "cpu")
    with pytest.raises(ValueError, match=r"^mask_id must be an int in \[0, 4\] \(vocab_size = 5\); got 5$"):
        random_tokens((3,), 5, 5, None, "cpu")


def test_given_ids_outside_vocab_size_are_refused_before_any_call():
    def never(x):
        raise AssertionError("the denoiser was called")
    x = torch.tensor([[7, 3, 3]])
    for sampler in (lambda: sample_gibbs_from_random_start(never, x, 3, 5, 2),
                    lambda: sample_partial_random_init(never, x, 3, 5, 0.5)):
        with pytest.raises(ValueError, match=r"^x holds ids outside \[0, 4\] \(vocab_size = 5\)$"):
            sampler()
