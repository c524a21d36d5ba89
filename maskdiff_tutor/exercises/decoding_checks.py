"""Checks for the exercises of the chapters "Generation order" and "Blocks" (paper Sections 3.3-3.4)."""

from __future__ import annotations

import torch

from ..attention_masks import block_attention_mask, vectorised_mask
from ..decoding import select, transfer_counts
from .grading import Case, Grade, grade

SEED = 0  # every check draws the same inputs


def check_confidence_step(student_function) -> Grade:
    """``student_function(probs, x, mask_id, k)`` returns x after one step of confidence decoding: of
    the masked positions of ``x`` (L,), the k whose top probability in ``probs`` (L, V) is largest
    take their most probable token; ties go to the leftmost position; with fewer than k masks, every
    mask is decoded. ``probs`` puts no mass on ``mask_id``."""
    generator = torch.Generator().manual_seed(SEED)
    cases = []
    for length, vocab_size, k in ((6, 4, 1), (6, 4, 2), (10, 6, 3), (5, 3, 8), (12, 9, 4)):
        mask_id = vocab_size - 1
        probs = torch.rand(length, vocab_size, generator=generator, dtype=torch.float64)
        probs[:, mask_id] = 0
        probs /= probs.sum(-1, keepdim=True)
        x = torch.randint(mask_id, (length,), generator=generator)
        x[torch.rand(length, generator=generator) < 0.6] = mask_id
        label = f"x={x.tolist()}, k={k}, random probs of shape {(length, vocab_size)}"
        cases.append(Case(label, (probs, x, mask_id, k)))
    tied = torch.tensor([[0.5, 0.5, 0.0]] * 4, dtype=torch.float64)  # every position equally sure
    cases.append(Case("x=[2, 2, 2, 2], k=2, every row of probs (0.5, 0.5, 0)", (tied, torch.full((4,), 2), 2, 2)))
    return grade("check_confidence_step", student_function, _confidence_reference, cases)


def _confidence_reference(probs: torch.Tensor, x: torch.Tensor, mask_id: int, k: int) -> torch.Tensor:
    top, token = probs.max(-1)  # (L,), (L,)
    commit = select(top.unsqueeze(0), (x == mask_id).unsqueeze(0), count=k)[0]
    return torch.where(commit, token, x)


def check_transfer_counts(student_function) -> Grade:
    """``student_function(masks, steps)`` returns LLaDA's schedule: a list of ``steps`` integers, how
    many of ``masks`` masks each step decodes, the same number each step with the remainder given one
    each to the first steps."""
    pairs = [(32, 32), (32, 8), (10, 3), (7, 7), (5, 8), (128, 10), (0, 4)]
    cases = [Case(f"masks={m}, steps={s}", (m, s)) for m, s in pairs]
    return grade("check_transfer_counts", student_function,
                 lambda masks, steps: transfer_counts(torch.tensor([masks]), steps)[0], cases)


def _block_cases() -> list[Case]:
    pairs = [(8, 4), (8, 2), (6, 1), (6, 6), (12, 3)]
    return [Case(f"seq_len={length}, block_length={block}", (length, block)) for length, block in pairs]


def check_block_causal_mask(student_function) -> Grade:
    """``student_function(seq_len, block_length)`` returns the block-causal attention mask of a clean
    sequence cut into blocks of ``block_length``: an (L, L) boolean tensor, True where position i
    may attend position j, that is where j's block is not after i's."""
    def reference(seq_len, block_length):
        block = torch.arange(seq_len) // block_length
        clean = torch.ones(seq_len, dtype=torch.bool)
        return block_attention_mask(block, clean, block, clean)
    return grade("check_block_causal_mask", student_function, reference, _block_cases())


def check_blockwise_training_mask(student_function) -> Grade:
    """``student_function(seq_len, block_length)`` returns the (2L, 2L) boolean mask that trains every
    block in one pass over the input ``[x_t, x_0]`` (paper Section 3.4.2): a noisy token attends the
    noisy tokens of its own block and the clean tokens of earlier blocks; a clean token attends the
    clean tokens of its own and earlier blocks."""
    return grade("check_blockwise_training_mask", student_function, vectorised_mask, _block_cases())
