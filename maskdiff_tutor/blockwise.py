r"""Blockwise training (paper Section 3.4.2): each noisy block learns to denoise given the clean
blocks before it, which is what semi-autoregressive decoding in blocks asks of the model.

Book chapter "Blocks". Two schemes:

- The paper's, literally: for block j the input is [clean blocks < j, noisy block j] with full
  attention, so the clean prefix also attends to the noisy block. Its representation then
  changes with every j, so the blocks must be trained one forward pass each
  (``blockwise_loss_loop(..., causal_prefix=False)``).
- Block-causal (BD3-LM's choice): a clean block attends only to clean blocks up to itself, and a
  noisy block to itself and the clean blocks before it. The prefix no longer depends on the noisy
  block, so all blocks train in ONE pass over ``[x_t, x_0]`` (:math:`2L` tokens) with the mask of
  ``attention_masks.vectorised_mask`` (``blockwise_loss``); the loop with ``causal_prefix=True`` is its
  reference, and the tests prove the two equal.

Both use the same noise: ``sample_block_noise`` gives each block its own time t and masks it at
rate :math:`1 - \alpha(t)`, and the loss weights each block's masked NLL by :math:`w(t)` (Eq. 13 per block).

Each public function checks its arguments once, where they enter; the times and masks it draws are not
checked again on their way through the forward process and the schedule.
"""

from __future__ import annotations

import torch

from ._checks import check_logits, check_positive_int, check_times
from .attention_masks import block_attention_mask, number_of_blocks, vectorised_mask
from .forward_process import _sample_xt
from .nelbo import _check_x0, _refuse_undefined, _sample_times
from .objectives import LossParts, masked_nll
from .schedules import Schedule


def sample_block_noise(x0: torch.Tensor, block_length: int, schedule: Schedule, mask_id: int,
                       generator: torch.Generator | None = None, antithetic: bool = True):
    """One time per block and the masked sequence: returns (x_t (B, L), t (B, n_blocks))."""
    _check_x0(x0, mask_id)
    batch, seq_len = x0.shape
    n_blocks = number_of_blocks(seq_len, block_length)
    t = _sample_times(batch * n_blocks, generator, antithetic).view(batch, n_blocks)  # (B, n)
    t_per_token = t.repeat_interleave(block_length, dim=1)  # (B, L)
    return _mask_per_token(x0, t_per_token, schedule, mask_id, generator), t


def _mask_per_token(x0, t_per_token, schedule, mask_id, generator):
    """Mask each token independently with probability 1 - alpha(t of its block) (Eq. 3 per block)."""
    flat_t = t_per_token.reshape(-1)  # (B * L,)
    flat = _sample_xt(x0.reshape(-1, 1), flat_t, schedule, mask_id, generator)  # (B * L, 1)
    return flat.view_as(x0)


def _weighted_nll(logits, x0, x_t, t, block_length, schedule, mask_id, weighted):
    """The loss parts of the blocks' logits (B, L, V); t (B, n) is checked."""
    masked = x_t == mask_id  # (B, L)
    nll = masked_nll(logits, x0, masked, mask_id)  # (B, L)
    t64 = torch.as_tensor(t, dtype=torch.float64)  # (B, n)
    weight = (schedule._weight(t64) if weighted else torch.ones_like(t)).to(x0.device).float()  # (B, n)
    per_token_weight = weight.repeat_interleave(block_length, dim=1)  # (B, L)
    loss = (per_token_weight * nll).sum() / x0.numel()
    return LossParts(loss, nll.detach(), weight, t, masked, x0.numel())


def blockwise_loss(model, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, block_length: int,
                   schedule: Schedule, mask_id: int, weighted: bool = True) -> LossParts:
    r"""All blocks in one forward pass over ``[x_t, x_0]`` (B, 2L) with the block-causal mask.

    ``model`` must accept ``attn_mask`` and ``position_ids`` (the package's ``Denoiser`` does);
    both halves use positions :math:`0, \dots, L - 1`. Returns the loss and its parts (``weight`` is per block)."""
    check_times("t", t)
    seq_len = x0.shape[1]
    mask = vectorised_mask(seq_len, block_length).to(x0.device)  # (2L, 2L); checks block_length
    both = torch.cat([x_t, x0], dim=1)  # (B, 2L)
    positions = torch.arange(seq_len, device=x0.device).repeat(2)  # (2L,)
    logits = model(both, attn_mask=mask, position_ids=positions)  # (B, 2L, V)
    check_logits(logits, both, mask_id)
    return _weighted_nll(logits[:, :seq_len], x0, x_t, t, block_length, schedule, mask_id, weighted)


