"""Languages with known ground truth: Markov chains whose rows follow Zipf's law.

Book chapter "The distance bound" (paper Section 3.2.3, Assumptions 3-4). An order-1 chain
over V tokens in which every row, sorted, is Zipf(s) over V tokens (Assumption 3), and the
most probable successor differs for every previous token (Assumption 4). A first-order chain
also has the book's Assumption H (history-free peaks), under which the paper's bound (Eq. 17) is a
theorem; the true marginal of a [MASK] n positions after an unmasked token is a row of the n-th
power of the transition matrix, so the bound can be compared with exact values.

Everything is float64 torch; randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import torch

from ._checks import check_number, check_positive_int
from .zipf import zipf_pmf


def zipf_chain(vocab_size: int, s: float, generator: torch.Generator | None = None,
               function_words: int = 0) -> torch.Tensor:
    r"""A transition matrix P (V, V), :math:`P[i, j] = P(\text{next} = j \mid \text{previous} = i)`, meeting
    Assumptions 3-4.

    Row i puts the Zipf probabilities :math:`r^{-s} / H_{V,s}` on a ranking of the tokens: its favourite
    (rank 1) comes from a random permutation, so no token is the most probable successor of two
    tokens; the other ranks are random.

    Args:
        vocab_size: V, the number of tokens.
        s: the Zipf exponent of every row.
        generator: the source of the random rankings.
        function_words: tokens :math:`0, \dots, f - 1` take ranks :math:`2, \dots, f + 1` (after the row's
            favourite) in every row, like "the" and "," in English: each then carries a large stationary
            mass. The rows stay Zipf and the favourites a permutation, so Assumptions 3-4 still hold.
    """
    check_positive_int("vocab_size", vocab_size, minimum=2)
    check_number("function_words", function_words, integer=True, at_least=0, below=vocab_size,
                 meaning=f"fewer than vocab_size = {vocab_size}")
    pmf = torch.as_tensor(zipf_pmf(s, vocab_size))  # (V,) probabilities by rank
    tops = torch.randperm(vocab_size, generator=generator)  # (V,) favourite successor of each token
    P = torch.empty(vocab_size, vocab_size, dtype=torch.float64)
    for i in range(vocab_size):
        top = int(tops[i])
        common = [w for w in range(function_words) if w != top]  # function words, in order
        rest = torch.tensor([j for j in range(vocab_size) if j != top and j >= function_words], dtype=torch.long)
        rest = rest[torch.randperm(len(rest), generator=generator)]
        ranking = torch.cat([torch.tensor([top, *common], dtype=torch.long), rest])  # (V,)
        P[i, ranking] = pmf
    return P


def with_end_of_text(P: torch.Tensor, eos_id: int) -> torch.Tensor:
    """A copy of P in which token ``eos_id`` is an end-of-text token: once emitted it repeats
    for ever (its row is a point mass on itself), as padding after the end of a document does.

    The chain becomes absorbing: far from the prompt every position is end-of-text, so the top
    probability of a far [MASK] rises back towards 1 (the paper's Observation 1). The EOS row is
    not Zipf, so Assumption 3 no longer holds for it.
    """
    _check_transition(P)
    check_number("eos_id", eos_id, integer=True, at_least=0, at_most=P.shape[0] - 1, meaning="a token id")
    Q = P.clone()
    Q[eos_id] = 0.0
    Q[eos_id, eos_id] = 1.0
    return Q


def _check_transition(P: torch.Tensor) -> None:
    if not isinstance(P, torch.Tensor) or P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 2:
        raise ValueError(f"P must be a square transition matrix (V, V) with V >= 2; "
                         f"got {tuple(getattr(P, 'shape', ()))}")
    if (P < 0).any() or not torch.allclose(P.sum(-1), torch.ones(P.shape[0], dtype=P.dtype), atol=1e-9):
        raise ValueError("P must have non-negative rows that sum to 1")


def check_assumption_3(P: torch.Tensor, s: float, atol: float = 1e-12) -> bool:
    """True when every row of P, sorted, is the Zipf(s) pmf over V tokens."""
    expected = torch.as_tensor(zipf_pmf(s, P.shape[0]), dtype=P.dtype)
    return bool(((P.sort(-1, descending=True).values - expected).abs() <= atol).all())


def chain_distance_bound(P: torch.Tensor, s: float, max_distance: int) -> torch.Tensor:
    r"""The paper's bound (Eq. 17) on the top probability at distances :math:`0, \dots, \mathtt{max\_distance}`,
    for a chain that meets its assumptions; a chain that does not (rows not Zipf(s), or a token that is the
    favourite of two tokens) is refused, since the bound is not claimed for it."""
    from .zipf import top_probability_bound

    _check_transition(P)
    if not check_assumption_3(P, s):
        raise ValueError(f"P breaks Assumption 3: its rows are not Zipf(s = {s}) over V = {P.shape[0]} tokens")
    if not check_assumption_4(P):
        raise ValueError("P breaks Assumption 4: some token is the most probable successor of two tokens")
    return torch.as_tensor(top_probability_bound(range(max_distance + 1), s, P.shape[0]))


def check_assumption_4(P: torch.Tensor) -> bool:
    """True when every token is the strict most probable successor of at most one token."""
    top = P.argmax(-1)  # (V,)
    return len(torch.unique(top)) == len(top)


def distance_marginals(P: torch.Tensor, start: torch.Tensor, max_distance: int) -> torch.Tensor:
    r"""The exact distribution of the token n positions after a token drawn from ``start``, for
    :math:`n = 0, \dots, \mathtt{max\_distance}`: row n is :math:`\mathtt{start}\, P^n`. ``start`` is one
    distribution (V,), giving
    (max_distance + 1, V), or a batch (S, V), giving (max_distance + 1, S, V).

    With a one-hot ``start`` this is the true marginal of a [MASK] at distance n from an unmasked
    token when everything after it is masked (Assumptions 1-2).
    """
    check_positive_int("max_distance", max_distance, minimum=0)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or start.ndim not in (1, 2) or start.shape[-1] != P.shape[0]:
        raise ValueError(f"P must be square (V, V) and start of shape (V,) or (S, V); got {tuple(P.shape)} "
                         f"and {tuple(start.shape)}")
    rows = [start.double()]
    for _ in range(max_distance):
        rows.append(rows[-1] @ P)  # (V,) or (S, V)
    return torch.stack(rows)  # (n + 1, V) or (n + 1, S, V)


def top_probability_curve(P: torch.Tensor, max_distance: int, starts: torch.Tensor | None = None) -> torch.Tensor:
    r"""The exact top probability :math:`\max_v P(x_n = v \mid x_0)` for :math:`n = 0, \dots, \mathtt{max\_distance}`,
    averaged over the starting tokens ``starts`` (token ids, default all V): (max_distance + 1,)."""
    _check_transition(P)
    starts = torch.arange(P.shape[0]) if starts is None else torch.as_tensor(starts)
    one_hot = torch.eye(P.shape[0], dtype=torch.float64)[starts]  # (S, V)
    return distance_marginals(P.double(), one_hot, max_distance).max(-1).values.mean(-1)  # (n + 1,)


def fall_distance(curve, floor: float, fraction: float) -> int:
    r"""The first distance :math:`n \ge 1` at which a top-probability curve (:math:`n = 0, 1, \dots`) has covered
    ``fraction`` of its fall from :math:`n = 1` to ``floor``:
    :math:`\mathtt{curve}[n] - \mathtt{floor} \le (1 - \mathtt{fraction})\, (\mathtt{curve}[1] - \mathtt{floor})`.
    Raises if the curve given is too short to get there."""
    check_number("fraction", fraction, above=0, below=1, meaning="the share of the fall")
    curve = torch.as_tensor(curve, dtype=torch.float64)
    if curve.ndim != 1 or len(curve) < 2:
        raise ValueError(f"curve must be a 1-d sequence over n = 0, 1, ... with at least 2 entries; "
                         f"got {tuple(curve.shape)}")
    left = curve[1:] - floor <= (1 - fraction) * (curve[1] - floor)  # (n_max,)
    if not left.any():
        raise ValueError(f"the curve does not cover {fraction} of its fall within n <= {len(curve) - 1}; "
                         f"give a longer curve")
    return int(left.nonzero()[0]) + 1


def stationary_distribution(P: torch.Tensor, tol: float = 1e-14, max_iter: int = 100_000) -> torch.Tensor:
    r"""The stationary distribution :math:`\pi = \pi P` of an irreducible aperiodic chain, by power iteration (V,)."""
    pi = torch.full((P.shape[0],), 1.0 / P.shape[0], dtype=torch.float64)
    for _ in range(max_iter):
        nxt = pi @ P
        if (nxt - pi).abs().max() < tol:
            return nxt
        pi = nxt
    raise ValueError(f"power iteration did not converge in max_iter = {max_iter} steps; raise max_iter")


def decay_rate(P: torch.Tensor) -> float:
    r"""The second-largest eigenvalue modulus of P, :math:`|\lambda_2|`: the distance from the
    stationary distribution shrinks roughly like :math:`|\lambda_2|^n`."""
    _check_transition(P)
    moduli = torch.linalg.eigvals(P).abs().sort(descending=True).values  # (V,)
    return float(moduli[1])


def sample_sequences(P: torch.Tensor, num: int, length: int, generator: torch.Generator | None = None,
                     initial: torch.Tensor | None = None) -> torch.Tensor:
    """Draw ``num`` sequences of ``length`` tokens from the chain: (num, length).

    The first token comes from ``initial`` (V,) (default: the stationary distribution). The draws
    are made on the generator's device (a CUDA generator samples on the GPU); the result is on P's."""
    _check_transition(P)
    check_positive_int("num", num)
    check_positive_int("length", length)
    initial = stationary_distribution(P) if initial is None else initial.double()
    where = generator.device if generator is not None else P.device
    rows, initial = P.to(where), initial.to(where)
    x = torch.empty(num, length, dtype=torch.long, device=where)
    x[:, 0] = torch.multinomial(initial.expand(num, -1), 1, generator=generator).squeeze(-1)
    for i in range(1, length):
        x[:, i] = torch.multinomial(rows[x[:, i - 1]], 1, generator=generator).squeeze(-1)  # (num,)
    return x.to(P.device)


def sequence_log_prob(P: torch.Tensor, x: torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
    r"""Exact log-probability of sequences x (B, L) under the chain: (B,).

    Without ``initial`` the first token is taken as given (the prompt), so the result is
    :math:`\log P(x_2, \dots, x_L \mid x_1)`; with it, :math:`\log \mathtt{initial}[x_1]` is added."""
    _check_transition(P)
    if x.ndim != 2 or x.numel() == 0 or x.min() < 0 or x.max() >= P.shape[0]:
        raise ValueError(f"x must be token ids in [0, {P.shape[0] - 1}] of shape (B, L)")
    x = x.to(P.device)  # tokens decoded on a GPU are scored where P is
    log_p = torch.log(P[x[:, :-1], x[:, 1:]]).sum(-1)  # (B,)
    if initial is not None:
        log_p = log_p + torch.log(initial.double().to(P.device)[x[:, 0]])
    return log_p


class ChainDenoiser:
    r"""The exact denoiser of a Markov chain language: callable ``x_t (B, L) -> logits (B, L, V + 1)``
    with the mask at id V.

    By the Markov property only the nearest unmasked neighbours of a masked position i matter:
    with the left one token a at distance :math:`d_l` and the right one token b at distance :math:`d_r`,

    .. math::

       p(x_i = v \mid x_t) \propto (P^{d_l})_{a v}\, (P^{d_r})_{v b}

    where a missing left neighbour is replaced by the distribution of :math:`x_i` itself,
    :math:`(\pi_0 P^i)_v` for the initial distribution :math:`\pi_0`, and a missing right one by 1.

    A context the chain cannot produce (for instance a token after end-of-text, reached when
    several tokens are decoded at once) has probability 0, and the conditional is undefined
    there. This denoiser then uses the book's convention of conditioning on the left neighbour
    alone, :math:`(P^{d_l})_{a v}`, so that a decoder can finish the sequence; the sequence itself has
    probability 0 whatever follows.

    It computes on the device of its input (its tables are copied there once, in float64), and
    returns logits there: decoding on a GPU keeps every tensor on the GPU.
    """

    def __init__(self, P: torch.Tensor, max_len: int, initial: torch.Tensor | None = None):
        _check_transition(P)
        check_positive_int("max_len", max_len)
        self.P = P.double()
        self.vocab_size = P.shape[0]  # V data tokens
        self.mask_id = self.vocab_size  # the mask is id V
        self.max_len = max_len
        self.initial = stationary_distribution(self.P) if initial is None else initial.double()
        powers = [torch.eye(self.vocab_size, dtype=torch.float64)]
        for _ in range(max_len):
            powers.append(powers[-1] @ self.P)
        self.powers = torch.stack(powers)  # (max_len + 1, V, V): P^0 .. P^max_len
        self.position_marginals = self.initial @ self.powers[:max_len]  # (max_len, V): law of x_i
        self._tables = {self.powers.device: (self.powers, self.position_marginals)}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The powers and position marginals on ``device`` (copied from the CPU ones once)."""
        if device not in self._tables:
            self._tables[device] = (self.powers.to(device), self.position_marginals.to(device))
        return self._tables[device]

    def conditional_probs(self, x_t: torch.Tensor) -> torch.Tensor:
        r""":math:`p(x_i = v \mid \text{unmasked tokens of } x_t)` for every position: (B, L, V + 1), float64."""
        if x_t.ndim != 2 or x_t.shape[1] > self.max_len:
            raise ValueError(f"x_t must have shape (B, L) with L <= max_len = {self.max_len}; got {tuple(x_t.shape)}")
        if x_t.numel() and (x_t.min() < 0 or x_t.max() > self.mask_id):
            raise ValueError(f"x_t holds ids outside [0, {self.mask_id}] (tokens 0..{self.vocab_size - 1}, "
                             f"mask {self.mask_id})")
        B, L = x_t.shape
        powers, position_marginals = self._on(x_t.device)
        pos = torch.arange(L, device=x_t.device).expand(B, L)  # (B, L)
        known = x_t != self.mask_id  # (B, L)
        left = torch.where(known, pos, -1).cummax(-1).values  # (B, L) nearest unmasked at or before i
        right = torch.where(known, pos, L).flip(-1).cummin(-1).values.flip(-1)  # (B, L) at or after i
        tokens = x_t.clamp(max=self.vocab_size - 1)
        left_tok = tokens.gather(-1, left.clamp(min=0))  # (B, L)
        right_tok = tokens.gather(-1, right.clamp(max=L - 1))  # (B, L)
        from_left = torch.where((left >= 0).unsqueeze(-1), powers[(pos - left).clamp(max=self.max_len), left_tok],
                                position_marginals[pos])  # (B, L, V)
        to_right = torch.where((right < L).unsqueeze(-1), powers[(right - pos).clamp(min=0), :, right_tok],
                               torch.ones((), dtype=torch.float64, device=x_t.device))  # (B, L, V)
        # p(x_i = v | x_t) ∝ (P^(d_l))[a, v] (P^(d_r))[v, b]     [eq-chain-oracle]
        probs = from_left * to_right  # (B, L, V)
        # Where the two neighbours cannot both occur (the context has probability 0 and the
        # conditional is undefined), condition on the left neighbour alone: the chain's own direction.
        impossible = probs.sum(-1, keepdim=True) == 0  # (B, L, 1)
        probs = torch.where(impossible, from_left, probs)
        probs = probs / probs.sum(-1, keepdim=True)
        return torch.cat([probs, torch.zeros(B, L, 1, dtype=torch.float64, device=x_t.device)], dim=-1)  # (B, L, V + 1)

    def __call__(self, x_t: torch.Tensor) -> torch.Tensor:
        return torch.log(self.conditional_probs(x_t))
