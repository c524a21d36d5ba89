r"""The forward (masking) process, its posterior, the model's reverse step and their KL.

Book chapter "The NELBO"; paper Section 2, Eq. 3-7. Every function works on batches of
token ids ``x`` of shape (B, L) and returns probability vectors of shape (B, L, V), where V
(``vocab_size``) counts every token the vectors range over, the mask included: data ids lie
in [0, V) and differ from ``mask_id``.

Times ``s`` and ``t`` are floats (one time for the batch) or tensors of shape (B,) (one time
per sequence), with :math:`0 \le s \le t \le 1`.

Each public function checks its arguments once. ``_sample_xt`` and ``_forward_probs`` are the same
computations for arguments already checked: the NELBO estimators, the training losses and the oracle,
which check their inputs where they enter, call them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_mask_id, check_same_shape, check_time_order, check_times, check_tokens
from .clean_distribution import clean_probs
from .schedules import Schedule


def _check_per_sequence(name: str, t, x: torch.Tensor) -> torch.Tensor:
    """Check times: one for the batch or one per sequence of x (B, L); return them as float64 () or (B,)."""
    t = check_times(name, t)
    if t.ndim == 0 or (t.ndim == 1 and t.shape[0] == x.shape[0]):
        return t
    raise ValueError(f"{name} must be a float or a tensor of shape (B,) = ({x.shape[0]},); got shape {tuple(t.shape)}")


def _per_sequence(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Checked times () or (B,) shaped to broadcast against x (B, L): () or (B, 1)."""
    return t if t.ndim == 0 else t.view(-1, *([1] * (x.ndim - 1)))


def _checked_alphas(name: str, x: torch.Tensor, s, t, schedule: Schedule, mask_id: int, vocab_size: int):
    """Check the tokens x (B, L), the mask id and the times s <= t; return alpha_s and alpha_t shaped to
    broadcast: () or (B, 1)."""
    check_tokens(name, x, vocab_size, mask_id, allow_mask=True)
    s_, t_ = _check_per_sequence("s", s, x), _check_per_sequence("t", t, x)
    check_time_order(s_, t_)
    return schedule._alpha(_per_sequence(s_, x)), schedule._alpha(_per_sequence(t_, x))


