"""Confidence-ordered decoding: LLaDA's low-confidence remasking, Fast-dLLM's threshold, margin and
entropy orderings, random order, and semi-autoregressive blocks.

Book chapters "Generation order" and "Blocks" (paper Sections 3.3-3.4). One loop, ``generate``,
serves them all; what differs is passed in, not switched on a string:

- ``score``: how sure the model is at each masked position (``confidence``, ``margin``,
  ``negative_entropy``, ``random_score``); the surest positions are decoded first.
- ``tokens_per_step``: how many positions are decoded per denoiser call (top-k), or
- ``threshold``: decode every position whose score reaches it (at least one per step).
- ``block_length``: semi-autoregressive decoding; the generation is cut into blocks decoded left
  to right, and positions of later blocks are not decoded before the current block is full
  (attention stays bidirectional, as in LLaDA).

"Remasking" in LLaDA's sense (predict every mask, keep the surest, re-mask the rest) is exactly
this: the tokens not kept are never written, so they stay masked.
"""

from __future__ import annotations

import torch

from ._checks import check_positive_int, check_tokens
from .samplers import Decoded, _clean_log_probs, _pick


def confidence(log_probs: torch.Tensor, chosen: torch.Tensor, generator=None) -> torch.Tensor:
    """The probability of the token chosen at each position (LLaDA's low-confidence remasking): (B, L)."""
    return log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).exp()


def margin(log_probs: torch.Tensor, chosen: torch.Tensor, generator=None) -> torch.Tensor:
    """Top probability minus the second (Dream's topk_margin): (B, L)."""
    top2 = log_probs.topk(2, dim=-1).values.exp()  # (B, L, 2)
    return top2[..., 0] - top2[..., 1]


def negative_entropy(log_probs: torch.Tensor, chosen: torch.Tensor, generator=None) -> torch.Tensor:
    """Minus the entropy of each position's distribution (Dream's entropy ordering): (B, L)."""
    probs = log_probs.exp()
    return torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs)).sum(-1)


def random_score(log_probs: torch.Tensor, chosen: torch.Tensor, generator=None) -> torch.Tensor:
    """A uniform random score: decoding in a random order (LLaDA's "random" remasking): (B, L)."""
    noise_device = generator.device if generator is not None else log_probs.device
    return torch.rand(chosen.shape, generator=generator, dtype=torch.float64, device=noise_device).to(chosen.device)


def check_schedule(gen_length: int, block_length: int | None, tokens_per_step: int | None,
                   threshold: float | None) -> int:
    """Check the decoding schedule's arguments; return the block length (gen_length if None)."""
    check_positive_int("gen_length", gen_length)
    block_length = gen_length if block_length is None else check_positive_int("block_length", block_length)
    if gen_length % block_length:
        raise ValueError(f"gen_length ({gen_length}) must be divisible by block_length ({block_length})")
    if (tokens_per_step is None) == (threshold is None):
        raise ValueError("give exactly one of tokens_per_step (top-k per step) and threshold")
    if tokens_per_step is not None:
        check_positive_int("tokens_per_step", tokens_per_step)
        if tokens_per_step > block_length:
            raise ValueError(f"tokens_per_step ({tokens_per_step}) must not exceed the masks of a block "
                             f"(block_length = {block_length})")
    return block_length


def check_prompt(prompt: torch.Tensor, mask_id: int) -> None:
    check_tokens("prompt", prompt, None, mask_id, allow_mask=False)
    if prompt.ndim != 2:
        raise ValueError(f"prompt must have shape (B, P); got {tuple(prompt.shape)}")


SCORE_RESOLUTION = 1e-9  # scores closer than this are ties, and the leftmost of tied positions wins


