r"""Adjacent repeats under parallel decoding with the exact denoiser, computed exactly.

Book chapter "Ground truth" (book/parallel_sampling.ipynb; paper Section 3.3, after Table 2). The
paper argues that masks far from the prompt all lean towards the same frequent tokens, so that
decoding several of them at once may put one token at two neighbouring positions, and that the
joint probability of the text then drops sharply. On a first-order Markov chain this can be
computed without sampling.

The language: a prompt token :math:`x_0 \sim \mathtt{starts}`, then the chain P. The decoding:
positions :math:`1, \dots, L - 1` left to right, k per step (the last step may have fewer), each
mask drawn independently from its exact marginal given the decoded text. Given the last decoded
token x, the j-th mask of a step has the marginal :math:`(P^j)_{x\cdot}`, so

- the pair across a step boundary, (x, first mask), is a true transition: :math:`d_x P_{xb}`;
- a pair inside a step, (j-th mask, (j + 1)-th mask), holds two independent draws:
  :math:`\sum_x d_x (P^j)_{xa} (P^{j+1})_{xb}`;

with d the distribution of the token that ends the previous step, :math:`d \leftarrow d P^m` after
a step of m masks. Every pair (i, i + 1), i = 0 .. L - 2, is counted: each pair whose second token
is decoded, the pair (prompt, first mask) included, as the true perplexity of a decoded text counts
its L - 1 transitions. The language is the same computation with k = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import check_number
from .markov import _check_transition


@dataclass(frozen=True)
class AdjacentRepeats:
    r"""Adjacent repeats (a == b in a pair (i, i + 1)) under the language and under decoding k tokens
    per step, over the pairs i = 0 .. L - 2; log-probabilities are the chain's, :math:`\log P_{ab}`.
    A mean over no pairs (no repeat, or nothing but repeats, can occur) is None."""
    k: int  # tokens decoded per step
    pairs: int  # L - 1: the pairs (i, i + 1), i = 0 .. L - 2, the pair (prompt, first mask) included
    language_share: float  # expected share of the pairs that are repeats, under the language
    decoded_share: float  # ... under the decoding
    language_last_share: float  # the probability that the last pair (L - 2, L - 1) is a repeat, language
    decoded_last_share: float  # ... decoding: the pair farthest from the prompt
    language_repeat_log_prob: float | None  # E[log P_ab | a == b], over the pairs, under the language
    language_other_log_prob: float | None  # E[log P_ab | a != b], language
    decoded_repeat_log_prob: float | None  # E[log P_ab | a == b], decoding
    decoded_other_log_prob: float | None  # E[log P_ab | a != b], decoding
    language_nll: float  # E[-log P_ab] per pair, language (the entropy rate where starts is stationary)
    decoded_nll: float  # ... decoding: the log of the true perplexity, its log averaged exactly

    @property
    def repeat_share_of_extra_nll(self) -> float | None:
        """The share of the decoding's extra negative log-likelihood over the language's that repeat pairs
        account for: (repeat NLL per pair, decoding - language) / (NLL per pair, decoding - language);
        None where the decoding costs nothing extra (k = 1), or infinitely more (a pair of probability 0)."""
        extra = self.decoded_nll - self.language_nll
        if not 0 < extra < math.inf:
            return None
        return (_repeat_nll(self.decoded_share, self.decoded_repeat_log_prob)
                - _repeat_nll(self.language_share, self.language_repeat_log_prob)) / extra


def _repeat_nll(share: float, log_prob: float | None) -> float:
    """E[-log P_ab over the repeat pairs] per pair: share times the mean (0 where no repeat occurs)."""
    return 0.0 if log_prob is None else -share * log_prob


def adjacent_repeats(P: torch.Tensor, starts: torch.Tensor, seq_len: int, tokens_per_step: int) -> AdjacentRepeats:
    """Adjacent repeats of the language and of decoding ``tokens_per_step`` masks per step, exactly.

    Args:
        P: the chain's transition matrix (V, V), rows summing to 1; computed in float64.
        starts: the distribution of the prompt token at position 0 (V,).
        seq_len: L >= 2, the prompt and the L - 1 decoded positions.
        tokens_per_step: k in [1, L - 1], masks decoded per step, left to right; L - 1 is all at once.
    """
    _check_transition(P)
    check_number("seq_len", seq_len, integer=True, at_least=2, meaning="a prompt token and at least one mask")
    check_number("tokens_per_step", tokens_per_step, integer=True, at_least=1, at_most=seq_len - 1,
                 meaning=f"masks per step, at most the L - 1 = {seq_len - 1} masks")
    P = P.double()
    starts = _check_starts(starts, P.shape[0])
    language = _pair_sums(P, starts, seq_len, 1)
    decoded = _pair_sums(P, starts, seq_len, tokens_per_step)
    pairs = seq_len - 1
    return AdjacentRepeats(
        k=tokens_per_step, pairs=pairs, language_share=language.repeats / pairs, decoded_share=decoded.repeats / pairs,
        language_last_share=language.last_repeat, decoded_last_share=decoded.last_repeat,
        language_repeat_log_prob=_mean(language.repeat_log_prob, language.repeats),
        language_other_log_prob=_mean(language.other_log_prob, pairs - language.repeats),
        decoded_repeat_log_prob=_mean(decoded.repeat_log_prob, decoded.repeats),
        decoded_other_log_prob=_mean(decoded.other_log_prob, pairs - decoded.repeats),
        language_nll=-(language.repeat_log_prob + language.other_log_prob) / pairs,
        decoded_nll=-(decoded.repeat_log_prob + decoded.other_log_prob) / pairs)


def _check_starts(starts, vocab_size: int) -> torch.Tensor:
    """``starts`` as float64 if it is a distribution over the V tokens: shape (V,), non-negative, summing to 1."""
    if (not isinstance(starts, torch.Tensor) or starts.shape != (vocab_size,) or not starts.is_floating_point()
            or not torch.isfinite(starts).all() or (starts < 0).any()
            or abs(float(starts.double().sum()) - 1) > 1e-9):
        raise ValueError(f"starts must be a distribution over the V = {vocab_size} tokens of P: a float tensor of "
                         f"shape ({vocab_size},), non-negative, summing to 1; got "
                         f"{_described(starts)}")
    return starts.double()


def _described(value) -> str:
    """A tensor as its shape and sum, anything else as its type."""
    if isinstance(value, torch.Tensor):
        total = f"{float(value.double().sum()):.6g}" if value.is_floating_point() else "?"
        return f"shape {tuple(value.shape)}, dtype {value.dtype}, sum {total}"
    return type(value).__name__


def _mean(total: float, weight: float) -> float | None:
    """total / weight, or None where the weight (a probability mass of pairs) is 0."""
    return total / weight if weight > 0 else None


@dataclass(frozen=True)
class _Sums:
    """Expected sums over the pairs (i, i + 1), i = 0 .. L - 2."""
    repeats: float  # E[number of pairs with a == b]
    repeat_log_prob: float  # E[sum of log P_ab over those pairs]
    other_log_prob: float  # E[sum of log P_ab over the other pairs, a != b]
    last_repeat: float  # P(the last pair is a repeat)


def _pair_sums(P: torch.Tensor, starts: torch.Tensor, seq_len: int, k: int) -> _Sums:
    """The expected sums of decoding positions 1 .. L - 1 left to right, k per step (k = 1: the language)."""
    log_P = torch.log(P)  # (V, V); -inf where P is 0
    powers = [torch.eye(P.shape[0], dtype=torch.float64)]
    for _ in range(k):
        powers.append(powers[-1] @ P)  # P^0 .. P^k
    d = starts  # (V,) the law of the token that ends the previous step (the prompt first)
    repeats = repeat_log_prob = other_log_prob = last = 0.0
    for first in range(1, seq_len, k):  # the first position of each step
        m = min(k, seq_len - first)  # masks decoded in this step
        # across the boundary, a true transition: J_ab = d_a P_ab
        joints = [d.unsqueeze(-1) * P]  # (V, V)
        # inside the step, independent draws: J_ab = sum_x d_x (P^j)_xa (P^(j+1))_xb
        joints += [(d.unsqueeze(-1) * powers[j]).T @ powers[j + 1] for j in range(1, m)]  # (V, V) each
        for joint in joints:
            diagonal = joint.diagonal()  # (V,)
            last = float(diagonal.sum())
            repeats += last
            repeat_log_prob += float(_weighted(diagonal, log_P.diagonal()))
            other_log_prob += float(_weighted(joint - torch.diag(diagonal), log_P))  # the diagonal weighs 0
        d = d @ powers[m]  # (V,) the law of the step's last token
    return _Sums(repeats, repeat_log_prob, other_log_prob, last)


def _weighted(weights: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """sum of weights * log_p, a pair of weight 0 counting 0 (also where log_p is -inf)."""
    return torch.where(weights > 0, weights * log_p, torch.zeros((), dtype=torch.float64)).sum()
