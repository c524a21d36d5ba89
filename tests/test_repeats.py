"""Adjacent repeats under parallel decoding (maskdiff_tutor.repeats): against enumeration of every
sequence, the language's closed forms, the package's own decoder with the exact chain denoiser, and
bad inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from maskdiff_tutor import decoders, markov
from maskdiff_tutor.repeats import AdjacentRepeats, adjacent_repeats


def _random_chain(vocab_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random positive transition matrix (V, V) and a random prompt distribution (V,)."""
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(vocab_size, vocab_size, generator=g, dtype=torch.float64) + 0.05
    starts = torch.rand(vocab_size, generator=g, dtype=torch.float64) + 0.05
    return P / P.sum(-1, keepdim=True), starts / starts.sum()


def _decoded_probability(P: torch.Tensor, starts: torch.Tensor, x: tuple, k: int) -> float:
    """The probability of the whole sequence x under the decoding, from its definition: the prompt from
    starts; then each step's masks, the j-th of them from row x[first - 1] of P^j, independently."""
    probability = float(starts[x[0]])
    for first in range(1, len(x), k):
        for j, position in enumerate(range(first, min(first + k, len(x))), start=1):
            probability *= float(torch.linalg.matrix_power(P, j)[x[first - 1], x[position]])
    return probability


def _language_probability(P: torch.Tensor, starts: torch.Tensor, x: tuple) -> float:
    return float(starts[x[0]]) * math.prod(float(P[a, b]) for a, b in itertools.pairwise(x))


def _enumerated(P: torch.Tensor, seq_len: int, probability) -> dict:
    """Expected repeat share, last-pair repeat, mean log P given a repeat and given none, and NLL per
    pair, by summing over every sequence of length L with its probability."""
    pairs = seq_len - 1
    mass = repeats = last = repeat_log = all_log = 0.0
    for x in itertools.product(range(P.shape[0]), repeat=seq_len):
        p = probability(x)
        mass += p
        for a, b in itertools.pairwise(x):
            all_log += p * math.log(P[a, b])
            if a == b:
                repeats += p
                repeat_log += p * math.log(P[a, b])
        last += p * (x[-2] == x[-1])
    assert mass == pytest.approx(1, abs=1e-12)
    return {"share": repeats / pairs, "last_share": last, "repeat_log_prob": repeat_log / repeats,
            "other_log_prob": (all_log - repeat_log) / (pairs - repeats), "nll": -all_log / pairs,
            "repeat_nll": -repeat_log / pairs}


@pytest.mark.parametrize("seq_len", [4, 5])
def test_every_number_agrees_with_enumerating_every_sequence(seq_len):
    P, starts = _random_chain(3, seed=seq_len)
    language = _enumerated(P, seq_len, lambda x: _language_probability(P, starts, x))
    for k in range(1, seq_len):
        decoded = _enumerated(P, seq_len, lambda x, k=k: _decoded_probability(P, starts, x, k))
        r = adjacent_repeats(P, starts, seq_len, k)
        assert (r.k, r.pairs) == (k, seq_len - 1)
        for who, reference in (("language", language), ("decoded", decoded)):
            for name in ("share", "last_share", "repeat_log_prob", "other_log_prob", "nll"):
                assert getattr(r, f"{who}_{name}") == pytest.approx(reference[name], abs=1e-12), (k, who, name)
        if k == 1:
            assert r.repeat_share_of_extra_nll is None
        else:
            extra = (decoded["repeat_nll"] - language["repeat_nll"]) / (decoded["nll"] - language["nll"])
            assert r.repeat_share_of_extra_nll == pytest.approx(extra, abs=1e-12)


def test_one_token_per_step_is_the_language_and_its_closed_forms():
    P, _ = _random_chain(5, seed=3)
    pi = markov.stationary_distribution(P)
    r = adjacent_repeats(P, pi, 7, 1)
    assert (r.decoded_share, r.decoded_last_share, r.decoded_repeat_log_prob, r.decoded_other_log_prob,
            r.decoded_nll) == (r.language_share, r.language_last_share, r.language_repeat_log_prob,
                               r.language_other_log_prob, r.language_nll)
    # from the stationary distribution every pair is (a, b) with probability pi_a P_ab
    assert r.language_share == pytest.approx(float((pi * P.diagonal()).sum()), abs=1e-12)
    assert r.language_last_share == pytest.approx(float((pi * P.diagonal()).sum()), abs=1e-12)
    assert r.language_nll == pytest.approx(float(-(pi.unsqueeze(-1) * P * P.log()).sum()), abs=1e-12)  # entropy rate
    repeat = float((pi * P.diagonal() * P.diagonal().log()).sum()) / float((pi * P.diagonal()).sum())
    assert r.language_repeat_log_prob == pytest.approx(repeat, abs=1e-12)
    assert r.repeat_share_of_extra_nll is None


