r"""The distance bound and the cost of parallel samples, computed exactly (book chapter "The distance
bound"; paper Sections 3.2.3 and 3.3).

Each function returns a typed record of what the chapter measures, in seconds, by enumeration,
matrix powers and closed forms (no training and no sampling noise):

- ``counterexample``: the book's peak-chaining language, which meets Assumptions 3-4 with the full
  history and keeps a token above Eq. 17 at every distance (Eq. 16 does not follow);
- ``random_languages``: how often random languages that meet Assumptions 3-4, and those that also
  meet the book's Assumption H, break Eq. 17;
- ``bound_curve``: the bound of Eq. 17 and its limit (Eq. 18) at Figure 3's settings;
- ``exact_chain``: a Zipf chain that meets Assumptions 3, 4 and H, its exact top probability at
  distance n against the bound (Figure 3 redrawn) and the floor it ends at;
- ``fall_by_task``: how fast exact curves fall and where they stop, for several exponents, with and
  without function words (Observation 2);
- ``table_2``: Table 2 recomputed at the paper's settings beside the paper's printed column, kept as
  a labelled reference (``PAPER_TABLE_2``) and never used to compute the recomputed one;
- ``allowed_k_scan``: the largest number of parallel samples within a perplexity budget, as a
  function of the Zipf exponent s.

``run()`` computes them all as one ``DistanceBoundResult`` (``Findings``): the record the claims of
the chapter read, stored with the book's results.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .. import assumptions, markov, zipf
from .result import Environment, ExperimentResult

S_FIG3, N_FIG3 = 2.31, 130_000  # the paper's Figure 3: Zipf exponent s and vocabulary size N
S_TAB2, N_TAB2 = 1.05, 150_000  # the paper's Table 2
# the paper's printed Table 2, the perplexity of 1..8 parallel samples: a reference, never used to compute
PAPER_TABLE_2 = (9.6618, 13.1995, 14.8584, 15.8570, 16.4716, 16.9408, 17.3027, 17.6066)
PPL_BUDGET = 17.0  # the perplexity budget of the paper's conclusion ("allows 6 parallel samples")
BROKEN_ABOVE = 1e-12  # an excess over Eq. 17 above float64 rounding: the bound is broken
SCAN_EXPONENTS = tuple(float(s) for s in np.round(np.arange(0.98, 1.1201, 0.001), 4))  # s = 0.980 .. 1.120


# ----------------------------------------------------------------------------- Assumptions 3-4 alone

@dataclass(frozen=True)
class CounterexampleRow:
    """The peak-chaining language at one distance n from the prompt (probabilities)."""

    n: int  # distance from the prompt: the n-th mask
    exact_top: float  # max_v P(T_n = v | prompt), by enumerating every sequence
    target: float  # P(T_n = target | prompt), the token the language keeps likely
    eq17_bound: float  # the paper's bound \bar p_n (Eq. 17) for N tokens
    full_history_bound: float  # the best bound Assumptions 3-4 give: omega1 at n = 1, \bar p_2 from n = 2


@dataclass(frozen=True)
class Counterexample:
    """The book's peak-chaining language (``assumptions.peak_chaining_language``): Assumptions 3 and 4
    hold with the full history; its exact marginals against Eq. 17, and both sides of Eq. 15 and 16."""

    N: int  # tokens
    s: float  # Zipf exponent of every conditional
    length: int  # masks after the prompt
    target: int  # the token kept at \bar p_2 from n = 2 on
    assumption_3: bool  # every conditional is Zipf(s)
    assumption_4: bool  # different previous tokens give different peaks, for every history
    assumption_h: bool  # the peaks do not depend on the earlier history (the book's Assumption H)
    rows: list[CounterexampleRow]  # n = 1 .. length
    eq_n: int  # the distance n at which Eq. 15 and Eq. 16 are compared
    eq15_histories: int  # histories T_1..T_(n-2) over which Eq. 15 is compared
    eq15_largest_excess: float  # max over them of left - right side of Eq. 15 (<= 0: it holds)
    eq16_histories: int  # histories T_1..T_(n-3) over which Eq. 16 is compared
    eq16_left_min: float  # the smallest left side of Eq. 16 over them
    eq16_right_max: float  # the largest right side (left_min > right_max: Eq. 16 fails at every history)

    @property
    def last(self) -> CounterexampleRow:
        """The row of the farthest mask, n = length."""
        return self.rows[-1]

    @property
    def last_excess(self) -> float:
        """How far the exact top probability of the farthest mask lies above Eq. 17."""
        return self.last.exact_top - self.last.eq17_bound


def counterexample(N: int = 5, s: float = S_FIG3, length: int = 6, target: int = 0, eq_n: int = 4) -> Counterexample:
    """The peak-chaining language of N tokens and ``length`` masks, checked and enumerated exactly."""
    lang = assumptions.peak_chaining_language(N, s, length, target)
    marginals = assumptions.marginals(lang)  # (L, N): P(T_n = v | prompt), every sequence enumerated
    n = np.arange(1, length + 1)
    eq17 = zipf.top_probability_bound(n, s, N)  # (L,)
    full = assumptions.full_history_bound(n, s, N)  # (L,)
    rows = [CounterexampleRow(int(n[i]), float(marginals[i].max()), float(marginals[i, target]), float(eq17[i]),
                              float(full[i])) for i in range(length)]
    lhs15, rhs15 = assumptions.eq15_sides(lang, eq_n, s)
    lhs16, rhs16 = assumptions.eq16_sides(lang, eq_n, s)
    return Counterexample(N, s, length, target, assumptions.satisfies_assumption_3(lang, s),
                          assumptions.satisfies_assumption_4(lang), assumptions.satisfies_assumption_h(lang), rows,
                          eq_n, int(lhs15.size), float((lhs15 - rhs15).max()), int(lhs16.size), float(lhs16.min()),
                          float(rhs16.max()))


@dataclass(frozen=True)
class LanguageSample:
    """Random languages of one kind, each with how far its exact top probabilities exceed Eq. 17."""

    history_free: bool  # True: one permutation of peaks per position serves every history (Assumption H)
    excess: tuple[float, ...]  # per language, max over n of (max_v P(T_n = v | prompt) - \bar p_n); > 0 breaks it

    @property
    def total(self) -> int:
        """The number of languages drawn."""
        return len(self.excess)

    @property
    def broken(self) -> int:
        """The number of languages whose top probability exceeds Eq. 17 somewhere (beyond rounding)."""
        return sum(e > BROKEN_ABOVE for e in self.excess)

    @property
    def largest_excess(self) -> float:
        """The largest excess over Eq. 17 among the languages, 0 where none exceeds it."""
        return max(max(self.excess), 0.0)


@dataclass(frozen=True)
class RandomLanguages:
    """Random languages meeting Assumptions 3-4 with the full history, without and with Assumption H."""

    N: int  # tokens
    s: float  # Zipf exponent
    length: int  # masks after the prompt
    seed: int  # of the numpy generator that drew them (full-history ones first)
    full_history: LanguageSample  # every history draws its own permutation of peaks
    history_free: LanguageSample  # the peaks depend on the position and the previous token only


def random_languages(N: int = 4, s: float = S_FIG3, length: int = 5, count: int = 20,
                     seed: int = 0) -> RandomLanguages:
    """``count`` random languages of each kind (``assumptions.random_language``), with their excess over Eq. 17."""
    rng = np.random.default_rng(seed)
    eq17 = zipf.top_probability_bound(np.arange(1, length + 1), s, N)  # (L,)
    samples = []
    for history_free in (False, True):
        excess = []
        for _ in range(count):
            lang = assumptions.random_language(N, s, length, rng, history_free=history_free)
            excess.append(float((assumptions.marginals(lang).max(1) - eq17).max()))
        samples.append(LanguageSample(history_free, tuple(excess)))
    return RandomLanguages(N, s, length, seed, *samples)


# ----------------------------------------------------------------------------- the bound and exact chains

@dataclass(frozen=True)
class BoundCurve:
    r"""The bound of Eq. 17 at one setting for n = 0 .. max_distance, and its limit p* (Eq. 18)."""

    s: float  # Zipf exponent
    N: int  # vocabulary size
    omega1: float  # the largest Zipf probability, 1 / H_{N,s}
    omega2: float  # the second largest, 2^(-s) / H_{N,s}
    bound: tuple[float, ...]  # \bar p_n for n = 0 .. max_distance (\bar p_0 = 1)
    p_star: float  # the limit of the bound (Eq. 18)

    def first_within(self, ratio: float) -> int:
        """The first distance n at which the bound is at most ``ratio`` times its limit."""
        return int(np.argmax(np.array(self.bound) <= ratio * self.p_star))


def bound_curve(s: float = S_FIG3, N: int = N_FIG3, max_distance: int = 60) -> BoundCurve:
    """Eq. 17 and Eq. 18 at (s, N); by default Figure 3's settings."""
    omega1, omega2 = zipf.omegas(s, N)
    bound = zipf.top_probability_bound(np.arange(max_distance + 1), s, N)
    return BoundCurve(s, N, omega1, omega2, tuple(bound.tolist()), zipf.bound_limit(s, N))


