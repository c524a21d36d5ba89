"""The paper's claims, one verdict each: the registry that every chapter's verdict rows come from.

Book: the "What the paper says, what we measured" section that ends each chapter, and the
"Verdict" chapter, which renders the whole table. Paper: the claims of Sections 3.2-3.4.

Each :class:`Claim` holds the paper's statement in the book's words, its section, the chapters
that measure it, for each of them an evidence sentence with named numbers, and one verdict.

How the numbers travel (each step checked):

1. a chapter computes its numbers and calls :func:`report`, which renders its rows;
   nbval proves the stored output of that cell is what the code computes today;
2. :func:`report` run with ``MASKDIFF_RECORD_CLAIMS=1`` stores the chapter's formatted numbers
   in ``claims_evidence.json`` (shipped with the package); a test proves each chapter's stored
   rows are exactly the rows rendered from that file;
3. the Verdict chapter renders every claim from that file (:func:`verdict_table`).

Verdicts: "holds", "holds loosely", "does not hold", "not tested here"; each with a short
qualifier that states the scope in which it was judged.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Mapping
from pathlib import Path

from maskdiff_tutor.claim_registry import CHAPTER_TITLES, CLAIMS, VERDICTS, Claim, fields_of

__all__ = ["CLAIMS", "VERDICTS", "Claim", "Table", "claim", "claims_of", "needed_fields", "format_evidence",
           "chapter_rows", "report", "stored_rows", "verdict_table",
           "evidence_value", "evidence_values", "deciding_value", "verdict_counts", "load_evidence", "record_evidence"]

EVIDENCE_FILE = Path(__file__).with_name("claims_evidence.json")
RECORD_VARIABLE = "MASKDIFF_RECORD_CLAIMS"


def _fill(template: str, formatted: dict[str, str]) -> str:
    """The sentence with each field replaced by its already formatted number."""
    out = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is not None:
            out.append(formatted[name])
    return "".join(out)


def claim(number: int) -> Claim:
    """The claim with this number (1-16)."""
    if number not in CLAIMS:
        raise ValueError(f"number must be a claim number in {sorted(CLAIMS)}; got {number!r}")
    return CLAIMS[number]


def claims_of(chapter: str) -> list[Claim]:
    """The claims a chapter measures, in the order of their numbers."""
    if chapter not in CHAPTER_TITLES:
        raise ValueError(f"chapter must be one of {sorted(CHAPTER_TITLES)}; got {chapter!r}")
    return [c for c in CLAIMS.values() if chapter in c.evidence]


def needed_fields(chapter: str) -> dict[str, str]:
    """Every number a chapter's rows need, with its format spec."""
    needed: dict[str, str] = {}
    for c in claims_of(chapter):
        needed.update(fields_of(c.evidence[chapter]))
    return needed


def format_evidence(chapter: str, values: Mapping) -> dict[str, str]:
    """Format the numbers a chapter's rows need, each with the spec its sentence gives it.

    ``values`` may hold more names than the rows need (e.g. every number a chapter glued);
    a name the rows need and ``values`` lacks is an error."""
    needed = needed_fields(chapter)
    missing = sorted(set(needed) - set(values))
    if missing:
        raise ValueError(f"values for chapter {chapter!r} lack {missing}; its rows need {sorted(needed)}")
    return {name: format(values[name], spec) for name, spec in needed.items()}


class Table:
    """A table of claim rows: shown as Markdown in the book, as the same text anywhere else."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other) -> bool:
        return isinstance(other, Table) and other.text == self.text


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def chapter_rows(chapter: str, formatted: dict[str, str]) -> Table:
    """The chapter's "What the paper says, what we measured" table from formatted numbers."""
    lines = ["| claim | the paper says | measured here | verdict |", "|---|---|---|---|"]
    for c in claims_of(chapter):
        lines.append(f"| {c.number} ({c.section}) | {_cell(c.statement)} | "
                     f"{_cell(_fill(c.evidence[chapter], formatted))} | {_cell(c.verdict_text)} |")
    return Table("\n".join(lines))


