r"""The negative evidence lower bound (NELBO) of masked diffusion, for any denoiser.

Book chapter "The NELBO"; paper Section 2, Eq. 10 (T steps) and Eq. 12-13 (continuous time).
A denoiser is any callable ``x_t (B, L) -> logits (B, L, V)``; the mask's logit is ignored.

Three kinds of functions:

- Monte Carlo estimators that draw one :math:`x_t` per sequence (or ``samples`` of them), as training
  does, and return their parts: ``t_step_nelbo`` (a step i, Eq. 10), ``continuous_nelbo`` (a time
  :math:`t \sim U(0, 1)`, Bernoulli masks, weight :math:`w(t)`, Eq. 13) and ``count_nelbo`` (a number of
  masks :math:`k \sim U\{1, \dots, L\}`, k positions without replacement, weight :math:`L/k`: the form
  LLaDA evaluates likelihoods with).
- Exact values on short sequences (``exact_nelbo``) that enumerate all :math:`2^L` mask patterns:
  the loss depends on :math:`x_t` only through which positions are masked, and a pattern with k masks
  has probability :math:`(1 - \alpha_t)^k \alpha_t^{L - k}` at time t.
- Exact per-draw variances of the two continuous-time estimators (``exact_estimator_variance``),
  by the same enumeration, and ``batch_variance`` to measure one from samples with its standard error.

Both need :math:`\alpha(0) = 1` and :math:`\alpha(1) = 0`: then the reconstruction and prior terms vanish and the
NELBO is the diffusion term alone.

The denoiser's logits must give a distribution at every masked position the NELBO scores: NaN, +inf,
or -inf for every clean token there is refused, naming the row and position of the denoiser's input;
a clean token given probability 0 (a logit of -inf) costs :math:`+\infty`, and the NELBO is then infinite.

Each public function checks its arguments where they enter; what it calls then trusts them (the private
``_name`` variants and the schedule's ``_alpha``, ``_weight``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import NO_DISTRIBUTION, check_logits, check_positive_int, check_tokens
from .forward_process import _sample_xt, denoiser_probs
from .schedules import Schedule

Denoiser = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NelboEstimate:
    """One Monte Carlo estimate and its parts (nats)."""

    value: torch.Tensor  # () mean over the batch of the per-sequence estimates
    per_sequence: torch.Tensor  # (B,) unbiased estimate of each sequence's NELBO
    per_token: torch.Tensor  # (B, L) weighted -log p_theta(x_0 | x_t) at masked positions, 0 elsewhere
    nll: torch.Tensor  # (B, L) unweighted -log p_theta(x_0 | x_t) at masked positions, 0 elsewhere
    weight: torch.Tensor  # (B,) the weight each sequence's masked NLL was multiplied by
    t: torch.Tensor  # (B,) the sampled times
    x_t: torch.Tensor  # (B, L) the sampled noisy sequences


def sample_times(batch_size: int, generator: torch.Generator | None = None, antithetic: bool = True) -> torch.Tensor:
    r"""Times in (0, 1], one per sequence (B,).

    With ``antithetic`` (the low-discrepancy sampler of MDLM and VDM) one uniform u is drawn
    and :math:`t_b = 1 - ((u + b / B) \bmod 1)`: the batch covers [0, 1] evenly while each :math:`t_b` stays
    uniform. That can only remove the part of the batch mean's variance that comes from the spread of the
    times (on the toy of the book it removes no measurable part). Otherwise B independent draws.
    """
    check_positive_int("batch_size", batch_size)
    return _sample_times(batch_size, generator, antithetic)


def _sample_times(batch_size: int, generator: torch.Generator | None, antithetic: bool) -> torch.Tensor:
    """``sample_times`` for a checked batch size."""
    if antithetic:
        u = torch.rand((), generator=generator, dtype=torch.float64)
        offsets = torch.arange(batch_size, dtype=torch.float64) / batch_size  # (B,)
        return 1 - torch.remainder(u + offsets, 1.0)
    return 1 - torch.rand(batch_size, generator=generator, dtype=torch.float64)


def _check_x0(x0: torch.Tensor, mask_id: int) -> None:
    """x0 must be a batch of clean token ids (B, L) with B >= 1 and L >= 1, and mask_id a valid id."""
    check_tokens("x0", x0, None, mask_id, allow_mask=False)
    if x0.ndim != 2 or 0 in x0.shape:
        raise ValueError(f"x0 must have shape (B, L) with B >= 1 and L >= 1; got {tuple(x0.shape)}")


def _check_schedule(schedule: Schedule) -> None:
    """A schedule, with alpha(0) = 1 and alpha(1) = 0: only there is the NELBO its diffusion term alone."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, an instance such as LinearSchedule() or CosineSchedule(); "
                         f"got {schedule!r:.80}")
    alpha_0, alpha_1 = (float(schedule._alpha(torch.tensor(t, dtype=torch.float64))) for t in (0.0, 1.0))
    if alpha_0 != 1.0 or alpha_1 != 0.0:
        raise ValueError(f"schedule must satisfy alpha(0) = 1 and alpha(1) = 0 for the NELBO to reduce to its "
                         f"diffusion term; {schedule!r} has alpha(0) = {alpha_0:.3g} and alpha(1) = {alpha_1:.3g}")