@dataclass(frozen=True)
class ExactChain:
    """A first-order Zipf chain (``markov.zipf_chain``), which meets Assumptions 3, 4 and H: its exact
    top probability at distance n from a known token, against the bound of Eq. 17 for its V tokens."""

    V: int  # tokens
    s: float  # Zipf exponent of every row
    seed: int  # of the torch generator that drew the rankings
    starts: int  # starting tokens averaged over: ids 0 .. starts - 1
    assumption_4: bool  # the rows' favourites are a permutation
    omega1: float  # omega1 for V tokens
    omega2: float  # omega2 for V tokens
    top: tuple[float, ...]  # exact max_v P(x_n = v | x_0), mean over the starts, n = 0 .. max_distance
    bound: tuple[float, ...]  # Eq. 17 for V tokens, n = 0 .. max_distance
    largest_excess: float  # max over starts and n of (exact top - bound): 0 up to float64 rounding (~1e-16)
    max_pi: float  # the largest stationary probability: where the exact curve ends
    p_star: float  # the bound's limit (Eq. 18) for V tokens


def exact_chain(V: int = 2000, s: float = S_FIG3, seed: int = 0, starts: int = 200,
                max_distance: int = 40) -> ExactChain:
    r"""The exact marginals :math:`e_{x_0}^\top P^n` of a Zipf chain by matrix powers, from ``starts``
    starting tokens."""
    chain = markov.zipf_chain(V, s, torch.Generator().manual_seed(seed))  # (V, V)
    one_hot = torch.eye(V, dtype=torch.float64)[:starts]  # (S, V)
    top = markov.distance_marginals(chain, one_hot, max_distance).max(-1).values.T  # (n + 1, S, V) -> (S, n + 1)
    bound = zipf.top_probability_bound(np.arange(max_distance + 1), s, V)  # (n + 1,)
    omega1, omega2 = zipf.omegas(s, V)
    return ExactChain(V, s, seed, starts, markov.check_assumption_4(chain), omega1, omega2,
                      tuple(top[:, d].mean().item() for d in range(max_distance + 1)), tuple(bound.tolist()),
                      float((top - torch.as_tensor(bound)).max()),
                      markov.stationary_distribution(chain).max().item(), zipf.bound_limit(s, V))


