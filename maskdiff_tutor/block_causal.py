"""Block-causal decoding with a KV cache: the book's sampler for a model trained block-causally.

Book chapter "Blocks" (paper Section 3.4.2; BD3-LM's block diffusion). A model trained by
``blockwise`` sees, for the block it denoises, the clean blocks before it, and a clean block never
attends ahead; so once a block is decoded, its keys and values are final. ``generate_block_causal``
decodes block after block with the one unmasking loop (``decoding.unmask``), the schedule and
scores of ``decoders.generate`` (checked by the same ``decoders.check_generation``), and a reader
of the current block only, ``BlockCausalReader``: with the cache, the finished blocks' keys and
values are computed once and each step runs the block alone; without it, each step runs
[prefix, block] with the block-causal mask (``attention_masks.prefix_and_block_mask``), the
reference that the cached path reproduces exactly. The model is anything with the methods of
``BlockCausalModel``, such as the package's ``denoiser.Denoiser``.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ._checks import check_logits
from .attention_masks import prefix_and_block_mask
from .decoders import check_generation
from .decoding import Decoded, confidence, unmask


class BlockCausalModel(Protocol):
    """What ``generate_block_causal`` needs of a model (the package's ``Denoiser`` has it).

    ``model(x, attn_mask=..., position_ids=...)`` returns logits (B, L, V) for tokens x (B, L)
    at ``position_ids`` (L,), attending where ``attn_mask`` (L, L) is True (None: everywhere).
    ``model.step(x, position_ids, past_kv)`` runs tokens x (B, n) attending to the cached keys
    and values ``past_kv`` (per layer (k, v)) and to each other, and returns (logits (B, n, V),
    the per-layer (k, v) of these n tokens). ``model.config.vocab_size`` is V."""

    config: object

    def __call__(self, x: torch.Tensor, *, attn_mask: torch.Tensor | None,
                 position_ids: torch.Tensor) -> torch.Tensor: ...

    def step(self, x: torch.Tensor, position_ids: torch.Tensor,
             past_kv: list | None = None) -> tuple[torch.Tensor, list]:
        """Logits of the block ``x`` at ``position_ids`` given the cached keys and values of the
        blocks before it (``past_kv``), and the cache extended by this block."""


class BlockCausalReader:
    """Reads a block-causal model on the current block only. With the cache, the keys and values of
    finished blocks are computed once and each step runs the block alone; without it, each step
    runs [prefix, block] with the block-causal mask (``causal_prefix``) or full attention (the
    paper's literal scheme).

    As ``decoding.DenoiserReader`` does, it gives the model copies of the tokens and positions,
    never the decoder's own buffers, and checks the logits of every call (``check_logits``). The
    cached keys and values (``past_kv``) are the model's own output and are passed as they are."""

    def __init__(self, model: BlockCausalModel, prompt: torch.Tensor, mask_id: int, block_length: int,
                 length: int, use_cache: bool, causal_prefix: bool):
        self.model, self.mask_id, self.block_length = model, mask_id, block_length
        self.prompt_length, self.use_cache, self.causal_prefix = prompt.shape[1], use_cache, causal_prefix
        self.positions = torch.arange(length, device=prompt.device)  # (L,)
        self.cache: list | None = None  # per layer (k, v) buffers (B, H, L, hd), filled up to `cached`
        self.cached = 0
        self.past: list | None = None  # views of the filled part of the buffers
        self.block, self.block_views = None, None
        if use_cache and self.prompt_length:
            self._append(model.step(prompt.clone(), self.positions[:self.prompt_length].clone())[1])

    def _append(self, kv: list) -> None:
        """Write the keys and values of the next tokens into the cache buffers."""
        n = kv[0][0].shape[2]
        if self.cache is None:
            length = self.positions.numel()
            self.cache = [(k.new_empty(*k.shape[:2], length, k.shape[3]), v.new_empty(*v.shape[:2], length, v.shape[3]))
                          for k, v in kv]
        for (k_cache, v_cache), (k, v) in zip(self.cache, kv, strict=True):
            k_cache[:, :, self.cached:self.cached + n] = k
            v_cache[:, :, self.cached:self.cached + n] = v
        self.cached += n
        self.past = [(k[:, :, :self.cached], v[:, :, :self.cached]) for k, v in self.cache]

    def __call__(self, tokens: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, int]:
        if self.block != (start, end):  # views of the block, made once per block
            self.block, self.block_views = (start, end), (tokens[:, start:end], self.positions[start:end])
        block, positions = self.block_views
        if self.use_cache:
            logits = self.model.step(block.clone(), positions.clone(), self.past)[0]  # (B, b, V)
        else:
            mask = prefix_and_block_mask(self.prompt_length, self.block_length, start).to(tokens.device) \
                if self.causal_prefix else None
            logits = self.model(tokens[:, :end].clone(), attn_mask=mask,
                                position_ids=self.positions[:end].clone())[:, start:]  # (B, b, V)
        check_logits(logits, block, self.mask_id)
        return logits, start

    def block_done(self, tokens: torch.Tensor, start: int, end: int) -> None:
        """Write the finished block's keys and values into the cache."""
        if self.use_cache and end < self.positions.numel():  # the finished block becomes clean context
            self._append(self.model.step(tokens[:, start:end].clone(), self.positions[start:end].clone(),
                                         self.past)[1])


def _check_device(model, prompt: torch.Tensor) -> None:
    """A model with parameters (a ``torch.nn.Module``) must hold them on the prompt's device: the
    decoder makes every tensor on the prompt's device and does not move it."""
    parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    if parameter is not None and parameter.device != prompt.device:
        raise ValueError(f"prompt is on {prompt.device} but the model's parameters are on {parameter.device}; "
                         f"move the prompt to the model's device (prompt.to({str(parameter.device)!r}))")


@torch.no_grad()
def generate_block_causal(model: BlockCausalModel, prompt: torch.Tensor, gen_length: int, mask_id: int,
                          block_length: int, *, tokens_per_step: int | None = None, threshold: float | None = None,
                          steps: int | None = None, score=confidence, use_cache: bool = True,
                          causal_prefix: bool = True, temperature: float = 0.0,
                          generator: torch.Generator | None = None) -> Decoded:
    r"""Generate ``gen_length`` tokens after ``prompt`` (B, P), block by block, with a model trained
    block-causally (``blockwise``, paper Section 3.4.2); see ``decoders.generate`` for the schedule
    (``tokens_per_step``, ``threshold``, ``steps``), ``score`` and ``temperature``.

    A block-causal model sees, for the block it denoises, the clean blocks before it, and clean
    blocks never look ahead; so once a block is decoded its keys and values are final. With
    ``use_cache`` they are computed once and each step runs the current block alone; without it,
    each step runs [prefix, block] with the block-causal mask, the reference that the cached path
    reproduces exactly. (LLaDA's ``block_length`` only restricts which positions are committed and
    keeps full attention, so nothing can be cached exactly there.)

    Args:
        model: a ``BlockCausalModel`` such as ``Denoiser``; :math:`P + \mathtt{gen\_length} \le` its ``max_seq_len``.
        block_length: size of each block, dividing ``gen_length``. The prompt is one clean block.
        use_cache: keep the keys and values of finished blocks (True) or recompute the prefix
            every step (False).
        causal_prefix: True for a block-causal model; False for a model trained by the paper's
            literal scheme (``objective="blockwise_literal"``): each step runs [prefix, block]
            with full attention, so the prefix changes with the block and nothing can be cached
            (``use_cache`` must be False).
    """
    if use_cache and not causal_prefix:
        raise ValueError("use_cache=True needs causal_prefix=True: with full attention the prefix's keys and "
                         "values change with every step; pass use_cache=False")
    plan = check_generation(prompt, gen_length, mask_id, score=score, tokens_per_step=tokens_per_step,
                            threshold=threshold, steps=steps, block_length=block_length, temperature=temperature,
                            vocab_size=model.config.vocab_size)
    _check_device(model, prompt)
    read = BlockCausalReader(model, prompt, mask_id, plan.block_length, plan.x.shape[1], use_cache, causal_prefix)
    return unmask(read, plan.x, mask_id, plan.blocks, count=plan.count, threshold=plan.threshold, score=score,
                  temperature=plan.temperature, generator=generator, name="prompt")
