"""Every decoder of the book, each a preset of the one unmasking loop (``decoding.unmask``).

Book chapters "Joint versus marginal", "Parallel sampling", "Generation order" and "Blocks"
(paper Sections 3.2.2-3.4). Each function below says only what differs from the loop: the
score, how many positions a step commits, the blocks, how the logits are read. All take any
denoiser callable ``x (B, L) -> logits (B, L, V)`` and the mask id, and return a
``decoding.Decoded``. The block-causal decoder with a KV cache, which takes a model rather than a
callable, is ``block_causal.generate_block_causal``; it shares ``generate``'s schedule and checks
(``check_generation``).

============================== ============================ ==================== =================
decoder                        score                        per step             blocks
============================== ============================ ==================== =================
``sample_all_at_once``         (any)                        every mask           one
``sample_one_at_a_time``       ``random_score``             1                    one
``sample_left_to_right``       ``leftmost``                 k                    one
``generate``                   ``confidence`` (or any)      k, LLaDA steps,      semi-AR blocks
                                                            or a threshold
``block_causal.``              ``confidence`` (or any)      as ``generate``      blocks, block-causal
``generate_block_causal``                                                        model, KV cache
``sample_partial_random_init`` ``leftmost``                 k                    one; random tokens
                                                                                 in view (Section 3.3)
``sample_with_remasking``      ``leftmost``                 a linear schedule    one; decoded tokens
                                                                                 masked again (ReMDM)
============================== ============================ ==================== =================

Two decoders are not unmasking loops and are written out here: ``beam_search`` (the most probable
completion under the model's own left-to-right conditionals) and
``sample_gibbs_from_random_start`` (random-scan Gibbs from random tokens).

What every decoder promises, whatever the denoiser does: no output holds the mask or an id
outside the model's vocabulary (logits that give no distribution where a token must be drawn
are refused, naming the row and position); the denoiser reads a copy of the tokens, so editing
its input in place changes nothing; its logits are checked at every call (shape, a
floating-point dtype, the device of the tokens; ``vocab_size``, where a decoder takes one, is
compared with their last dimension). Decoders move no tensor between devices: the denoiser is
given tokens on the device of ``x`` (or ``prompt``) and must return its logits there.
"""

from __future__ import annotations

import collections
import numbers
from typing import NamedTuple

import torch

from ._checks import NO_DISTRIBUTION, check_mask_id, check_number, check_positive_int, check_tokens
from .clean_distribution import clean_log_probs
from .decoding import (
    Count,
    Decoded,
    DenoiserReader,
    check_score,
    confidence,
    draw,
    leftmost,
    random_score,
    transfer_counts,
    uniform,
    unmask,
)

# --- what every decoder checks where a caller passes it ------------------------------------------

def _check_sequences(name: str, x, mask_id, vocab_size: int | None = None, allow_mask: bool = True) -> None:
    """x must be token ids (B, L), in the vocabulary where it is known and without the mask where
    ``allow_mask`` is False, and mask_id a non-negative int (``check_tokens``)."""
    check_tokens(name, x, vocab_size, mask_id, allow_mask)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (B, L); got {tuple(x.shape)}")


def _temperature(temperature) -> float:
    """``temperature`` as a float, if it is a finite number >= 0."""
    return float(check_number("temperature", temperature, at_least=0, meaning="0: the argmax"))


# --- one block over the whole sequence -------------------------------------------------------------

def sample_all_at_once(denoiser, x: torch.Tensor, mask_id: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0) -> Decoded:
    """Fill every mask of x (B, L) from one denoiser call: each mask independently from its own
    marginal (its argmax at temperature 0). The result follows the product of the marginals, not
    their joint (Section 3.2.2)."""
    _check_sequences("x", x, mask_id)
    return unmask(DenoiserReader(denoiser, mask_id), x, mask_id, [(0, x.shape[1])], count=max(x.shape[1], 1),
                  score=leftmost, temperature=_temperature(temperature), generator=generator)