def test_a_chain_that_never_repeats_makes_every_decoded_repeat_impossible():
    P = torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64)
    starts = torch.full((3,), 1 / 3, dtype=torch.float64)
    r = adjacent_repeats(P, starts, 3, 2)
    # the language never repeats; all at once, (x_1, x_2) are independent draws from P[x_0] and P^2[x_0]:
    # a repeat with probability sum_a P[x_0, a] P^2[x_0, a] = 1/4, over 2 pairs
    assert (r.language_share, r.language_repeat_log_prob) == (0.0, None)
    assert r.language_other_log_prob == pytest.approx(math.log(0.5), abs=1e-15)
    assert r.decoded_share == pytest.approx(1 / 8, abs=1e-15)
    assert r.decoded_repeat_log_prob == -math.inf
    assert r.decoded_nll == math.inf
    assert r.repeat_share_of_extra_nll is None
    assert r.decoded_other_log_prob == pytest.approx(math.log(0.5), abs=1e-15)


@pytest.mark.parametrize("k", [2, 5])
def test_the_package_decoder_with_the_exact_denoiser_repeats_as_computed(k):
    """4,000 sequences decoded by ``decoders.sample_left_to_right`` (what ``ground_truth.cost_of_k_sweep``
    runs) with ``markov.ChainDenoiser``: the repeat share, the repeat NLL per pair and the NLL per pair
    are within 5 standard errors of the sample mean (each a mean over independent sequences)."""
    P, starts = _random_chain(4, seed=7)
    seq_len, num = 6, 4000
    exact = markov.ChainDenoiser(P, seq_len, initial=starts)
    g = torch.Generator().manual_seed(0)
    x = torch.full((num, seq_len), exact.mask_id)
    x[:, 0] = torch.multinomial(starts.expand(num, -1), 1, generator=g).squeeze(-1)
    tokens = decoders.sample_left_to_right(exact, x, exact.mask_id, k, g).tokens  # (N, L)
    a, b = tokens[:, :-1], tokens[:, 1:]  # (N, L - 1) the pairs (i, i + 1)
    log_p = P.log()[a, b]  # (N, L - 1)
    r = adjacent_repeats(P, starts, seq_len, k)
    for value, per_sequence in ((r.decoded_share, (a == b).double().mean(-1)),
                                (-r.decoded_share * r.decoded_repeat_log_prob, -(log_p * (a == b)).mean(-1)),
                                (r.decoded_nll, -log_p.mean(-1))):
        error = float(per_sequence.std()) / math.sqrt(num)
        assert abs(float(per_sequence.mean()) - value) < 5 * error, (value, float(per_sequence.mean()), error)


def test_the_record_is_frozen():
    r = adjacent_repeats(*_random_chain(3, seed=1), 4, 3)
    assert isinstance(r, AdjacentRepeats)
    with pytest.raises(AttributeError):
        r.k = 2


_P, _STARTS = _random_chain(3, seed=0)


@pytest.mark.parametrize("P, starts, seq_len, k, message", [
    (_P[:2], _STARTS, 4, 1, r"^P must be a square transition matrix \(V, V\) with V >= 2; got \(2, 3\)$"),
    (_P * 2, _STARTS, 4, 1, r"^P must have non-negative rows that sum to 1$"),
    (_P, _STARTS[:2], 4, 1, r"^starts must be a distribution over the V = 3 tokens of P: .*got shape \(2,\)"),
    (_P, _STARTS * 2, 4, 1, r"^starts must be a distribution .* summing to 1; got shape \(3,\), dtype torch.float64, "
                            r"sum 2"),
    (_P, torch.tensor([1.5, -0.5, 0.0], dtype=torch.float64), 4, 1, r"^starts must be a distribution"),
    (_P, torch.tensor([1, 0, 0]), 4, 1, r"^starts must be a distribution .*dtype torch.int64, sum \?$"),
    (_P, [1.0, 0.0, 0.0], 4, 1, r"^starts must be a distribution .*; got list$"),
    (_P, _STARTS, 1, 1, r"^seq_len must be an int >= 2 \(a prompt token and at least one mask\); got 1$"),
    (_P, _STARTS, 4.0, 1, r"^seq_len must be an int >= 2 .*; got 4.0$"),
    (_P, _STARTS, 4, 0, r"^tokens_per_step must be an int in \[1, 3\] \(masks per step, at most the L - 1 = 3 "
                        r"masks\); got 0$"),
    (_P, _STARTS, 4, 4, r"^tokens_per_step must be an int in \[1, 3\] .*; got 4$"),
])
def test_bad_inputs_are_refused_naming_the_argument(P, starts, seq_len, k, message):
    with pytest.raises(ValueError, match=message):
        adjacent_repeats(P, starts, seq_len, k)