def _estimate(per_token, nll, weight, t, x_t, batch: int, samples: int) -> NelboEstimate:
    """Pack the parts; each sequence's estimate is the mean of its ``samples`` draws."""
    per_draw = per_token.sum(-1)  # (S B,)
    per_sequence = per_draw.reshape(samples, batch).mean(0)  # (B,)
    return NelboEstimate(per_sequence.mean(), per_sequence, per_token, nll, weight, t, x_t)


def _masked_nll(denoiser: Denoiser, x_t: torch.Tensor, x0: torch.Tensor, mask_id: int,
                of_sequence: int | None = None) -> torch.Tensor:
    """-log p_theta(x_0^l | x_t) at masked positions, 0 elsewhere: (B, L) float64. Infinite where the
    denoiser gives the clean token probability 0 (a logit of -inf); refused where its logits give no
    distribution at a masked position. ``of_sequence``: the row of x0 whose mask patterns x_t holds."""
    logits = denoiser(x_t.clone())  # (B, L, V); a copy: a denoiser that edits its input changes nothing here
    check_logits(logits, x_t, mask_id)
    _check_ids_in_vocabulary(x0, logits.shape[-1])
    probs = denoiser_probs(logits, mask_id)  # (B, L, V)
    log_p = torch.log(probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1))  # (B, L)
    masked = x_t == mask_id  # (B, L)
    _refuse_undefined(torch.isnan(log_p) & masked, of_sequence)
    # Eq. 7 with alpha_s = 1: a masked token is revealed for sure and costs -log p_theta(x_0 | x_t)
    return torch.where(masked, -log_p, torch.zeros_like(log_p))


def _check_ids_in_vocabulary(x0: torch.Tensor, vocab_size: int) -> None:
    """x0's ids must index the denoiser's logits (B, L, V)."""
    if x0.max() >= vocab_size:
        raise ValueError(f"x0 holds ids outside [0, {vocab_size - 1}], the denoiser's vocabulary (its logits have "
                         f"V = {vocab_size}); got {int(x0.max())}")


def _refuse_undefined(undefined: torch.Tensor, of_sequence: int | None) -> None:
    """Raise for the first masked position (B, L) whose log-probability is NaN: the NELBO needs it."""
    if undefined.any():
        row, position = (int(i) for i in undefined.nonzero()[0])
        pattern = f" (mask pattern {row} of x0 row {of_sequence})" if of_sequence is not None else ""
        raise ValueError(f"{NO_DISTRIBUTION} at batch row {row}{pattern}, position {position} of its input x_t, "
                         f"a masked position whose -log p(x_0 | x_t) the NELBO needs")


