"""The one unmasking loop that every decoder of the package runs.

Book chapters "Joint versus marginal", "Parallel sampling", "Generation order" and "Blocks"
(paper Sections 3.2.2-3.4). A masked diffusion model generates by filling masks. Each step of
``unmask`` reads the denoiser's logits once (one function evaluation, NFE), draws a token at every
position, scores the positions that are still open, commits some of them and leaves the rest
masked for a later step. The decoders of ``decoders`` are this loop with their own choice of

- how the logits are read: ``DenoiserReader`` runs any denoiser callable on the whole
  sequence; ``decoders.BlockCausalReader`` runs a block-causal model on the current block only;
- the score that ranks open positions (surest first): ``confidence`` (over the clean
  distribution), ``confidence_with_mask`` (over the full softmax, LLaDA's), ``margin``,
  ``negative_entropy``, ``random_score`` (a random order) or ``leftmost`` (left to right);
- how many positions a step commits: ``count`` (k per step, LLaDA's step schedule, all of them)
  or a ``threshold`` on the score (Fast-dLLM);
- the blocks, windows of positions decoded one after another (semi-autoregressive decoding);
- two hooks that only some samplers use: ``view`` changes what the denoiser reads (the paper's
  random initialisation) and ``remask`` masks decoded tokens again (ReMDM).

What every decoder inherits from the loop:

- every step commits at least one open position of every sequence that has one, so a block of
  m masks takes at most m steps and no input makes the loop run forever;
- logits that give no distribution at a position being decoded (NaN, +inf, or -inf for every
  clean token) raise a ``ValueError`` naming the batch row and the position;
- tokens are drawn from the clean distribution (``clean_distribution``), so the mask is never
  an output;
- sampling uses the Gumbel-max trick in float64 (lower precision lowers the effective
  temperature: Zheng et al., 2024), and scores equal to ``SCORE_RESOLUTION`` are ties that the
  leftmost position wins, so the choice of position does not hang on the last bits of a float,
  which differ between CPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

import torch

from ._checks import check_logits, check_tokens
from .clean_distribution import clean_log_probs


@dataclass(frozen=True)
class Decoded:
    """What a decoder returns."""

    tokens: torch.Tensor  # (B, L) the filled sequences, no mask left
    nfe: int  # denoiser calls made (function evaluations)
    order: torch.Tensor | None = None  # (B, L) step at which each position was (last) decoded; -1: given
    confidence: torch.Tensor | None = None  # (B, L) the score each position had when decoded; NaN: given
    remasked: torch.Tensor | None = None  # (B,) decoded tokens masked again (remasking samplers)


class Prediction(NamedTuple):
    """One step's reading of the denoiser over a window of n positions, as a score sees it."""

    logits: torch.Tensor  # (B, n, V) the denoiser's raw logits
    log_probs: torch.Tensor  # (B, n, V) float64 log-probabilities over clean tokens (mask removed)
    chosen: torch.Tensor  # (B, n) the token drawn at each position
    chosen_log_prob: torch.Tensor  # (B, n) its log-probability, log_probs at chosen


# --- scores: (prediction, generator) -> (B, n), higher = decode sooner ----------------------------

