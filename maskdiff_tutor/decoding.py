"""The one unmasking loop that every decoder of the package runs.

Book chapters "Joint versus marginal", "Parallel sampling", "Generation order" and "Blocks"
(paper Sections 3.2.2-3.4). A masked diffusion model generates by filling masks. Each step of
``unmask`` reads the denoiser's logits once (one function evaluation, NFE), draws a token at every
position, scores the positions that are still open, commits some of them and leaves the rest
masked for a later step. The decoders of ``decoders`` are this loop with their own choice of

- how the logits are read: ``DenoiserReader`` runs any denoiser callable on the whole
  sequence; ``block_causal.BlockCausalReader`` runs a block-causal model on the current block only;
- the score that ranks open positions (surest first): ``confidence`` (over the clean
  distribution), ``confidence_with_mask`` (over the full softmax, LLaDA's), ``margin``,
  ``negative_entropy``, ``random_score`` (a random order) or ``leftmost`` (left to right); they
  and ``draw`` live in ``scores``, and every name of it is re-exported here;
- how many positions a step commits: ``count`` (k per step, LLaDA's step schedule, all of them)
  or a ``threshold`` on the score (Fast-dLLM);
- the blocks, windows of positions decoded one after another (semi-autoregressive decoding);
- the kind of step, each a named function: ``_plain_step``; ``_view_step``, in which a ``view``
  changes what the denoiser reads (the paper's random initialisation); ``_remask_step``, after
  which ``remask`` masks decoded tokens again (ReMDM).

The loop is short: for each block, repeat the step while the block has a mask. What every step
shares (read, draw, score, commit) is ``_Run``; the state of a block and the loop's speed tricks
(a step count known in advance, NaN looked for once per block) are ``_Block`` and
``_CountedBlock``.

What every decoder inherits from the loop:

- every step commits at least one open position of every sequence that has one, so a block of
  m masks takes at most m steps and no input makes the loop run forever;
- logits that give no distribution at a position being decoded (NaN, +inf, or -inf for every
  clean token) raise a ``ValueError`` naming the batch row and the position;
- tokens are drawn from the clean distribution (``clean_distribution``), so the mask is never
  an output (and each block is checked for a mask left once it is done);
- the denoiser reads a copy of the tokens, so one that edits its input in place changes nothing
  here; its logits are checked at every call: shape (B, L, V), a floating-point dtype, the
  tokens' device (the loop moves nothing: the denoiser takes tokens on their device and returns
  logits there), and V the vocabulary where a decoder states one;
- sampling uses the Gumbel-max trick in float64 (lower precision lowers the effective
  temperature: Zheng et al., 2024), without overflow at any temperature (``draw``), and scores
  equal to ``SCORE_RESOLUTION`` are ties that the leftmost position wins, so the choice of
  position does not hang on the last bits of a float, which differ between CPUs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from ._checks import NO_DISTRIBUTION, check_logits, check_number, check_tokens
from .clean_distribution import clean_log_probs_unchecked
from .scores import SCORES as SCORES  # re-exported, with every name below: decoding.confidence is the book's name
from .scores import TINY_TEMPERATURE as TINY_TEMPERATURE
from .scores import Prediction as Prediction
from .scores import Score as Score
from .scores import check_score as check_score
from .scores import confidence as confidence
from .scores import confidence_with_mask as confidence_with_mask
from .scores import draw as draw
from .scores import leftmost as leftmost
from .scores import margin as margin
from .scores import negative_entropy as negative_entropy
from .scores import random_score as random_score
from .scores import uniform as uniform


@dataclass(frozen=True)
class Decoded:
    """What a decoder returns."""

    tokens: torch.Tensor  # (B, L) the filled sequences, no mask left
    nfe: int  # denoiser calls made (function evaluations)
    order: torch.Tensor | None = None  # (B, L) step at which each position was (last) decoded; -1: given
    confidence: torch.Tensor | None = None  # (B, L) the score each position had when decoded; NaN: given
    remasked: torch.Tensor | None = None  # (B,) decoded tokens masked again (remasking samplers)


SCORE_RESOLUTION = 1e-9  # scores closer than this are ties, and the leftmost of tied positions wins


def select(scores: torch.Tensor, open_: torch.Tensor, count: int | torch.Tensor | None = None,
           threshold: float | None = None) -> torch.Tensor:
    r"""Which open positions to commit: the ``count`` best by score (an int, or one per sequence
    (B,)), or every one whose score is at or above ``threshold`` and at least the best.
    Returns commit (B, n), a subset of ``open_`` with at least one position in every row that has
    one open (with :math:`\mathtt{count} \ge 1`).

    Scores are compared to ``SCORE_RESOLUTION`` and ties go to the leftmost position. An exact
    denoiser gives symmetric positions exactly equal scores, which floating point reproduces only
    to the last bits, and those bits differ between CPUs (AVX2, AVX-512); ranking the raw floats
    would let them choose the position, and so the generated text, differently on each machine."""
    return _select(scores, open_, count, threshold, every_row_open=False)


def _select(scores: torch.Tensor, open_: torch.Tensor, count: int | torch.Tensor | None, threshold: float | None,
            every_row_open: bool) -> torch.Tensor:
    """``select``; ``every_row_open`` promises that every row has an open position, which saves an
    operation where one position a row is chosen (the promise of a ``_CountedBlock``)."""
    n, device = scores.shape[-1], scores.device
    resolution, lowest, highest, minus_inf = _constants(device)
    level = torch.div(scores, resolution).round_().clamp_(lowest, highest)  # (B, n) whole numbers, float64
    if isinstance(count, int) and count == 1:  # argmax returns the first of equal maxima: the leftmost
        best = torch.where(open_, level, minus_inf).argmax(-1, keepdim=True)  # (B, 1)
        commit = _positions(n, device) == best
        return commit if every_row_open else commit.logical_and_(open_)
    # level * n + (n - 1 - position): whole numbers below 2^53, exact in float64, no two equal
    key = torch.where(open_, torch.add(_tie_break(n, device), level, alpha=n), minus_inf)
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


def _constants(device) -> tuple[torch.Tensor, ...]:
    """``SCORE_RESOLUTION``, -2^40, 2^40 and -inf as float64 tensors on ``device``, made once per
    device (a Python number is wrapped in a new tensor at every call, which on a block's few
    positions costs about as much as the operation)."""
    key = ("constants", device)
    if key not in _RANGES:
        _RANGES[key] = tuple(torch.tensor(v, dtype=torch.float64, device=device)
                             for v in (SCORE_RESOLUTION, -2.0**40, 2.0**40, -torch.inf))
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
    """Any denoiser callable ``x (B, L) -> logits (B, L, V)``, run on the whole sequence.

    The denoiser is given a copy of the tokens, never the decoder's own buffer: a denoiser that
    edits its input in place (or keeps it and edits it later) changes only its copy. A copy of
    (1, 1024) ids costs about 2 microseconds on a CPU, next to about 2 milliseconds for a call of
    the smallest model ("tiny") at L = 1024; finding an edit afterwards instead would need the same
    copy and a comparison more. The logits are checked at every call (``check_logits``: shape,
    dtype, device, and V = ``vocab_size`` where the decoder was given one)."""

    def __init__(self, denoiser: Callable[[torch.Tensor], torch.Tensor], mask_id: int, vocab_size: int | None = None):
        self.denoiser, self.mask_id, self.vocab_size = denoiser, mask_id, vocab_size

    def __call__(self, tokens: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, int]:
        logits = self.denoiser(tokens.clone())  # (B, L, V)
        check_logits(logits, tokens, self.mask_id, self.vocab_size)
        return logits, 0

    def block_done(self, tokens: torch.Tensor, start: int, end: int) -> None:
        """Nothing to do: a full-attention denoiser reads the whole sequence at every step."""
        pass


Count = int | Callable[[int, torch.Tensor, torch.Tensor], "int | torch.Tensor"]  # k, or count(i, open_, masks)
View = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], tuple[torch.Tensor, torch.Tensor]]
Remask = Callable[[int, torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]


# --- the loop --------------------------------------------------------------------------------------

@torch.no_grad()
def unmask(read: Reader, x: torch.Tensor, mask_id: int, blocks: list[tuple[int, int]], *,
           count: Count | None = None, threshold: float | None = None, score: Score = confidence,
           temperature: float = 0.0, generator: torch.Generator | None = None,
           view: View | None = None, remask: Remask | None = None, name: str = "x") -> Decoded:
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
            after this step; the step then commits that many more masks (ReMDM). At most one of
            ``view`` and ``remask``.
        name: what the caller calls the tokens, for messages (``decoders.generate``: ``prompt``).

    The decoders check x, ``mask_id``, ``score`` and ``temperature`` where a caller passes them; the
    loop checks the ids against the model's vocabulary once its first logits show it.

    Returns ``Decoded``: the tokens, the number of denoiser calls, the step at which each position
    was last decoded (``order``) and its score then (``confidence``).
    """
    if (count is None) == (threshold is None):
        raise ValueError("give exactly one of count and threshold")
    if isinstance(count, int):
        check_number("count", count, integer=True, at_least=1, meaning="positions committed per step")
    step = _kind_of_step(view, remask)
    run = _Run(read, x, mask_id, count, threshold, score, temperature, generator, name)
    counted = view is None and remask is None and isinstance(count, int)  # k per step and nothing else changes masks
    for start, end in blocks:
        block = _CountedBlock(run, start, end) if counted else _Block(run, start, end)
        for _ in block.steps():
            step(run, block)
        block.done()
        read.block_done(run.tokens, start, end)
    return Decoded(run.tokens, nfe=run.nfe, order=run.order, confidence=run.scores,
                   remasked=None if remask is None else run.remasked)


