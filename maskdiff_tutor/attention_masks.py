"""Who may attend to whom when a sequence is cut into blocks (paper Section 3.4.2).

Book chapter "Blocks". Training (``blockwise``) and decoding (``block_causal.generate_block_causal``)
both import these rules, so the mask a model is trained with is the mask it is decoded with.
"""

from __future__ import annotations

import torch

from ._checks import check_positive_int


def number_of_blocks(seq_len: int, block_length: int) -> int:
    """seq_len / block_length, refused unless the blocks tile the sequence exactly."""
    check_positive_int("block_length", block_length)
    if seq_len % block_length:
        raise ValueError(f"the sequence length ({seq_len}) must be divisible by block_length ({block_length})")
    return seq_len // block_length


def block_attention_mask(query_block: torch.Tensor, query_clean: torch.Tensor, key_block: torch.Tensor,
                         key_clean: torch.Tensor) -> torch.Tensor:
    """The block-causal rule for any arrangement of tokens: (Q, K) boolean, True = may attend.

    A clean token attends to clean tokens of its own and earlier blocks; a noisy token attends to
    noisy tokens of its own block and clean tokens of earlier blocks.

    Args:
        query_block, key_block: the block index of each query (Q,) and key (K,).
        query_clean, key_clean: whether each query (Q,) and key (K,) is a clean token.
    """
    qb, kb = query_block.unsqueeze(-1), key_block.unsqueeze(0)  # (Q, 1), (1, K)
    qc, kc = query_clean.unsqueeze(-1), key_clean.unsqueeze(0)  # (Q, 1), (1, K)
    clean_to_clean = qc & kc & (kb <= qb)
    noisy_to_noisy = ~qc & ~kc & (kb == qb)
    noisy_to_clean = ~qc & kc & (kb < qb)
    return clean_to_clean | noisy_to_noisy | noisy_to_clean


def vectorised_mask(seq_len: int, block_length: int) -> torch.Tensor:
    """The (2L, 2L) mask for the input ``[x_t, x_0]`` of ``blockwise.blockwise_loss``: every block
    trained in one pass."""
    number_of_blocks(seq_len, block_length)
    block = torch.arange(seq_len) // block_length  # (L,)
    blocks = torch.cat([block, block])  # (2L,)
    clean = torch.cat([torch.zeros(seq_len, dtype=torch.bool), torch.ones(seq_len, dtype=torch.bool)])  # (2L,)
    return block_attention_mask(blocks, clean, blocks, clean)


def prefix_and_block_mask(prompt_length: int, block_length: int, start: int) -> torch.Tensor:
    """The mask for decoding [prompt, clean blocks, noisy block] whose noisy block starts at
    ``start``: (start + block_length, start + block_length). The prompt is one clean block (block
    0), the generated blocks of ``block_length`` follow, and only the last one is noisy."""
    end = start + block_length
    position = torch.arange(end)  # (end,)
    block = torch.where(position < prompt_length, 0, 1 + (position - prompt_length) // block_length)  # (end,)
    clean = position < start
    return block_attention_mask(block, clean, block, clean)