@dataclass(frozen=True)
class TaskFall:
    """One exact Zipf chain standing in for a task: how its mean top probability falls with the distance."""

    s: float  # Zipf exponent of every row
    function_words: int  # tokens every row ranks right after its favourite (like "the" and ",")
    curve: tuple[float, ...]  # exact top probability at n = 0 .. max_distance, mean over the starts
    floor: float  # the largest stationary probability, where the curve ends
    n90: int  # the first n at which the curve has covered 90% of its fall from n = 1 to the floor
    n99: int  # the same for 99%
    p_star: float  # the bound's limit (Eq. 18) for the chain's tokens: blind to function words


@dataclass(frozen=True)
class TaskFalls:
    """Observation 2 on exact chains: every exponent, with and without function words."""

    V: int  # tokens of every chain
    max_distance: int  # the curves run over n = 0 .. max_distance
    starts: int  # starting tokens averaged over: ids 0 .. starts - 1
    seed: int  # of the torch generator of every chain's rankings
    rows: list[TaskFall]  # by exponent, then function words

    def floors(self, function_words: bool | None = None) -> list[float]:
        """The floors of the chains with function words (True), without (False) or all (None)."""
        return [r.floor for r in self.rows if function_words is None or bool(r.function_words) == function_words]

    def lowest_floor(self, function_words: bool | None = None) -> float:
        """The lowest floor among the chains selected as in ``floors``."""
        return min(self.floors(function_words))

    def highest_floor(self, function_words: bool | None = None) -> float:
        """The highest floor among the chains selected as in ``floors``."""
        return max(self.floors(function_words))

    def longest_fall(self, percent: int = 99, s_min: float = -math.inf, s_max: float = math.inf) -> int:
        """The largest n_90 (``percent=90``) or n_99 among the chains with s_min <= s <= s_max."""
        if percent not in (90, 99):
            raise ValueError(f"percent must be 90 or 99 (the falls measured); got {percent!r}")
        return max(r.n90 if percent == 90 else r.n99 for r in self.rows if s_min <= r.s <= s_max)


