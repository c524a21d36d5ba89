r"""Answer length and where the top probability of a far [MASK] turns up again, computed exactly.

Book chapter "Ground truth" (book/parallel_sampling.ipynb; paper Section 3.2.4, Observations 1-2).
Observation 1: the top probability of a [MASK] falls with its distance from the prompt, then rises
again, because a far position is more and more likely to be end-of-text. Observation 2: when the
model prefers shorter answers, the curve turns up earlier. On a chain whose end-of-text token is
absorbing (``markov.with_end_of_text``) both are exact powers of the transition matrix.

To make answers shorter in a controlled way, the book (this is its own construction, not the
paper's) moves an extra probability e from every other row of the chain to end-of-text:

.. math::

   Q_{i\cdot} = (1 - e)\, P_{i\cdot} + e\, \mathbb{1}_{\text{eos}}, \qquad i \ne \text{eos},

so that every token ends the answer with probability at least e, and the rest of each row keeps its
shape. For each e, :func:`upturn_by_length` records the mean answer length, the distance where the
top probability is lowest (the upturn) and how low it is, and the top probability where the
chapter's sequences end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import check_number
from .markov import _check_transition, top_probability_curve, with_end_of_text


def with_earlier_end_of_text(P: torch.Tensor, eos_id: int, extra: float) -> torch.Tensor:
    r"""A copy of P in which every row but ``eos_id``'s gives end-of-text an extra probability ``extra``
    (e): :math:`Q_{i\cdot} = (1 - e) P_{i\cdot} + e\, \mathbb{1}_{\text{eos}}`; the end-of-text row is kept.
    The book's construction for shorter answers (Observation 2), applied to a chain made by
    ``markov.with_end_of_text``; e = 0 returns P unchanged."""
    _check_transition(P)
    check_number("eos_id", eos_id, integer=True, at_least=0, at_most=P.shape[0] - 1, meaning="a token id")
    check_number("extra", extra, at_least=0, at_most=1, meaning="the probability moved to end-of-text")
    others = torch.arange(P.shape[0]) != eos_id  # (V,)
    Q = P.double().clone()
    # Q[i] = (1 - e) P[i] + e onehot(eos), i != eos     [eq-earlier-end-of-text]
    Q[others] = (1 - extra) * Q[others]
    Q[others, eos_id] += extra
    return Q


def mean_answer_length(P: torch.Tensor, eos_id: int) -> float:
    r"""The expected number of tokens after a one-token prompt before the first end-of-text, mean over
    every prompt but end-of-text.

    With T the chain without the end-of-text row and column, the expected visits to each token before
    end-of-text are the fundamental matrix :math:`N = (I - T)^{-1}`; from prompt i the answer has
    :math:`\sum_j N_{ij} - 1` tokens (the prompt itself is not counted)."""
    _check_transition(P)
    check_number("eos_id", eos_id, integer=True, at_least=0, at_most=P.shape[0] - 1, meaning="a token id")
    others = torch.arange(P.shape[0]) != eos_id  # (V,)
    T = P.double()[others][:, others]  # (V - 1, V - 1)
    eye = torch.eye(T.shape[0], dtype=torch.float64)
    # h = N 1 = (I - T)^{-1} 1: expected tokens before end-of-text, the prompt included     [eq-answer-length]
    try:
        visits = torch.linalg.solve(eye - T, torch.ones(T.shape[0], dtype=torch.float64))  # (V - 1,)
    except torch.linalg.LinAlgError:  # I - T singular: some tokens never lead to end-of-text
        visits = torch.zeros(1, dtype=torch.float64)
    if not torch.isfinite(visits).all() or (visits < 1 - 1e-9).any():
        raise ValueError(f"P must reach eos_id = {eos_id} from every token; some answer never ends")
    return float((visits - 1).mean())


@dataclass(frozen=True)
class UpturnRow:
    """The end-of-text curve of the chain with an extra probability e of ending after every token."""
    extra: float  # e, the probability moved from every other row to end-of-text
    mean_length: float  # expected tokens after the prompt before end-of-text, mean over prompts
    dip_n: int  # the distance where the top probability is lowest (the first, if it repeats): the upturn
    dip: float  # the top probability there
    top_at_end: float  # the top probability at n = L - 1, the last position of the chapter's sequences


@dataclass(frozen=True)
class UpturnByLength:
    """Where the top probability of a [MASK] turns up again, for answers of several mean lengths:
    one row per extra probability e of end-of-text, curves to distance 4L, mean over every prompt
    but end-of-text (as ``ground_truth.EndOfText``)."""
    eos_id: int  # the end-of-text token
    seq_len: int  # L, the chapter's sequence length
    rows: list[UpturnRow]  # one per e, in the order measured

    def row(self, extra: float) -> UpturnRow:
        """The row of extra probability ``extra``."""
        for row in self.rows:
            if row.extra == extra:
                return row
        raise ValueError(f"extra must be one of {[row.extra for row in self.rows]}; got {extra!r}")

    @property
    def moves_earlier(self) -> bool:
        """True when, rows taken from the longest answers to the shortest, the upturn never comes later
        and comes earlier for the shortest than for the longest (Observation 2 as measured)."""
        by_length = sorted(self.rows, key=lambda row: -row.mean_length)
        dips = [row.dip_n for row in by_length]
        return all(a >= b for a, b in zip(dips, dips[1:])) and dips[-1] < dips[0]


def upturn_by_length(P: torch.Tensor, seq_len: int, extras) -> UpturnByLength:
    """The end-of-text curve for each extra probability e in ``extras``, exactly.

    Args:
        P: the language's chain (V, V); its last token, V - 1, is made an absorbing end-of-text
            (``markov.with_end_of_text``), then e is moved to it by :func:`with_earlier_end_of_text`.
        seq_len: L; the curves run to distance 4L, and ``top_at_end`` is read at n = L - 1.
        extras: the values of e, each in [0, 1].
    """
    check_number("seq_len", seq_len, integer=True, at_least=2, meaning="a prompt token and at least one mask")
    if not len(extras):
        raise ValueError("extras must hold at least one extra probability e in [0, 1]; got none")
    eos_id = P.shape[0] - 1
    base = with_end_of_text(P, eos_id)
    rows = []
    for extra in extras:
        Q = with_earlier_end_of_text(base, eos_id, extra)
        top = top_probability_curve(Q, 4 * seq_len, starts=torch.arange(eos_id)).tolist()  # n = 0 .. 4L
        dip = min(top)
        rows.append(UpturnRow(extra=float(extra), mean_length=mean_answer_length(Q, eos_id), dip_n=top.index(dip),
                              dip=dip, top_at_end=top[seq_len - 1]))
    return UpturnByLength(eos_id=eos_id, seq_len=seq_len, rows=rows)