def sample_one_at_a_time(denoiser, x: torch.Tensor, mask_id: int, generator: torch.Generator | None = None,
                         temperature: float = 1.0) -> Decoded:
    """Fill the masks of x (B, L) one per denoiser call, each drawn from its conditional given
    everything decoded so far, the position chosen uniformly at random among the masks left:
    ancestral sampling in a random order (the limit of many small diffusion steps). For left to
    right, use ``sample_left_to_right(..., tokens_per_step=1)``.

    With an exact denoiser at temperature 1 this samples the true joint of the masked positions
    (chain rule)."""
    _check_sequences("x", x, mask_id)
    return unmask(DenoiserReader(denoiser, mask_id), x, mask_id, [(0, x.shape[1])], count=1,
                  score=random_score, temperature=_temperature(temperature), generator=generator)


def sample_left_to_right(denoiser, x: torch.Tensor, mask_id: int, tokens_per_step: int = 1,
                         generator: torch.Generator | None = None, temperature: float = 1.0) -> Decoded:
    r"""Fill the masks of x (B, L) from left to right, ``tokens_per_step`` at a time: each step
    decodes the leftmost k masks together, each from its own marginal (Section 3.3's parallel
    sampling). :math:`k = 1` is autoregressive decoding; :math:`k \ge` the number of masks is all at once.
    The last step of a sequence may decode fewer than k."""
    _check_sequences("x", x, mask_id)
    check_positive_int("tokens_per_step", tokens_per_step)
    return unmask(DenoiserReader(denoiser, mask_id), x, mask_id, [(0, x.shape[1])],
                  count=tokens_per_step, score=leftmost, temperature=_temperature(temperature),
                  generator=generator)


# --- confidence-ordered decoding in semi-autoregressive blocks -------------------------------------

