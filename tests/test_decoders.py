"""Tests of maskdiff_tutor.decoders with the exact toy oracle (paper Section 3.2.2): parallel
argmax picks AB, one-token-per-step sampling reproduces the joint of (x^1, x^2), all-at-once
sampling reproduces the product of the marginals and not the joint, beam search finds A'B; and
decoding order, NFE counts, repeatability and the argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import RandomLogits

from maskdiff_tutor.decoders import beam_search, sample_all_at_once, sample_left_to_right, sample_one_at_a_time
from maskdiff_tutor.decoding import Decoded

QUERY = "[MASK] [MASK] C D [MASK]"
N_SAMPLES = 20_000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair_table(tokens: torch.Tensor) -> torch.Tensor:
    """Empirical distribution of (x^1, x^2) over toy sequences (N, 5), rows A, A', columns B, B'
    (our own count, cell by cell)."""
    table = torch.zeros(2, 2, dtype=torch.float64)
    for i in range(2):
        for j in range(2):
            table[i, j] = ((tokens[:, 0] == i) & (tokens[:, 1] == 2 + j)).double().mean()
    return table


def _within_standard_errors(empirical: torch.Tensor, p: torch.Tensor, n: int, k: float = 4.0) -> bool:
    se = torch.sqrt(p * (1 - p) / n)  # multinomial standard error of each cell
    return bool(((empirical - p).abs() <= k * se).all())


JOINT = torch.tensor([[0.34, 0.21], [0.35, 0.10]], dtype=torch.float64)
PRODUCT = torch.outer(JOINT.sum(1), JOINT.sum(0))  # [[0.3795, 0.1705], [0.3105, 0.1395]]


def test_reference_tables(toy):
    torch.testing.assert_close(toy.pair_joint(), JOINT, rtol=0, atol=1e-15)
    assert 0.5 * float((JOINT - PRODUCT).abs().sum()) == pytest.approx(0.079, abs=1e-12)


# ----------------------------------------------------------------------------- all at once


def test_parallel_greedy_gives_AB(toy, oracle):
    x = toy.ids(QUERY)
    decoded = sample_all_at_once(oracle, x, toy.mask_id, temperature=0)
    assert isinstance(decoded, Decoded) and decoded.nfe == 1
    assert toy.names(decoded.tokens[0, :2]) == "A B"
    assert toy.names(decoded.tokens[0, 2:4]) == "C D"
    assert decoded.tokens[0, 4] != toy.mask_id
    assert decoded.order.tolist() == [[0, 0, -1, -1, 0]]


def test_all_at_once_reproduces_the_product_of_marginals_not_the_joint(toy, oracle):
    x = torch.full((N_SAMPLES, 5), toy.mask_id)
    decoded = sample_all_at_once(oracle, x, toy.mask_id, _gen(0))
    assert decoded.nfe == 1
    table = _pair_table(decoded.tokens)
    assert table.sum().item() == pytest.approx(1.0, abs=1e-12)  # every pair is one of the four
    assert _within_standard_errors(table, PRODUCT, N_SAMPLES)
    # every cell of the joint differs from the product by 0.0395, far more than 4 standard errors (~0.014)
    se = torch.sqrt(JOINT * (1 - JOINT) / N_SAMPLES)
    assert ((table - JOINT).abs() > 4 * se).all()
    tv = 0.5 * float((table - JOINT).abs().sum())
    assert tv == pytest.approx(0.079, abs=0.02)


def test_all_at_once_samples_each_position_from_its_marginal(toy, oracle):
    # given "[MASK] [MASK] C D [MASK]": P(A) = 0.55, P(B) = 0.69, the last token uniform over E1..E100
    x = toy.ids(QUERY).expand(N_SAMPLES, 5)
    decoded = sample_all_at_once(oracle, x, toy.mask_id, _gen(1))
    for value, p, position in ((0, 0.55, 0), (2, 0.69, 1)):
        freq = (decoded.tokens[:, position] == value).double().mean().item()
        assert abs(freq - p) <= 4 * math.sqrt(p * (1 - p) / N_SAMPLES)
    last = decoded.tokens[:, 4]
    assert ((last >= 6) & (last < 106)).all()
    assert torch.equal(decoded.tokens[:, 2:4], x[:, 2:4])


# ----------------------------------------------------------------------------- one at a time


def test_one_at_a_time_reproduces_the_joint(toy, oracle):
    x = torch.full((N_SAMPLES, 5), toy.mask_id)
    decoded = sample_one_at_a_time(oracle, x, toy.mask_id, _gen(2))
    assert decoded.nfe == 5
    table = _pair_table(decoded.tokens)
    assert table.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert _within_standard_errors(table, JOINT, N_SAMPLES)
    # and every sequence is a data sequence: the oracle gives them positive probability
    assert torch.isfinite(oracle.log_prob(decoded.tokens)).all()


def test_one_at_a_time_from_the_query_reproduces_the_conditional_joint(toy, oracle):
    # Given C D at positions 3-4 (shared by all rows) the joint of (x^1, x^2) is still the data joint.
    x = toy.ids(QUERY).expand(N_SAMPLES, 5)
    decoded = sample_one_at_a_time(oracle, x, toy.mask_id, _gen(3))
    assert decoded.nfe == 3
    assert _within_standard_errors(_pair_table(decoded.tokens), JOINT, N_SAMPLES)


def test_random_order_is_a_permutation_of_the_masks(toy, oracle):
    x = torch.full((500, 5), toy.mask_id)
    decoded = sample_one_at_a_time(oracle, x, toy.mask_id, _gen(4))
    assert (torch.sort(decoded.order, dim=-1).values == torch.arange(5)).all()
    # the order is random: position 0 is not always decoded first, and the orders vary
    assert len({tuple(row) for row in decoded.order.tolist()}) > 50
    first = (decoded.order == 0).double().mean(0)  # each position first with probability 1/5
    assert ((first - 0.2).abs() <= 4 * math.sqrt(0.2 * 0.8 / 500)).all()


def test_left_to_right_decodes_in_order(toy, oracle):
    x = torch.full((3, 5), toy.mask_id)
    x[1] = toy.ids("[MASK] B C [MASK] [MASK]")[0]
    x[2] = toy.ids("A' B C D E60")[0]
    decoded = sample_left_to_right(oracle, x, toy.mask_id, 1, _gen(5))
    assert decoded.order.tolist() == [[0, 1, 2, 3, 4], [0, -1, -1, 1, 2], [-1, -1, -1, -1, -1]]
    assert decoded.nfe == 5
    assert torch.equal(decoded.tokens[2], x[2])
    assert toy.names(decoded.tokens[1, 1:4]) == "B C D"


def test_greedy_left_to_right_is_AB(toy, oracle):
    decoded = sample_left_to_right(oracle, toy.ids(QUERY), toy.mask_id, 1, temperature=0)
    assert toy.names(decoded.tokens[0, :2]) == "A B"  # A (0.55), then B given A (34/55)


@pytest.mark.parametrize("rows, expected", [([5, 5, 5], 5), ([0, 2, 1], 2), ([0, 0], 0)])
def test_nfe_is_the_largest_number_of_masks(rows, expected):
    length, vocab, mask = 5, 8, 7
    x = torch.randint(0, mask, (len(rows), length), generator=_gen(6))
    for b, k in enumerate(rows):
        x[b, :k] = mask
    model = RandomLogits(length, vocab)
    decoded = sample_one_at_a_time(model, x, mask, _gen(7))
    assert decoded.nfe == expected == len(model.calls)
    assert (decoded.tokens != mask).all()
    for b, k in enumerate(rows):
        assert sorted(decoded.order[b, :k].tolist()) == list(range(k))
        assert (decoded.order[b, k:] == -1).all()


@pytest.mark.parametrize("sampler", [sample_all_at_once, sample_one_at_a_time])
@pytest.mark.parametrize("temperature", [1.0, 0.0, 0.3])
def test_unmasked_tokens_are_never_changed_and_the_mask_is_never_sampled(sampler, temperature):
    length, vocab, mask = 7, 10, 9
    model = RandomLogits(length, vocab)
    model.table[..., mask] = 50.0  # the mask's logit would win everything: it must be ignored
    x = torch.randint(0, mask, (300, length), generator=_gen(8))
    masked = torch.rand(300, length, generator=_gen(9)) < 0.5
    x[masked] = mask
    decoded = sampler(model, x, mask, _gen(10), temperature=temperature)
    assert torch.equal(decoded.tokens[~masked], x[~masked])
    assert (decoded.tokens != mask).all()
    assert torch.equal(decoded.order == -1, ~masked)
    assert torch.equal(x == mask, masked)  # the input was not modified in place


def test_no_masks_returns_the_input():
    x = torch.randint(0, 5, (2, 4), generator=_gen(0))
    model = RandomLogits(4, 6)
    decoded = sample_one_at_a_time(model, x, 5, _gen(1))
    assert torch.equal(decoded.tokens, x) and decoded.nfe == 0 and len(model.calls) == 0


# ----------------------------------------------------------------------------- Gumbel sampling


@pytest.mark.parametrize("sampler", [sample_all_at_once, sample_one_at_a_time])
def test_sampling_is_seeded_and_repeatable(toy, oracle, sampler):
    x = torch.full((200, 5), toy.mask_id)
    a = sampler(oracle, x, toy.mask_id, _gen(11))
    b = sampler(oracle, x, toy.mask_id, _gen(11))
    c = sampler(oracle, x, toy.mask_id, _gen(12))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order)
    assert not torch.equal(a.tokens, c.tokens)


def test_gumbel_sampling_follows_a_skewed_categorical():
    # One position, logits log p for p = (0.7, 0.2, 0.09, 0.01): frequencies within 4 standard errors.
    p = torch.tensor([0.7, 0.2, 0.09, 0.01], dtype=torch.float64)
    logits = torch.cat([p.log(), torch.tensor([0.0], dtype=torch.float64)])  # the mask (id 4) last

    def model(x):
        return logits.expand(*x.shape, 5)

    n = 40_000
    decoded = sample_all_at_once(model, torch.full((n, 1), 4), 4, _gen(13))
    freq = torch.bincount(decoded.tokens[:, 0], minlength=5).double() / n
    assert freq[4] == 0
    assert ((freq[:4] - p).abs() <= 4 * torch.sqrt(p * (1 - p) / n)).all()


# ----------------------------------------------------------------------------- beam search


def test_beam_width_1_is_greedy_AB(toy, oracle):
    tokens, log_prob = beam_search(oracle, toy.ids(QUERY), toy.mask_id, beam_width=1, positions=[0, 1])
    assert toy.names(tokens[0]) == "A B C D [MASK]"
    assert log_prob.item() == pytest.approx(math.log(0.34), abs=1e-12)  # 0.55 * 34/55


def test_beam_width_2_finds_the_joint_mode(toy, oracle):
    tokens, log_prob = beam_search(oracle, toy.ids(QUERY), toy.mask_id, beam_width=2, positions=[0, 1])
    assert toy.names(tokens[0]) == "A' B C D [MASK]"
    assert log_prob.dtype == torch.float64 and log_prob.shape == ()
    assert log_prob.item() == pytest.approx(math.log(0.35), abs=1e-12)


@pytest.mark.parametrize("width", [2, 3, 4, 10])
def test_wider_beams_agree_with_exhaustive_search(toy, oracle, width):
    # Brute force over the four pairs with the oracle's chain rule: A'B with probability 0.35.
    x = toy.ids(QUERY)
    best, best_lp = None, -math.inf
    for a in (0, 1):
        for b in (2, 3):
            step1 = torch.log(oracle.conditional_probs(x)[0, 0, a])
            y = x.clone()
            y[0, 0] = a
            lp = float(step1 + torch.log(oracle.conditional_probs(y)[0, 1, b]))
            if lp > best_lp:
                best, best_lp = (a, b), lp
    tokens, log_prob = beam_search(oracle, x, toy.mask_id, beam_width=width, positions=[0, 1])
    assert tuple(tokens[0, :2].tolist()) == best == (1, 2)
    assert log_prob.item() == pytest.approx(best_lp, abs=1e-12)


def test_beam_search_positions_leave_the_rest_masked(toy, oracle):
    x = toy.ids(QUERY)
    tokens, _ = beam_search(oracle, x, toy.mask_id, beam_width=2, positions=[1, 0])  # order does not matter
    assert tokens[0, 4] == toy.mask_id
    assert torch.equal(tokens[0, 2:4], x[0, 2:4])
    # default: every mask is decoded, in order; the last token is the unique E of the pair's row
    full, log_prob = beam_search(oracle, x, toy.mask_id, beam_width=2)
    assert (full != toy.mask_id).all()
    assert log_prob.item() == pytest.approx(math.log(0.01), abs=1e-12)  # a single data sequence: 1/100
    assert torch.isfinite(oracle.log_prob(full)).all()


def test_beam_search_with_a_single_position(toy, oracle):
    tokens, log_prob = beam_search(oracle, toy.ids(QUERY), toy.mask_id, beam_width=3, positions=[1])
    assert tokens[0, 1] == 2 and tokens[0, 0] == toy.mask_id
    assert log_prob.item() == pytest.approx(math.log(0.69), abs=1e-12)


def test_beam_search_with_no_positions_returns_the_input(toy, oracle):
    x = toy.ids(QUERY)
    tokens, log_prob = beam_search(oracle, x, toy.mask_id, positions=[])
    assert torch.equal(tokens, x) and log_prob.item() == 0.0


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("x", [torch.full((5,), 6), torch.full((1, 2, 5), 6)], ids=["1d", "3d"])
@pytest.mark.parametrize("sampler", [sample_all_at_once, sample_one_at_a_time])
def test_x_that_is_not_two_dimensional_raises(sampler, x):
    with pytest.raises(ValueError, match=r"x must have shape \(B, L\)"):
        sampler(RandomLogits(5, 7), x, 6, _gen(0))


def test_beam_search_x_that_is_not_two_dimensional_raises():
    with pytest.raises(ValueError, match=r"x must have shape \(B, L\)"):
        beam_search(RandomLogits(5, 7), torch.full((5,), 6), 6)


@pytest.mark.parametrize("sampler", [sample_all_at_once, sample_one_at_a_time])
def test_x_that_is_not_token_ids_raises(sampler):
    with pytest.raises(ValueError, match=r"x must be a torch.long \(int64\) tensor"):
        sampler(RandomLogits(5, 7), torch.full((2, 5), 6.0), 6, _gen(0))


@pytest.mark.parametrize("width", [0, -1, 1.5, True])
def test_bad_beam_width_raises(toy, oracle, width):
    with pytest.raises(ValueError, match="beam_width must be an int >= 1"):
        beam_search(oracle, toy.ids(QUERY), toy.mask_id, beam_width=width)


@pytest.mark.parametrize("positions", [[2], [0, 3], [7]])
def test_positions_that_are_not_masked_raise(toy, oracle, positions):
    with pytest.raises(ValueError, match=r"positions must be masked positions of x, a subset of \[0, 1, 4\]"):
        beam_search(oracle, toy.ids(QUERY), toy.mask_id, positions=positions)


def test_positions_named_twice_are_refused(toy, oracle):
    # counted twice, position 0's log-probability was added twice to the beam's score
    with pytest.raises(ValueError, match=r"^positions must name each masked position of x once; got \[0, 0, 1\], "
                                         r"which repeats \[0\]$"):
        beam_search(oracle, toy.ids(QUERY), toy.mask_id, positions=[0, 1, 0])


@pytest.mark.parametrize("positions", [[0, 1.0], [True], ["0"], torch.tensor([0, 1]), 0])
def test_positions_that_are_not_a_list_of_ints_are_refused(toy, oracle, positions):
    with pytest.raises(ValueError, match=r"^positions must be a list of ints, masked positions of x \(a subset of "
                                         r"\[0, 1, 4\]\); got "):
        beam_search(oracle, toy.ids(QUERY), toy.mask_id, positions=positions)


@pytest.mark.parametrize("positions", [[-1], [5], [10**6]])
def test_positions_out_of_range_are_refused(toy, oracle, positions):
    with pytest.raises(ValueError, match=rf"^positions must be masked positions of x, a subset of \[0, 1, 4\]; "
                                         rf"got \[{positions[0]}\]$"):
        beam_search(oracle, toy.ids(QUERY), toy.mask_id, positions=positions)


def test_beam_search_refuses_given_ids_outside_the_models_vocabulary():
    with pytest.raises(ValueError, match=r"^x holds ids outside \[0, 6\] \(vocab_size = 7\)$"):
        beam_search(lambda x: RandomLogits(5, 9)(x)[..., :7], torch.tensor([[8, 6, 6, 1, 6]]), 6)  # 7 ids out

def test_beam_search_of_several_sequences_raises(toy, oracle):
    with pytest.raises(ValueError, match=r"x must hold one sequence, shape \(1, L\)"):
        beam_search(oracle, toy.ids(QUERY).expand(2, 5), toy.mask_id)


@pytest.mark.parametrize("sampler", [sample_all_at_once, sample_one_at_a_time,
                                     lambda d, x, m, g: beam_search(d, x, m)],
                         ids=["all_at_once", "one_at_a_time", "beam_search"])
@pytest.mark.parametrize("wrong", [lambda b, n, v: (b, n - 1, v), lambda b, n, v: (b + 1, n, v),
                                   lambda b, n, v: (b, n)], ids=["short", "batch", "no-vocab"])
def test_denoiser_returning_the_wrong_shape_raises(sampler, wrong):
    def bad(x):
        return torch.zeros(wrong(x.shape[0], x.shape[1], 7))

    with pytest.raises(ValueError, match="the denoiser must return logits of shape"):
        sampler(bad, torch.full((1, 5), 6), 6, _gen(0))
