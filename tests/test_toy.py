"""Tests of maskdiff_tutor.toy: the paper's 100-sequence example (Section 3.2.2)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from maskdiff_tutor.toy import PAPER_COUNTS, toy_dataset


def test_shape_and_vocabulary(toy):
    assert toy.data.shape == (100, 5)
    assert toy.vocab_size == 107 and toy.mask_id == 106
    assert toy.tokens[:6] == ("A", "A'", "B", "B'", "C", "D")
    assert toy.tokens[6] == "E1" and toy.tokens[105] == "E100" and toy.tokens[-1] == "[MASK]"
    assert (toy.data != toy.mask_id).all()
    assert (toy.data[:, 2] == 4).all() and (toy.data[:, 3] == 5).all()  # C D everywhere
    assert sorted(toy.data[:, 4].tolist()) == list(range(6, 106))  # a unique last token per row
    assert len({tuple(r) for r in toy.data.tolist()}) == 100
    assert toy.counts == PAPER_COUNTS


def test_pair_counts(toy):
    pairs = [toy.names(row[:2]) for row in toy.data]
    assert pairs.count("A B") == 34 and pairs.count("A B'") == 21
    assert pairs.count("A' B") == 35 and pairs.count("A' B'") == 10


def test_ids_and_names_round_trip(toy):
    text = "[MASK] [MASK] C D [MASK]"
    ids = toy.ids(text)
    assert ids.shape == (1, 5)
    assert ids.tolist() == [[106, 106, 4, 5, 106]]
    assert toy.names(ids) == text
    assert toy.names(toy.data[0]) == "A B C D E1"
    assert toy.ids("A' B' C D E100").tolist() == [[1, 3, 4, 5, 105]]


def test_every_sequence_has_probability_one_hundredth(toy):
    oracle = toy.oracle()
    lp = oracle.log_prob(toy.data)
    torch.testing.assert_close(lp, torch.full((100,), -math.log(100), dtype=torch.float64), rtol=1e-14, atol=0)
    # a sequence outside the data has probability 0
    assert oracle.log_prob(toy.ids("A B C D E100")).item() == -math.inf  # row 100 is A'B'


def test_marginals_at_the_paper_query(toy):
    probs = toy.oracle().conditional_probs(toy.ids("[MASK] [MASK] C D [MASK]"))[0]  # (5, V)
    assert probs[0, 0].item() == pytest.approx(0.55, abs=1e-15)  # P(A)
    assert probs[0, 1].item() == pytest.approx(0.45, abs=1e-15)  # P(A')
    assert probs[1, 2].item() == pytest.approx(0.69, abs=1e-15)  # P(B)
    assert probs[1, 3].item() == pytest.approx(0.31, abs=1e-15)  # P(B')
    assert probs[0, 2:].sum().item() == 0 and probs[1, :2].sum().item() == 0 and probs[1, 4:].sum().item() == 0
    # the last position is uniform over E1..E100
    torch.testing.assert_close(probs[4, 6:106], torch.full((100,), 0.01, dtype=torch.float64))
    assert probs[2, 4].item() == pytest.approx(1.0, abs=1e-14) and probs[3, 5].item() == pytest.approx(1.0, abs=1e-14)


def test_joint_mode_differs_from_the_product_of_marginal_argmaxes(toy):
    joint = toy.pair_joint()
    torch.testing.assert_close(joint, torch.tensor([[0.34, 0.21], [0.35, 0.10]], dtype=torch.float64),
                               rtol=0, atol=1e-15)
    mode = divmod(int(joint.argmax()), 2)
    assert (toy.tokens[mode[0]], toy.tokens[2 + mode[1]]) == ("A'", "B")
    assert joint.max().item() == pytest.approx(0.35)
    # decoding both positions at once from their marginals
    probs = toy.oracle().conditional_probs(toy.ids("[MASK] [MASK] C D [MASK]"))[0]
    first, second = toy.tokens[int(probs[0].argmax())], toy.tokens[int(probs[1].argmax())]
    assert (first, second) == ("A", "B")
    assert joint[0, 0].item() == pytest.approx(0.34)
    assert joint[0, 0].item() < joint.max().item()
    # the product of the marginals is not the joint
    p1, p2 = toy.pair_marginals()
    assert not torch.allclose(torch.outer(p1, p2), joint)


def test_pair_marginals_match_the_oracle(toy):
    p1, p2 = toy.pair_marginals()
    torch.testing.assert_close(p1, torch.tensor([0.55, 0.45], dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(p2, torch.tensor([0.69, 0.31], dtype=torch.float64), rtol=0, atol=1e-15)


def test_conditioning_on_one_position_recovers_the_joint(toy):
    # p(x^2 | x^1 = A) = joint[A, :] / P(A): the oracle with A revealed must give it.
    oracle = toy.oracle()
    joint = toy.pair_joint()
    for i, first in enumerate(("A", "A'")):
        probs = oracle.conditional_probs(toy.ids(f"{first} [MASK] C D [MASK]"))[0]
        torch.testing.assert_close(probs[1, 2:4], joint[i] / joint[i].sum(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("counts", [{"AB": 1, "AB'": 2, "A'B": 3, "A'B'": 4},
                                    {"AB": 0, "AB'": 5, "A'B": 0, "A'B'": 1},
                                    {"AB": 7, "AB'": 0, "A'B": 0, "A'B'": 0}])
def test_custom_counts(counts):
    toy = toy_dataset(counts)
    n = sum(counts.values())
    assert toy.data.shape == (n, 5) and toy.vocab_size == n + 7 and toy.mask_id == n + 6
    assert toy.counts == counts
    joint = toy.pair_joint()
    for (i, a), (j, b) in itertools.product(enumerate(("A", "A'")), enumerate(("B", "B'"))):
        assert joint[i, j].item() == pytest.approx(counts[a + b] / n, abs=1e-15)
    probs = toy.oracle().conditional_probs(toy.ids("[MASK] [MASK] C D [MASK]"))[0]
    assert probs[0, 0].item() == pytest.approx((counts["AB"] + counts["AB'"]) / n, abs=1e-15)
    assert probs[1, 2].item() == pytest.approx((counts["AB"] + counts["A'B"]) / n, abs=1e-15)


def test_counts_argument_is_not_mutated():
    counts = {"AB": 1, "AB'": 2, "A'B": 3, "A'B'": 4}
    toy_dataset(counts)
    assert counts == {"AB": 1, "AB'": 2, "A'B": 3, "A'B'": 4}


@pytest.mark.parametrize("counts", [{"AB": 1, "AB'": 2, "A'B": 3},
                                    {"AB": 1, "AB'": 2, "A'B": 3, "A'B'": 4, "BA": 1},
                                    {"ab": 1, "AB'": 2, "A'B": 3, "A'B'": 4}])
def test_counts_with_wrong_keys_raise(counts):
    with pytest.raises(ValueError, match="^counts must have exactly the keys"):
        toy_dataset(counts)


NUMBER = r"must be an int >= 0 \(the number of sequences\); got "


@pytest.mark.parametrize("counts, error", [
    ({"AB": -1, "AB'": 2, "A'B": 3, "A'B'": 4}, rf"^counts\['AB'\] {NUMBER}-1$"),
    ({"AB": 1, "AB'": 1.5, "A'B": 3, "A'B'": 4}, rf"^counts\[\"AB'\"\] {NUMBER}1.5$"),
    ({"AB": True, "AB'": 2, "A'B": 3, "A'B'": 4}, rf"^counts\['AB'\] {NUMBER}True$"),
    ({"AB": 0, "AB'": 0, "A'B": 0, "A'B'": 0}, r"^counts must have a positive total \(the number of sequences\); got "),
])
def test_bad_count_values_raise(counts, error):
    with pytest.raises(ValueError, match=error):
        toy_dataset(counts)


@pytest.mark.parametrize("names", ["A B C D E101", "A X C D E1", "[mask] B C D E1", "A B C D E0"])
def test_unknown_token_names_raise(toy, names):
    with pytest.raises(ValueError, match="^unknown token names"):
        toy.ids(names)