def confidence(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """The clean-distribution probability of the token drawn (LLaDA's low-confidence remasking,
    the mask's share left out): (B, n)."""
    return prediction.chosen_log_prob.exp()


def confidence_with_mask(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The probability of the token drawn under the full softmax, the mask's logit included, as
    LLaDA's ``generate()`` computes it: the clean confidence times :math:`1 - p(\text{mask})`. (B, n)."""
    full = torch.log_softmax(prediction.logits.double(), dim=-1)  # (B, n, V)
    return full.gather(-1, prediction.chosen.unsqueeze(-1)).squeeze(-1).exp()


def margin(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """Top probability minus the second (Dream's topk_margin): (B, n)."""
    top2 = prediction.log_probs.topk(2, dim=-1).values.exp()  # (B, n, 2)
    return top2[..., 0] - top2[..., 1]


def negative_entropy(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """Minus the entropy of each position's distribution (Dream's entropy ordering): (B, n)."""
    log_probs = prediction.log_probs
    probs = log_probs.exp()
    return torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs)).sum(-1)


def random_score(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniform random score: decoding in a random order (LLaDA's "random" remasking): (B, n)."""
    return uniform(prediction.chosen.shape, generator, prediction.chosen.device)


def leftmost(prediction: Prediction, generator: torch.Generator | None = None) -> torch.Tensor:
    """The same score everywhere: ties go to the leftmost position, so this is left to right."""
    return torch.zeros(prediction.chosen.shape, dtype=torch.float64, device=prediction.chosen.device)


# --- drawing and choosing -------------------------------------------------------------------------

def uniform(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) float64 noise drawn on the generator's device, moved to ``device``."""
    noise_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=noise_device).to(device)


def check_temperature(temperature) -> float:
    r"""``temperature`` as a float if it is finite and :math:`\ge 0`; otherwise a ``ValueError`` naming it."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0: the argmax); got {temperature!r}")
    return float(temperature)


def draw(log_probs: torch.Tensor, temperature: float,
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A token from :math:`\mathrm{softmax}(\mathtt{log\_probs} / \mathtt{temperature})` by the Gumbel-max trick
    in float64, or the argmax at temperature 0, and its log-probability: (..., V) -> ((...), (...)). At
    temperature T this is LLaDA's :math:`\arg\max(\exp(\text{logits}) / (-\log u)^T)`: the same u give the
    same tokens."""
    if temperature == 0:
        return log_probs.argmax(-1), log_probs.amax(-1)  # the argmax and its log-probability
    gumbel = -torch.log(-torch.log(uniform(log_probs.shape, generator, log_probs.device).clamp_min(1e-300)))
    scaled = log_probs if temperature == 1 else log_probs / temperature
    chosen = (scaled + gumbel).argmax(-1)
    return chosen, log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)


SCORE_RESOLUTION = 1e-9  # scores closer than this are ties, and the leftmost of tied positions wins


def select(scores: torch.Tensor, open_: torch.Tensor, count: int | torch.Tensor | None = None,
           threshold: float | None = None, every_row_open: bool = False) -> torch.Tensor:
    r"""Which open positions to commit: the ``count`` best by score (an int, or one per sequence
    (B,)), or every one whose score is at or above ``threshold`` and at least the best.
    Returns commit (B, n), a subset of ``open_`` with at least one position in every row that has
    one open (with :math:`\mathtt{count} \ge 1`).

    Scores are compared to ``SCORE_RESOLUTION`` and ties go to the leftmost position. An exact
    denoiser gives symmetric positions exactly equal scores, which floating point reproduces only
    to the last bits, and those bits differ between CPUs (AVX2, AVX-512); ranking the raw floats
    would let them choose the position, and so the generated text, differently on each machine.

    ``every_row_open`` promises that every row has an open position (it saves one operation)."""
    n = scores.shape[-1]
    level = torch.div(scores, SCORE_RESOLUTION).round_().clamp_(-2.0**40, 2.0**40)  # (B, n) whole numbers, float64
    if isinstance(count, int) and count == 1:  # argmax returns the first of equal maxima: the leftmost
        best = torch.where(open_, level, -torch.inf).argmax(-1, keepdim=True)  # (B, 1)
        commit = _positions(n, scores.device) == best
        return commit if every_row_open else commit.logical_and_(open_)
    # level * n + (n - 1 - position): whole numbers below 2^53, exact in float64, no two equal
    key = torch.where(open_, torch.add(_tie_break(n, scores.device), level, alpha=n), -torch.inf)
    if threshold is not None:
        best = key.argmax(-1, keepdim=True)  # (B, 1) at least the surest position
        commit = (level * SCORE_RESOLUTION >= threshold).scatter_(-1, best, True)
    elif isinstance(count, int):
        commit = torch.zeros_like(open_).scatter_(-1, key.topk(min(count, n), dim=-1).indices, True)
    else:
        most = min(int(count.max()), n)
        ranks = torch.arange(most, device=scores.device) < count.unsqueeze(-1)  # (B, most)
        commit = torch.zeros_like(open_).scatter_(-1, key.topk(most, dim=-1).indices, ranks)
    return commit & open_  # a row with fewer open positions than asked commits only those


_RANGES: dict = {}


def _tie_break(n: int, device) -> torch.Tensor:
    """n - 1, ..., 0 in float64 (the leftmost position ranks highest), made once per width and device."""
    key = ("tie", n, device)
    if key not in _RANGES:
        _RANGES[key] = torch.arange(n - 1, -1, -1, dtype=torch.float64, device=device)
    return _RANGES[key]


def _positions(n: int, device) -> torch.Tensor:
    """0, ..., n - 1, made once per width and device."""
    key = ("positions", n, device)
    if key not in _RANGES:
        _RANGES[key] = torch.arange(n, device=device)
    return _RANGES[key]


def transfer_counts(masks: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's schedule: how many of a block's ``masks`` (B,) each of ``steps`` steps decodes,
    the same number each step with the remainder spread over the first steps: (B, steps)."""
    base, remainder = masks // steps, masks % steps  # (B,)
    return base.unsqueeze(-1) + (torch.arange(steps, device=masks.device) < remainder.unsqueeze(-1)).long()


# --- how the logits are read -----------------------------------------------------------------------

class Reader(Protocol):
    """How a decoder reads its model: ``read(tokens, start, end)`` returns the logits (B, n, V)
    of a window of positions containing [start, end) (the current block) and the window's first
    position; ``block_done(tokens, start, end)`` is told when a block is complete."""

    def __call__(self, tokens: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, int]: ...

    def block_done(self, tokens: torch.Tensor, start: int, end: int) -> None:
        """Called when a block is fully decoded: a reader with a cache stores that block's keys and values."""


class DenoiserReader:
    """Any denoiser callable ``x (B, L) -> logits (B, L, V)``, run on the whole sequence."""

    def __init__(self, denoiser: Callable[[torch.Tensor], torch.Tensor], mask_id: int):
        self.denoiser, self.mask_id = denoiser, mask_id

    def __call__(self, tokens: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, int]:
        logits = self.denoiser(tokens)  # (B, L, V)
        check_logits(logits, tokens, self.mask_id)
        return logits, 0

    def block_done(self, tokens: torch.Tensor, start: int, end: int) -> None:
        """Nothing to do: a full-attention denoiser reads the whole sequence at every step."""
        pass


def check_sequences(name: str, x, mask_id) -> None:
    """x must be token ids (B, L) and mask_id a non-negative int (``check_tokens``)."""
    check_tokens(name, x, None, mask_id, allow_mask=True)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (B, L); got {tuple(x.shape)}")


Count = "int | Callable[[int, torch.Tensor, torch.Tensor], int | torch.Tensor]"


# --- the loop --------------------------------------------------------------------------------------

@torch.no_grad()
def unmask(read: Reader, x: torch.Tensor, mask_id: int, blocks: list[tuple[int, int]], *,
           count: Count | None = None, threshold: float | None = None, score=confidence,
           temperature: float = 0.0, generator: torch.Generator | None = None,
           view=None, remask=None) -> Decoded:
    r"""Fill the masks of x (B, L), block by block, committing the best-scored open positions.

    Args:
        read: how the logits are obtained (``DenoiserReader``, or a reader of one block).
        x: token ids (B, L); the masks in ``blocks`` are filled, the other tokens are context.
        mask_id: the mask's id.
        blocks: windows [start, end) decoded one after another; a block is done when it has no
            mask left.
        count: how many positions a step commits: an int k (k per step), or a function
            ``count(i, open_, masks)`` -> the number for step i of a block, an int or one per
            sequence (B,), each :math:`\ge 1`, where ``open_`` (B, b) are the block's positions that may be
            committed now and ``masks`` (B,) its masks when it began. None with ``threshold``.
        threshold: commit every open position whose score reaches it, and at least the best one.
        score: ranks open positions, surest first (see the scores above).
        temperature: 0 takes each position's argmax; :math:`T > 0` samples from :math:`\mathrm{softmax}(\log p / T)`.
        generator: the random stream for sampling, random scores and the hooks.
        view: ``view(tokens, open_, generator)`` -> (what the denoiser reads (B, L), the open
            positions that may be committed (B, L)); None: the tokens and every open position.
        remask: ``remask(i, tokens, given, generator)`` -> decoded positions (B, L) to mask again
            after this step; the step then commits that many more masks (ReMDM).

    Returns ``Decoded``: the tokens, the number of denoiser calls, the step at which each position
    was last decoded (``order``) and its score then (``confidence``).
    """
    if (count is None) == (threshold is None):
        raise ValueError("give exactly one of count and threshold")
    tokens = x.clone()
    given = x != mask_id  # (B, L)
    order = torch.full(x.shape, -1, dtype=torch.long, device=x.device)
    scores = torch.full(x.shape, float("nan"), dtype=torch.float64, device=x.device)
    remasked = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    k_fixed = count if isinstance(count, int) else None
    if k_fixed is not None and k_fixed < 1:
        raise ValueError(f"count must be >= 1 per step; got {count}")
    step = 0
    for start, end in blocks:
        # views of the block: writing them writes tokens, order and scores
        block_tokens, block_order, block_scores = tokens[:, start:end], order[:, start:end], scores[:, start:end]
        open_ = block_tokens == mask_id  # (B, b) the block's masks
        masks = open_.sum(-1)  # (B,) at the block's start
        # k per step and nothing else changes the masks: every row is done after ceil(most masks / k) steps
        known = k_fixed is not None and view is None and remask is None
        steps_left = (-(-int(masks.max()) // k_fixed) if masks.numel() else 0) if known else None
        # ... and if every row has as many masks, every row has an open position until the last step
        every_row_open = known and masks.numel() > 0 and bool(masks.min() == masks.max())
        i = 0
        while steps_left != 0 if known else bool(open_.any()):
            decodable, seen = open_, tokens
            if view is not None:
                seen, everywhere = view(tokens, _in_block(open_, start, x.shape[1]), generator)
                decodable = everywhere[:, start:end]
            logits, offset = read(seen, start, end)  # (B, n, V) over positions offset .. offset + n - 1
            if step == 0:
                _check_vocabulary(x, logits, mask_id)
            log_probs = clean_log_probs(logits, mask_id)  # (B, n, V) float64
            chosen, chosen_log_prob = draw(log_probs, temperature, generator)  # (B, n), (B, n)
            score_now = score(Prediction(logits, log_probs, chosen, chosen_log_prob), generator)  # (B, n)
            if score_now.dtype != torch.float64:
                score_now = score_now.double()
            if offset != start or logits.shape[1] != end - start:  # the block within the window
                here = slice(start - offset, end - offset)
                chosen, score_now, chosen_log_prob = chosen[:, here], score_now[:, here], chosen_log_prob[:, here]
            # NaN where the logits give no distribution (NaN, +inf, all clean logits -inf) or the score
            # fails; equal to the score everywhere else. The fast path finds a NaN among the scores
            # it stored at the block's end, the others at once.
            checked = score_now if score in _CARRY_NAN else torch.add(score_now, chosen_log_prob, alpha=0)
            if not known:
                undrawable = torch.isnan(checked).logical_and_(decodable)
                if undrawable.any():
                    _refuse(undrawable, chosen_log_prob, start, score)
            again = None if remask is None else remask(i, tokens, given, generator)  # (B, L)
            k = k_fixed
            if threshold is None and k_fixed is None:
                k = count(i, decodable, masks)
                if again is not None:
                    k = k + again.sum(-1)
                if isinstance(k, int) and k < 1 or isinstance(k, torch.Tensor) and bool(((k < 1) & decodable.any(-1)).any()):
                    raise ValueError(f"step {i} of the block [{start}, {end}) was asked to commit no position")
            commit = select(score_now, decodable, k, threshold, every_row_open)  # (B, b)
            torch.where(commit, chosen, block_tokens, out=block_tokens)
            block_order.masked_fill_(commit, step)
            torch.where(commit, checked, block_scores, out=block_scores)
            if again is None:
                open_ = open_ ^ commit  # commit lies within open_
            else:
                tokens.masked_fill_(again, mask_id)
                remasked += again.sum(-1)
                open_ = block_tokens == mask_id
            step += 1
            i += 1
            if known:
                steps_left -= 1
        if known:  # every position of the block was committed once, with its score
            undrawable = torch.isnan(block_scores) & (x[:, start:end] == mask_id)
            if undrawable.any():
                _refuse(undrawable, None, start, score)
        read.block_done(tokens, start, end)
    return Decoded(tokens, nfe=step, order=order, confidence=scores, remasked=None if remask is None else remasked)


# scores computed from the chosen token's log-probability: NaN wherever it is NaN
_CARRY_NAN = (confidence,)


def _in_block(open_: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """The block's (B, b) flags placed in a (B, L) tensor."""
    return torch.nn.functional.pad(open_, (start, length - start - open_.shape[1]))


def _refuse(undrawable: torch.Tensor, chosen_log_prob: torch.Tensor | None, start: int, score) -> None:
    """Raise for the first position where no token could be drawn (``chosen_log_prob`` NaN) or the
    score was NaN; with ``chosen_log_prob`` None the two are not told apart."""
    row, column = (int(i) for i in undrawable.nonzero()[0])
    where = f"batch row {row}, position {start + column}"
    logits = "the denoiser's logits give no distribution (NaN, +inf, or -inf for every token but the mask)"
    name = getattr(score, "__name__", score)
    if chosen_log_prob is None:
        raise ValueError(f"no token can be drawn at {where}: {logits}, or the score {name!r} returned NaN")
    if torch.isnan(chosen_log_prob[row, column]):
        raise ValueError(f"{logits} at {where}, where a token must be drawn")
    raise ValueError(f"the score {name!r} returned NaN at {where}")


def _check_vocabulary(x: torch.Tensor, logits: torch.Tensor, mask_id: int) -> None:
    vocab_size = logits.shape[-1]
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id {mask_id} is not an id of the model's vocabulary of {vocab_size} logits")
    if x.numel() and int(x.max()) >= vocab_size:
        raise ValueError(f"x holds ids outside [0, {vocab_size - 1}], the model's vocabulary of {vocab_size} logits")