def fall_by_task(exponents: tuple[float, ...] = (1.05, 1.5, S_FIG3, 3.0), function_words: tuple[int, ...] = (0, 5),
                 V: int = 1000, max_distance: int = 50, starts: int = 100, seed: int = 1) -> TaskFalls:
    """The exact mean top-probability curve of a Zipf chain for every exponent and number of function words."""
    rows = []
    for s in exponents:
        for words in function_words:
            P = markov.zipf_chain(V, s, torch.Generator().manual_seed(seed), function_words=words)  # (V, V)
            curve = markov.top_probability_curve(P, max_distance, starts=torch.arange(starts))  # (n + 1,)
            floor = markov.stationary_distribution(P).max().item()
            rows.append(TaskFall(s, words, tuple(curve.tolist()), floor, markov.fall_distance(curve, floor, 0.9),
                                 markov.fall_distance(curve, floor, 0.99), zipf.bound_limit(s, V)))
    return TaskFalls(V, max_distance, starts, seed, rows)


# ----------------------------------------------------------------------------- Table 2 and the budget

@dataclass(frozen=True)
class Table2Row:
    r"""Table 2 at k masks decoded in parallel: the Eq. 17 bound with Metrics 1-3, and the paper's number."""

    k: int  # masks decoded in parallel
    p_bound: float  # \bar p_k, the Eq. 17 bound on the top probability of the k-th mask
    ppl_metric_1: float  # perplexity of the first k masks under Metric 1 (an upper bound on the joint)
    ppl_metric_2: float  # ... under Metric 2 (independent masks): the recomputed Table 2 column
    ppl_metric_3: float  # ... under Metric 3 (a lower bound on the joint); inf where it is 0
    printed: float  # the paper's printed PPL at k (its Metric 2): a reference, not computed here

    @property
    def printed_minus_metric_2(self) -> float:
        """The printed number less the recomputed one."""
        return self.printed - self.ppl_metric_2


@dataclass(frozen=True)
class Table2:
    """Table 2 recomputed from Eq. 17 beside the paper's printed column, and what each says about a budget."""

    s: float  # Zipf exponent
    N: int  # vocabulary size
    budget: float  # the perplexity budget of the paper's conclusion
    omega1: float  # 1 / H_{N,s}: the bound at the first mask
    omega2: float  # 2^(-s) / H_{N,s}
    harmonic: float  # H_{N,s}
    p_star: float  # the bound's limit (Eq. 18); \bar p_k decreases towards it from above
    rows: list[Table2Row]  # k = 1 .. len(PAPER_TABLE_2)
    implied: tuple[float, ...]  # p_k = J_k / J_(k-1) that the printed column implies, J_k = PPL_k^(-k)
    allowed: float  # the largest k with recomputed PPL_k <= budget (inf where 1/p* <= budget)
    allowed_printed: int  # the same from the printed column

    def row(self, k: int) -> Table2Row:
        """The row of k parallel samples."""
        return self.rows[k - 1]

    def implied_at(self, k: int) -> float:
        """The per-position probability the printed column implies at mask k."""
        return self.implied[k - 1]

    def largest_difference(self) -> float:
        """The largest difference between the printed and the recomputed perplexity, over k."""
        printed, recomputed = (np.array([getattr(r, name) for r in self.rows]) for name in ("printed", "ppl_metric_2"))
        return float(np.abs(printed - recomputed).max())

    def first_rise(self) -> int | None:
        """The first k at which the implied probabilities rise (p_k > p_(k-1)), which Eq. 17 never does."""
        rises = np.diff(self.implied) > 0
        return int(np.argmax(rises)) + 2 if rises.any() else None

    def first_below_p_star(self) -> int | None:
        """The first k at which an implied probability lies below p*, which Eq. 17 never gives."""
        below = np.array(self.implied) < self.p_star
        return int(np.argmax(below)) + 1 if below.any() else None


