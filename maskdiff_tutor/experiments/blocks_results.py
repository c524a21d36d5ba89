"""A blocks experiment's result (``blocks.run``) read with named fields instead of nested
dictionaries: which models were measured, their held-out bounds, each decoding and the greedy run
after a prompt as records, and the tables the chapter "Semi-AR blocks" shows.

A result stores its models under names such as ``"blockwise B=4"``. :class:`Model` makes those
names and reads them back, so no caller formats or parses them::

    measured = blocks_results.read(blocks.run(scale="ci", models=trained_models.book_folder("blocks")))
    measured.decoding(blocks_results.blockwise(4), block_length=4, tokens_per_step=1).ppl
    measured.bound_by_block(4)  # the random-masking model decoded in blocks of 4
    measured.bounds_table()     # every held-out bound, as a table
"""

from __future__ import annotations

from dataclasses import dataclass

from ..notebook import Table
from ..train import OBJECTIVES
from .result import LegacyResult as ExperimentResult

#: The objective name of the chain's exact denoiser (no training).
EXACT = "exact"
#: The objectives trained in blocks.
BLOCK_OBJECTIVES = ("blockwise", "blockwise_literal")


@dataclass(frozen=True)
class Model:
    """One measured model: a training objective of ``train.OBJECTIVES`` with its block length for
    the blockwise ones, or :data:`EXACT` (the chain's exact denoiser)."""
    objective: str
    block_length: int | None = None

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
        """The model's name in a result, such as "random", "blockwise B=4" or "exact denoiser"."""
        if self.objective == EXACT:
            return "exact denoiser"
        return self.objective if self.block_length is None else f"{self.objective} B={self.block_length}"

    @classmethod
    def parse(cls, name: str) -> Model:
        """The model a result's name stands for (the inverse of :attr:`name`)."""
        if name == "exact denoiser":
            return cls(EXACT)
        objective, _, block = name.partition(" B=")
        if block and not block.isdigit():
            raise ValueError(f"not a model name: {name!r} (e.g. 'random', 'blockwise B=4', 'exact denoiser')")
        return cls(objective, int(block) if block else None)

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


@dataclass(frozen=True)
class Decoding:
    """One way of decoding one model, and what it generated from nothing."""
    block_length: int  # B: the sequence is decoded in blocks of B, left to right
    tokens_per_step: int  # k: tokens unmasked per denoiser call
    order: str  # which masks go first inside a block: "confidence" or "random"
    nfe: int  # denoiser calls for a whole sequence
    nll: float  # reference NLL per token of the generated text (the chain's, or the judge's on text)
    ppl: float  # exp(nll)
    entropy: float  # entropy of the generated tokens' unigram distribution, nats
    leftmost_share: float | None = None  # k = 1 only: share of steps that took the leftmost mask
    rightmost_share: float | None = None  # k = 1 only: share of steps that took the rightmost mask
    spearman_position_vs_step: float | None = None  # k = 1 only: rank correlation of position and step
    examples: tuple = ()  # real text only: the first generated sequences, decoded


@dataclass(frozen=True)
class Greedy:
    """Greedy confidence decoding after a one-token prompt, one token per step (the paper's setting)."""
    prompts: int  # held-out sequences whose first token is the prompt
    nll: float  # reference NLL per token of the result
    ppl: float
    leftmost_share: float
    rightmost_share: float
    spearman_position_vs_step: float
    top_by_distance: tuple | None = None  # mean top probability of the mask at distance 1, 2, ... (before any step)


@dataclass(frozen=True)
class Reference:
    """The language's own numbers: what a perfect model would reach."""
    valid_nll: float  # reference NLL per token of the held-out sequences
    valid_ppl: float
    valid_entropy: float  # entropy of the held-out tokens' unigram distribution, nats
    exact_nll: float | None = None  # chain only: its entropy per token, exactly
    stationary_entropy: float | None = None  # chain only: entropy of its stationary distribution


def read(result: ExperimentResult) -> BlocksResults:
    """``result`` (of ``blocks.run``, or ``ExperimentResult.load`` of a stored one) with typed lookups."""
    return BlocksResults(result)


