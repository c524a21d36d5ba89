"""Tests of maskdiff_tutor.oracle: the exact denoiser of a finite dataset, against loops over the data."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from maskdiff_tutor.oracle import OracleDenoiser


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _brute_force_conditional(data, weights, x_t, mask_id, vocab_size):
    """p(x^l = v | unmasked tokens of x_t) by an explicit loop over the rows of the data."""
    B, L = x_t.shape
    out = torch.zeros(B, L, vocab_size, dtype=torch.float64)
    for b in range(B):
        total = 0.0
        for n in range(data.shape[0]):
            if all(int(x_t[b, pos]) == mask_id or int(x_t[b, pos]) == int(data[n, pos]) for pos in range(L)):
                total += float(weights[n])
                for pos in range(L):
                    out[b, pos, int(data[n, pos])] += float(weights[n])
        out[b] /= total
    return out


def _random_case(seed: int, N: int = 12, L: int = 4, data_vocab: int = 3, B: int = 20, weighted: bool = False):
    """Random data over ids 0..data_vocab-1, mask = data_vocab, and x_t drawn by masking random data rows."""
    g = _gen(seed)
    data = torch.randint(0, data_vocab, (N, L), generator=g)
    weights = torch.rand(N, generator=g, dtype=torch.float64) if weighted else torch.ones(N, dtype=torch.float64)
    mask_id = data_vocab
    rows = data[torch.randint(0, N, (B,), generator=g)]
    masked = torch.rand(B, L, generator=g) < 0.6
    x_t = torch.where(masked, torch.full_like(rows, mask_id), rows)
    return data, weights, mask_id, x_t


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weighted", [False, True])
def test_conditional_probs_equal_a_loop_over_the_data(seed, weighted):
    data, weights, mask_id, x_t = _random_case(seed, weighted=weighted)
    vocab_size = mask_id + 2  # one spare id that never occurs: its probability must be 0
    oracle = OracleDenoiser.from_data(data, mask_id, vocab_size, weights if weighted else None)
    probs = oracle.conditional_probs(x_t)
    expected = _brute_force_conditional(data, weights, x_t, mask_id, vocab_size)
    assert probs.shape == (x_t.shape[0], data.shape[1], vocab_size) and probs.dtype == torch.float64
    torch.testing.assert_close(probs, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(probs.sum(-1), torch.ones(x_t.shape, dtype=torch.float64), rtol=0, atol=1e-13)
    assert (probs[..., mask_id] == 0).all()
    assert (probs[..., mask_id + 1] == 0).all()
    # an unmasked position is one-hot on the token already there
    unmasked = x_t != mask_id
    torch.testing.assert_close(probs[unmasked], torch.eye(vocab_size, dtype=torch.float64)[x_t[unmasked]])


def test_fully_masked_input_gives_the_data_marginals():
    data = torch.tensor([[0, 1], [0, 2], [1, 2], [0, 1]])
    oracle = OracleDenoiser.from_data(data, mask_id=3, vocab_size=4)
    probs = oracle.conditional_probs(torch.tensor([[3, 3]]))
    torch.testing.assert_close(probs[0, 0], torch.tensor([0.75, 0.25, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(probs[0, 1], torch.tensor([0, 0.5, 0.5, 0], dtype=torch.float64))
    # conditioning on position 1 = 2 leaves rows [0, 2] and [1, 2]
    probs = oracle.conditional_probs(torch.tensor([[3, 2]]))
    torch.testing.assert_close(probs[0, 0], torch.tensor([0.5, 0.5, 0, 0], dtype=torch.float64))


def test_logits_are_log_probabilities_and_minus_inf_on_the_mask():
    data, weights, mask_id, x_t = _random_case(7)
    oracle = OracleDenoiser.from_data(data, mask_id, mask_id + 1)
    logits = oracle(x_t)
    probs = oracle.conditional_probs(x_t)
    torch.testing.assert_close(torch.exp(logits), probs, rtol=1e-14, atol=0)
    assert (logits[..., mask_id] == -math.inf).all()
    torch.testing.assert_close(torch.logsumexp(logits, -1), torch.zeros(x_t.shape, dtype=torch.float64),
                               rtol=0, atol=1e-13)


def test_consistent_matches_a_loop():
    data, _, mask_id, x_t = _random_case(8)
    oracle = OracleDenoiser.from_data(data, mask_id, mask_id + 1)
    cons = oracle.consistent(x_t)
    assert cons.shape == (x_t.shape[0], data.shape[0]) and cons.dtype == torch.bool
    for b in range(x_t.shape[0]):
        for n in range(data.shape[0]):
            expected = all(int(x_t[b, pos]) in (mask_id, int(data[n, pos])) for pos in range(data.shape[1]))
            assert bool(cons[b, n]) == expected
        assert cons[b].any()  # x_t was built from a data row


@pytest.mark.parametrize("seed", range(3))
def test_log_prob_matches_counting(seed):
    g = _gen(seed)
    data = torch.randint(0, 2, (30, 3), generator=g)  # 8 possible rows, many repeated
    oracle = OracleDenoiser.from_data(data, mask_id=2, vocab_size=3)
    counts = Counter(tuple(row.tolist()) for row in data)
    queries = torch.tensor([[a, b, c] for a in range(2) for b in range(2) for c in range(2)])
    lp = oracle.log_prob(queries)
    assert lp.shape == (8,)
    for q, value in zip(queries, lp, strict=True):
        c = counts.get(tuple(q.tolist()), 0)
        if c:
            assert value.item() == pytest.approx(math.log(c / 30), rel=1e-12)
        else:
            assert value.item() == -math.inf
    assert torch.exp(lp).sum().item() == pytest.approx(1.0, rel=1e-12)


def test_repeated_rows_add_their_weights():
    data = torch.tensor([[0, 1], [0, 1], [1, 0]])
    weights = torch.tensor([1.0, 2.0, 1.0])
    oracle = OracleDenoiser.from_data(data, mask_id=2, vocab_size=3, weights=weights)
    torch.testing.assert_close(oracle.probs, torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64))
    assert oracle.log_prob(torch.tensor([[0, 1]])).item() == pytest.approx(math.log(0.75))
    probs = oracle.conditional_probs(torch.tensor([[2, 2]]))
    torch.testing.assert_close(probs[0, 0], torch.tensor([0.75, 0.25, 0.0], dtype=torch.float64))


def test_zero_weight_rows_are_absent():
    data = torch.tensor([[0, 1], [1, 0]])
    oracle = OracleDenoiser.from_data(data, mask_id=2, vocab_size=3, weights=torch.tensor([1.0, 0.0]))
    assert oracle.log_prob(torch.tensor([[1, 0]])).item() == -math.inf
    with pytest.raises(ValueError, match="^x_t row 0 agrees with no sequence"):
        oracle.conditional_probs(torch.tensor([[1, 2]]))


def test_attributes():
    data = torch.tensor([[0, 1, 1]])
    oracle = OracleDenoiser.from_data(data, mask_id=2, vocab_size=4)
    assert oracle.seq_len == 3 and oracle.mask_id == 2 and oracle.vocab_size == 4
    assert oracle.data.dtype == torch.int64
    assert oracle.probs.dtype == torch.float64 and oracle.probs.sum().item() == 1.0


# ----------------------------------------------------------------------------- errors


def test_mask_id_inside_the_data_vocabulary_raises():
    data = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="^mask_id 2 occurs in data"):
        OracleDenoiser.from_data(data, mask_id=2, vocab_size=3)


@pytest.mark.parametrize("mask_id", [3, 10, -1, 1.5])
def test_mask_id_outside_the_vector_length_raises(mask_id):
    error = r"^mask_id must be (an int in \[0, 2\] \(vocab_size = 3\)|a non-negative int \(the mask token's id\)); got "
    with pytest.raises(ValueError, match=error):
        OracleDenoiser.from_data(torch.tensor([[0, 1]]), mask_id=mask_id, vocab_size=3)


def test_data_ids_outside_the_vocabulary_raise():
    with pytest.raises(ValueError, match="^data holds ids outside"):
        OracleDenoiser.from_data(torch.tensor([[0, 5]]), mask_id=2, vocab_size=3)
    with pytest.raises(ValueError, match="^data holds negative ids"):
        OracleDenoiser.from_data(torch.tensor([[0, -1]]), mask_id=2, vocab_size=3)
    with pytest.raises(ValueError, match=r"^data must be a torch.long \(int64\) tensor of token ids"):
        OracleDenoiser.from_data(torch.tensor([[0.0, 1.0]]), mask_id=2, vocab_size=3)


@pytest.mark.parametrize("data", [torch.zeros(0, 3, dtype=torch.long), torch.tensor([0, 1]),
                                  torch.zeros(1, 2, 2, dtype=torch.long), [[0, 1]]],
                         ids=["empty", "1d", "3d", "list"])
def test_bad_data_raises(data):
    with pytest.raises(ValueError, match="^data must be a non-empty integer tensor"):
        OracleDenoiser.from_data(data, mask_id=2, vocab_size=3)


@pytest.mark.parametrize("weights", [torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.0, -0.5]),
                                     torch.tensor([0.0, 0.0]), torch.tensor([[1.0, 1.0]]),
                                     torch.tensor([1.0, math.nan]), torch.tensor([1.0, math.inf])],
                         ids=["too-long", "negative", "zero-sum", "2d", "nan", "inf"])
def test_bad_weights_raise(weights):
    # A NaN or infinite weight gives no probability distribution (NaN probs after normalising).
    with pytest.raises(ValueError, match="^weights must be"):
        OracleDenoiser.from_data(torch.tensor([[0, 1], [1, 0]]), mask_id=2, vocab_size=3, weights=weights)


def test_x_t_consistent_with_no_data_row_raises():
    oracle = OracleDenoiser.from_data(torch.tensor([[0, 1], [1, 0]]), mask_id=2, vocab_size=3)
    with pytest.raises(ValueError, match="^x_t row 1 agrees with no sequence"):
        oracle.conditional_probs(torch.tensor([[0, 2], [0, 0]]))
    with pytest.raises(ValueError, match="^x_t row 0 agrees with no sequence"):
        oracle(torch.tensor([[1, 1]]))


def test_x_t_of_the_wrong_length_or_ids_raises():
    oracle = OracleDenoiser.from_data(torch.tensor([[0, 1], [1, 0]]), mask_id=2, vocab_size=3)
    with pytest.raises(ValueError, match=r"^x_t must have shape \(B, 2\)"):
        oracle.conditional_probs(torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"^x_t must have shape \(B, 2\)"):
        oracle(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^x_t must have shape \(B, 2\)"):
        oracle.consistent(torch.tensor([[2]]))
    with pytest.raises(ValueError, match="^x_t holds ids outside"):
        oracle(torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match=r"^x_t must be a torch.long \(int64\) tensor of token ids"):
        oracle(torch.tensor([[0.0, 1.0]]))


def test_log_prob_errors():
    oracle = OracleDenoiser.from_data(torch.tensor([[0, 1], [1, 0]]), mask_id=2, vocab_size=3)
    with pytest.raises(ValueError, match=r"^x must have shape \(B, 2\)"):
        oracle.log_prob(torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match=r"^x must have shape \(B, 2\)"):
        oracle.log_prob(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="^x is clean data and must not contain the mask id 2"):
        oracle.log_prob(torch.tensor([[0, 2]]))


def test_time_conditioned_posterior_is_bayes_and_equals_the_time_free_oracle():
    from maskdiff_tutor.schedules import CosineSchedule, LinearSchedule

    data = torch.tensor([[0, 1, 2], [0, 2, 2], [1, 1, 0], [0, 1, 2]])
    weights = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)
    oracle = OracleDenoiser.from_data(data, mask_id=3, vocab_size=4, weights=weights)
    x_t = torch.tensor([[0, 3, 3], [3, 1, 3], [3, 3, 3]])
    for schedule in (LinearSchedule(), CosineSchedule()):
        for t in (0.1, 0.5, 0.9):
            got = oracle.time_conditioned_probs(x_t, t, schedule)
            alpha = float(schedule.alpha(t))
            # brute force: Bayes' rule over data rows with the explicit masking likelihood
            brute = torch.zeros(3, 3, 4, dtype=torch.float64)
            for b in range(3):
                post = torch.zeros(len(data), dtype=torch.float64)
                for n in range(len(data)):
                    lik = 1.0
                    for pos in range(3):
                        if x_t[b, pos] == 3:
                            lik *= 1 - alpha
                        elif x_t[b, pos] == data[n, pos]:
                            lik *= alpha
                        else:
                            lik = 0.0
                    post[n] = weights[n] * lik
                post /= post.sum()
                for n in range(len(data)):
                    for pos in range(3):
                        brute[b, pos, data[n, pos]] += post[n]
            torch.testing.assert_close(got, brute, rtol=0, atol=1e-14)
            torch.testing.assert_close(got, oracle.conditional_probs(x_t), rtol=0, atol=1e-14)


def test_time_conditioned_posterior_needs_one_time():
    oracle = OracleDenoiser.from_data(torch.tensor([[0, 1]]), mask_id=2, vocab_size=3)
    with pytest.raises(ValueError, match="t must be a single float"):
        oracle.time_conditioned_probs(torch.tensor([[2, 1]]), torch.tensor([0.3]), None)