# --- the three kinds of step -------------------------------------------------------------------------

def _kind_of_step(view: View | None, remask: Remask | None) -> Callable[[_Run, _Block], None]:
    """The step that ``unmask`` repeats: plain, with a view, or with remasking."""
    if view is not None and remask is not None:
        raise ValueError("give at most one of view and remask")
    if view is not None:
        return _view_step(view)
    return _plain_step if remask is None else _remask_step(remask)


def _plain_step(run: _Run, block: _Block) -> None:
    """The model reads the sequence; the best-scored open positions of the block are committed."""
    drawn = run.predict(run.tokens, block, block.open_)
    block.open_ ^= run.commit(block, drawn, block.open_)  # commit lies within open_


def _view_step(view: View):
    """A step in which the model reads what ``view`` shows (the paper's random initialisation: random
    tokens at some of the masks) and only the positions ``view`` leaves decodable may be committed: at
    least one in every sequence with a mask left, or the loop would never end."""
    def step(run: _Run, block: _Block) -> None:
        seen, everywhere = view(run.tokens, _in_block(block.open_, block.start, run.tokens.shape[1]), run.generator)
        decodable = everywhere[:, block.start:block.end] & block.open_  # (B, b)
        if (block.open_.any(-1) & ~decodable.any(-1)).any():
            raise ValueError(f"view left no open position of the block [{block.start}, {block.end}) decodable in a "
                             "sequence with masks left; it must leave at least one")
        drawn = run.predict(seen, block, decodable)
        block.open_ ^= run.commit(block, drawn, decodable)
    return step