def blockwise_loss_loop(model, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, block_length: int,
                        schedule: Schedule, mask_id: int, weighted: bool = True,
                        causal_prefix: bool = True) -> LossParts:
    """One forward pass per block j over [clean blocks < j, noisy block j].

    ``causal_prefix=True``: the block-causal scheme (the reference for ``blockwise_loss``);
    ``causal_prefix=False``: the paper's scheme, full attention, the prefix attending to the noisy block."""
    check_times("t", t)
    seq_len = x0.shape[1]
    n_blocks = number_of_blocks(seq_len, block_length)
    block = torch.arange(seq_len, device=x0.device) // block_length  # (L,)
    pieces = []
    for j in range(n_blocks):
        start, end = j * block_length, (j + 1) * block_length
        inputs = torch.cat([x0[:, :start], x_t[:, start:end]], dim=1)  # (B, end)
        clean = torch.arange(end, device=x0.device) < start  # (end,)
        mask = block_attention_mask(block[:end], clean, block[:end], clean) if causal_prefix else None
        logits = model(inputs, attn_mask=mask, position_ids=torch.arange(end, device=x0.device))  # (B, end, V)
        check_logits(logits, inputs, mask_id)
        pieces.append(logits[:, start:end])  # (B, block_length, V)
    return _weighted_nll(torch.cat(pieces, dim=1), x0, x_t, t, block_length, schedule, mask_id, weighted)


def semi_autoregressive_nelbo(model, x0: torch.Tensor, block_length: int, schedule: Schedule, mask_id: int,
                              generator: torch.Generator | None = None, repeats: int = 1) -> torch.Tensor:
    r"""An unbiased estimate of the NELBO, in nats per token, of a full-attention denoiser that
    decodes x0 (B, L) in blocks left to right (LLaDA's semi-AR decoding): (B,).

    By the chain rule over blocks, :math:`-\log p(x) = \sum_j -\log p(\text{block } j \mid \text{blocks} < j)`,
    and each term is bounded by the diffusion NELBO of block j with the blocks before it clean and every
    later position masked (the model sees them as masks, as it does when decoding):

    .. math::

       \mathrm{NELBO}_B(x) = \sum_j \mathbb{E}_t \Big[ w(t) \sum_{l \in \text{block } j,\ \text{masked}}
       -\log p_\theta(x_0^l \mid x_t^{(j)}) \Big]

    Each repeat draws one block j uniformly per sequence and one time, and multiplies by the number
    of blocks. :math:`B = L` is the usual NELBO (Eq. 13); :math:`B = 1` is the exact left-to-right NLL of the model
    in expectation. With the exact denoiser every B gives the true NLL."""
    _check_x0(x0, mask_id)
    check_positive_int("repeats", repeats)
    batch, seq_len = x0.shape
    n_blocks = number_of_blocks(seq_len, block_length)
    position = torch.arange(seq_len, device=x0.device)  # (L,)
    total = torch.zeros(batch, dtype=torch.float64, device=x0.device)
    for _ in range(repeats):
        t = _sample_times(batch, generator, antithetic=True)  # (B,)
        j = torch.randint(n_blocks, (batch, 1), generator=generator).to(x0.device)  # (B, 1)
        start, end = j * block_length, (j + 1) * block_length  # (B, 1)
        noisy = _sample_xt(x0, t, schedule, mask_id, generator)  # (B, L)
        x_t = torch.where(position < start, x0, torch.where(position < end, noisy, mask_id))  # (B, L)
        logits = model(x_t.clone())  # (B, L, V); a copy: a model that edits its input changes nothing here
        check_logits(logits, x_t, mask_id)
        scored = (x_t == mask_id) & (position >= start) & (position < end)  # (B, L): block j's masks
        nll = masked_nll(logits, x0, scored, mask_id).double()  # (B, L)
        _refuse_undefined(torch.isnan(nll) & scored, None)
        # NELBO_B = sum_j E_t[w(t) sum_{l in block j, masked} -log p_theta(x_0^l | x_t^(j))]     [eq-semi-ar-nelbo]
        # estimated by one block j per sequence, times the number of blocks
        total += n_blocks * schedule._weight(t).to(x0.device) * nll.sum(-1) / seq_len
    return total / repeats