def load_evidence(path: Path | str | None = None) -> dict[str, dict[str, str]]:
    """The stored formatted numbers of every chapter: ``{chapter: {name: text}}``."""
    path = Path(path or EVIDENCE_FILE)
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def record_evidence(chapter: str, formatted: dict[str, str], path: Path | str | None = None) -> None:
    """Store one chapter's formatted numbers (the other chapters' are kept)."""
    path = Path(path or EVIDENCE_FILE)
    stored = load_evidence(path)
    stored[chapter] = dict(sorted(formatted.items()))
    path.write_text(json.dumps(dict(sorted(stored.items())), indent=1) + "\n")


def report(chapter: str, values: Mapping) -> Table:
    """A chapter's verdict rows from the numbers it computed (recorded with MASKDIFF_RECORD_CLAIMS=1).

    ``values`` maps the names its evidence sentences use to the chapter's numbers (extra names
    are ignored, so a chapter can pass every number it glued: ``report(chapter, glued())``);
    each is formatted with the spec its sentence gives it (``{ppl:.2f}``), or with ``str``.
    """
    formatted = format_evidence(chapter, values)
    if os.environ.get(RECORD_VARIABLE) == "1":
        record_evidence(chapter, formatted)
    return chapter_rows(chapter, formatted)


def stored_rows(chapter: str, path: Path | str | None = None) -> Table:
    """A chapter's rows rendered from the stored numbers (what its stored output must show)."""
    stored = load_evidence(path)
    if chapter not in stored:
        raise ValueError(f"no stored evidence for chapter {chapter!r}: run it with {RECORD_VARIABLE}=1")
    return chapter_rows(chapter, stored[chapter])


def evidence_values(number: int, path: Path | str | None = None) -> dict[str, str]:
    """Every stored number of a claim's evidence (from every chapter that measures it), by name."""
    c = claim(number)
    stored = load_evidence(path)
    return {name: stored[chapter][name] for chapter, template in c.evidence.items() for name in fields_of(template)}


def evidence_value(number: int, name: str, path: Path | str | None = None) -> str:
    """One stored number of a claim's evidence, as the book prints it."""
    values = evidence_values(number, path)
    if name not in values:
        raise ValueError(f"name must be a field of claim {number}'s evidence ({sorted(values)}); got {name!r}")
    return values[name]


def deciding_value(number: int, path: Path | str | None = None) -> str | None:
    """The number a claim's verdict rests on most, as the book prints it."""
    c = claim(number)
    if c.deciding is None:
        return None
    chapter, _, name = c.deciding.partition(":")
    return load_evidence(path)[chapter][name]


def verdict_table(path: Path | str | None = None) -> Table:
    """Every claim with its verdict and the evidence of every chapter that measures it, linked."""
    stored = load_evidence(path)
    lines = ["| claim | the paper says | evidence | verdict |", "|---|---|---|---|"]
    for c in CLAIMS.values():
        parts = []
        for chapter, template in c.evidence.items():
            if chapter not in stored:
                raise ValueError(f"no stored evidence for chapter {chapter!r}: run it with {RECORD_VARIABLE}=1")
            parts.append(f"{{doc}}`{CHAPTER_TITLES[chapter]} <{chapter}>`: {_fill(template, stored[chapter])}")
        evidence = " ".join(parts) if parts else "No chapter measures it yet."
        lines.append(f"| {c.number} ({c.section}) | {_cell(c.statement)} | {_cell(evidence)} | "
                     f"**{c.verdict}**: {_cell(c.qualifier)} |")
    return Table("\n".join(lines))


def verdict_counts() -> dict[str, int]:
    """How many claims have each verdict."""
    return {v: sum(c.verdict == v for c in CLAIMS.values()) for v in VERDICTS}