def select(scores: torch.Tensor, open_: torch.Tensor, tokens_per_step: int | None, threshold: float | None):
    """Which open positions to decode this step: the k best by score, or all at or above the
    threshold (at least the best). Returns (scores with closed positions at -inf, commit (B, L)).

    Scores are compared to ``SCORE_RESOLUTION`` and ties go to the leftmost position. An exact
    denoiser gives symmetric positions exactly equal scores, which floating point reproduces only
    to the last bits, and those bits differ between CPUs (AVX2, AVX-512); ranking the raw floats
    would let them choose the position, and so the generated text, differently on each machine."""
    s = torch.where(open_, scores.double(), -torch.inf)  # (B, L)
    L = s.shape[-1]
    level = torch.round(scores.double() / SCORE_RESOLUTION).clamp(-2.0**40, 2.0**40).long()  # (B, L)
    position = torch.arange(L, device=s.device)  # (L,)
    key = torch.where(open_, level * L + (L - 1 - position), torch.iinfo(torch.long).min)  # (B, L), no two equal
    if threshold is not None:
        best = key.argmax(-1, keepdim=True)  # (B, 1) at least the surest position
        commit = (level * SCORE_RESOLUTION >= threshold) | torch.zeros_like(open_).scatter(-1, best, True)
    else:
        top = key.topk(min(tokens_per_step, L), dim=-1).indices  # (B, k)
        commit = torch.zeros_like(open_).scatter(-1, top, True)
    return s, commit & open_  # a row with fewer than k open positions commits only those


@torch.no_grad()
def generate(denoiser, prompt: torch.Tensor, gen_length: int, mask_id: int, *, score=confidence,
             tokens_per_step: int | None = 1, threshold: float | None = None, block_length: int | None = None,
             generator: torch.Generator | None = None, greedy: bool = True) -> Decoded:
    """Generate ``gen_length`` tokens after ``prompt`` (B, P) by confidence-ordered decoding.

    Args:
        denoiser: callable x (B, L) -> logits (B, L, V).
        prompt: token ids (B, P) without the mask; P may be 0.
        gen_length: number of tokens to generate.
        mask_id: the mask token.
        score: a function (log_probs (B, L, V), chosen (B, L), generator) -> (B, L), higher = surer.
        tokens_per_step: positions decoded per denoiser call (k); None when ``threshold`` is used.
        threshold: decode every position whose score is >= threshold, and at least the surest one.
        block_length: semi-AR block size; must divide ``gen_length``. None: one block.
        generator: source of sampling noise (and of ``random_score``).
        greedy: take each position's argmax (LLaDA at temperature 0) or sample in float64.

    Returns ``Decoded`` with the tokens (B, P + gen_length), the number of denoiser calls, the step
    at which each position was decoded (``order``, -1 for the prompt) and the score it had then
    (``confidence``, NaN for the prompt).
    """
    block_length = check_schedule(gen_length, block_length, tokens_per_step, threshold)
    check_prompt(prompt, mask_id)
    B, P = prompt.shape
    masks = torch.full((B, gen_length), mask_id, dtype=prompt.dtype, device=prompt.device)
    x = torch.cat([prompt, masks], dim=1)  # (B, P + G)
    order = torch.full(x.shape, -1, dtype=torch.long, device=x.device)
    scores = torch.full(x.shape, float("nan"), dtype=torch.float64, device=x.device)
    position = torch.arange(x.shape[1], device=x.device)  # (L,)
    step = 0
    for start in range(P, P + gen_length, block_length):
        in_block = (position >= start) & (position < start + block_length)  # (L,)
        while ((x == mask_id) & in_block).any():
            log_probs = _clean_log_probs(denoiser, x, mask_id)  # (B, L, V)
            chosen = _pick(log_probs, generator, greedy)  # (B, L)
            open_ = (x == mask_id) & in_block  # (B, L) positions that may be decoded now
            s, commit = select(score(log_probs, chosen, generator), open_, tokens_per_step, threshold)
            x = torch.where(commit, chosen, x)
            order = torch.where(commit, step, order)
            scores = torch.where(commit, s, scores)
            step += 1
    return Decoded(x, nfe=step, order=order, confidence=scores)