def _remask_step(remask: Remask):
    """A plain step after which ``remask`` masks decoded tokens again (ReMDM); the step commits one more
    mask for each token it remasks."""
    def step(run: _Run, block: _Block) -> None:
        drawn = run.predict(run.tokens, block, block.open_)
        again = remask(block.i, run.tokens, run.given, run.generator)  # (B, L)
        remasked = again.sum(-1)  # (B,)
        run.commit(block, drawn, block.open_, remasked)
        run.tokens.masked_fill_(again, run.mask_id)
        run.remasked += remasked
        block.open_ = block.tokens == run.mask_id
    return step


# --- what every step shares ----------------------------------------------------------------------------

class _Run:
    """One ``unmask`` call: its settings, the sequences it fills, what it records of each position,
    and the parts of a step that every kind of step shares."""

    def __init__(self, read: Reader, x: torch.Tensor, mask_id: int, count: Count | None, threshold: float | None,
                 score: Score, temperature: float, generator: torch.Generator | None, name: str):
        self.read, self.x, self.mask_id, self.count, self.threshold = read, x, mask_id, count, threshold
        self.name = name  # what the caller calls x
        self.score, self.temperature, self.generator = score, temperature, generator
        self.tokens = x.clone()  # (B, L) the sequences, filled as the steps commit
        self.given = x != mask_id  # (B, L)
        self.order = torch.full(x.shape, -1, dtype=torch.long, device=x.device)  # (B, L) step of each commit
        self.scores = torch.full(x.shape, float("nan"), dtype=torch.float64, device=x.device)  # (B, L) its score
        self.remasked = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # (B,) tokens masked again
        self.nfe = 0  # denoiser calls so far: the number of the current step

    def predict(self, seen: torch.Tensor, block: _Block, decodable: torch.Tensor) -> tuple:
        """Read the model on ``seen`` (B, L), draw a token at every position of the block and score it;
        refuse a position of ``decodable`` (B, b) where no token can be drawn or the score is NaN.
        Returns (the tokens drawn, their scores, the scores to record) over the block: (B, b) each."""
        logits, offset = self.read(seen, block.start, block.end)  # (B, n, V) at positions offset ...
        if self.nfe == 0:  # the model's vocabulary is known now
            check_tokens(self.name, self.x, logits.shape[-1], self.mask_id, allow_mask=True)
        log_probs = clean_log_probs_unchecked(logits, self.mask_id)  # (B, n, V) float64; mask_id checked on entry
        chosen, chosen_log_prob = draw(log_probs, self.temperature, self.generator)  # (B, n), (B, n)
        score = self.score(Prediction(logits, log_probs, chosen, chosen_log_prob), self.generator)  # (B, n)
        if score.dtype != torch.float64:
            score = score.double()
        if offset != block.start or logits.shape[1] != block.end - block.start:  # the block within the window
            here = slice(block.start - offset, block.end - offset)
            chosen, score, chosen_log_prob = chosen[:, here], score[:, here], chosen_log_prob[:, here]  # (B, b)
        return chosen, score, block.recorded(score, chosen_log_prob, decodable)

    def how_many(self, block: _Block, decodable: torch.Tensor, remasked: torch.Tensor | None):
        """How many positions this step commits by the ``count`` function: ``count(i, decodable, masks)``
        plus the tokens just ``remasked`` (B,)."""
        k = self.count(block.i, decodable, block.masks)
        if remasked is not None:
            k = k + remasked
        none = bool(((k < 1) & decodable.any(-1)).any()) if isinstance(k, torch.Tensor) else k < 1  # in an open row
        if none:
            raise ValueError(f"step {block.i} of the block [{block.start}, {block.end}) "
                             "was asked to commit no position")
        return k

    def commit(self, block: _Block, drawn: tuple, decodable: torch.Tensor,
               remasked: torch.Tensor | None = None) -> torch.Tensor:
        """Commit the best of the ``decodable`` positions (B, b) by the scores ``drawn``, as many as
        ``how_many`` says or those reaching the threshold: write their tokens, the step and their
        scores into the block; return commit (B, b)."""
        chosen, score, recorded = drawn
        k = self.how_many(block, decodable, remasked) if callable(self.count) else self.count
        commit = _select(score, decodable, k, self.threshold, block.every_row_open)  # (B, b)
        torch.where(commit, chosen, block.tokens, out=block.tokens)
        block.order.masked_fill_(commit, self.nfe)
        torch.where(commit, recorded, block.scores, out=block.scores)
        return commit


