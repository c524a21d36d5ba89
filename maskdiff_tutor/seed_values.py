"""A number measured on models trained with several seeds: its mean and range, and the contrasts
a verdict rests on, seed by seed.

A seed draws everything random in an experiment's run: for a Zipf chain the chain itself, then the
training data, the model's initial weights and the sampling (the toy and a text file are fixed).
The spread over seeds therefore bounds how far a number moves under retraining from above. The
claims print a trained number as ``mean [lowest to highest]`` over the seeds stored
(:class:`SeedValues`), and a verdict that rests on the difference of two trained numbers is
decided only where that difference has the same sign in every seed (:class:`Contrast`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Real


def _decimals(value: Real) -> int:
    """The decimals a rounded number was printed with (at most 6): 0.25 -> 2, 3.0 -> 0, 7 -> 0."""
    if isinstance(value, int) or float(value).is_integer():
        return 0
    text = f"{float(value):.6f}".rstrip("0")
    return len(text.partition(".")[2])


def _numeric(values) -> bool:
    return all(isinstance(v, Real) and not isinstance(v, bool) for v in values)


@dataclass(frozen=True)
class SeedValues:
    """One evidence field, one value per seed. It prints as the value itself where every seed
    gives the same, else as ``mean [lowest to highest]`` (numbers: to the decimals the values were
    rounded to or a fixed-point spec gives, the mean with one more where it would otherwise print
    as an end of the range) or as each value with its seeds (words)."""

    seeds: tuple[int, ...]  # the seeds, the book's own first
    values: tuple  # the field's value for each seed, rounded as the chapter prints it

    def __post_init__(self):
        if len(self.seeds) != len(self.values) or not self.seeds:
            raise ValueError(f"seeds and values must have one entry each and at least one; got {len(self.seeds)} "
                             f"seeds and {len(self.values)} values")

    @property
    def same(self) -> bool:
        """Whether every seed gives the same value."""
        return all(v == self.values[0] for v in self.values)

    @property
    def mean(self) -> float:
        """The mean over seeds (numbers only)."""
        self._require_numbers()
        return math.fsum(float(v) for v in self.values) / len(self.values)

    @property
    def low(self) -> float:
        """The lowest value over seeds (numbers only)."""
        self._require_numbers()
        return min(self.values)

    @property
    def high(self) -> float:
        """The highest value over seeds (numbers only)."""
        self._require_numbers()
        return max(self.values)

    def _require_numbers(self) -> None:
        if not _numeric(self.values):
            raise ValueError(f"the values are not all numbers: {self.values}")

    def __format__(self, spec: str) -> str:
        if self.same:
            return format(self.values[0], spec)
        if not _numeric(self.values):
            groups = {}
            for seed, value in zip(self.seeds, self.values):
                groups.setdefault(format(value, spec), []).append(str(seed))
            return ", ".join(f"{text} (seed{'s' if len(s) > 1 else ''} {', '.join(s)})" for text, s in groups.items())
        fixed = re.fullmatch(r"\.(\d+)f", spec)
        if spec and not fixed:
            return f"{format(self.mean, spec)} [{format(self.low, spec)} to {format(self.high, spec)}]"
        places = int(fixed.group(1)) if fixed else max(_decimals(v) for v in self.values)
        low, high = f"{self.low:.{places}f}", f"{self.high:.{places}f}"
        mean = f"{self.mean:.{places}f}"
        if mean in (low, high):  # one more decimal, so the mean does not read as an end of the range
            mean = f"{self.mean:.{places + 1}f}"
        return f"{mean} [{low} to {high}]"


@dataclass(frozen=True)
class Contrast:
    """Two trained numbers a verdict compares, seed by seed: ``first - second`` in each seed."""

    claim: int  # the claim whose verdict compares them
    first: str  # the field whose value is compared...
    second: str  # ...with this one's
    words: str  # the comparison in words
    seeds: tuple[int, ...]
    differences: tuple[float, ...]  # first - second, one per seed

    @property
    def within_spread(self) -> bool:
        """Whether the difference lies within the seed spread, that is, its range over seeds reaches
        zero (the seeds disagree on which number is larger, or one finds them equal)."""
        return min(self.differences) <= 0.0 <= max(self.differences)

    @property
    def mean(self) -> float:
        """The mean difference over seeds."""
        return math.fsum(self.differences) / len(self.differences)