class BlocksResults:
    """Typed lookups into one blocks result; see the module docstring."""

    def __init__(self, result: ExperimentResult):
        if result.experiment != "blocks":
            raise ValueError(f"result must be a blocks experiment's; got one of {result.experiment!r}")
        self.result = result
        self._entries = {Model.parse(name): entry for name, entry in result.metrics["models"].items()}

    @property
    def models(self) -> tuple:
        """Every measured model, in the order they were measured."""
        return tuple(self._entries)

    @property
    def reference(self) -> Reference:
        """The language's reference numbers."""
        return Reference(**self.result.metrics["reference"])

    @property
    def is_text(self) -> bool:
        """True for real text (judged by a left-to-right model), False for the Zipf chain."""
        return "judge" in self.result.config["language"]

    def _entry(self, model: Model) -> dict:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a blocks_results.Model (e.g. blocks_results.RANDOM); got {model!r}")
        if model not in self._entries:
            raise ValueError(f"model must be one of {[m.name for m in self._entries]}; got {model.name!r}")
        return self._entries[model]

    def steps(self, model: Model) -> int:
        """The optimiser steps ``model`` was trained for (0 for the exact denoiser)."""
        return self._entry(model)["steps"]

    def bound(self, model: Model) -> float | None:
        """The held-out NELBO of ``model`` in nats per token (its NLL for left to right; for random
        masking the whole sequence as one block); None for the exact denoiser."""
        return self._entry(model)["bound"]

    def bound_by_block(self, block_length: int) -> float:
        """The random-masking model's held-out bound when decoded in blocks of ``block_length``."""
        by_block = self._entry(RANDOM)["bound_by_block"]
        if str(block_length) not in by_block:
            raise ValueError(f"block_length must be one of {[int(b) for b in by_block]}; got {block_length!r}")
        return by_block[str(block_length)]

    def decodings(self, model: Model) -> list:
        """Every decoding of ``model``, in the order they were run."""
        return [Decoding(**{**record, "examples": tuple(record.get("examples", ()))})
                for record in self._entry(model)["decodings"]]

    def decoding(self, model: Model, block_length: int, tokens_per_step: int,
                 order: str = "confidence") -> Decoding:
        """The decoding of ``model`` in blocks of ``block_length``, ``tokens_per_step`` per call,
        masks chosen inside a block in ``order``."""
        found = [d for d in self.decodings(model)
                 if (d.block_length, d.tokens_per_step, d.order) == (block_length, tokens_per_step, order)]
        if not found:
            done = sorted((d.block_length, d.tokens_per_step, d.order) for d in self.decodings(model))
            raise ValueError(f"{model.name!r} was not decoded with block_length={block_length}, "
                             f"tokens_per_step={tokens_per_step}, order={order!r}; its decodings (B, k, order) "
                             f"are {done}")
        return found[0]

    def greedy_after_prompt(self, model: Model) -> Greedy:
        """Greedy confidence decoding after a prompt (random masking and the exact denoiser only)."""
        entry = self._entry(model)
        if "greedy_after_prompt" not in entry:
            measured = [m.name for m, e in self._entries.items() if "greedy_after_prompt" in e]
            raise ValueError(f"{model.name!r} was not decoded greedily after a prompt; only {measured} were")
        record = dict(entry["greedy_after_prompt"])
        if "top_by_distance" in record:
            record["top_by_distance"] = tuple(record["top_by_distance"])
        return Greedy(**record)

    def curve(self, model: Model, tokens_per_step: int, order: str) -> tuple:
        """(block lengths, perplexities) of ``model``'s decodings with ``tokens_per_step`` per call in
        ``order``, by increasing block length. Where B = k the order inside a block is moot and only
        the confidence decoding is run; it serves both orders."""
        points = sorted((d.block_length, d.ppl) for d in self.decodings(model)
                        if d.tokens_per_step == tokens_per_step
                        and (d.order == order or d.block_length == d.tokens_per_step))
        return [b for b, _ in points], [p for _, p in points]

    def bounds_table(self, caption: str | None = None) -> Table:
        """Every trained model's held-out bound, and the random-masking model's decoded in blocks.
        ``caption`` (e.g. which run) goes before the line saying what the numbers are."""
        rows = [[m.name, self.steps(m), self.bound(m)] for m in self.models if self.bound(m) is not None]
        steps = self.steps(RANDOM)
        rows += [[f"random, decoded in blocks of {b}", steps, v]
                 for b, v in self._entry(RANDOM)["bound_by_block"].items()]
        floor = ("the judge's NLL of held-out text is the reference" if self.is_text
                 else "the chain's own NLL is the floor")
        return Table(["model", "steps", "bound"], rows, {"bound": ".3f"},
                     caption=(f"{caption}: " if caption else "") + f"held-out bound, nats per token ({floor})")

    def decodings_table(self, models: list, tokens_per_step: tuple = (1, 4), caption: str | None = None) -> Table:
        """The decodings of ``models`` with a number of tokens per step in ``tokens_per_step``; see
        :meth:`table_of`."""
        return self.table_of([(m, d.block_length, d.tokens_per_step, d.order) for m in models
                              for d in self.decodings(m) if d.tokens_per_step in tokens_per_step], caption)

    def table_of(self, settings: list, caption: str | None = None) -> Table:
        """The decodings named by ``settings``, each ``(model, block_length, tokens_per_step, order)``:
        calls, perplexity under the reference, entropy of the generated tokens and, for one token per
        step, the share of steps that took the leftmost mask and the rank correlation of position and
        step. ``caption`` goes before the line saying what the columns are."""
        rows = []
        for model, b, k, order in settings:
            d = self.decoding(model, b, k, order)
            rows.append([model.name, b, k, order, d.nfe, d.ppl, d.entropy, d.leftmost_share,
                         d.spearman_position_vs_step])
        judge = "the judge's" if self.is_text else "true"
        return Table(["model", "B", "k", "order", "calls", "PPL", "entropy", "leftmost", "rho"], rows,
                     {"PPL": ".2f", "entropy": ".3f", "leftmost": ".2f", "rho": ".2f"},
                     caption=(f"{caption}: " if caption else "")
                     + f"{judge} perplexity of generated text, B tokens per block, k per call; entropy of the "
                       "generated tokens in nats; leftmost and rho (one token per step only): share of steps "
                       "that took the leftmost mask, rank correlation of position and step")

    def greedy_table(self, caption: str | None = None) -> Table:
        """Greedy confidence decoding after a one-token prompt, one token per step (the paper's
        setting), for every model measured that way."""
        rows = []
        for model in self.models:
            if "greedy_after_prompt" in self._entry(model):
                g = self.greedy_after_prompt(model)
                rows.append([model.name, g.leftmost_share, g.spearman_position_vs_step, g.ppl, g.prompts])
        judge = "judge's PPL" if self.is_text else "true PPL"
        return Table(["model", "leftmost share", "rho", judge, "prompts"], rows,
                     {"leftmost share": ".2f", "rho": ".2f", judge: ".2f"},
                     caption=(f"{caption}: " if caption else "")
                     + "greedy confidence decoding after a one-token prompt, one token per step (the paper's "
                       "setting); rho is the rank correlation of position and step")
