"""The paper's toy dataset (Section 3.2.2): why per-position marginals mislead parallel decoding.

Book chapters "The NELBO" and "Joint versus marginal". One hundred sequences of five tokens:

    positions 1-2   AB, AB', A'B, A'B' with counts 34, 21, 35, 10
    positions 3-4   C D, shared by every sequence
    position 5      a token of its own for each sequence (E1 ... E100)

so the data distribution is uniform over the 100 sequences. With the final token masked,
positions 1 and 2 have marginals :math:`P(A) = 0.55` and :math:`P(B) = 0.69`; decoding both at once by
argmax picks AB (probability 0.34) although the most probable pair is A'B (0.35).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_number
from .oracle import OracleDenoiser

PAPER_COUNTS = {"AB": 34, "AB'": 21, "A'B": 35, "A'B'": 10}  # Section 3.2.2
FIRST = ("A", "A'")  # the two values of position 1
SECOND = ("B", "B'")  # the two values of position 2


@dataclass(frozen=True, eq=False)
class ToyDataset:
    r"""The toy data with its vocabulary. Token ids: A=0, A'=1, B=2, B'=3, C=4, D=5,
    E1..En = :math:`6, \dots, n + 5`, and the mask = :math:`n + 6` (the last id); :math:`V = n + 7`."""

    data: torch.Tensor  # (n, 5) token ids, one row per sequence, each with probability 1/n
    tokens: tuple[str, ...]  # name of every id, the mask last
    counts: dict  # the pair counts it was built from

    @property
    def mask_id(self) -> int:
        """The id of the mask token, the last one."""
        return len(self.tokens) - 1

    @property
    def vocab_size(self) -> int:
        """The number of token ids, [MASK] included."""
        return len(self.tokens)

    def ids(self, names: str) -> torch.Tensor:
        """Token ids (1, L) of a space-separated string such as "[MASK] [MASK] C D [MASK]"."""
        index = {name: i for i, name in enumerate(self.tokens)}
        unknown = [n for n in names.split() if n not in index]
        if unknown:
            raise ValueError(f"unknown token names {unknown}; allowed: A, A', B, B', C, D, E1..E{len(self.data)}, "
                             f"[MASK]")
        return torch.tensor([[index[n] for n in names.split()]])

    def names(self, ids: torch.Tensor) -> str:
        """The inverse of ``ids`` for one sequence."""
        return " ".join(self.tokens[int(i)] for i in ids.flatten())

    def oracle(self) -> OracleDenoiser:
        """The exact denoiser of this dataset (uniform over its sequences)."""
        return OracleDenoiser.from_data(self.data, mask_id=self.mask_id, vocab_size=self.vocab_size)

    def pair_joint(self) -> torch.Tensor:
        """:math:`P(x^1, x^2)` as a 2 x 2 float64 table: rows A, A'; columns B, B'."""
        first = self.data[:, 0]  # (n,)
        second = self.data[:, 1] - 2  # (n,) 0 for B, 1 for B'
        table = torch.zeros(2, 2, dtype=torch.float64)
        table.index_put_((first, second), torch.ones(len(first), dtype=torch.float64), accumulate=True)
        return table / len(first)

    def pair_marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`(P(x^1 = A), P(x^1 = A'))` and :math:`(P(x^2 = B), P(x^2 = B'))`, from the joint."""
        joint = self.pair_joint()
        return joint.sum(1), joint.sum(0)


def toy_dataset(counts: dict | None = None) -> ToyDataset:
    """Build the toy dataset; ``counts`` maps "AB", "AB'", "A'B", "A'B'" to non-negative
    integers (default: the paper's 34, 21, 35, 10)."""
    counts = _checked_counts(PAPER_COUNTS if counts is None else counts)
    n = sum(counts.values())
    tokens = (*FIRST, *SECOND, "C", "D", *(f"E{i}" for i in range(1, n + 1)), "[MASK]")
    rows = []
    for pair in PAPER_COUNTS:  # fixed order: AB, AB', A'B, A'B'
        a = 1 if pair.startswith("A'") else 0
        b = 3 if pair.endswith("B'") else 2
        rows += [[a, b, 4, 5]] * counts[pair]
    data = torch.tensor(rows)  # (n, 4)
    unique_last = torch.arange(6, 6 + n).unsqueeze(1)  # (n, 1)
    return ToyDataset(data=torch.cat([data, unique_last], dim=1), tokens=tokens, counts=counts)


def _checked_counts(counts: dict) -> dict:
    """A copy of ``counts`` if it gives each of the four pairs a count, an int >= 0, with a positive total."""
    if set(counts) != set(PAPER_COUNTS):
        raise ValueError(f"counts must have exactly the keys {sorted(PAPER_COUNTS)}; got {sorted(counts)}")
    for pair, count in counts.items():
        check_number(f"counts[{pair!r}]", count, integer=True, at_least=0, meaning="the number of sequences")
    if sum(counts.values()) == 0:
        raise ValueError(f"counts must have a positive total (the number of sequences); got {counts}")
    return dict(counts)