def sample_xt(x0: torch.Tensor, t, schedule: Schedule, mask_id: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Draw :math:`x_t \sim q(x_t \mid x_0)` (Eq. 3): each token is masked independently with probability
    :math:`1 - \alpha(t)`.

    Args:
        x0: clean token ids (B, L), none equal to ``mask_id``.
        t: time in [0, 1], a float or a tensor of shape (B,).
        schedule: gives :math:`\alpha(t)`.
        mask_id: the id written at masked positions.
        generator: the source of randomness (seed it for repeatable draws).
    """
    check_tokens("x0", x0, vocab_size=None, mask_id=mask_id, allow_mask=False)
    return _sample_xt(x0, _check_per_sequence("t", t, x0), schedule, mask_id, generator)


def _sample_xt(x0: torch.Tensor, t: torch.Tensor, schedule: Schedule, mask_id: int,
               generator: torch.Generator | None) -> torch.Tensor:
    """``sample_xt`` for checked arguments: t float64 () or (B,) in [0, 1]."""
    # draw on the generator's device in float64 (a CPU generator gives CPU and GPU runs the same
    # masks, and MPS has no float64); only the boolean mask moves to x0's device
    noise_device = generator.device if generator is not None else x0.device
    alpha_t = schedule._alpha(_per_sequence(t, x0)).to(noise_device)  # () or (B, 1)
    u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=noise_device)  # (B, L)
    # q(x_t | x_0) = Cat(x_t; alpha_t x_0 + (1 - alpha_t) m)     [eq-3]
    masked = (u < 1 - alpha_t).to(x0.device)  # (B, L)
    return torch.where(masked, torch.full_like(x0, mask_id), x0)


def forward_probs(x0: torch.Tensor, t, schedule: Schedule, mask_id: int, vocab_size: int) -> torch.Tensor:
    r""":math:`q(x_t \mid x_0)` as probability vectors (B, L, V) (Eq. 3)."""
    check_tokens("x0", x0, vocab_size, mask_id, allow_mask=False)
    return _forward_probs(x0, _check_per_sequence("t", t, x0), schedule, mask_id, vocab_size)


def _forward_probs(x0: torch.Tensor, t: torch.Tensor, schedule: Schedule, mask_id: int,
                   vocab_size: int) -> torch.Tensor:
    """``forward_probs`` for checked arguments: t float64 () or (B,) in [0, 1]."""
    alpha_t = schedule._alpha(_per_sequence(t, x0)).unsqueeze(-1)  # () or (B, 1, 1)
    onehot = F.one_hot(x0, vocab_size).double()  # (B, L, V)
    mask = F.one_hot(torch.tensor(mask_id), vocab_size).double()  # (V,)
    # alpha_t x_0 + (1 - alpha_t) m     [eq-3]
    return alpha_t * onehot + (1 - alpha_t) * mask


def transition_probs(x_s: torch.Tensor, s, t, schedule: Schedule, mask_id: int, vocab_size: int) -> torch.Tensor:
    r""":math:`q(x_t \mid x_s)` for :math:`s \le t` as probability vectors (B, L, V) (Eq. 4).

    A mask stays a mask; an unmasked token survives with probability :math:`\alpha_t / \alpha_s`.
    """
    alpha_s, alpha_t = _checked_alphas("x_s", x_s, s, t, schedule, mask_id, vocab_size)
    if (alpha_s == 0).any():
        raise ValueError("s must satisfy alpha(s) > 0: from a fully masked state the transition is the identity")
    keep = (alpha_t / alpha_s).unsqueeze(-1)  # () or (B, 1, 1)
    onehot = F.one_hot(x_s, vocab_size).double()  # (B, L, V)
    mask = F.one_hot(torch.tensor(mask_id), vocab_size).double()  # (V,)
    # q(x_t | x_s) = Cat(x_t; (alpha_t/alpha_s) x_s + (1 - alpha_t/alpha_s) m)     [eq-4]
    return keep * onehot + (1 - keep) * mask


def posterior_probs(x_t: torch.Tensor, x0: torch.Tensor, s, t, schedule: Schedule, mask_id: int,
                    vocab_size: int) -> torch.Tensor:
    r"""The posterior :math:`q(x_s \mid x_t, x_0)` for :math:`s < t` as probability vectors (B, L, V) (Eq. 5).

    An unmasked :math:`x_t` stays as it is. A masked :math:`x_t` is revealed as :math:`x_0` with probability
    :math:`(\alpha_s - \alpha_t) / (1 - \alpha_t)` and stays masked otherwise.
    """
    check_tokens("x0", x0, vocab_size, mask_id, allow_mask=False)
    check_same_shape("x_t", x_t, "x0", x0)
    if ((x_t != mask_id) & (x_t != x0)).any():
        raise ValueError("x_t is not reachable from x0: an unmasked token of x_t differs from x0")
    alpha_s, alpha_t = _checked_alphas("x_t", x_t, s, t, schedule, mask_id, vocab_size)
    return _reveal(x_t, F.one_hot(x0, vocab_size).double(), alpha_s, alpha_t, mask_id, vocab_size)


def reverse_probs(x_t: torch.Tensor, x0_probs: torch.Tensor, s, t, schedule: Schedule, mask_id: int) -> torch.Tensor:
    r"""The model's reverse step :math:`p_\theta(x_s \mid x_t)` (Eq. 6): the posterior of Eq. 5 with :math:`x_0`
    replaced by the denoiser's distribution ``x0_probs`` (B, L, V), which must put no mass on
    the mask (see ``denoiser_probs``). Unmasked tokens are carried over unchanged.
    """
    _check_x0_probs(x0_probs, x_t, mask_id)
    vocab_size = x0_probs.shape[-1]
    if (x0_probs[..., mask_id].abs() > 1e-12).any():
        raise ValueError("x0_probs must put zero probability on mask_id (apply denoiser_probs to the logits)")
    alpha_s, alpha_t = _checked_alphas("x_t", x_t, s, t, schedule, mask_id, vocab_size)
    return _reveal(x_t, x0_probs.double(), alpha_s, alpha_t, mask_id, vocab_size)


def _check_x0_probs(x0_probs: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> None:
    """x0_probs must be (B, L, V) with (B, L) the shape of x_t, and mask_id an index into V."""
    if not isinstance(x0_probs, torch.Tensor) or x0_probs.shape[:-1] != x_t.shape:
        raise ValueError(f"x0_probs must have shape (B, L, V) with (B, L) = {tuple(x_t.shape)}; "
                         f"got {tuple(getattr(x0_probs, 'shape', ()))}")
    check_mask_id(mask_id, x0_probs.shape[-1])


def _reveal(x_t, x0_probs, alpha_s, alpha_t, mask_id, vocab_size):
    """Shared body of Eq. 5 and Eq. 6, for checked arguments."""
    if (alpha_t == 1).any():
        raise ValueError("t must satisfy alpha(t) < 1 (t > 0): at t = 0 nothing is masked")
    # probability of revealing a masked token between t and s
    reveal = ((alpha_s - alpha_t) / (1 - alpha_t)).unsqueeze(-1)  # () or (B, 1, 1)
    mask = F.one_hot(torch.tensor(mask_id), vocab_size).double()  # (V,)
    # q(x_s | x_t = m, x_0) = Cat(x_s; ((alpha_s - alpha_t) x_0 + (1 - alpha_s) m) / (1 - alpha_t))     [eq-5]
    masked_row = reveal * x0_probs + (1 - reveal) * mask  # (B, L, V)
    kept_row = F.one_hot(x_t, vocab_size).double()  # (B, L, V)
    return torch.where((x_t == mask_id).unsqueeze(-1), masked_row, kept_row)


def denoiser_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """The denoiser's distribution over clean tokens: softmax of the logits with the mask's
    logit removed (a clean token is never the mask). Shape (B, L, V) in and out."""
    return clean_probs(logits, mask_id)


def categorical_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p \,\|\, q)` over the last axis, by its definition :math:`\sum_v p_v \log(p_v / q_v)`, with
    :math:`0 \log 0 = 0`."""
    check_same_shape("p", p, "q", q)
    p, q = p.double(), q.double()
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(-1)


def reverse_kl(x_t: torch.Tensor, x0: torch.Tensor, x0_probs: torch.Tensor, s, t, schedule: Schedule,
               mask_id: int) -> torch.Tensor:
    r""":math:`\mathrm{KL}(q(x_s \mid x_t, x_0) \,\|\, p_\theta(x_s \mid x_t))` per token (B, L), in closed form
    (Eq. 7): zero at unmasked tokens, :math:`(\alpha_s - \alpha_t) / (1 - \alpha_t) \cdot (-\log x_\theta[x_0])` at
    masked ones."""
    check_same_shape("x_t", x_t, "x0", x0)
    _check_x0_probs(x0_probs, x_t, mask_id)
    vocab_size = x0_probs.shape[-1]
    check_tokens("x0", x0, vocab_size, mask_id, allow_mask=False)
    alpha_s, alpha_t = _checked_alphas("x_t", x_t, s, t, schedule, mask_id, vocab_size)
    log_p_x0 = torch.log(x0_probs.double().gather(-1, x0.unsqueeze(-1)).squeeze(-1))  # (B, L)
    # KL = (alpha_s - alpha_t) / (1 - alpha_t) * (-log <x_theta(x_t), x_0>) at masked positions     [eq-7]
    return torch.where(x_t == mask_id, -(alpha_s - alpha_t) / (1 - alpha_t) * log_p_x0, torch.zeros_like(log_p_x0))
