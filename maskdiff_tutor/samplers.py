"""Decoding strategies for masked diffusion, one flat function each.

Book chapter "Joint versus marginal" (paper Section 3.2.2); the chapters on parallel sampling,
generation order and blocks add more. Every sampler takes any denoiser callable
``x_t (B, L) -> logits (B, L, V)`` and the mask id, fills the masks of ``x`` and returns a
``Decoded`` with the tokens and the number of denoiser calls (function evaluations, NFE).
Sampling uses the Gumbel-max trick in float64: lower precision lowers the effective
temperature (Zheng et al., 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_logits, check_positive_int, check_tokens


@dataclass(frozen=True)
class Decoded:
    tokens: torch.Tensor  # (B, L) the filled sequences
    nfe: int  # denoiser calls made
    order: torch.Tensor | None = None  # (B, L) step at which each position was decoded (-1: given), if tracked
    confidence: torch.Tensor | None = None  # (B, L) the score each position had when decoded (NaN: given)
    remasked: torch.Tensor | None = None  # (B,) decoded tokens masked again, for remasking samplers


def _clean_log_probs(denoiser, x: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log p_theta(x_0^l = v | x) in float64 with the mask removed: (B, L, V)."""
    logits = denoiser(x)  # (B, L, V)
    check_logits(logits, x, mask_id)
    return log_probs_without_mask(logits, mask_id)


def log_probs_without_mask(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log-softmax in float64 of logits (..., V) with the mask's logit removed (a clean token is
    never the mask): the same distribution as ``forward_process.denoiser_probs``, in logs."""
    logits = logits.double().index_fill(-1, torch.tensor([mask_id], device=logits.device), float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def _pick(log_probs: torch.Tensor, generator: torch.Generator | None, greedy: bool) -> torch.Tensor:
    """argmax of log p (greedy) or a sample by the Gumbel-max trick in float64: (..., V) -> (...)."""
    if greedy:
        return log_probs.argmax(-1)
    u = _uniform(log_probs.shape, generator, log_probs.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))  # (..., V), float64
    return (log_probs + gumbel).argmax(-1)


def _uniform(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) float64 noise drawn on the generator's device, moved to ``device``."""
    noise_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=noise_device).to(device)


def _check(x: torch.Tensor, mask_id: int) -> None:
    check_tokens("x", x, None, mask_id, allow_mask=True)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (B, L); got {tuple(x.shape)}")


@torch.no_grad()
def sample_all_at_once(denoiser, x: torch.Tensor, mask_id: int, generator: torch.Generator | None = None,
                       greedy: bool = False) -> Decoded:
    """Fill every mask of x (B, L) from one denoiser call: each mask independently from its own
    marginal (or its argmax when ``greedy``). The result follows the product of the marginals,
    not their joint (Section 3.2.2)."""
    _check(x, mask_id)
    log_probs = _clean_log_probs(denoiser, x, mask_id)  # (B, L, V)
    tokens = torch.where(x == mask_id, _pick(log_probs, generator, greedy), x)  # (B, L)
    order = torch.where(x == mask_id, 0, -1)
    return Decoded(tokens, nfe=1, order=order)


@torch.no_grad()
def sample_one_at_a_time(denoiser, x: torch.Tensor, mask_id: int, generator: torch.Generator | None = None,
                         greedy: bool = False) -> Decoded:
    """Fill the masks of x (B, L) one per denoiser call, each drawn from its conditional given
    everything decoded so far: ancestral sampling with one token per step, in an order drawn
    uniformly at random per sequence (the limit of many small diffusion steps). For left to
    right, use ``sample_left_to_right(..., tokens_per_step=1)``.

    With an exact denoiser this samples the true joint of the masked positions (chain rule).
    """
    _check(x, mask_id)
    tokens, order = x.clone(), torch.where(x == mask_id, 0, -1)
    batch, length = x.shape
    rows = torch.arange(batch, device=x.device)
    priority = _uniform((batch, length), generator, x.device)  # (B, L) a random order per sequence
    steps = int((x == mask_id).sum(-1).max()) if x.numel() else 0
    for step in range(steps):
        masked = tokens == mask_id  # (B, L)
        active = masked.any(-1)  # (B,) sequences with masks left
        position = torch.where(masked, priority, torch.inf).argmin(-1)  # (B,) next position to decode
        log_probs = _clean_log_probs(denoiser, tokens, mask_id)[rows, position]  # (B, V)
        choice = _pick(log_probs, generator, greedy)  # (B,)
        tokens[rows[active], position[active]] = choice[active]
        order[rows[active], position[active]] = step
    return Decoded(tokens, nfe=steps, order=order)