def continuous_nelbo(denoiser: Denoiser, x0: torch.Tensor, schedule: Schedule, mask_id: int,
                     generator: torch.Generator | None = None, antithetic: bool = True,
                     samples: int = 1) -> NelboEstimate:
    r"""Monte Carlo estimate of the continuous-time NELBO (Eq. 12-13), Bernoulli masks:

    .. math::

       \mathcal{L}_\infty = \mathbb{E}_{t \sim U(0, 1)}\, \mathbb{E}_{x_t \sim q(x_t \mid x_0)}
       \Big[ w(t) \sum_{l:\, x_t^l = m} -\log p_\theta(x_0^l \mid x_t) \Big]

    with :math:`w(t) = -\alpha'(t) / (1 - \alpha(t))` (:math:`1/t` for the linear schedule). ``samples`` draws
    of a time and an :math:`x_t` per sequence of x0 (B, L); ``per_sequence`` averages them, and the other
    parts have :math:`S B` rows (draw s of sequence b at row :math:`s B + b`). ``antithetic`` spreads the
    :math:`S B` times evenly.
    """
    _check_x0(x0, mask_id)
    _check_schedule(schedule)
    check_positive_int("samples", samples)
    batch = x0.shape[0]
    x0 = x0.repeat(samples, 1)  # (S B, L): draw s of sequence b at row s B + b
    t = _sample_times(x0.shape[0], generator, antithetic)  # (S B,)
    x_t = _sample_xt(x0, t, schedule, mask_id, generator)  # (S B, L)
    nll = _masked_nll(denoiser, x_t, x0, mask_id)  # (S B, L)
    weight = schedule._weight(t)  # (S B,)
    # w(t) sum_l 1[x_t^l = m] (-log p_theta(x_0^l | x_t)), one draw of Eq. 13     [eq-13]
    per_token = torch.where(x_t == mask_id, weight.unsqueeze(-1) * nll, torch.zeros_like(nll))  # (S B, L)
    return _estimate(per_token, nll, weight, t, x_t, batch, samples)


def count_nelbo(denoiser: Denoiser, x0: torch.Tensor, mask_id: int,
                generator: torch.Generator | None = None, samples: int = 1) -> NelboEstimate:
    r"""Monte Carlo estimate of the continuous-time NELBO by a count of masks (LLaDA's evaluation form):

    .. math::

       \mathcal{L}_\infty = \mathbb{E}_{k \sim U\{1, \dots, L\}}\, \mathbb{E}_{M}
       \Big[ \frac{L}{k} \sum_{l \in M} -\log p_\theta(x_0^l \mid x_0 \text{ with } M \text{ masked}) \Big]

    where M is a set of k positions drawn uniformly without replacement. A pattern M with k masks
    is drawn with probability :math:`1 / (L \binom{L}{k})` and weighted :math:`L / k`, so it carries
    :math:`1 / (k \binom{L}{k})` in the expectation: the weight the continuous-time NELBO gives it
    (see ``pattern_coefficients``). Hence the same expectation as ``continuous_nelbo``, for every schedule.
    No schedule and no time are involved; ``t`` holds the masked fraction :math:`k / L`. ``samples`` and
    the shapes of the parts are as in ``continuous_nelbo``.
    """
    _check_x0(x0, mask_id)
    check_positive_int("samples", samples)
    batch, seq_len = x0.shape
    x0 = x0.repeat(samples, 1)  # (S B, L): draw s of sequence b at row s B + b
    noise_device = generator.device if generator is not None else torch.device("cpu")
    k = torch.randint(1, seq_len + 1, (x0.shape[0],), generator=generator, device=noise_device)  # (S B,)
    # the positions of the k smallest of L iid uniforms: k positions uniformly without replacement
    uniform = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=noise_device)  # (S B, L)
    rank = uniform.argsort(-1).argsort(-1)  # (S B, L)
    masked = (rank < k.unsqueeze(-1)).to(x0.device)  # (S B, L), k True per row
    x_t = torch.where(masked, torch.full_like(x0, mask_id), x0)  # (S B, L)
    nll = _masked_nll(denoiser, x_t, x0, mask_id)  # (S B, L)
    # (L / k) sum_{l in M} -log p_theta(x_0^l | x_t)     [eq-count-nelbo]
    weight = seq_len / k.to(torch.float64).to(x0.device)  # (S B,)
    per_token = torch.where(masked, weight.unsqueeze(-1) * nll, torch.zeros_like(nll))  # (S B, L)
    return _estimate(per_token, nll, weight, k.to(torch.float64) / seq_len, x_t, batch, samples)