def _schedule(gen_length: int, block_length: int | None, tokens_per_step: int | None, threshold: float | None,
              steps: int | None):
    """Check a generation schedule; return (block_length, count or None, threshold or None)."""
    check_positive_int("gen_length", gen_length)
    block_length = gen_length if block_length is None else check_positive_int("block_length", block_length)
    if gen_length % block_length:
        raise ValueError(f"gen_length ({gen_length}) must be divisible by block_length ({block_length})")
    given = [name for name, value in (("tokens_per_step", tokens_per_step), ("threshold", threshold),
                                      ("steps", steps)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of tokens_per_step (k per step), threshold and steps; got {given}")
    if threshold is not None:
        return block_length, None, float(check_number("threshold", threshold, above=0, at_most=1,
                                                      meaning="a score to reach"))
    if steps is not None:
        return block_length, _llada_steps(steps, gen_length // block_length, gen_length), None
    k = 1 if tokens_per_step is None else check_positive_int("tokens_per_step", tokens_per_step)
    if k > block_length:
        raise ValueError(f"tokens_per_step ({k}) must not exceed the masks of a block (block_length = {block_length})")
    return block_length, k, None


def _llada_steps(steps: int, blocks: int, gen_length: int):
    """LLaDA's ``steps`` as a ``count``: steps / blocks calls per block, each committing the same
    number of the block's masks, the remainder over its first calls (``transfer_counts``)."""
    check_positive_int("steps", steps)
    if steps % blocks or not blocks <= steps <= gen_length:
        raise ValueError(f"steps ({steps}) must be a multiple of the number of blocks ({blocks}) and at most "
                         f"gen_length ({gen_length}), so that every step of every block decodes a token")
    per_block = steps // blocks
    return lambda i, open_, masks: transfer_counts(masks, per_block)[:, i]


class Generation(NamedTuple):
    """A generation request whose arguments were checked: what ``generate`` and
    ``block_causal.generate_block_causal`` hand the loop."""

    x: torch.Tensor  # (B, P + G) the prompt, then G masks
    blocks: list[tuple[int, int]]  # the blocks [start, end) of the G generated positions, decoded in turn
    block_length: int  # G where no block_length was given: one block
    count: Count | None  # positions committed per step: k, or LLaDA's step schedule; None with a threshold
    threshold: float | None  # the score that commits a position (Fast-dLLM); None with a count
    temperature: float  # 0: the argmax


def check_generation(prompt: torch.Tensor, gen_length: int, mask_id: int, *, score, tokens_per_step: int | None,
                     threshold: float | None, steps: int | None, block_length: int | None, temperature: float,
                     vocab_size: int | None = None) -> Generation:
    """Check the arguments that ``generate`` and ``block_causal.generate_block_causal`` share, in
    that order: the schedule, ``prompt`` (token ids (B, P) without the mask, in [0, ``vocab_size``)
    where it is known), ``score``, ``temperature``; return them as the loop takes them."""
    block_length, count, threshold = _schedule(gen_length, block_length, tokens_per_step, threshold, steps)
    _check_sequences("prompt", prompt, mask_id, vocab_size, allow_mask=False)
    check_score(score)
    temperature = _temperature(temperature)
    masks = torch.full((prompt.shape[0], gen_length), mask_id, dtype=prompt.dtype, device=prompt.device)
    x = torch.cat([prompt, masks], dim=1)  # (B, P + G)
    P = prompt.shape[1]
    blocks = [(start, start + block_length) for start in range(P, P + gen_length, block_length)]
    return Generation(x, blocks, block_length, count, threshold, temperature)


def generate(denoiser, prompt: torch.Tensor, gen_length: int, mask_id: int, *, score=confidence,
             tokens_per_step: int | None = None, threshold: float | None = None, steps: int | None = None,
             block_length: int | None = None, temperature: float = 0.0,
             generator: torch.Generator | None = None) -> Decoded:
    r"""Generate ``gen_length`` tokens after ``prompt`` (B, P) by score-ordered decoding: LLaDA's
    ``generate()``, Fast-dLLM's threshold, Dream's margin and entropy orders.

    Each step reads the whole sequence (attention stays bidirectional), draws a token at every
    mask, and commits the best-scored masks of the current block; the others stay masked (this
    is what LLaDA calls low-confidence remasking).

    Args:
        denoiser: callable x (B, L) -> logits (B, L, V).
        prompt: token ids (B, P) without the mask; P may be 0.
        gen_length: number of tokens to generate.
        mask_id: the mask token.
        score: ranks the masks, surest first: ``decoding.confidence`` (clean distribution),
            ``decoding.confidence_with_mask`` (LLaDA's full softmax), ``margin``,
            ``negative_entropy``, ``random_score``, or any function of the same form.
        tokens_per_step: positions committed per denoiser call (k; 1 when no schedule is given).
        threshold: commit every mask whose score reaches it, in (0, 1], and at least the best.
        steps: LLaDA's ``steps``: the total number of denoiser calls, a multiple of the number of
            blocks; each block gets steps / blocks calls, each committing the same number of
            masks, the remainder spread over its first calls. At most one of ``tokens_per_step``,
            ``threshold`` and ``steps``.
        block_length: semi-AR block size, dividing ``gen_length``; positions of later blocks are
            not committed before the current block is full. None: one block.
        temperature: 0 takes each position's argmax (LLaDA's default); :math:`T > 0` samples from
            :math:`\mathrm{softmax}(\log p / T)` with float64 Gumbel noise, without overflow however
            small T is (``decoding.draw``).
        generator: the random stream for sampling and ``random_score``.

    With ``score=confidence_with_mask`` and ``steps`` this is LLaDA's ``generate()`` (without
    classifier-free guidance) token for token, at any temperature with the same noise, except
    that a position whose argmax is the mask token gets the best clean token instead of the mask.

    Returns ``Decoded`` with the tokens (B, P + gen_length), the number of denoiser calls, the step
    at which each position was decoded (``order``, -1 for the prompt) and its score then
    (``confidence``, NaN for the prompt).
    """
    plan = check_generation(prompt, gen_length, mask_id, score=score, tokens_per_step=tokens_per_step,
                            threshold=threshold, steps=steps, block_length=block_length, temperature=temperature)
    return unmask(DenoiserReader(denoiser, mask_id), plan.x, mask_id, plan.blocks, count=plan.count,
                  threshold=plan.threshold, score=score, temperature=plan.temperature, generator=generator,
                  name="prompt")


# --- what the denoiser sees, changed: the paper's random initialisation ----------------------------

def random_tokens(shape, vocab_size: int, mask_id: int, generator, device) -> torch.Tensor:
    """Tokens drawn uniformly from the ``vocab_size`` ids other than the mask: (shape). Every id is
    in [0, vocab_size) and none is ``mask_id``, which must be one of them."""
    check_positive_int("vocab_size", vocab_size, minimum=2)
    check_mask_id(mask_id, vocab_size)
    return _random_tokens(shape, vocab_size, mask_id, generator, device)


def _random_tokens(shape, vocab_size: int, mask_id: int, generator, device) -> torch.Tensor:
    """``random_tokens`` for a ``vocab_size`` and ``mask_id`` checked where they entered."""
    start = (uniform(shape, generator, device) * (vocab_size - 1)).long()  # in [0, V - 1)
    return start + (start >= mask_id).long()  # skip the mask id


def sample_partial_random_init(denoiser, x: torch.Tensor, mask_id: int, vocab_size: int, init_fraction: float,
                               tokens_per_step: int = 1, generator: torch.Generator | None = None,
                               temperature: float = 1.0) -> Decoded:
    r"""The SEDD-inspired random initialisation of Section 3.3, as the paper describes it.

    Each step (one denoiser call) of decoding x (B, L):

    1. of the masks still open, a share ``init_fraction``
       (:math:`\lfloor \mathtt{init\_fraction} \cdot \text{masks left} \rfloor`, chosen uniformly at random)
       is filled with tokens drawn uniformly from the ``vocab_size`` ids other than the mask: the sparse
       random signals;
    2. the denoiser reads the sequence with these tokens in place, and the leftmost
       ``tokens_per_step`` of the masks that were *not* initialised are decoded, each from its own
       marginal given everything it sees (fewer when fewer are left);
    3. the initialised positions become masks again: their random tokens never reach the output.

    This repeats until every mask is filled. With ``init_fraction = 0`` it is
    ``sample_left_to_right`` with the same ``tokens_per_step``, draw for draw from the same
    generator. As the initialised share is left out of each step, the last steps may decode fewer
    than ``tokens_per_step`` masks, so the number of calls can exceed :math:`\lceil \text{masks} / k \rceil`.

    Args:
        vocab_size: number of ids the denoiser's logits cover, the mask included; compared with
            the logits of every call, a mismatch refused naming both.
        init_fraction: the share of open masks initialised at random in each step, in [0, 1).
        tokens_per_step: masks decoded per denoiser call (at most).
    """
    check_positive_int("vocab_size", vocab_size, minimum=2)
    _check_sequences("x", x, mask_id, vocab_size)
    check_number("init_fraction", init_fraction, at_least=0, below=1,
                 meaning="the share of open masks initialised at random each step")
    check_positive_int("tokens_per_step", tokens_per_step)
    temperature = _temperature(temperature)

    def view(tokens, open_, generator):
        if init_fraction == 0:
            return tokens, open_
        count = (init_fraction * open_.sum(-1, keepdim=True).double()).floor().long()  # (B, 1) < masks left
        priority = torch.where(open_, uniform(open_.shape, generator, open_.device), 2.0)  # (B, L)
        initialised = open_ & (priority.argsort(-1).argsort(-1) < count)  # (B, L) a random share of the masks
        noise = _random_tokens(open_.shape, vocab_size, mask_id, generator, open_.device)
        return torch.where(initialised, noise, tokens), open_ & ~initialised

    return unmask(DenoiserReader(denoiser, mask_id, vocab_size), x, mask_id, [(0, x.shape[1])],
                  count=tokens_per_step, score=leftmost, temperature=temperature, generator=generator, view=view)


# --- decoded tokens masked again: remasking in the ReMDM sense -------------------------------------

def sample_with_remasking(denoiser, x: torch.Tensor, mask_id: int, steps: int, eta: float,
                          generator: torch.Generator | None = None, temperature: float = 1.0) -> Decoded:
    r"""Fill the masks of x (B, L) in exactly ``steps`` denoiser calls, remasking as it goes: the
    book's minimal version of ReMDM (Wang et al., 2025), named "left-to-right remasking" to keep
    it apart from ReMDM's own samplers, for claim 10 (Section 3.3).

    With N masks in a sequence, step i (:math:`i = 0, \dots, \mathtt{steps} - 1`) leaves
    :math:`\lfloor N (\mathtt{steps} - i - 1) / \mathtt{steps} \rfloor` of them masked: a linear schedule that
    ends with none. Each step makes one denoiser call on the current sequence; then

    - each token decoded in an earlier step is masked again with probability ``eta``
      (independently; if more are drawn than the masks the schedule leaves after this step, those
      with the smallest draws are kept): ReMDM's constant ("cap") schedule, and
    - the leftmost masks are decoded, each from its own marginal, as many as the schedule asks
      plus one for each token remasked in this step.

    A remasked token is decoded again in a later call, from what the denoiser sees then. The last
    step remasks nothing, so every mask is filled. With ``eta = 0`` and ``steps = N / k`` this is
    ``sample_left_to_right`` with k tokens per step, draw for draw from the same generator.

    Args:
        steps: denoiser calls (the NFE), fixed in advance; at most the fewest masks of a sequence,
            so that every call decodes at least one token.
        eta: probability of remasking each decoded token in each step, in [0, 1).

    ``order`` holds the last step that decoded each position (-1: given) and ``remasked`` (B,)
    how many times a decoded token was masked again.
    """
    _check_sequences("x", x, mask_id)
    check_positive_int("steps", steps)
    check_number("eta", eta, at_least=0, below=1, meaning="the probability of remasking a decoded token per step")
    total = (x == mask_id).sum(-1)  # (B,) N, the masks to fill
    fewest = int(total[total > 0].min()) if bool((total > 0).any()) else 0
    if steps > max(fewest, 1):
        raise ValueError(f"steps ({steps}) must not exceed the masks of any sequence (the fewest here: {fewest}): "
                         f"with more calls than masks, some calls would decode nothing")

    def left_after(i):  # (B,) masks the schedule leaves after step i
        return (total * (steps - i - 1)) // steps

    def remask(i, tokens, given, generator):
        if eta == 0:
            return torch.zeros_like(given)
        draws = uniform(tokens.shape, generator, tokens.device)  # (B, L)
        candidate = (tokens != mask_id) & ~given & (draws < eta)
        rank = torch.where(candidate, draws, 2.0).argsort(-1).argsort(-1)  # (B, L): 0 for the smallest draw
        return candidate & (rank < left_after(i).unsqueeze(-1))  # at most the masks left after this step

    return unmask(DenoiserReader(denoiser, mask_id), x, mask_id, [(0, x.shape[1])],
                  count=lambda i, open_, masks: open_.sum(-1) - left_after(i), score=leftmost,
                  temperature=_temperature(temperature), generator=generator, remask=remask)


# --- not unmasking loops ---------------------------------------------------------------------------

@torch.no_grad()
def beam_search(denoiser, x: torch.Tensor, mask_id: int, beam_width: int = 2,
                positions: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable completion of masks of one sequence x (1, L) under the model's own
    sequential conditionals, decoding them left to right and keeping the ``beam_width`` best
    partial sequences by sum of log-probabilities. Returns (tokens (1, L), log-probability ()).

    Args:
        positions: the masked positions to decode, each once, in any order (default: all); the
            others stay masked, so the score is the model's joint probability of just these
            positions given x.

    With ``beam_width = 1`` it is greedy left-to-right decoding. The denoiser reads a copy of the
    beams (``decoding.DenoiserReader``)."""
    _check_sequences("x", x, mask_id)
    check_positive_int("beam_width", beam_width)
    if x.shape[0] != 1:
        raise ValueError(f"x must hold one sequence, shape (1, L); got {tuple(x.shape)}")
    positions = _beam_positions(positions, (x[0] == mask_id).nonzero().flatten().tolist())
    read = DenoiserReader(denoiser, mask_id)
    beams, scores = x.clone(), torch.zeros(1, dtype=torch.float64, device=x.device)  # (K, L), (K,)
    for position in positions:
        logits, _ = read(beams, 0, x.shape[1])  # (K, L, V)
        if position == positions[0]:  # the model's vocabulary is known now
            check_tokens("x", x, logits.shape[-1], mask_id, allow_mask=True)
        log_probs = clean_log_probs(logits, mask_id)[:, position]  # (K, V)
        if torch.isnan(log_probs).any():
            raise ValueError(f"{NO_DISTRIBUTION} at position {position}")
        candidates = scores.unsqueeze(-1) + log_probs  # (K, V)
        best = candidates.flatten().topk(min(beam_width, int(torch.isfinite(candidates).sum())))
        parent, token = best.indices // log_probs.shape[-1], best.indices % log_probs.shape[-1]
        beams = beams[parent].clone()
        beams[:, position] = token
        scores = best.values
    return beams[:1], scores[0]


def _beam_positions(positions, masked: list[int]) -> list[int]:
    """``positions`` sorted, if they are ints naming masked positions of x (``masked``), each once;
    ``masked`` where they are None."""
    if positions is None:
        return masked
    positions = list(positions) if isinstance(positions, (list, tuple, range)) else positions
    if not isinstance(positions, list) or any(isinstance(p, bool) or not isinstance(p, numbers.Integral)
                                              for p in positions):
        raise ValueError(f"positions must be a list of ints, masked positions of x (a subset of {masked}); "
                         f"got {positions!r}")
    positions = sorted(int(p) for p in positions)
    if not set(positions) <= set(masked):
        raise ValueError(f"positions must be masked positions of x, a subset of {masked}; got {positions}")
    twice = sorted(p for p, n in collections.Counter(positions).items() if n > 1)
    if twice:
        raise ValueError(f"positions must name each masked position of x once; got {positions}, "
                         f"which repeats {twice}")
    return positions


@torch.no_grad()
def sample_gibbs_from_random_start(denoiser, x: torch.Tensor, mask_id: int, vocab_size: int, steps: int,
                                   tokens_per_step: int = 1, generator: torch.Generator | None = None) -> Decoded:
    """Random-scan Gibbs from a random start: a relative of Section 3.3's SEDD-inspired random
    initialisation that this book adds (the paper's own strategy is
    ``sample_partial_random_init``).

    Every mask of x (B, L) starts as a token drawn uniformly from the ``vocab_size`` ids other
    than the mask, as a uniform-noise diffusion (SEDD) starts from random text. Each of ``steps``
    denoiser calls re-masks ``tokens_per_step`` of those positions, chosen uniformly at random,
    and redraws them from the denoiser given everything else.

    With :math:`k = 1` and an exact denoiser this is a random-scan Gibbs sampler: the true joint is its
    stationary law, but it only gets there as the steps grow, whereas ``sample_one_at_a_time`` is
    exact after as many calls as there are masks. With :math:`k > 1` the k positions are redrawn from their
    marginals, the parallel error of Section 3.2.2 again.

    Args:
        vocab_size: number of ids the denoiser's logits cover, the mask included; compared with
            the logits of every call, a mismatch refused naming both, so that no random start
            (an id < ``vocab_size``) lies outside the model's vocabulary.
        steps: denoiser calls (the NFE); each redraws ``tokens_per_step`` positions.

    ``order`` holds the last step that wrote each position (-1: given; -2: never redrawn, still its
    random start) and ``confidence`` the probability it was written with (NaN if never).
    """
    check_positive_int("vocab_size", vocab_size, minimum=2)
    _check_sequences("x", x, mask_id, vocab_size)
    check_positive_int("steps", steps)
    check_positive_int("tokens_per_step", tokens_per_step)
    open_ = x == mask_id  # (B, L) the positions this sampler writes
    most = int(open_.sum(-1).max()) if x.numel() else 0
    if tokens_per_step > max(most, 1):
        raise ValueError(f"tokens_per_step ({tokens_per_step}) must not exceed the number of masks in a "
                         f"sequence (at most {most} here)")
    tokens = torch.where(open_, _random_tokens(x.shape, vocab_size, mask_id, generator, x.device), x)
    read = DenoiserReader(denoiser, mask_id, vocab_size)
    order = torch.where(open_, -2, -1)
    scores = torch.full(x.shape, float("nan"), dtype=torch.float64, device=x.device)
    for step in range(steps):
        priority = torch.where(open_, uniform(x.shape, generator, x.device), -1.0)  # (B, L)
        top = priority.topk(min(tokens_per_step, x.shape[1]), dim=-1).indices  # (B, k)
        chosen = torch.zeros_like(open_).scatter(-1, top, True) & open_  # (B, L)
        remasked = torch.where(chosen, mask_id, tokens)
        logits, _ = read(remasked, 0, x.shape[1])  # (B, L, V)
        log_probs = clean_log_probs(logits, mask_id)  # (B, L, V)
        if (torch.isnan(log_probs).any(-1) & chosen).any():
            raise ValueError(f"{NO_DISTRIBUTION} at a position being redrawn")
        picks, picked_log_prob = draw(log_probs, 1.0, generator)  # (B, L), (B, L)
        tokens = torch.where(chosen, picks, tokens)
        order = torch.where(chosen, step, order)
        scores = torch.where(chosen, picked_log_prob.exp(), scores)
    return Decoded(tokens, nfe=steps, order=order, confidence=scores)
