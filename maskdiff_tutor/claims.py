"""The paper's claims, one verdict each: the registry that every chapter's verdict rows come from.

Book: the "What the paper says, what we measured" section that ends each chapter, and the
"Verdict" chapter, which renders the whole table. Paper: the claims of Sections 3.2-3.4.

Each :class:`~maskdiff_tutor.claim_registry.Claim` holds the paper's statement in the book's words,
its section, one verdict and, for each chapter that measures it, an
:class:`~maskdiff_tutor.claim_registry.Evidence`: a sentence with named fields and the function
that reads those fields from typed results (the records the experiments return, or the package's
exact computations). The results a claim reads are handed over as :class:`Sources`.

How the numbers travel (each step checked):

1. a chapter runs its experiment and renders its rows from that fresh result,
   ``report("blocks", Sources(blocks=result, ...))``; nbval proves the stored output of that cell
   is what the code computes today;
2. the Verdict chapter renders every claim from the book's results, :func:`book_sources`: the
   stored results of the book's runs in ``book/results/`` (``maskdiff-tutor book-results`` writes
   them from the book's stored models) and the exact computations, made there and then; a test
   proves each chapter's stored rows are exactly the rows rendered from the book's results, so
   the Verdict cannot drift from the chapters it links to;
3. nothing is written anywhere when a chapter runs.

Verdicts: "holds", "holds loosely", "does not hold", "not tested here"; each with its scope (the
kinds of evidence it was judged on, and the kind that decided it) and a short qualifier.
"""

from __future__ import annotations

import importlib
import pathlib
import string
from dataclasses import dataclass

from maskdiff_tutor.claim_registry import CHAPTER_TITLES, CLAIMS, SCOPES, VERDICTS, Claim, Evidence, fields_of
from maskdiff_tutor.experiments.book import SEEDS, seed_file
from maskdiff_tutor.notebook import Table
from maskdiff_tutor.seed_values import Contrast, SeedValues

__all__ = ["CLAIMS", "SCOPES", "VERDICTS", "Claim", "Evidence", "Source", "Sources", "SOURCES", "claim", "claims_of",
           "evidence", "report", "verdict_table", "evidence_values", "deciding_value", "verdict_counts",
           "book_sources", "stored_seeds", "contrasts", "contrast_table"]

@dataclass(frozen=True)
class Source:
    """A result the claims read: its typed record, and the file the book's run of it is stored in."""

    module: str  # the module that defines the record
    record: str  # the record's class: an ExperimentResult, or the metrics record of one (``findings``)
    file: str  # the file in book/results/ that holds the book's run (``maskdiff-tutor book-results``)
    findings: bool = False  # the source is the stored result's metrics (an exact chapter's findings)
    seeds: tuple[int, ...] = (0,)  # the seeds the book stores it for, its own (0) first (``book.seed_file``)

    def record_type(self) -> type:
        """The class of the record."""
        return getattr(importlib.import_module(self.module), self.record)


_EXPERIMENTS = "maskdiff_tutor.experiments"
SOURCES = {  # the results the claims read, by the name Sources takes them by
    "nelbo": Source(f"{_EXPERIMENTS}.nelbo_checks", "Findings", "nelbo_checks_exact.json", findings=True),
    "distance_bound": Source(f"{_EXPERIMENTS}.distance_bound", "Findings", "distance_bound_exact.json",
                             findings=True),
    "joint_vs_marginal": Source(f"{_EXPERIMENTS}.joint_vs_marginal", "JointVsMarginalResult",
                                "joint_vs_marginal_ci.json", seeds=SEEDS),
    "ground_truth": Source(f"{_EXPERIMENTS}.ground_truth", "GroundTruthResult", "ground_truth_ci.json", seeds=SEEDS),
    "generation_order": Source(f"{_EXPERIMENTS}.generation_order", "GenerationOrderResult",
                               "generation_order_ci.json"),
    "blocks": Source(f"{_EXPERIMENTS}.blocks_results", "BlocksResult", "blocks_ci.json", seeds=SEEDS),
    "blocks_chain_cpu": Source(f"{_EXPERIMENTS}.blocks_results", "BlocksResult", "blocks_chain_cpu.json", seeds=SEEDS),
    "blocks_text_cpu": Source(f"{_EXPERIMENTS}.blocks_results", "BlocksResult", "blocks_text_cpu.json", seeds=SEEDS),
    "ladder": Source(f"{_EXPERIMENTS}.ladder", "LadderResult", "ladder_ci.json", seeds=SEEDS),
}


def _check_result(name: str, result) -> None:
    if name not in SOURCES:
        raise ValueError(f"sources must be named from {sorted(SOURCES)}; got {name!r}")
    kind = SOURCES[name].record_type()
    if not isinstance(result, kind):
        raise ValueError(f"source {name!r} must be a {kind.__name__}; got {type(result).__name__}")


