"""Remasking during decoding, in the manner of ReMDM (Wang et al., 2025), for claim 10.

Book chapter "Ground truth" (paper Section 3.3, "Remasking techniques"). A masked diffusion
sampler never changes a token once decoded; ReMDM lets it: in each step some decoded tokens are
masked again, to be decoded afresh later, while more masks are decoded to keep to the schedule.
The paper argues this buys neither parallelism nor speed. (``remasking.py`` is something else:
LLaDA's rules for *which* masks to decode.)

This is the book's minimal version, named "left-to-right remasking" to keep it apart from
ReMDM's own samplers: a fixed number of denoiser calls, a linear schedule of how many masks are
left after each call, masks decoded leftmost first (as in ``samplers.sample_left_to_right``),
and a constant remasking probability ``eta`` per decoded token and step (ReMDM's "cap" schedule
with a constant cap, without its confidence-based variant).
"""

from __future__ import annotations

import torch

from ._checks import check_positive_int
from .samplers import Decoded, _check, _clean_log_probs, _pick, _uniform


@torch.no_grad()
def sample_with_remasking(denoiser, x: torch.Tensor, mask_id: int, steps: int, eta: float,
                          generator: torch.Generator | None = None, greedy: bool = False) -> Decoded:
    """Fill the masks of x (B, L) in exactly ``steps`` denoiser calls, remasking as it goes.

    With N masks in a sequence, step i (i = 0 .. steps - 1) leaves floor(N (steps - i - 1) / steps)
    of them masked: a linear schedule that ends with none. Each step makes one denoiser call on
    the current sequence; then

    - each token decoded in an earlier step is masked again with probability ``eta``
      (independently; if more are drawn than the masks the schedule leaves after this step, those
      with the smallest draws are kept), and
    - the leftmost masks are decoded, each from its own marginal, as many as the schedule asks
      plus one for each token remasked in this step.

    A remasked token is decoded again in a later call, from what the denoiser sees then. The last
    step remasks nothing, so every mask is filled. With ``eta = 0`` and ``steps = N / k`` this is
    ``samplers.sample_left_to_right`` with k tokens per step, draw for draw from the same generator.

    Args:
        denoiser: callable x_t (B, L) -> logits (B, L, V).
        x: (B, L) token ids with masks to fill.
        mask_id: the mask's id.
        steps: denoiser calls (the NFE), fixed in advance.
        eta: probability of remasking each decoded token in each step, in [0, 1).
        generator: the random stream; greedy: argmax instead of sampling.

    ``order`` holds the last step that decoded each position (-1: given) and ``remasked`` (B,)
    how many times a decoded token was masked again.
    """
    _check(x, mask_id)
    check_positive_int("steps", steps)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta < 1:
        raise ValueError(f"eta must be a number in [0, 1) (the probability of remasking a decoded token "
                         f"per step); got {eta!r}")
    given = x != mask_id  # (B, L)
    total = (~given).sum(-1)  # (B,) N, the masks to fill
    tokens, order = x.clone(), torch.where(given, -1, 0)
    remasked = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for step in range(steps):
        masked = tokens == mask_id  # (B, L)
        left = (total * (steps - step - 1)) // steps  # (B,) masks the schedule leaves after this step
        picks = _pick(_clean_log_probs(denoiser, tokens, mask_id), generator, greedy)  # (B, L)
        again = torch.zeros_like(masked)  # (B, L) decoded tokens masked again in this step
        if eta > 0:
            draw = _uniform(x.shape, generator, x.device)  # (B, L)
            candidate = ~masked & ~given & (draw < eta)
            rank = torch.where(candidate, draw, 2.0).argsort(-1).argsort(-1)  # (B, L): 0 for the smallest draw
            again = candidate & (rank < left.unsqueeze(-1))  # at most `left` of them
        count = masked.sum(-1) - left + again.sum(-1)  # (B,) masks to decode in this step
        chosen = masked & (masked.long().cumsum(-1) <= count.unsqueeze(-1))  # (B, L) the leftmost ones
        tokens = torch.where(again, mask_id, torch.where(chosen, picks, tokens))
        order = torch.where(chosen, step, order)
        remasked += again.sum(-1)
    return Decoded(tokens, nfe=steps, order=order, remasked=remasked)
