"""The Verdict chapter's first screen: the counts, then one line per claim with its verdict as a badge.

Reads the claims registry (:mod:`maskdiff_tutor.claim_registry`); the headlines below are the
claims' statements cut to a few words, for a line that fits a phone's width.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .claim_registry import CLAIMS, VERDICTS

HEADLINES = {
    1: "The loss weight shapes training, not the optimum",
    2: "The denoiser needs no time input",
    3: "The denoiser outputs marginals, not the joint",
    4: "Top probability decays with distance (Eq. 17)",
    5: "End-of-text lifts the far end again",
    6: "Steep fall in 15 masks; floor and upturn by task",
    7: "True curves end below the bound's limit",
    8: "Far masks homogenise into frequent tokens",
    9: "A budget of 17 allows about 6 parallel samples",
    10: "Remasking gives no acceleration",
    11: "Random initialisation does not speed decoding up",
    12: "Confidence decoding is nearly left to right",
    13: "Reverse order comes from end-of-text",
    14: "Random order is fluent only one token at a time",
    15: "Small blocks (4 or 8) are the best inference",
    16: "Blockwise reverse-order training is cheaper",
    17: "Adjacent masks are the safest to decode together",
    18: "Parallel decoding repeats neighbouring tokens",
    19: "Training on every masking pattern is redundant",
}

# the CSS class of each verdict's badge (_static/verdict.css gives the colours)
BADGES = {"holds": "holds", "holds loosely": "loose", "does not hold": "fails",
          "within the seed spread": "spread", "not tested here": "untested"}


@dataclass(frozen=True)
class GlanceRow:
    """One claim in a line: its number, a few words of its statement, its verdict and scope."""

    number: int
    section: str
    headline: str
    verdict: str
    scope: str  # the kinds of evidence, by their keys in ``claim_registry.SCOPES`` ("exact + trained")


@dataclass(frozen=True)
class Glance:
    """The counts of each verdict and one row per claim; shown as HTML in the book, as text elsewhere."""

    counts: dict[str, int]
    rows: tuple[GlanceRow, ...]

    def __repr__(self) -> str:
        counts = ", ".join(f"{verdict}: {n}" for verdict, n in self.counts.items())
        lines = [f"{r.number:>2}  {r.headline:<52}{r.verdict:<24}{r.scope}" for r in self.rows]
        return "\n".join([counts, *lines])

    def _repr_html_(self) -> str:
        counts = "".join(f'<span class="verdict-count">{_badge(verdict)} {n}</span>'
                         for verdict, n in self.counts.items() if n)
        rows = "".join(
            f'<li><span class="glance-number">{r.number}</span>'
            f'<span class="glance-claim">{html.escape(r.headline)}</span>'
            f'{_badge(r.verdict)}<span class="glance-scope">{html.escape(r.scope)}</span></li>'
            for r in self.rows)
        return f'<div class="verdict-glance"><p class="verdict-counts">{counts}</p><ol>{rows}</ol></div>'


def _badge(verdict: str) -> str:
    return f'<span class="verdict-badge verdict-{BADGES[verdict]}">{html.escape(verdict)}</span>'


def glance() -> Glance:
    """Every claim of the registry in one line each, with the counts of each verdict."""
    if set(HEADLINES) != set(CLAIMS):
        raise ValueError(f"HEADLINES must name every claim {sorted(CLAIMS)}; got {sorted(HEADLINES)}")
    rows = tuple(GlanceRow(c.number, c.section, HEADLINES[c.number], c.verdict, " + ".join(c.scope))
                 for c in CLAIMS.values())
    return Glance(counts={v: sum(r.verdict == v for r in rows) for v in VERDICTS}, rows=rows)
