"""The blocks experiment's result (``blocks.run``, chapter "Semi-AR blocks"; paper Section 3.4.2) as
typed records: the settings that produced it, every measured model as a :class:`Model` (a training
objective and its block length, never a name to format or parse), its held-out bounds, each
decoding (B, k, order) and each greedy run after a prompt as a typed row, and the lookups and
tables the chapter shows::

    result = blocks.run(scale="ci", models=trained_models.book_folder("blocks"))
    result.metrics.decoding(blocks_results.blockwise(4), block_length=4, tokens_per_step=1).ppl
    result.metrics.bound_by_block(4)  # the random-masking model decoded in blocks of 4
    result.metrics.bounds_table()     # every held-out bound, as a table
    BlocksResult.load("book/results/blocks_chain_cpu.json")  # a stored run, the same types
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .. import markov
from ..denoiser import DenoiserConfig
from ..notebook import Table
from ..train import OBJECTIVES, History
from .result import ExperimentResult

#: The objective name of the chain's exact denoiser (no training).
EXACT = "exact"
#: The objectives trained in blocks.
BLOCK_OBJECTIVES = ("blockwise", "blockwise_literal")
#: The orders in which masks are chosen inside a block (``blocks.ORDERS``).
ORDER_NAMES = ("confidence", "random")


@dataclass(frozen=True)
class Scale:
    """The language, model, training and decoding settings of a scale."""
    seq_len: int  # L: every sequence is generated from nothing, L tokens
    vocab_size: int  # chain only: V tokens (the mask is one more)
    s: float  # chain only: Zipf exponent of every row
    function_words: int  # chain only: tokens at ranks 2..f+1 of every row
    train_sequences: int  # chain: sequences sampled; text: at most this many chunks for training
    valid_sequences: int  # held-out sequences for the bounds
    preset: str  # denoiser size (DenoiserConfig.preset)
    random_steps: int  # optimiser steps of random masking; the others get the same forward tokens
    batch_size: int  # sequences per step
    lr: float  # peak learning rate
    trained_blocks: tuple[int, ...]  # block sizes of the block-causal models
    literal_blocks: tuple[int, ...]  # block sizes of the paper's literal scheme
    decode_blocks: tuple[int, ...]  # block sizes B for the random-masking model (L = the whole sequence)
    tokens_per_step: tuple[int, ...]  # k values (only k <= B is run)
    samples: int  # sequences generated per decoding
    bound_repeats: int  # Monte Carlo repeats of the held-out bounds
    judge_compute: float  # text only: the judge's forward tokens, in multiples of one model's


@dataclass(frozen=True)
class Model:
    """One measured model: a training objective of ``train.OBJECTIVES`` with its block length for
    the blockwise ones, or :data:`EXACT` (the chain's exact denoiser)."""
    objective: str  # a key of train.OBJECTIVES, or "exact"
    block_length: int | None = None  # tokens per block of the blockwise objectives; None for the others

    def __post_init__(self):
        allowed = (*OBJECTIVES, EXACT)
        if self.objective not in allowed:
            raise ValueError(f"objective must be one of {list(allowed)}; got {self.objective!r}")
        if self.objective in BLOCK_OBJECTIVES:
            if isinstance(self.block_length, bool) or not isinstance(self.block_length, int) \
                    or self.block_length < 1:
                raise ValueError(f"block_length must be a positive int for objective {self.objective!r}; "
                                 f"got {self.block_length!r}")
        elif self.block_length is not None:
            raise ValueError(f"block_length must be None for objective {self.objective!r} (only "
                             f"{list(BLOCK_OBJECTIVES)} train in blocks); got {self.block_length!r}")

    @property
    def name(self) -> str:
        """How tables and messages show the model, e.g. "random", "blockwise B=4" or "exact denoiser"."""
        if self.objective == EXACT:
            return "exact denoiser"
        return self.objective if self.block_length is None else f"{self.objective} B={self.block_length}"

    def __str__(self) -> str:
        return self.name


#: The model trained with random masking of the whole sequence (LLaDA, MDLM).
RANDOM = Model("random")
#: The model trained left to right (next-token prediction).
LEFT_TO_RIGHT = Model("left_to_right")
#: The chain's exact denoiser (its true conditionals, no training).
EXACT_DENOISER = Model(EXACT)


def blockwise(block_length: int) -> Model:
    """The block-causal blockwise model trained in blocks of ``block_length``."""
    return Model("blockwise", block_length)


def literal(block_length: int) -> Model:
    """The model trained with the paper's literal blockwise scheme in blocks of ``block_length``."""
    return Model("blockwise_literal", block_length)


# --- the settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainLanguage:
    """The Zipf Markov chain the models learn (its transition matrix is not stored)."""
    kind: str  # what it is, in words
    vocab_size: int  # V tokens
    s: float  # Zipf exponent of every row
    function_words: int  # tokens at ranks 2..f+1 of every row


@dataclass(frozen=True)
class TextLanguage:
    """Real text, character by character, judged by a left-to-right model."""
    kind: str  # what it is, in words
    path: str  # the text file, as given to the run
    characters: int  # its length in characters
    vocab_size: int  # distinct characters (the mask is one more)
    train_sequences: int  # chunks of L characters trained on
    valid_sequences: int  # held-out chunks
    judge: str  # the reference: which model, with how much compute


@dataclass(frozen=True)
class Config:
    """Every setting that produced a blocks result."""
    scale: Scale  # the scale's settings
    language: ChainLanguage | TextLanguage  # what the models learn
    schedule: str  # the noise schedule of training and the bounds
    forward_token_budget: int  # tokens through the model that every objective's training gets
    model: DenoiserConfig  # the denoiser of every objective
    orders: tuple[str, ...]  # orders inside a block that decoding tries
    sampling: str  # how tokens are drawn
    evaluated_in: str | None = None  # the dtype of the measurements; None: not recorded (runs before it was)


# --- the numbers --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """The language's own numbers: what a perfect model would reach."""
    by_judge: bool  # True on real text: the reference NLL is the judge's; False: the chain's own, exactly
    valid_nll: float  # reference NLL of the held-out sequences, nats per token
    valid_ppl: float  # exp(valid_nll)
    valid_entropy: float  # entropy of the held-out tokens' unigram distribution, nats
    exact_nll: float | None = None  # chain only: its entropy rate over L tokens, nats per token, exactly
    stationary_entropy: float | None = None  # chain only: entropy of its stationary distribution, nats


@dataclass(frozen=True)
class Measured:
    """One measured model: how long it trained and its held-out bounds."""
    model: Model  # which model
    steps: int  # optimiser steps it was trained for (0 for the exact denoiser)
    bound: float | None  # held-out NELBO, nats per token (NLL for left to right; the whole sequence as one
    #                      block for random masking); None for the exact denoiser
    bound_by_block: dict[int, float] = field(default_factory=dict)  # random masking only: B -> its held-out
    #                                                                 bound decoded in blocks of B, nats per token


@dataclass(frozen=True)
class Decoding:
    """One way of decoding one model from nothing, and what it generated."""
    model: Model  # which model
    block_length: int  # B: the sequence is decoded in blocks of B, left to right
    tokens_per_step: int  # k: tokens unmasked per denoiser call
    order: str  # which masks go first inside a block: "confidence" or "random"
    calls: int  # denoiser calls for a whole sequence
    nll: float  # reference NLL of the generated text, nats per token (the chain's, or the judge's on text)
    ppl: float  # exp(nll)
    entropy: float  # entropy of the generated tokens' unigram distribution, nats
    leftmost_share: float | None = None  # k = 1 only: share of steps that took the leftmost mask
    rightmost_share: float | None = None  # k = 1 only: share of steps that took the rightmost mask
    spearman_position_vs_step: float | None = None  # k = 1 only: rank correlation of position and step
    examples: tuple[str, ...] = ()  # real text only: the first generated sequences, decoded


@dataclass(frozen=True)
class Greedy:
    """Greedy confidence decoding after a one-token prompt, one token per step (the paper's setting)."""
    model: Model  # which model
    prompts: int  # held-out sequences whose first token is the prompt
    nll: float  # reference NLL of the result, nats per token
    ppl: float  # exp(nll)
    leftmost_share: float  # share of steps that took the leftmost mask
    rightmost_share: float  # share of steps that took the rightmost mask
    spearman_position_vs_step: float  # rank correlation of position and step
    top_by_distance: tuple[float, ...]  # before any step: mean top probability of the mask at distance n = 1..L-1

    def top(self, distance: int) -> float:
        """The mean top probability of the mask at ``distance`` n (1 to L - 1) from the prompt."""
        if not 1 <= distance <= len(self.top_by_distance):
            raise ValueError(f"distance must lie in 1..{len(self.top_by_distance)}; got {distance!r}")
        return self.top_by_distance[distance - 1]

    @property
    def far_half(self) -> int:
        """The far half of the curve is the distances n > ``far_half`` (half of L - 1, rounded down)."""
        return len(self.top_by_distance) // 2

    def floor(self) -> float:
        """The level the curve settles at: the median of its far half (Observation 2's floor)."""
        return statistics.median(self.top_by_distance[self.far_half:])

    def fall_distance(self, fraction: float) -> int:
        """The first distance n by which the curve has covered ``fraction`` of its fall from n = 1 to
        :meth:`floor` (``markov.fall_distance``, with n = 0 the prompt itself at 1)."""
        return markov.fall_distance([1.0, *self.top_by_distance], self.floor(), fraction)


def _caption(caption: str | None, what: str) -> str:
    return (f"{caption}: " if caption else "") + what


@dataclass(frozen=True)
class Metrics:
    """What a blocks run measured, with the lookups the chapter needs (each refuses a model or
    setting that was not measured, naming those that were)."""
    reference: Reference  # the language's own numbers
    models: list[Measured]  # every measured model, in the order they were measured
    decodings: list[Decoding]  # every decoding of every model, model by model
    greedy: list[Greedy]  # random masking and the exact denoiser: greedy decoding after a prompt

    def measured(self, model: Model) -> Measured:
        """The training steps and held-out bounds of ``model``."""
        if not isinstance(model, Model):
            raise TypeError(f"model must be a blocks_results.Model (e.g. blocks_results.RANDOM); got {model!r}")
        for row in self.models:
            if row.model == model:
                return row
        raise ValueError(f"model must be one of {[row.model.name for row in self.models]}; got {model.name!r}")

    def steps(self, model: Model) -> int:
        """The optimiser steps ``model`` was trained for (0 for the exact denoiser)."""
        return self.measured(model).steps

    def bound(self, model: Model) -> float | None:
        """The held-out NELBO of ``model`` in nats per token (its NLL for left to right; for random
        masking the whole sequence as one block); None for the exact denoiser."""
        return self.measured(model).bound

    def bound_by_block(self, block_length: int) -> float:
        """The random-masking model's held-out bound when decoded in blocks of ``block_length``."""
        by_block = self.measured(RANDOM).bound_by_block
        if block_length not in by_block:
            raise ValueError(f"block_length must be one of {list(by_block)}; got {block_length!r}")
        return by_block[block_length]

    def decodings_of(self, model: Model) -> list[Decoding]:
        """Every decoding of ``model``, in the order they were run."""
        self.measured(model)
        return [d for d in self.decodings if d.model == model]

    def decoding(self, model: Model, block_length: int, tokens_per_step: int,
                 order: str = "confidence") -> Decoding:
        """The decoding of ``model`` in blocks of ``block_length``, ``tokens_per_step`` per call,
        masks chosen inside a block in ``order``."""
        own = self.decodings_of(model)
        for d in own:
            if (d.block_length, d.tokens_per_step, d.order) == (block_length, tokens_per_step, order):
                return d
        done = sorted((d.block_length, d.tokens_per_step, d.order) for d in own)
        raise ValueError(f"{model.name!r} was not decoded with block_length={block_length}, "
                         f"tokens_per_step={tokens_per_step}, order={order!r}; its decodings (B, k, order) are {done}")

    def greedy_after_prompt(self, model: Model) -> Greedy:
        """Greedy confidence decoding of ``model`` after a prompt (random masking and the exact
        denoiser only)."""
        self.measured(model)
        for row in self.greedy:
            if row.model == model:
                return row
        raise ValueError(f"{model.name!r} was not decoded greedily after a prompt; only "
                         f"{[row.model.name for row in self.greedy]} were")

    def curve(self, model: Model, tokens_per_step: int, order: str) -> tuple[list[int], list[float]]:
        """(block lengths, perplexities) of ``model``'s decodings with ``tokens_per_step`` per call in
        ``order``, by increasing block length. Where B = k the order inside a block is moot and only
        the confidence decoding is run; it serves both orders."""
        points = sorted((d.block_length, d.ppl) for d in self.decodings_of(model)
                        if d.tokens_per_step == tokens_per_step
                        and (d.order == order or d.block_length == d.tokens_per_step))
        return [b for b, _ in points], [p for _, p in points]

    def bounds_table(self, caption: str | None = None) -> Table:
        """Every trained model's held-out bound, and the random-masking model's decoded in blocks.
        ``caption`` (e.g. which run) goes before the line saying what the numbers are."""
        rows = [[row.model.name, row.steps, row.bound] for row in self.models if row.bound is not None]
        random = self.measured(RANDOM)
        rows += [[f"random, decoded in blocks of {b}", random.steps, bound]
                 for b, bound in random.bound_by_block.items()]
        floor = ("the judge's NLL of held-out text is the reference" if self.reference.by_judge
                 else "the chain's own NLL is the floor")
        return Table(["model", "steps", "bound"], rows, {"bound": ".3f"},
                     caption=_caption(caption, f"held-out bound, nats per token ({floor})"))

    def decodings_table(self, models: list[Model] | None = None, tokens_per_step: tuple[int, ...] = (1, 4),
                        caption: str | None = None) -> Table:
        """The decodings of ``models`` (default: every model) with a number of tokens per step in
        ``tokens_per_step``; see :meth:`table_of`."""
        models = [row.model for row in self.models] if models is None else models
        return self._decodings_table([d for m in models for d in self.decodings_of(m)
                                      if d.tokens_per_step in tokens_per_step], caption)

    def table_of(self, settings: list[tuple[Model, int, int, str]], caption: str | None = None) -> Table:
        """The decodings named by ``settings``, each ``(model, block_length, tokens_per_step, order)``:
        calls, perplexity under the reference, entropy of the generated tokens and, for one token per
        step, the share of steps that took the leftmost mask and the rank correlation of position and
        step. ``caption`` goes before the line saying what the columns are."""
        return self._decodings_table([self.decoding(*setting) for setting in settings], caption)

    def _decodings_table(self, rows: list[Decoding], caption: str | None) -> Table:
        judge = "the judge's" if self.reference.by_judge else "true"
        return Table.of(rows, {"model": lambda d: d.model.name, "B": "block_length", "k": "tokens_per_step",
                               "order": "order", "calls": "calls", "PPL": "ppl", "entropy": "entropy",
                               "leftmost": "leftmost_share", "rho": "spearman_position_vs_step"},
                        {"PPL": ".2f", "entropy": ".3f", "leftmost": ".2f", "rho": ".2f"},
                        caption=_caption(caption, f"{judge} perplexity of generated text, B tokens per block, k "
                                                  "per call; entropy of the generated tokens in nats; leftmost and rho "
                                                  "(one token per step only): share of steps that took the leftmost "
                                                  "mask, rank correlation of position and step"))

    def greedy_table(self, caption: str | None = None) -> Table:
        """Greedy confidence decoding after a one-token prompt, one token per step (the paper's
        setting), for every model measured that way."""
        judge = "judge's PPL" if self.reference.by_judge else "true PPL"
        return Table.of(self.greedy,
                        {"model": lambda g: g.model.name, "leftmost share": "leftmost_share",
                         "rho": "spearman_position_vs_step", judge: "ppl", "prompts": "prompts"},
                        {"leftmost share": ".2f", "rho": ".2f", judge: ".2f"},
                        caption=_caption(caption, "greedy confidence decoding after a one-token prompt, one token "
                                                  "per step (the paper's setting); rho is the rank correlation of "
                                                  "position and step"))


# --- the curves and the result ------------------------------------------------------------------

@dataclass(frozen=True)
class Training:
    """One model's training run."""
    model: Model  # which model
    steps: int  # optimiser steps
    history: History  # loss, learning rate, gradient norm and tokens seen, every log_every steps


@dataclass(frozen=True)
class Curves:
    """The training histories of a blocks run."""
    training: list[Training]  # every trained model, in training order
    judge: History | None = None  # real text only: the judge's training

    def history(self, model: Model) -> History:
        """The training history of ``model``."""
        for run in self.training:
            if run.model == model:
                return run.history
        raise ValueError(f"model must be one of {[run.model.name for run in self.training]}; got {str(model)!r}")


@dataclass(frozen=True)
class BlocksResult(ExperimentResult):
    """What ``blocks.run`` returns and saves (see the module docstring)."""
    EXPERIMENT = "blocks"
    config: Config  # every setting that produced the numbers
    metrics: Metrics  # the reference, every model's bounds, decodings and greedy runs
    curves: Curves  # training histories