class Sources:
    """The typed results the claims' evidence reads, each given by its name in ``SOURCES``:
    ``Sources(ground_truth=result)``. Reading one that was not given raises a ``ValueError``
    naming it, so a missing result is never mistaken for a missing number.

    ``seeds`` gives, for a source measured on trained models, the same run on the models of the
    book's other seeds: ``Sources(ground_truth=result, seeds={"ground_truth": {1: r1, 2: r2}})``.
    Evidence then reads each seeded field from every seed (``at_seed``)."""

    def __init__(self, seeds: dict | None = None, **results):
        for name, result in results.items():
            _check_result(name, result)
        self._results = dict(results)
        self._seeds = {}
        for name, by_seed in (seeds or {}).items():
            if name not in results:
                raise ValueError(f"seeds given for source {name!r}, but not its seed-0 result")
            allowed = set(SOURCES[name].seeds) - {0}
            if not set(by_seed) <= allowed:
                raise ValueError(f"source {name!r} has results for seeds {sorted(allowed)} besides 0; got "
                                 f"{sorted(by_seed)}")
            for result in by_seed.values():
                _check_result(name, result)
            self._seeds[name] = dict(by_seed)

    def other_seeds(self) -> tuple[int, ...]:
        """The seeds besides 0 that some source was given for."""
        return tuple(sorted({seed for by_seed in self._seeds.values() for seed in by_seed}))

    def at_seed(self, seed: int) -> Sources:
        """These sources with each result that has a run of ``seed`` replaced by it (the others, seed 0's)."""
        return Sources(**{name: self._seeds.get(name, {}).get(seed, result) for name, result in self._results.items()})

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in SOURCES:
            raise AttributeError(name)
        if name not in self._results:
            raise ValueError(f"the result {name!r} was not given (sources given: {sorted(self._results)})")
        return self._results[name]

    def __repr__(self) -> str:
        return f"Sources({', '.join(sorted(self._results))})"


def book_sources(results: str | pathlib.Path = "results") -> Sources:
    """The book's results, stored in the folder ``results`` (``book/results``; the chapters run in
    ``book/``, so the default is relative to it) by ``maskdiff-tutor book-results``, with those of
    every seed the book stores (``stored_seeds``)."""
    folder, given = pathlib.Path(results), {}
    for name, source in SOURCES.items():
        result = _load(folder, name, 0)
        given[name] = result.metrics if source.findings else result
    return Sources(seeds=stored_seeds(*[n for n, s in SOURCES.items() if len(s.seeds) > 1], results=folder), **given)


def stored_seeds(*names: str, results: str | pathlib.Path = "results") -> dict:
    """The book's results of the sources ``names`` on the models of its other seeds, read from
    the folder ``results`` (as ``book_sources``): the ``seeds`` argument of ``Sources``."""
    unknown = sorted(set(names) - set(SOURCES))
    if unknown:
        raise ValueError(f"names must be sources from {sorted(SOURCES)}; got {unknown}")
    return {name: {seed: _load(pathlib.Path(results), name, seed) for seed in SOURCES[name].seeds if seed != 0}
            for name in names if len(SOURCES[name].seeds) > 1}


def _load(folder: pathlib.Path, name: str, seed: int):
    """The book's stored result of source ``name`` for ``seed``."""
    from maskdiff_tutor.experiments.result import ExperimentResult

    path = folder / seed_file(SOURCES[name].file, seed)
    if not path.is_file():
        raise ValueError(f"the book's result {name!r} for seed {seed} is not stored at {path}; write the book's "
                         f"results with `maskdiff-tutor book-results --out {folder}`")
    return ExperimentResult.load(path)


def claim(number: int) -> Claim:
    """The claim with this number."""
    if number not in CLAIMS:
        raise ValueError(f"number must be a claim number in {sorted(CLAIMS)}; got {number!r}")
    return CLAIMS[number]


def claims_of(chapter: str) -> list[Claim]:
    """The claims a chapter measures, in the order of their numbers."""
    if chapter not in CHAPTER_TITLES:
        raise ValueError(f"chapter must be one of {sorted(CHAPTER_TITLES)}; got {chapter!r}")
    return [c for c in CLAIMS.values() if c.evidence_in(chapter) is not None]