def t_step_nelbo(denoiser: Denoiser, x0: torch.Tensor, schedule: Schedule, mask_id: int, num_steps: int,
                 generator: torch.Generator | None = None, antithetic: bool = True) -> NelboEstimate:
    r"""Monte Carlo estimate of the T-step NELBO (Eq. 10), T = ``num_steps``:

    .. math::

       \mathcal{L}_T = \sum_{i=1}^{T} \mathbb{E}_{x_{t(i)}}
       \Big[ \frac{\alpha_{s(i)} - \alpha_{t(i)}}{1 - \alpha_{t(i)}}
       \sum_{l \text{ masked}} -\log p_\theta(x_0^l \mid x_{t(i)}) \Big]

    with :math:`s(i) = (i - 1)/T` and :math:`t(i) = i/T`. One step i (uniform) and one :math:`x_t` per sequence; the
    sum over steps is estimated as T times the sampled term.
    """
    _check_x0(x0, mask_id)
    _check_schedule(schedule)
    check_positive_int("num_steps", num_steps)
    u = _sample_times(x0.shape[0], generator, antithetic)  # (B,) in (0, 1]
    step = torch.ceil(u * num_steps).clamp(1, num_steps)  # (B,) uniform on 1..T
    s, t = (step - 1) / num_steps, step / num_steps  # (B,), (B,)
    x_t = _sample_xt(x0, t, schedule, mask_id, generator)  # (B, L)
    nll = _masked_nll(denoiser, x_t, x0, mask_id)  # (B, L)
    alpha_s, alpha_t = schedule._alpha(s), schedule._alpha(t)
    # T * (alpha_s - alpha_t) / (1 - alpha_t): the sampled step stands for all T     [eq-10]
    weight = num_steps * (alpha_s - alpha_t) / (1 - alpha_t)  # (B,)
    per_token = weight.unsqueeze(-1) * nll  # (B, L)
    per_sequence = per_token.sum(-1)  # (B,)
    return NelboEstimate(per_sequence.mean(), per_sequence, per_token, nll, weight, t, x_t)


def quad_unit_interval(f, n: int = 400) -> float:
    r""":math:`\int_0^1 f(t)\, dt` by Gauss-Legendre quadrature on n nodes (exact for polynomials of degree
    :math:`< 2n`)."""
    t, weights = _gauss_legendre(n)
    return float((weights * f(t)).sum())


@functools.cache
def _gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n Gauss-Legendre nodes mapped to [0, 1] and their weights / 2 (n,), (n,): computed once per n
    (an eigenvalue problem of size n)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return torch.as_tensor((nodes + 1) / 2, dtype=torch.float64), torch.as_tensor(weights, dtype=torch.float64) / 2


