r"""Noise schedules of masked diffusion: :math:`\alpha(t)`, its derivative and the NELBO weight.

Book chapter "The NELBO"; paper Section 2. Time runs from data (:math:`t = 0`) to fully masked
(:math:`t = 1`); :math:`\alpha(t)` is the probability that a token is still unmasked at time t.

A schedule is chosen by passing an instance (``LinearSchedule()``), never by a string.
Every method takes a float, a sequence or a tensor of times in [0, 1] and returns a
float64 tensor of the same shape. The public methods check the times; the package's own
callers, which have checked their times where they entered, call the unchecked ``_alpha``,
``_dalpha`` and ``_weight`` on float64 tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import check_number, check_times


class Schedule:
    """Base class: subclasses give ``_alpha`` and ``_dalpha`` on a float64 tensor."""

    def alpha(self, t) -> torch.Tensor:
        r""":math:`\alpha(t)`: the probability that a token is unmasked at time t."""
        return self._alpha(check_times("t", t))

    def dalpha(self, t) -> torch.Tensor:
        r""":math:`\alpha'(t)`, the time derivative of :math:`\alpha` (negative: tokens only get masked)."""
        return self._dalpha(check_times("t", t))

    def weight(self, t) -> torch.Tensor:
        r"""The NELBO weight :math:`w(t) = -\alpha'(t) / (1 - \alpha(t))`; infinite at :math:`t = 0`."""
        return self._weight(check_times("t", t))

    def _weight(self, t: torch.Tensor) -> torch.Tensor:
        # w(t) = -alpha'(t) / (1 - alpha(t))     [eq-nelbo-weight]; 1/t for the linear schedule.
        # Subclasses give closed forms: 1 - alpha(t) loses every digit when t is tiny.
        return -self._dalpha(t) / (1 - self._alpha(t))

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _dalpha(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class LinearSchedule(Schedule):
    r""":math:`\alpha(t) = 1 - t` (LLaDA, MDLM): a token is masked with probability t."""

    def _alpha(self, t):
        return 1 - t

    def _dalpha(self, t):
        return -torch.ones_like(t)

    def _weight(self, t):
        return 1 / t


@dataclass(frozen=True)
class CosineSchedule(Schedule):
    r""":math:`\alpha(t) = \cos(\pi t / 2)` (MaskGIT, MD4): masks slowly at first, fast near :math:`t = 1`."""

    def _alpha(self, t):
        # cos(pi/2) is 6e-17 in floating point, not 0: pin the end point exactly.
        return torch.where(t == 1, torch.zeros_like(t), torch.cos(math.pi * t / 2))

    def _dalpha(self, t):
        return -(math.pi / 2) * torch.sin(math.pi * t / 2)

    def _weight(self, t):
        # (pi/2) sin(x) / (1 - cos(x)) with x = pi t / 2 is (pi/2) / tan(x / 2)
        return (math.pi / 2) / torch.tan(math.pi * t / 4)


@dataclass(frozen=True)
class PolynomialSchedule(Schedule):
    r""":math:`\alpha(t) = 1 - t^{\mathtt{exponent}}`; ``exponent = 1`` is the linear schedule. Its weight is
    :math:`\mathtt{exponent} / t`."""

    exponent: float = 2.0  # > 0; larger exponents keep tokens unmasked for longer

    def __post_init__(self):
        check_number("exponent", self.exponent, above=0)

    def _alpha(self, t):
        return 1 - t**self.exponent

    def _dalpha(self, t):
        return -self.exponent * t ** (self.exponent - 1)

    def _weight(self, t):
        return self.exponent / t


@dataclass(frozen=True)
class LogLinearSchedule(Schedule):
    r"""The log-linear noise of SEDD and MDLM: total noise :math:`\sigma(t) = -\log(1 - (1 - \mathtt{eps})\, t)`,
    :math:`\alpha(t) = \exp(-\sigma(t)) = 1 - (1 - \mathtt{eps})\, t`.

    :math:`\alpha(1) = \mathtt{eps}`, not 0: the sequence is never fully masked, which keeps :math:`\sigma` finite.
    Its weight is :math:`1/t`, like the linear schedule's.
    """

    eps: float = 1e-3  # in [0, 1); the probability that a token survives to t = 1

    def __post_init__(self):
        check_number("eps", self.eps, at_least=0, below=1, meaning="the probability that a token survives to t = 1")

    def sigma(self, t) -> torch.Tensor:
        r"""The total noise :math:`\sigma(t) = -\log \alpha(t)`."""
        return -torch.log(self.alpha(t))

    def _alpha(self, t):
        return 1 - (1 - self.eps) * t

    def _dalpha(self, t):
        return torch.full_like(t, -(1 - self.eps))

    def _weight(self, t):
        return 1 / t
