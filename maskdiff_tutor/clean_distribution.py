"""The denoiser's distribution over clean tokens: its logits with the mask's logit removed.

A clean token is never the mask (MDLM's "zero masking probabilities", part of its SUBS
parameterisation), so wherever the package turns a denoiser's logits (..., V) into a
distribution over :math:`x_0` it removes the mask's logit first: the forward process and the NELBO
(``forward_process.denoiser_probs``), the training losses (``objectives.masked_nll``) and every
decoder (``decoding``). This module is that one rule.
"""

from __future__ import annotations

import torch

from ._checks import check_logit_dtype, check_mask_id


def clean_logits(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """The logits (..., V) with the mask's logit at -inf, in their own dtype (differentiable); the
    logits must be floating-point (``check_logit_dtype``)."""
    check_logit_dtype(logits)
    check_mask_id(mask_id, logits.shape[-1])
    return _clean_logits(logits, mask_id)


def _clean_logits(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """``clean_logits`` for a ``mask_id`` checked where it entered (a decoder's loop calls it every step)."""
    return logits.index_fill(-1, _index(mask_id, logits.device), float("-inf"))


_INDICES: dict = {}


def _index(mask_id: int, device) -> torch.Tensor:
    """The mask id as a one-element index tensor, made once per id and device."""
    key = (mask_id, device)
    if key not in _INDICES:
        _INDICES[key] = torch.tensor([mask_id], device=device)
    return _INDICES[key]


def clean_log_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    r""":math:`\log p_\theta(x_0 = v \mid x_t)` in float64 over the last axis, the mask removed: (..., V).
    (The logits are raised to float64 before the softmax, as ``clean_probs`` does.)"""
    check_logit_dtype(logits)
    check_mask_id(mask_id, logits.shape[-1])
    return clean_log_probs_unchecked(logits, mask_id)


def clean_log_probs_unchecked(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """``clean_log_probs`` for a ``mask_id`` already checked where it entered the public API: the
    decoders' loop calls it at every step (``decoding``)."""
    return torch.log_softmax(logits.index_fill(-1, _index(mask_id, logits.device), float("-inf")), dim=-1,
                             dtype=torch.float64)  # _clean_logits, written out: this runs every decoding step


def clean_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    r""":math:`p_\theta(x_0 = v \mid x_t)` in float64 over the last axis, the mask removed: (..., V)."""
    check_logit_dtype(logits)
    return torch.softmax(clean_logits(logits.double(), mask_id), dim=-1)