def pattern_coefficients(seq_len: int, schedule: Schedule | None = None, num_steps: int | None = None,
                         weighted: bool = True) -> torch.Tensor:
    r"""The weight :math:`c_k`, :math:`k = 0, \dots, L`, that the NELBO gives to each mask pattern with k masks:
    (L + 1,).

    The loss of a sequence is
    :math:`\sum_M c_{|M|} \sum_{l \in M} -\log p_\theta(x_0^l \mid x_0 \text{ with } M \text{ masked})`
    over the mask patterns M.

    - Continuous time, weighted (Eq. 12): for any schedule with :math:`\alpha(0) = 1`,
      :math:`\alpha(1) = 0` (substitute :math:`u = 1 - \alpha_t`),

      .. math::

         c_k = \int_0^1 w(t)\, (1 - \alpha_t)^k \alpha_t^{L-k}\, dt = B(k, L - k + 1) = \frac{1}{k \binom{L}{k}}.

    - Continuous time, unweighted (:math:`w = 1`): :math:`\int_0^1 (1 - \alpha_t)^k \alpha_t^{L-k}\, dt`, by
      quadrature; it depends on the schedule.
    - T steps (Eq. 10): :math:`c_k = \sum_i (1 - \alpha_{t(i)})^k \alpha_{t(i)}^{L-k}
      (\alpha_{s(i)} - \alpha_{t(i)}) / (1 - \alpha_{t(i)})`.
    """
    check_positive_int("seq_len", seq_len)
    if schedule is not None:
        _check_schedule(schedule)
    _check_weighting(schedule, num_steps, weighted)
    return _pattern_coefficients(seq_len, schedule, num_steps, weighted)


def _check_weighting(schedule: Schedule | None, num_steps: int | None, weighted: bool) -> None:
    """The settings of ``pattern_coefficients`` that name a loss."""
    if num_steps is not None:
        if schedule is None or not weighted:
            raise ValueError("num_steps needs a schedule and weighted=True (the T-step NELBO has its own weights)")
        check_positive_int("num_steps", num_steps)
    elif not weighted and schedule is None:
        raise ValueError("weighted=False needs a schedule: the unweighted loss depends on it")


def _pattern_coefficients(seq_len: int, schedule: Schedule | None, num_steps: int | None,
                          weighted: bool) -> torch.Tensor:
    """``pattern_coefficients`` for checked arguments."""
    k = torch.arange(seq_len + 1, dtype=torch.float64)  # (L + 1,)
    if num_steps is not None:
        i = torch.arange(1, num_steps + 1, dtype=torch.float64)  # (T,)
        a_s, a_t = schedule._alpha((i - 1) / num_steps), schedule._alpha(i / num_steps)  # (T,), (T,)
        term = (1 - a_t)[:, None] ** k * a_t[:, None] ** (seq_len - k) * ((a_s - a_t) / (1 - a_t))[:, None]  # (T, L+1)
        coeff = term.sum(0)
    elif weighted:
        # c_k = int_0^1 w(t) (1 - alpha_t)^k alpha_t^(L-k) dt = 1 / (k binom(L, k))     [eq-pattern-weight]
        coeff = torch.tensor([0.0] + [1 / (j * math.comb(seq_len, j)) for j in range(1, seq_len + 1)],
                             dtype=torch.float64)
    else:
        coeff = torch.tensor([quad_unit_interval(lambda t, j=j: (1 - schedule._alpha(t)) ** j
                                                 * schedule._alpha(t) ** (seq_len - j))
                              for j in range(seq_len + 1)], dtype=torch.float64)
    coeff[0] = 0.0  # a pattern with no mask contributes no term
    return coeff


def mask_patterns(seq_len: int) -> torch.Tensor:
    r"""All :math:`2^L` mask patterns as a boolean tensor ``(2^L, L)``, True where masked."""
    _check_enumerable(seq_len)
    return _mask_patterns(seq_len)


def _check_enumerable(seq_len: int) -> None:
    check_positive_int("seq_len", seq_len)
    if seq_len > 16:
        raise ValueError(f"seq_len must be <= 16 for exact enumeration (2^L patterns); got {seq_len}")