def table_2(s: float = S_TAB2, N: int = N_TAB2, budget: float = PPL_BUDGET) -> Table2:
    """Table 2 for k = 1 .. 8 at (s, N), by default the paper's settings."""
    ks = range(1, len(PAPER_TABLE_2) + 1)
    rows = [Table2Row(r.k, r.p_bound, r.ppl_metric_1, r.ppl_metric_2, r.ppl_metric_3, printed)
            for r, printed in zip(zipf.perplexity_table(s, N, ks), PAPER_TABLE_2, strict=True)]
    omega1, omega2 = zipf.omegas(s, N)
    implied = zipf.implied_probabilities(PAPER_TABLE_2)
    return Table2(s, N, budget, omega1, omega2, zipf.harmonic(s, N), zipf.bound_limit(s, N), rows,
                  tuple(implied.tolist()), zipf.max_parallel_samples(budget, s, N),
                  zipf.largest_within_budget(PAPER_TABLE_2, budget))


@dataclass(frozen=True)
class AllowedK:
    """The budget's answer at one exponent."""

    s: float  # Zipf exponent
    k: float  # the largest k with PPL_k <= budget (Eq. 17 + Metric 2); inf where 1/p* <= budget


@dataclass(frozen=True)
class AllowedKScan:
    """The largest number of parallel samples within a perplexity budget, as a function of s."""

    N: int  # vocabulary size
    budget: float  # the perplexity budget
    rows: list[AllowedK]  # by increasing s

    def exponents_allowing(self, k: float) -> list[float]:
        """The exponents at which the budget allows exactly k samples."""
        return [r.s for r in self.rows if r.k == k]

    def last_exponent_allowing_at_most(self, k: float) -> float:
        """The largest exponent at which the budget allows at most k samples."""
        return max(r.s for r in self.rows if r.k <= k)

    def unlimited_from(self) -> float:
        """The smallest exponent from which the budget allows any number of samples (1/p* <= budget)."""
        return min(r.s for r in self.rows if r.k == math.inf)

    def finite_beyond(self, k: float) -> list[AllowedK]:
        """The rows above the last exponent that allows exactly k and below ``unlimited_from``."""
        return [r for r in self.rows if max(self.exponents_allowing(k)) < r.s < self.unlimited_from()]


def allowed_k_scan(exponents: tuple[float, ...] = SCAN_EXPONENTS, N: int = N_TAB2,
                   budget: float = PPL_BUDGET) -> AllowedKScan:
    """``zipf.max_parallel_samples`` at every exponent."""
    return AllowedKScan(N, budget, [AllowedK(s, zipf.max_parallel_samples(budget, s, N)) for s in exponents])


# --- everything the chapter measures, as one result -----------------------------------------------

@dataclass(frozen=True)
class Config:
    """The paper's settings the chapter computes at."""

    figure_3: tuple[float, int] = (S_FIG3, N_FIG3)  # Figure 3: Zipf exponent s and vocabulary size N
    table_2: tuple[float, int] = (S_TAB2, N_TAB2)  # Table 2: s and N
    ppl_budget: float = PPL_BUDGET  # the perplexity budget of the paper's conclusion


@dataclass(frozen=True)
class Findings:
    """Every record the chapter shows, each computed by its function with the chapter's settings."""

    counterexample: Counterexample  # Eq. 16 does not follow from Assumptions 3-4
    random_languages: RandomLanguages  # how often random languages break Eq. 17
    bound_curve: BoundCurve  # Eq. 17 and its limit p* (Eq. 18) at Figure 3's settings
    exact_chain: ExactChain  # the exact top probability of a Zipf chain against the bound
    fall_by_task: TaskFalls  # Observation 2: how far and how low the exact curves fall
    table_2: Table2  # Table 2 recomputed beside the paper's printed column
    allowed_k_scan: AllowedKScan  # the allowed number of parallel samples against s


@dataclass(frozen=True)
class DistanceBoundResult(ExperimentResult):
    """The distance-bound chapter's exact computations as one result (``run``)."""

    EXPERIMENT = "distance_bound"
    config: Config
    metrics: Findings
    curves: None  # nothing is trained: no curves


def run(scale: str = "exact", device=None, seed: int = 0, progress: bool = False) -> DistanceBoundResult:
    """Every record of the chapter at the paper's settings (exact: no training, no sampling noise;
    ``device``, ``seed`` and ``progress`` are accepted for a uniform call and not used)."""
    if scale != "exact":
        raise ValueError(f"scale must be 'exact' (the computations are exact); got {scale!r}")
    started = time.time()
    findings = Findings(counterexample(), random_languages(), bound_curve(), exact_chain(), fall_by_task(), table_2(),
                        allowed_k_scan())
    return DistanceBoundResult(scale, seed, Config(), findings, None,
                               Environment.now(torch.device("cpu"), started))
