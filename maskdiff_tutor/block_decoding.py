"""Semi-autoregressive decoding with a block-causal model, with and without a KV cache.

Book chapter "Blocks" (paper Section 3.4.2). A model trained block-causally (``blockwise.py``)
sees, for the block it is denoising, the clean blocks before it, and the clean blocks never look
ahead. So once a block is decoded its keys and values are final: they can be computed once and
cached, and each later step runs the model on the current block alone. ``generate_block_causal``
does both ways; with ``use_cache=False`` it runs the whole [prefix, block] every step with the
block-causal mask, the reference that the cached path must reproduce exactly. With
``causal_prefix=False`` it decodes a model trained by the paper's literal scheme, [prefix, block]
with full attention at every step, never cached.

(LLaDA's ``block_length`` is different: it only restricts which positions may be decoded and
keeps full attention, so nothing can be cached exactly.)
"""

from __future__ import annotations

import torch

from ._checks import check_mask_id
from .blockwise import block_attention_mask
from .remasking import check_prompt, check_schedule, confidence, select
from .samplers import Decoded, _pick, log_probs_without_mask


@torch.no_grad()
def generate_block_causal(model, prompt: torch.Tensor, gen_length: int, mask_id: int, block_length: int, *,
                          tokens_per_step: int | None = 1, threshold: float | None = None, score=confidence,
                          use_cache: bool = True, causal_prefix: bool = True,
                          generator: torch.Generator | None = None, greedy: bool = True) -> Decoded:
    """Generate ``gen_length`` tokens after ``prompt`` (B, P), block by block, each block decoded
    by confidence order within it (see ``remasking.generate`` for ``tokens_per_step``,
    ``threshold``, ``score`` and ``greedy``).

    Args:
        model: a ``Denoiser`` (it needs ``step`` for the cache and ``attn_mask``/``position_ids``
            without it); P + gen_length <= its max_seq_len.
        block_length: size of each block; divides ``gen_length``. The prompt is one clean block.
        use_cache: keep the keys and values of finished blocks (True) or recompute the prefix
            every step (False).
        causal_prefix: True for a block-causal model; False for a model trained by the paper's
            literal scheme (``objective="blockwise_literal"``): each step runs [prefix, block] with
            full attention, so the prefix changes with the block and nothing can be cached
            (``use_cache`` must be False).
    """
    if use_cache and not causal_prefix:
        raise ValueError("use_cache=True needs causal_prefix=True: with full attention the prefix's keys and "
                         "values change with every step; pass use_cache=False")
    check_schedule(gen_length, block_length, tokens_per_step, threshold)
    check_prompt(prompt, mask_id)
    check_mask_id(mask_id, model.config.vocab_size)
    B, P = prompt.shape
    device = prompt.device
    tokens = torch.cat([prompt, torch.full((B, gen_length), mask_id, dtype=prompt.dtype, device=device)], 1)
    order = torch.full(tokens.shape, -1, dtype=torch.long, device=device)
    scores = torch.full(tokens.shape, float("nan"), dtype=torch.float64, device=device)
    # block ids: the prompt is block 0, generated blocks are 1, 2, ...
    block_id = torch.cat([torch.zeros(P, dtype=torch.long),
                          1 + torch.arange(gen_length) // block_length]).to(device)  # (L,)
    past = model.step(prompt, torch.arange(P, device=device))[1] if use_cache and P else None
    step = 0
    for start in range(P, P + gen_length, block_length):
        end = start + block_length
        positions = torch.arange(end, device=device)
        block_tokens, block_order, block_scores = tokens[:, start:end], order[:, start:end], scores[:, start:end]
        open_ = block_tokens == mask_id  # (B, b) views above: writing them writes the whole
        while open_.any():
            if use_cache:
                logits = model.step(block_tokens, positions[start:], past)[0]  # (B, b, V)
            else:
                clean = positions < start  # (end,)
                mask = block_attention_mask(block_id[:end], clean, block_id[:end], clean) if causal_prefix else None
                logits = model(tokens[:, :end], attn_mask=mask, position_ids=positions)[:, start:]  # (B, b, V)
            log_probs = log_probs_without_mask(logits, mask_id)  # (B, b, V) float64
            chosen = _pick(log_probs, generator, greedy)  # (B, b)
            s, commit = select(score(log_probs, chosen, generator), open_, tokens_per_step, threshold)
            block_tokens.copy_(torch.where(commit, chosen, block_tokens))
            block_order.masked_fill_(commit, step)
            block_scores.copy_(torch.where(commit, s, block_scores))
            open_ = open_ & ~commit
            step += 1
        if use_cache:  # the finished block becomes clean context: cache its keys and values
            finished = model.step(tokens[:, start:end], positions[start:], past)[1]
            past = finished if past is None else [(torch.cat([pk, k], 2), torch.cat([pv, v], 2))
                                                  for (pk, pv), (k, v) in zip(past, finished)]
    return Decoded(tokens, nfe=step, order=order, confidence=scores)
