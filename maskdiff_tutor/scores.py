"""What a step of the unmasking loop makes of the denoiser's logits: a token drawn at each position
(``draw``) and a score that ranks the positions, surest first (``confidence``, ``margin``, ...).

Book chapters "Joint versus marginal", "Parallel sampling" and "Generation order" (paper Sections
3.2.2-3.3; LLaDA's low-confidence remasking, Dream's margin and entropy orders). A score is any
function ``score(prediction, generator) -> (B, n)``, higher = decode sooner, of a ``Prediction``:
the logits, the clean log-probabilities, the token drawn and its log-probability. The loop that
uses them is ``decoding.unmask``, which re-exports every name here (``decoding.confidence``).

Tokens are drawn by the Gumbel-max trick in float64 (lower precision lowers the effective
temperature: Zheng et al., 2024), without overflow at any temperature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


class Prediction(NamedTuple):
    """One step's reading of the denoiser over a window of n positions, as a score sees it."""

    logits: torch.Tensor  # (B, n, V) the denoiser's raw logits
    log_probs: torch.Tensor  # (B, n, V) float64 log-probabilities over clean tokens (mask removed)
    chosen: torch.Tensor  # (B, n) the token drawn at each position
    chosen_log_prob: torch.Tensor  # (B, n) its log-probability, log_probs at chosen


# --- scores: (prediction, generator) -> (B, n), higher = decode sooner ----------------------------

def _carries_nan(score):
    """Declare that ``score`` is NaN wherever the chosen token's log-probability is NaN (where the
    logits give no distribution), as the loop needs: it then records the score as it is instead of
    adding that NaN to it. Any score may declare it (``score.carries_nan = True``)."""
    score.carries_nan = True
    return score


@_carries_nan
def confidence(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """The clean-distribution probability of the token drawn (LLaDA's low-confidence remasking,
    the mask's share left out): (B, n)."""
    return prediction.chosen_log_prob.exp()


def confidence_with_mask(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The probability of the token drawn under the full softmax, the mask's logit included, as
    LLaDA's ``generate()`` computes it: the clean confidence times :math:`1 - p(\text{mask})`. (B, n)."""
    full = torch.log_softmax(prediction.logits.double(), dim=-1)  # (B, n, V)
    return full.gather(-1, prediction.chosen.unsqueeze(-1)).squeeze(-1).exp()


def margin(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """Top probability minus the second (Dream's topk_margin): (B, n)."""
    top2 = prediction.log_probs.topk(2, dim=-1).values.exp()  # (B, n, 2)
    return top2[..., 0] - top2[..., 1]


def negative_entropy(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """Minus the entropy of each position's distribution (Dream's entropy ordering): (B, n)."""
    log_probs = prediction.log_probs
    probs = log_probs.exp()
    return torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs)).sum(-1)


def random_score(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniform random score: decoding in a random order (LLaDA's "random" remasking): (B, n)."""
    return uniform(prediction.chosen.shape, generator, prediction.chosen.device)


def leftmost(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """The same score everywhere: ties go to the leftmost position, so this is left to right."""
    return torch.zeros(prediction.chosen.shape, dtype=torch.float64, device=prediction.chosen.device)


SCORES = (confidence, confidence_with_mask, margin, negative_entropy, random_score, leftmost)  # the package's


def check_score(score) -> None:
    """``score`` must be a function ``score(prediction, generator) -> (B, n)``, such as one of ``SCORES``
    (a string such as "confidence" is refused, naming the functions to pass instead)."""
    if not callable(score):
        names = ", ".join(f"decoding.{s.__name__}" for s in SCORES)
        raise TypeError(f"score must be a function (prediction, generator) -> scores (B, n), such as {names}; "
                        f"got {score!r} (a {type(score).__name__})")


# --- drawing: the token each position gets ------------------------------------------------------

def uniform(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) float64 noise drawn on the generator's device, moved to ``device``."""
    noise_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=noise_device).to(device)


TINY_TEMPERATURE = 1e-200  # below it, ``draw`` scales the noise instead of the log-probabilities


def draw(log_probs: torch.Tensor, temperature: float,
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A token from :math:`\mathrm{softmax}(\mathtt{log\_probs} / \mathtt{temperature})` by the Gumbel-max trick
    in float64, or the argmax at temperature 0, and its log-probability: (..., V) -> ((...), (...)). At
    temperature T this is LLaDA's :math:`\arg\max(\exp(\text{logits}) / (-\log u)^T)`: the same u give the
    same tokens.

    A tiny temperature would overflow: at T = 1e-310, :math:`\log p / T` is -inf for every token, and
    the argmax of a row of -inf is token 0, whatever the model says (the mask, if its id is 0).
    Below ``TINY_TEMPERATURE`` the draw is therefore taken as :math:`\arg\max(\log p + T g)` with the
    same Gumbel noise g: the same draw (the argmax of :math:`\log p / T + g` times T > 0), which never
    overflows and becomes the argmax as T -> 0. From ``TINY_TEMPERATURE`` up, :math:`\log p / T` is
    finite at the best token (whose log-probability is at least :math:`-\log V`), and the draw is
    computed as it always was, bit for bit."""
    if temperature == 0:  # the argmax (the first of equal maxima, as argmax gives) and its log-probability
        best = log_probs.max(-1)
        return best.indices, best.values
    gumbel = -torch.log(-torch.log(uniform(log_probs.shape, generator, log_probs.device).clamp_min(1e-300)))
    if temperature < TINY_TEMPERATURE:  # argmax(log p + T g) = argmax(log p / T + g), without the overflow
        keys = torch.add(log_probs, gumbel, alpha=temperature)
    else:
        keys = (log_probs if temperature == 1 else log_probs / temperature) + gumbel
    chosen = keys.argmax(-1)
    return chosen, log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)


Score = Callable[[Prediction, "torch.Generator | None"], torch.Tensor]  # (B, n), higher = decode sooner