def evidence(c: Claim, chapter: str, sources: Sources) -> dict[str, str]:
    """The fields of claim ``c``'s evidence in ``chapter``, read from ``sources`` and formatted
    with the spec its sentence gives each. A source not given, a field of a result that does not
    exist, or a field the sentence needs and the evidence does not give raises a ``ValueError``
    naming the claim, the chapter and what is missing."""
    found = c.evidence_in(chapter)
    where = f"claim {c.number} ({chapter})"
    try:
        values = dict(found.values(sources))
        values.update(_seeded_values(found, sources))
    except (AttributeError, KeyError, ValueError, IndexError) as error:
        raise ValueError(f"{where}: its evidence cannot be read: {error}") from error
    needed = fields_of(found.sentence)
    missing, extra = sorted(set(needed) - set(values)), sorted(set(values) - set(needed))
    if missing or extra:
        raise ValueError(f"{where}: its evidence gives no value for the field(s) {missing} of its sentence"
                         + (f" and values for fields the sentence lacks {extra}" if extra else ""))
    return {name: format(values[name], spec) for name, spec in needed.items()}


def _by_seed(found: Evidence, sources: Sources) -> tuple[tuple[int, ...], list]:
    """The seeds ``sources`` holds (0 first) and the fields of ``found`` read at each."""
    seeds = (0, *sources.other_seeds())
    return seeds, [found.values(sources.at_seed(seed)) for seed in seeds]


def _seeded_values(found: Evidence, sources: Sources) -> dict[str, SeedValues]:
    """Each seeded field of ``found`` read from every seed ``sources`` holds (none where it holds seed 0 only)."""
    if not found.seeded or not sources.other_seeds():
        return {}
    seeds, by_seed = _by_seed(found, sources)
    return {name: SeedValues(seeds, tuple(values[name] for values in by_seed)) for name in found.seeded}


def contrasts(sources: Sources) -> list[Contrast]:
    """Every claim's contrasts (``Claim.contrasts``), read seed by seed from ``sources``."""
    found = []
    for c in CLAIMS.values():
        for first, second, words in c.contrasts:
            seeds, by_seed = _by_seed(next(e for e in c.evidence if first in e.seeded), sources)
            found.append(Contrast(c.number, first, second, words, seeds,
                                  tuple(float(v[first]) - float(v[second]) for v in by_seed)))
    return found


def contrast_table(sources: Sources) -> Table:
    """The contrasts as a table: each claim's pair of trained numbers, their difference in every
    seed, and whether it lies within the seed spread."""
    found = contrasts(sources)
    seeds = found[0].seeds if found else (0,)
    rows = [[c.claim, c.words, *c.differences, "yes" if c.within_spread else "no"] for c in found]
    return Table(["claim", "difference", *[f"seed {seed}" for seed in seeds], "within the spread"], rows,
                 {f"seed {seed}": "+.3f" for seed in seeds},
                 caption="Each comparison a verdict makes between two trained numbers, as their difference in each "
                         "seed (TV: total variation; PPL: true perplexity; bound: held-out bound at equal forward "
                         "tokens, nats per token; random: random masking decoded in the same blocks).")


def _fill(sentence: str, formatted: dict[str, str]) -> str:
    """The sentence with each field replaced by its formatted value."""
    out = []
    for literal, name, _spec, _conversion in string.Formatter().parse(sentence):
        out.append(literal)
        if name is not None:
            out.append(formatted[name])
    return "".join(out)


def report(chapter: str, sources: Sources) -> Table:
    """The chapter's "What the paper says, what we measured" rows, read from ``sources`` (the
    results the chapter has just computed, or the book's results)."""
    rows = [[f"{c.number} ({c.section})", c.statement, _fill(c.evidence_in(chapter).sentence,
                                                           evidence(c, chapter, sources)), c.verdict_text]
            for c in claims_of(chapter)]
    return Table(["claim", "the paper says", "measured here", "verdict"], rows, markdown=True)


def verdict_table(sources: Sources) -> Table:
    """Every claim with its verdict and the evidence of every chapter that measures it, linked."""
    rows = []
    for c in CLAIMS.values():
        parts = [f"{{doc}}`{CHAPTER_TITLES[e.chapter]} <{e.chapter}>`: "
                 f"{_fill(e.sentence, evidence(c, e.chapter, sources))}" for e in c.evidence]
        rows.append([f"{c.number} ({c.section})", c.statement, " ".join(parts) or "No chapter measures it yet.",
                     f"**{c.verdict}** ({c.scope_text}): {c.qualifier}"])
    return Table(["claim", "the paper says", "evidence", "verdict"], rows, markdown=True)


def evidence_values(number: int, sources: Sources) -> dict[str, str]:
    """Every field of a claim's evidence (from every chapter that measures it), formatted as the
    book prints it, by name."""
    c = claim(number)
    return {name: text for e in c.evidence for name, text in evidence(c, e.chapter, sources).items()}


def deciding_value(number: int, sources: Sources) -> str | None:
    """The number a claim's verdict rests on most, as the book prints it."""
    c = claim(number)
    return None if c.deciding is None else evidence_values(number, sources)[c.deciding]


def verdict_counts() -> dict[str, int]:
    """How many claims have each verdict."""
    return {v: sum(c.verdict == v for c in CLAIMS.values()) for v in VERDICTS}
