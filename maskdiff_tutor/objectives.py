r"""Training objectives of masked diffusion, one function each.

Book chapter "Joint versus marginal" (paper Section 3.2.1). Both take any denoiser callable
(``model(x_t) -> logits (B, L, V)``, or ``model(x_t, t)`` when ``time_input``) and return their
parts, so the book can plot what the optimiser saw.

- ``masked_diffusion_loss(weighted=True)``: the continuous-time NELBO of Eq. 13 per token,
  :math:`w(t) \sum_{l \text{ masked}} -\log p_\theta(x_0^l \mid x_t)` divided by the number of tokens.
- ``masked_diffusion_loss(weighted=False)``: the same cross-entropy without :math:`w(t)`, the
  "unweighted" objective; not a bound, same optimum (Section 3.2.1).

``masked_diffusion_loss`` checks its batch once; the times and masks it draws are not checked again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._checks import check_logits, check_tokens
from .clean_distribution import clean_logits
from .forward_process import _sample_xt
from .nelbo import _sample_times
from .schedules import Schedule


@dataclass(frozen=True)
class LossParts:
    """One training loss and its parts, so a chapter can plot what the optimiser saw."""
    loss: torch.Tensor  # () what the optimiser minimises: weighted masked NLL summed, divided by num_tokens
    nll: torch.Tensor  # (B, L) -log p_theta(x_0^l | x_t) at masked positions, 0 elsewhere (detached)
    weight: torch.Tensor  # (B,) the weight of each sequence: w(t) or 1
    t: torch.Tensor  # (B,) sampled times
    masked: torch.Tensor  # (B, L) True where x_t is the mask
    num_tokens: float  # tokens that count (not padding); with rows=, the rows' share of the batch's


def masked_nll(logits: torch.Tensor, x0: torch.Tensor, masked: torch.Tensor, mask_id: int) -> torch.Tensor:
    r""":math:`-\log p_\theta(x_0^l \mid x_t)` at masked positions, 0 elsewhere: (B, L), differentiable.

    A clean token is never the mask, so the mask's logit is removed from the softmax. Half
    precision logits (autocast) are raised to float32; float64 logits stay float64."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    logits = clean_logits(logits, mask_id)
    nll = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")  # (B, L)
    return torch.where(masked, nll, torch.zeros_like(nll))


def masked_diffusion_loss(model, x0: torch.Tensor, schedule: Schedule, mask_id: int,
                          generator: torch.Generator | None = None, weighted: bool = True,
                          pad_id: int | None = None, antithetic: bool = True, time_input: bool = False,
                          rows: slice | None = None) -> LossParts:
    r"""One Monte Carlo sample of the masked-diffusion loss for a batch x0 (B, L).

    Args:
        model: denoiser callable returning logits (B, L, V); the mask's logit is ignored.
        x0: clean token ids (B, L), on the model's device.
        schedule: :math:`\alpha(t)` and the weight :math:`w(t)`.
        mask_id: id written at masked positions; not in x0.
        generator: source of the times and masks (a CPU generator; results move to x0's device).
        weighted: multiply by :math:`w(t) = -\alpha'(t)/(1 - \alpha(t))` (the NELBO, Eq. 13) or not.
        pad_id: id of padding in x0; padding is never masked and never counted.
        antithetic: low-discrepancy times (MDLM) instead of independent ones.
        time_input: call ``model(x_t, t)`` for a time-conditioned model.
        rows: compute the loss on these rows of the batch only (one process's share under
            ``torchrun``). The times and masks are still drawn for the whole batch, so the random
            stream is that of one process; the loss is divided by the whole batch's token count
            times the share of rows, so that the mean over equal shares is the whole batch's loss.
            Its parts (``nll``, ``t``, ...) are those of the rows.
    """
    check_tokens("x0", x0, None, mask_id, allow_mask=False)
    if x0.ndim != 2 or x0.numel() == 0:
        raise ValueError(f"x0 must be a non-empty batch of shape (B, L); got {tuple(x0.shape)}")
    t = _sample_times(x0.shape[0], generator, antithetic)  # (B,) float64 on the CPU
    x_t = _sample_xt(x0, t, schedule, mask_id, generator)  # (B, L)
    tokens = torch.ones_like(x0, dtype=torch.bool) if pad_id is None else x0 != pad_id  # (B, L)
    x_t = torch.where(tokens, x_t, x0)  # padding stays itself
    masked = x_t == mask_id  # (B, L)
    if not tokens.any():
        raise ValueError(f"x0 is all padding (pad_id = {pad_id}): there is no token to learn from")
    num_tokens = int(tokens.sum())  # of the whole batch
    if rows is not None:
        batch = x0.shape[0]
        x0, x_t, t, masked = x0[rows], x_t[rows], t[rows], masked[rows]
        if x0.shape[0] == 0:
            raise ValueError(f"rows={rows} selects no row of a batch of {batch}")
        num_tokens = num_tokens * x0.shape[0] / batch  # the rows' share of the batch's tokens
    logits = model(x_t, t.to(x0.device).float()) if time_input else model(x_t)  # (B, L, V)
    check_logits(logits, x_t, mask_id)
    nll = masked_nll(logits, x0, masked, mask_id)  # (B, L)
    weight = (schedule._weight(t) if weighted else torch.ones_like(t)).to(x0.device).float()  # (B,)
    # L = sum_b w(t_b) sum_{l masked} -log p_theta(x_0^l | x_t) / (number of tokens)     [eq-13]
    loss = (weight.unsqueeze(-1) * nll).sum() / num_tokens
    return LossParts(loss, nll.detach(), weight, t, masked, num_tokens)