class _Block:
    """One block [start, end) while it is decoded: views of the run's tensors (writing them writes
    the sequences), the positions still open, its masks when it began and the step within it.
    Each step asks whether a mask is left and refuses at once a position that may be committed
    where no token can be drawn.

    The loop's speed tricks live here and in ``_CountedBlock``, and nowhere else: a score that
    declares that it carries the NaN of an undrawable token (``confidence``) is recorded as it is,
    any other with that NaN added (one operation more); a ``_CountedBlock`` asks nothing at each step."""

    every_row_open = False  # the promise to ``_select`` that every row has an open position at every step

    def __init__(self, run: _Run, start: int, end: int):
        self.run, self.start, self.end = run, start, end
        self.tokens, self.order, self.scores = (t[:, start:end] for t in (run.tokens, run.order, run.scores))
        self.open_ = self.tokens == run.mask_id  # (B, b) the block's masks
        self.masks = self.open_.sum(-1)  # (B,) at the block's start
        self.i = 0  # the step within the block
        self.carries_nan = getattr(run.score, "carries_nan", False)

    def steps(self):
        """Once per step, while a position of the block is open (asked of the device every step)."""
        while self.open_.any():
            yield
            self.i += 1
            self.run.nfe += 1

    def recorded(self, score: torch.Tensor, chosen_log_prob: torch.Tensor, decodable: torch.Tensor) -> torch.Tensor:
        """The score (B, b) as recorded: NaN also where the logits give no distribution (NaN, +inf,
        all clean logits -inf), so that no token could be drawn; a NaN at a ``decodable`` position
        (B, b) is refused at once."""
        recorded = score if self.carries_nan else torch.add(score, chosen_log_prob, alpha=0)
        undrawable = torch.isnan(recorded).logical_and_(decodable)
        if undrawable.any():
            _refuse(undrawable, chosen_log_prob, self.start, self.run.score)
        return recorded

    def done(self) -> None:
        """The block is decoded: refuse a mask left in it. Drawn tokens are never the mask (the
        mask's logit is removed before the draw), so only a score that changed the prediction it
        was given could leave one; this looks once per block, and no mask reaches the output."""
        left = self.tokens == self.run.mask_id  # (B, b)
        if left.any():
            row, column = (int(i) for i in left.nonzero()[0])
            raise ValueError(f"the mask is left at batch row {row}, position {self.start + column} after its block "
                             f"was decoded: the score {getattr(self.run.score, '__name__', self.run.score)!r} "
                             "changed the prediction it was given (a score may only read it)")