@torch.no_grad()
def beam_search(denoiser, x: torch.Tensor, mask_id: int, beam_width: int = 2,
                positions: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable completion of masks of one sequence x (1, L) under the model's own
    sequential conditionals, decoding them left to right and keeping the ``beam_width`` best
    partial sequences by sum of log-probabilities. Returns (tokens (1, L), log-probability ()).

    Args:
        positions: the masked positions to decode (default: all); the others stay masked, so the
            score is the model's joint probability of just these positions given x.

    With ``beam_width = 1`` it is greedy left-to-right decoding."""
    _check(x, mask_id)
    check_positive_int("beam_width", beam_width)
    if x.shape[0] != 1:
        raise ValueError(f"x must hold one sequence, shape (1, L); got {tuple(x.shape)}")
    masked = (x[0] == mask_id).nonzero().flatten().tolist()
    positions = masked if positions is None else sorted(positions)
    if not set(positions) <= set(masked):
        raise ValueError(f"positions must be masked positions of x, a subset of {masked}; got {positions}")
    beams, scores = x.clone(), torch.zeros(1, dtype=torch.float64, device=x.device)  # (K, L), (K,)
    for position in positions:
        log_probs = _clean_log_probs(denoiser, beams, mask_id)[:, position]  # (K, V)
        candidates = scores.unsqueeze(-1) + log_probs  # (K, V)
        best = candidates.flatten().topk(min(beam_width, int(torch.isfinite(candidates).sum())))
        parent, token = best.indices // log_probs.shape[-1], best.indices % log_probs.shape[-1]
        beams = beams[parent].clone()
        beams[:, position] = token
        scores = best.values
    return beams[:1], scores[0]


@torch.no_grad()
def sample_left_to_right(denoiser, x: torch.Tensor, mask_id: int, tokens_per_step: int = 1,
                         generator: torch.Generator | None = None, greedy: bool = False) -> Decoded:
    """Fill the masks of x (B, L) from left to right, ``tokens_per_step`` at a time: each step
    decodes the leftmost k masks together, each from its own marginal (Section 3.3's parallel
    sampling). k = 1 is autoregressive decoding; k >= the number of masks is all at once.
    The last step of a sequence may decode fewer than k."""
    _check(x, mask_id)
    check_positive_int("tokens_per_step", tokens_per_step)
    tokens, order = x.clone(), torch.where(x == mask_id, 0, -1)
    step = 0
    while (tokens == mask_id).any():
        masked = tokens == mask_id  # (B, L)
        rank = masked.long().cumsum(-1)  # (B, L): 1 for the leftmost mask, 2 for the next, ...
        chosen = masked & (rank <= tokens_per_step)  # (B, L) the leftmost k masks of each sequence
        picks = _pick(_clean_log_probs(denoiser, tokens, mask_id), generator, greedy)  # (B, L)
        tokens = torch.where(chosen, picks, tokens)
        order = torch.where(chosen, step, order)
        step += 1
    return Decoded(tokens, nfe=step, order=order)


def _check_vocab(vocab_size: int, mask_id: int) -> None:
    check_positive_int("vocab_size", vocab_size, minimum=2)
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must be one of the vocab_size = {vocab_size} ids; got {mask_id}")


def _random_tokens(shape, vocab_size: int, mask_id: int, generator, device) -> torch.Tensor:
    """Tokens drawn uniformly from the ``vocab_size`` ids other than the mask: (shape)."""
    start = (_uniform(shape, generator, device) * (vocab_size - 1)).long()  # in [0, V - 1)
    return start + (start >= mask_id).long()  # skip the mask id


@torch.no_grad()
def sample_gibbs_from_random_start(denoiser, x: torch.Tensor, mask_id: int, vocab_size: int, steps: int,
                                   tokens_per_step: int = 1, generator: torch.Generator | None = None) -> Decoded:
    """Random-scan Gibbs from a random start: a relative of Section 3.3's SEDD-inspired random
    initialisation that this book adds (the paper's own strategy is
    ``sample_partial_random_init``). Also available as ``sample_random_init``, its earlier name.

    Every mask of x (B, L) starts as a token drawn uniformly from the ``vocab_size`` ids other
    than the mask, as a uniform-noise diffusion (SEDD) starts from random text. Each of ``steps``
    denoiser calls re-masks ``tokens_per_step`` of those positions, chosen uniformly at random,
    and redraws them from the denoiser given everything else.

    With k = 1 and an exact denoiser this is a random-scan Gibbs sampler: the true joint is its
    stationary law, but it only gets there as the steps grow, whereas ``sample_one_at_a_time`` is
    exact after as many calls as there are masks. With k > 1 the k positions are redrawn from their
    marginals, the parallel error of Section 3.2.2 again.

    Args:
        vocab_size: number of ids the denoiser's logits cover, the mask included.
        steps: denoiser calls (the NFE); each redraws ``tokens_per_step`` positions.

    ``order`` holds the last step that wrote each position (-1: given; -2: never redrawn, still its
    random start) and ``confidence`` the probability it was written with (NaN if never).
    """
    _check(x, mask_id)
    _check_vocab(vocab_size, mask_id)
    check_positive_int("steps", steps)
    check_positive_int("tokens_per_step", tokens_per_step)
    open_ = x == mask_id  # (B, L) the positions this sampler writes
    most = int(open_.sum(-1).max()) if x.numel() else 0
    if tokens_per_step > max(most, 1):
        raise ValueError(f"tokens_per_step ({tokens_per_step}) must not exceed the number of masks in a "
                         f"sequence (at most {most} here)")
    start = _random_tokens(x.shape, vocab_size, mask_id, generator, x.device)  # (B, L)
    tokens = torch.where(open_, start, x)
    order = torch.where(open_, -2, -1)
    scores = torch.full(x.shape, float("nan"), dtype=torch.float64, device=x.device)
    for step in range(steps):
        priority = torch.where(open_, _uniform(x.shape, generator, x.device), -1.0)  # (B, L)
        top = priority.topk(min(tokens_per_step, x.shape[1]), dim=-1).indices  # (B, k)
        chosen = torch.zeros_like(open_).scatter(-1, top, True) & open_  # (B, L)
        remasked = torch.where(chosen, mask_id, tokens)
        log_probs = _clean_log_probs(denoiser, remasked, mask_id)  # (B, L, V)
        picks = _pick(log_probs, generator, greedy=False)  # (B, L)
        tokens = torch.where(chosen, picks, tokens)
        order = torch.where(chosen, step, order)
        scores = torch.where(chosen, log_probs.gather(-1, picks.unsqueeze(-1)).squeeze(-1).exp(), scores)
    return Decoded(tokens, nfe=steps, order=order, confidence=scores)


sample_random_init = sample_gibbs_from_random_start  # the earlier name


@torch.no_grad()
def sample_partial_random_init(denoiser, x: torch.Tensor, mask_id: int, vocab_size: int, init_fraction: float,
                               tokens_per_step: int = 1, generator: torch.Generator | None = None,
                               greedy: bool = False) -> Decoded:
    """The SEDD-inspired random initialisation of Section 3.3, as the paper describes it.

    Each step (one denoiser call) of decoding x (B, L):

    1. of the masks still open, a share ``init_fraction`` (floor(init_fraction * masks left),
       chosen uniformly at random) is filled with tokens drawn uniformly from the ``vocab_size``
       ids other than the mask: the sparse random signals;
    2. the denoiser reads the sequence with these tokens in place, and the leftmost
       ``tokens_per_step`` of the masks that were *not* initialised are decoded, each from its own
       marginal given everything it sees (fewer when fewer are left);
    3. the initialised positions become masks again: their random tokens never reach the output.

    This repeats until every mask is filled. With ``init_fraction = 0`` it is
    ``sample_left_to_right`` with the same ``tokens_per_step``, draw for draw from the same
    generator. As the initialised share is left out of each step, the last steps may decode fewer
    than ``tokens_per_step`` masks, so the number of calls can exceed ceil(masks / k).

    Args:
        denoiser: callable x_t (B, L) -> logits (B, L, V).
        x: (B, L) token ids with masks to fill.
        mask_id: the mask's id.
        vocab_size: number of ids the denoiser's logits cover, the mask included.
        init_fraction: the share of open masks initialised at random in each step, in [0, 1).
        tokens_per_step: masks decoded per denoiser call (at most).
        generator: the random stream; greedy: argmax instead of sampling.

    ``order`` holds the step that decoded each position (-1: given).
    """
    _check(x, mask_id)
    _check_vocab(vocab_size, mask_id)
    if isinstance(init_fraction, bool) or not isinstance(init_fraction, (int, float)) or not 0 <= init_fraction < 1:
        raise ValueError(f"init_fraction must be a number in [0, 1) (the share of open masks initialised at "
                         f"random each step); got {init_fraction!r}")
    check_positive_int("tokens_per_step", tokens_per_step)
    tokens, order = x.clone(), torch.where(x == mask_id, 0, -1)
    step = 0
    while (tokens == mask_id).any():
        masked = tokens == mask_id  # (B, L)
        seen, open_ = tokens, masked
        if init_fraction > 0:
            count = (init_fraction * masked.sum(-1, keepdim=True).double()).floor().long()  # (B, 1) < masks left
            priority = torch.where(masked, _uniform(x.shape, generator, x.device), 2.0)  # (B, L)
            rank = priority.argsort(-1).argsort(-1)  # (B, L): 0 for the smallest priority
            initialised = masked & (rank < count)  # (B, L) a random share of the open masks
            seen = torch.where(initialised, _random_tokens(x.shape, vocab_size, mask_id, generator, x.device), tokens)
            open_ = masked & ~initialised
        chosen = open_ & (open_.long().cumsum(-1) <= tokens_per_step)  # (B, L) the leftmost k open masks
        picks = _pick(_clean_log_probs(denoiser, seen, mask_id), generator, greedy)  # (B, L)
        tokens = torch.where(chosen, picks, tokens)  # the initialised positions stay masks
        order = torch.where(chosen, step, order)
        step += 1
    return Decoded(tokens, nfe=step, order=order)
