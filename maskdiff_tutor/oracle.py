r"""The exact denoiser ("oracle") of a finite dataset, by enumeration.

Book chapters "The NELBO" and "Joint versus marginal"; paper Assumption 1 (a perfectly
trained denoiser). For each masked position of :math:`x_t`, the oracle returns the true conditional
distribution of that position's token given every unmasked token of :math:`x_t`:

.. math::

   p(x^l = v \mid x_t) = \frac{\sum_n w_n\, [x_n \sim x_t]\, [x_n^l = v]}{\sum_n w_n\, [x_n \sim x_t]}

where :math:`x_n` are the dataset's sequences, :math:`w_n` their probabilities, and
:math:`x_n \sim x_t` means that :math:`x_n` agrees with :math:`x_t` at every unmasked position.

It is a marginal per position, never the joint of several masked positions: that is the
paper's point in Section 3.2.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._checks import check_times, check_tokens
from .forward_process import _forward_probs


@dataclass(frozen=True, eq=False)
class OracleDenoiser:
    """Callable ``x_t (B, L) -> logits (B, L, V)`` holding a finite dataset.

    Logits are exact log-probabilities: -inf for impossible tokens and for the mask; at an
    unmasked position all mass sits on the token already there.

    Build it with ``OracleDenoiser.from_data``.
    """

    data: torch.Tensor  # (N, L) token ids of the dataset's sequences
    probs: torch.Tensor  # (N,) probability of each sequence, summing to 1
    mask_id: int  # id of the mask token; not a data token
    vocab_size: int  # V, the length of the output vectors (data tokens and the mask)

    @classmethod
    def from_data(cls, data: torch.Tensor, mask_id: int, vocab_size: int,
                  weights: torch.Tensor | None = None) -> OracleDenoiser:
        """Args:
            data: (N, L) integer token ids; repeated rows add their weights.
            mask_id: the mask token, which must not occur in ``data``.
            vocab_size: V, at least max(data) + 1 and mask_id + 1.
            weights: (N,) non-negative weights of the rows (uniform if None).
        """
        if not isinstance(data, torch.Tensor) or data.ndim != 2 or data.shape[0] == 0:
            raise ValueError("data must be a non-empty integer tensor of shape (N, L)")
        check_tokens("data", data, vocab_size, mask_id, allow_mask=True)  # a mask in data: its own message below
        if (data == mask_id).any():
            raise ValueError(f"mask_id {mask_id} occurs in data: the mask must lie outside the data's vocabulary")
        weights = torch.ones(data.shape[0], dtype=torch.float64) if weights is None else weights
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if (weights.shape != (data.shape[0],) or not torch.isfinite(weights).all() or (weights < 0).any()
                or weights.sum() <= 0):
            raise ValueError(f"weights must be a finite non-negative tensor of shape ({data.shape[0]},) "
                             f"with a positive sum")
        return cls(data=data, probs=weights / weights.sum(), mask_id=mask_id, vocab_size=vocab_size)

    @property
    def seq_len(self) -> int:
        """L, the length of every sequence of the data."""
        return self.data.shape[1]

    def consistent(self, x_t: torch.Tensor) -> torch.Tensor:
        """(B, N) boolean: does sequence n of the data agree with :math:`x_t` at every unmasked position?"""
        self._check_xt(x_t)
        agree = (self.data.unsqueeze(0) == x_t.unsqueeze(1)) | (x_t.unsqueeze(1) == self.mask_id)  # (B, N, L)
        return agree.all(-1)  # (B, N)

    def conditional_probs(self, x_t: torch.Tensor) -> torch.Tensor:
        """The exact conditional of every position given the unmasked tokens of :math:`x_t`: (B, L, V) float64."""
        w = self.consistent(x_t) * self.probs  # (B, N)
        total = w.sum(-1)  # (B,)
        if (total == 0).any():
            row = int((total == 0).nonzero()[0])
            raise ValueError(f"x_t row {row} agrees with no sequence of the data: the oracle is defined only "
                             "on partly masked versions of data sequences")
        onehot = F.one_hot(self.data, self.vocab_size).double()  # (N, L, V)
        # p(x^l = v | x_t) = sum_n w_n [x_n ~ x_t] [x_n^l = v] / sum_n w_n [x_n ~ x_t]     [eq-oracle]
        probs = torch.einsum("bn,nlv->blv", w, onehot) / total.view(-1, 1, 1)  # (B, L, V)
        return probs

    def __call__(self, x_t: torch.Tensor) -> torch.Tensor:
        """Logits (log-probabilities) (B, L, V) of the exact conditional marginals."""
        return torch.log(self.conditional_probs(x_t))

    def time_conditioned_probs(self, x_t: torch.Tensor, t, schedule) -> torch.Tensor:
        r"""The conditional of every position given :math:`x_t` and the time t, by Bayes' rule with the
        time kept in: (B, L, V),

        .. math::

           p(x_0 = x_n \mid x_t, t) = \frac{w_n\, q(x_t \mid x_n, t)}{\sum_m w_m\, q(x_t \mid x_m, t)},

        with :math:`q(x_t \mid x_0, t)` from Eq. 3. The factor :math:`(1 - \alpha_t)^k \alpha_t^{L - k}`
        is the same for every sequence consistent with :math:`x_t`, so it cancels and the result equals
        ``conditional_probs(x_t)`` for every :math:`t \in (0, 1)`: the reason the denoiser needs no time
        input (Section 3.2.1).

        ``t`` is one time (a float) for the whole batch.
        """
        t = check_times("t", t)
        if t.ndim != 0:
            raise ValueError("t must be a single float here (one time for the whole batch)")
        self._check_xt(x_t)
        q = _forward_probs(self.data, t, schedule, self.mask_id, self.vocab_size)  # (N, L, V); data checked at build
        # q(x_t | x_n, t) = prod_l q(x_t^l | x_n^l, t) for every data row n and every row b of x_t
        per_token = q[:, torch.arange(self.seq_len), x_t].permute(1, 0, 2)  # (N, B, L) -> (B, N, L)
        likelihood = per_token.prod(-1)  # (B, N)
        # p(x_0 = x_n | x_t, t) = w_n q(x_t | x_n, t) / sum_m w_m q(x_t | x_m, t)     [eq-time-free]
        w = likelihood * self.probs  # (B, N)
        if (w.sum(-1) == 0).any():
            raise ValueError("x_t has probability 0 under q(x_t | x_0, t) for every data row")
        onehot = F.one_hot(self.data, self.vocab_size).double()  # (N, L, V)
        return torch.einsum("bn,nlv->blv", w, onehot) / w.sum(-1).view(-1, 1, 1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""Exact :math:`\log p_{\text{data}}(x)` of clean sequences x (B, L); -inf for sequences outside the data."""
        check_tokens("x", x, self.vocab_size, self.mask_id, allow_mask=False)
        if x.ndim != 2 or x.shape[1] != self.seq_len:
            raise ValueError(f"x must have shape (B, {self.seq_len}); got {tuple(x.shape)}")
        match = (self.data.unsqueeze(0) == x.unsqueeze(1)).all(-1)  # (B, N)
        return torch.log((match * self.probs).sum(-1))  # (B,)

    def _check_xt(self, x_t: torch.Tensor) -> None:
        check_tokens("x_t", x_t, self.vocab_size, self.mask_id, allow_mask=True)
        if x_t.ndim != 2 or x_t.shape[1] != self.seq_len:
            raise ValueError(f"x_t must have shape (B, {self.seq_len}) (the data's length); got {tuple(x_t.shape)}")