class _CountedBlock(_Block):
    """A block in which every step commits k positions of every row and nothing else changes the
    masks (plain steps, an int count). It ends after ceil(most masks / k) steps, known in advance,
    so the loop does not ask the device at every step whether a mask is left (a synchronisation on
    a GPU); NaN is looked for once, at the block's end, among the scores recorded for the positions
    committed; and where every row has as many masks, every row has an open position until the last
    step, which ``_select`` is promised."""

    def __init__(self, run: _Run, start: int, end: int):
        super().__init__(run, start, end)
        most = int(self.masks.max()) if self.masks.numel() else 0
        self.step_count = -(-most // run.count)  # ceil(most masks / k)
        self.every_row_open = self.masks.numel() > 0 and bool(self.masks.min() == most)

    def steps(self):
        """Once per step, ``step_count`` times."""
        for i in range(self.step_count):
            self.i = i
            yield
            self.run.nfe += 1

    def recorded(self, score: torch.Tensor, chosen_log_prob: torch.Tensor, decodable: torch.Tensor) -> torch.Tensor:
        """The score as recorded; a NaN is refused at the block's end (``done``)."""
        return score if self.carries_nan else torch.add(score, chosen_log_prob, alpha=0)

    def done(self) -> None:
        """Every mask of the block was committed once, with its score: refuse a NaN among them, then
        a mask left (``_Block.done``)."""
        undrawable = torch.isnan(self.scores) & ~self.run.given[:, self.start:self.end]
        if undrawable.any():
            _refuse(undrawable, None, self.start, self.run.score)
        super().done()


def _in_block(open_: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """The block's (B, b) flags placed in a (B, L) tensor."""
    return torch.nn.functional.pad(open_, (start, length - start - open_.shape[1]))


def _refuse(undrawable: torch.Tensor, chosen_log_prob: torch.Tensor | None, start: int, score) -> None:
    """Raise for the first position where no token could be drawn (``chosen_log_prob`` NaN) or the
    score was NaN; with ``chosen_log_prob`` None the two are not told apart."""
    row, column = (int(i) for i in undrawable.nonzero()[0])
    where = f"batch row {row}, position {start + column}"
    name = getattr(score, "__name__", score)
    if chosen_log_prob is None:
        raise ValueError(f"no token can be drawn at {where}: {NO_DISTRIBUTION}, or the score {name!r} returned NaN")
    if torch.isnan(chosen_log_prob[row, column]):
        raise ValueError(f"{NO_DISTRIBUTION} at {where}, where a token must be drawn")
    raise ValueError(f"the score {name!r} returned NaN at {where}")