def _mask_patterns(seq_len: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([False, True], repeat=seq_len)))  # (2^L, L)


def exact_nelbo(denoiser: Denoiser, x0: torch.Tensor, mask_id: int, schedule: Schedule | None = None,
                num_steps: int | None = None, weighted: bool = True) -> torch.Tensor:
    r"""The exact NELBO of each sequence of x0 (B, L) by enumerating all :math:`2^L` mask patterns (B,).

    ``num_steps=None`` gives the continuous-time NELBO (Eq. 12), which is the same for every
    schedule; an integer gives the T-step NELBO (Eq. 10) under ``schedule``. ``weighted=False``
    gives the unweighted loss instead (not a bound; Section 3.2.1).
    """
    _check_exact(x0, mask_id, schedule)
    _check_weighting(schedule, num_steps, weighted)
    patterns = _mask_patterns(x0.shape[1])  # (P, L)
    coeff = _pattern_coefficients(x0.shape[1], schedule, num_steps, weighted)[patterns.sum(-1)]  # (P,)
    nll = _pattern_nlls(denoiser, x0, mask_id, patterns)  # (B, P)
    # sum over patterns M of c_|M| sum_{l in M} -log p_theta(x_0^l | x_0 with M masked); a pattern of
    # weight 0 adds nothing, even where its NLL is infinite
    return torch.where(coeff == 0, torch.zeros_like(nll), coeff * nll).sum(-1)


def _check_exact(x0: torch.Tensor, mask_id: int, schedule: Schedule | None) -> None:
    """Check the input of an exact (enumerating) computation; the schedule is optional there."""
    _check_x0(x0, mask_id)
    if schedule is not None:
        _check_schedule(schedule)
    _check_enumerable(x0.shape[1])


def _pattern_nlls(denoiser: Denoiser, x0: torch.Tensor, mask_id: int, patterns: torch.Tensor) -> torch.Tensor:
    """S_M = sum_{l in M} -log p_theta(x_0^l | x_0 with M masked) for each sequence and pattern: (B, P)."""
    out = torch.empty(x0.shape[0], patterns.shape[0], dtype=torch.float64)
    for b in range(x0.shape[0]):
        x_t = torch.where(patterns, torch.full_like(patterns, mask_id, dtype=x0.dtype), x0[b])  # (P, L)
        out[b] = _masked_nll(denoiser, x_t, x0[b].expand_as(x_t), mask_id, of_sequence=b).sum(-1)  # (P,)
    return out


def second_moment_coefficients(seq_len: int, schedule: Schedule | None = None) -> torch.Tensor:
    r""":math:`d_k`, :math:`k = 0, \dots, L`: :math:`\mathbb{E}[X^2] = \sum_M d_{|M|} S_M^2` over patterns M for one
    draw X of an estimator (L + 1,).

    - ``schedule=None``: the count estimator (``count_nelbo``); M is drawn with probability
      :math:`1 / (L \binom{L}{k})` and weighted :math:`L / k`, so :math:`d_k = L / (k^2 \binom{L}{k})`.
    - A schedule: the Bernoulli estimator (``continuous_nelbo`` with independent times);
      :math:`d_k = \int_0^1 w(t)^2 (1 - \alpha_t)^k \alpha_t^{L-k}\, dt`, by quadrature. Near :math:`t = 0`
      the :math:`k = 1` integrand is :math:`\sim \alpha'(t)^2 / (1 - \alpha_t) \sim -\alpha'(0) / t`, so
      :math:`d_1` is infinite where :math:`\alpha'(0) \ne 0` (the linear schedule: :math:`d_1 = \int dt / t`);
      for :math:`k \ge 2` and the linear schedule :math:`d_k = B(k - 1, L - k + 1)`.
    """
    check_positive_int("seq_len", seq_len)
    if schedule is not None:
        _check_schedule(schedule)
    return _second_moment_coefficients(seq_len, schedule)


def _second_moment_coefficients(seq_len: int, schedule: Schedule | None) -> torch.Tensor:
    """``second_moment_coefficients`` for checked arguments."""
    if schedule is None:
        return torch.tensor([0.0] + [seq_len / (k * k * math.comb(seq_len, k)) for k in range(1, seq_len + 1)],
                            dtype=torch.float64)
    def second_moment(k: int) -> float:  # int_0^1 w(t)^2 (1 - alpha_t)^k alpha_t^(L-k) dt
        return quad_unit_interval(lambda t: schedule._weight(t) ** 2 * (1 - schedule._alpha(t)) ** k
                                  * schedule._alpha(t) ** (seq_len - k))

    coeff = torch.tensor([0.0] + [second_moment(k) for k in range(1, seq_len + 1)], dtype=torch.float64)
    if float(schedule._dalpha(torch.tensor(0.0, dtype=torch.float64))) != 0.0:
        coeff[1] = math.inf  # int_0 -alpha'(0) / t dt diverges
    return coeff


def exact_estimator_variance(denoiser: Denoiser, x0: torch.Tensor, mask_id: int,
                             schedule: Schedule | None = None) -> torch.Tensor:
    r"""The exact variance of ONE draw of a continuous-time NELBO estimator, per sequence of x0 (B,).

    ``schedule=None`` gives the count estimator (``count_nelbo``), a schedule the Bernoulli
    estimator (``continuous_nelbo`` with independent times). Both have mean ``exact_nelbo``;
    :math:`\mathrm{Var} = \sum_M d_{|M|} S_M^2 - (\sum_M c_{|M|} S_M)^2` over all :math:`2^L` patterns M, with
    ``second_moment_coefficients`` :math:`d_k` and ``pattern_coefficients`` :math:`c_k`. The variance is
    infinite where :math:`d_1` is and some single-mask pattern has :math:`S_M > 0`, and where the mean is
    (the denoiser gives a masked clean token probability 0).
    """
    _check_exact(x0, mask_id, schedule)
    patterns = _mask_patterns(x0.shape[1])  # (P, L)
    k = patterns.sum(-1)  # (P,)
    nll = _pattern_nlls(denoiser, x0, mask_id, patterns)  # (B, P)
    mean = (_pattern_coefficients(x0.shape[1], None, None, True)[k] * nll).sum(-1)  # (B,)
    d = _second_moment_coefficients(x0.shape[1], schedule)[k]  # (P,)
    # a pattern whose masked tokens cost nothing adds nothing, even where d_k is infinite
    second = torch.where(nll == 0, torch.zeros_like(nll), d * nll**2).sum(-1)  # (B,)
    # an estimator with an infinite mean (a masked clean token of probability 0) has infinite variance
    return torch.where(torch.isinf(mean), mean, second - mean**2)


def batch_variance(values: torch.Tensor, num_batches: int = 20) -> tuple[float, float]:
    r"""The sample variance of ``values`` (N,) and its standard error, from ``num_batches`` equal batches.

    The variance is that of all N values; its standard error is the spread of the batches'
    variances divided by :math:`\sqrt{\mathtt{num\_batches}}` (finite only if the fourth moment is). N must be
    divisible by ``num_batches``.
    """
    check_positive_int("num_batches", num_batches)
    if values.ndim != 1 or num_batches < 2 or values.numel() % num_batches or values.numel() < 2 * num_batches:
        raise ValueError(f"values must be 1-D with a length divisible by num_batches >= 2 and at least 2 "
                         f"values per batch; got shape {tuple(values.shape)} and num_batches = {num_batches}")
    values = values.to(torch.float64)
    per_batch = values.reshape(num_batches, -1).var(-1)  # (num_batches,)
    return values.var().item(), (per_batch.std() / math.sqrt(num_batches)).item()
