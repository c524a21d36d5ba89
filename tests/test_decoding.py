"""Tests of the one unmasking loop (``decoding``) and of what every decoder inherits from it:

- LLaDA's ``generate()`` reproduced token for token: a reference written here from LLaDA's
  published algorithm (GSAI-ML/LLaDA, generate.py, without classifier-free guidance), at
  temperature 0 and with Gumbel noise, with its step schedule, blocks and full-softmax confidence;
- the step schedule, the per-row counts of ``select``, the temperature;
- logits that give no distribution are refused, naming the row and position, and no decoder hangs;
- property-based tests (hypothesis) over shapes, prompts, blocks, k, thresholds, temperatures and
  scores: every decoder ends within its number of calls, fills every mask, never emits the mask,
  and its ``order`` and ``nfe`` agree with its tokens.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import RandomLogits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskdiff_tutor import block_causal, decoders, decoding, markov
from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig

V, MASK = 12, 11  # ids 0..10 are tokens, 11 is the mask


def llada_reference(model, prompt, steps, gen_length, block_length, temperature, mask_id, generator=None):
    """LLaDA's generate() with cfg_scale = 0 and remasking = "low_confidence", written as its
    published algorithm reads: the argmax of the (noised) logits over the whole vocabulary, its
    probability under the full softmax as the confidence, positions after the current block and
    already decoded positions at -inf, and per row the top-n by confidence, n from a schedule that
    splits each block's masks evenly over steps // blocks steps, the remainder to the first ones."""
    B, P = prompt.shape
    x = torch.full((B, P + gen_length), mask_id, dtype=torch.long)
    x[:, :P] = prompt
    blocks = gen_length // block_length
    per_block = steps // blocks
    for b in range(blocks):
        end = P + (b + 1) * block_length
        masks = (x[:, end - block_length:end] == mask_id).sum(1).tolist()
        schedule = [[m // per_block + (i < m % per_block) for i in range(per_block)] for m in masks]
        for i in range(per_block):
            is_mask = x == mask_id
            logits = model(x)
            if temperature == 0:
                noisy = logits
            else:
                u = torch.rand(logits.shape, dtype=torch.float64, generator=generator)
                noisy = logits.double().exp() / (-torch.log(u)) ** temperature
            x0 = noisy.argmax(-1)
            confidence = torch.softmax(logits, -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            confidence[:, end:] = -math.inf
            x0 = torch.where(is_mask, x0, x)
            confidence = torch.where(is_mask, confidence, -math.inf)
            for row in range(B):
                chosen = confidence[row].topk(schedule[row][i]).indices
                x[row, chosen] = x0[row, chosen]
    return x


class MaskCarriesMass:
    """A random transformer in float64 whose mask logit sits between ``mask_offset`` and
    ``mask_offset + 2`` below the best clean logit, by an amount that varies with the context: the
    mask is never the argmax but takes a varying share of the full softmax, so confidence with and
    without the mask rank positions differently."""

    def __init__(self, seed, mask_offset=0.7):
        torch.manual_seed(seed)
        self.net = Denoiser(DenoiserConfig(vocab_size=V, max_seq_len=40, d_model=32, n_layers=2, n_heads=2)).double()
        self.net.eval()
        self.mask_offset = mask_offset

    def __call__(self, x):
        with torch.no_grad():
            logits = 8 * self.net(x)  # (B, L, V) float64, sharper than at initialisation
        below_best = self.mask_offset + 2 * torch.sigmoid(logits[..., MASK])  # varies with the context
        mask_logit = logits[..., :MASK].max(-1).values - below_best
        return torch.cat([logits[..., :MASK], mask_logit.unsqueeze(-1)], -1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gen_length, block_length, steps", [(10, 10, 10), (10, 10, 4), (10, 5, 4), (12, 4, 6),
                                                             (12, 6, 10), (8, 8, 1)])
def test_generate_is_llada_token_for_token_at_temperature_zero(seed, gen_length, block_length, steps):
    model = MaskCarriesMass(seed)
    prompt = torch.randint(0, MASK, (3, 4), generator=torch.Generator().manual_seed(seed))
    expected = llada_reference(model, prompt, steps, gen_length, block_length, 0.0, MASK)
    got = decoders.generate(model, prompt, gen_length, MASK, steps=steps, block_length=block_length,
                            score=decoding.confidence_with_mask, temperature=0)
    assert torch.equal(got.tokens, expected)
    assert got.nfe == steps


def test_llada_confidence_is_not_the_clean_confidence_on_this_model():
    # the test above could not tell the two scores apart if they ranked positions alike
    differs = 0
    for seed in range(3):
        model = MaskCarriesMass(seed)
        prompt = torch.randint(0, MASK, (3, 4), generator=torch.Generator().manual_seed(seed))
        runs = [decoders.generate(model, prompt, 12, MASK, steps=4, score=score)
                for score in (decoding.confidence, decoding.confidence_with_mask)]
        differs += int(not torch.equal(runs[0].order, runs[1].order))
    assert differs >= 1


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_generate_is_llada_token_for_token_with_the_same_gumbel_noise(temperature):
    model = MaskCarriesMass(3, mask_offset=math.inf)  # sampling could draw a mask that carried mass
    prompt = torch.randint(0, MASK, (2, 3), generator=torch.Generator().manual_seed(5))
    expected = llada_reference(model, prompt, 6, 12, 4, temperature, MASK, torch.Generator().manual_seed(11))
    got = decoders.generate(model, prompt, 12, MASK, steps=6, block_length=4, score=decoding.confidence_with_mask,
                            temperature=temperature, generator=torch.Generator().manual_seed(11))
    assert torch.equal(got.tokens, expected)


def test_where_llada_would_write_the_mask_the_best_clean_token_is_written():
    model = MaskCarriesMass(0, mask_offset=-5.0)  # the mask is everywhere the argmax of the full softmax
    prompt = torch.randint(0, MASK, (2, 3), generator=torch.Generator().manual_seed(0))
    got = decoders.generate(model, prompt, 6, MASK, steps=3, score=decoding.confidence_with_mask)
    assert not (got.tokens == MASK).any()
    assert (llada_reference(model, prompt, 3, 6, 6, 0.0, MASK) == MASK).any()  # LLaDA's own loop leaves masks


# --- the parts of the loop ---------------------------------------------------------------------------

@pytest.mark.parametrize("masks, steps, expected", [(10, 4, [3, 3, 2, 2]), (8, 8, [1] * 8), (5, 1, [5]),
                                                    (7, 3, [3, 2, 2]), (0, 2, [0, 0])])
def test_transfer_counts_spread_the_remainder_over_the_first_steps(masks, steps, expected):
    counts = decoding.transfer_counts(torch.tensor([masks]), steps)
    assert counts[0].tolist() == expected and int(counts.sum()) == masks


def test_select_takes_a_count_per_row():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1], [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    open_ = torch.tensor([[True, True, True, True], [False, True, True, True], [True, True, True, True]])
    commit = decoding.select(scores, open_, torch.tensor([2, 1, 3]))
    assert commit.tolist() == [[False, True, False, True], [False, True, False, False], [True, True, True, False]]


def test_draw_at_temperature_zero_is_the_argmax_and_sampling_follows_the_tempered_law():
    p = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    token, log_prob = decoding.draw(p.log(), 0.0)
    assert token.item() == 0 and log_prob.item() == pytest.approx(math.log(0.6))
    n, temperature = 40_000, 2.0
    tokens, log_probs = decoding.draw(p.log().expand(n, 3), temperature, torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_probs, p.log()[tokens])
    tempered = p ** (1 / temperature) / (p ** (1 / temperature)).sum()
    freq = torch.bincount(tokens, minlength=3).double() / n
    assert ((freq - tempered).abs() <= 4 * torch.sqrt(tempered * (1 - tempered) / n)).all()


# --- never stuck, never silently wrong ---------------------------------------------------------------

def _nan_at(row, position, value=float("nan")):
    def denoiser(x):
        logits = torch.zeros(*x.shape, 5)
        logits[row, position, 2] = value
        return logits
    return denoiser


DECODERS = {
    "all at once": lambda d, x, m: decoders.sample_all_at_once(d, x, m),
    "one at a time": lambda d, x, m: decoders.sample_one_at_a_time(d, x, m),
    "left to right": lambda d, x, m: decoders.sample_left_to_right(d, x, m, 2),
    "partial random init": lambda d, x, m: decoders.sample_partial_random_init(d, x, m, 5, 0.3),
    "remasking": lambda d, x, m: decoders.sample_with_remasking(d, x, m, 3, 0.2),
    "generate": lambda d, x, m: decoders.generate(d, x[:, :1], x.shape[1] - 1, m),
    "generate threshold": lambda d, x, m: decoders.generate(d, x[:, :1], x.shape[1] - 1, m, threshold=0.5),
    "gibbs": lambda d, x, m: decoders.sample_gibbs_from_random_start(d, x, m, 5, 1, 4),
    "beam search": lambda d, x, m: decoders.beam_search(d, x[:1], m),
}


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("mask_id", [0, 4])
def test_logits_without_a_distribution_are_refused_naming_the_row_and_position(name, value, mask_id):
    x = torch.full((2, 5), mask_id)
    x[:, 0] = 1 if mask_id == 0 else 0
    match = "row 0, position 3" if name not in ("beam search", "gibbs") else "no distribution"
    with pytest.raises(ValueError, match=match):
        DECODERS[name](_nan_at(0, 3, value), x, mask_id)


def test_a_denoiser_that_only_favours_the_mask_is_refused():
    def only_the_mask(x):  # every clean token at -inf
        logits = torch.full((*x.shape, 5), -math.inf)
        logits[..., 0] = 0.0
        return logits
    with pytest.raises(ValueError, match="row 0, position 1"):
        decoders.generate(only_the_mask, torch.tensor([[1]]), 4, 0)


def test_nan_outside_the_positions_being_decoded_is_tolerated():
    x = torch.tensor([[1, 4, 4]])
    got = decoders.sample_left_to_right(_nan_at(0, 0), x, 4, 1)  # position 0 is given
    assert (got.tokens != 4).all()


@pytest.mark.parametrize("mask_id", [0, 3])
def test_a_score_of_minus_infinity_everywhere_still_decodes_one_position_per_step(mask_id):
    def hopeless(prediction, generator=None):
        return torch.full(prediction.chosen.shape, -math.inf, dtype=torch.float64)
    model = RandomLogits(7, 6, 0)
    prompt = torch.tensor([[1 if mask_id == 0 else 0]])
    got = decoders.generate(model, prompt, 6, mask_id, score=hopeless, tokens_per_step=2)
    assert got.nfe == 3 and not (got.tokens == mask_id).any()
    assert got.order[0, 1:].tolist() == [0, 0, 1, 1, 2, 2]  # ties: the leftmost first


def test_a_score_returning_nan_is_refused():
    with pytest.raises(ValueError, match="returned NaN"):
        decoders.generate(RandomLogits(5, 6), torch.tensor([[1]]), 4, 5,
                          score=lambda p, g=None: torch.full(p.chosen.shape, math.nan, dtype=torch.float64))


@pytest.mark.parametrize("mask_id, match", [
    (-1, "mask_id must be a non-negative int"),
    (2.0, "mask_id must be a non-negative int"),
    (9, r"^mask_id must be an int in \[0, 5\] \(vocab_size = 6\); got 9$")])
def test_mask_id_is_checked(mask_id, match):
    with pytest.raises(ValueError, match=match):
        decoders.sample_left_to_right(lambda t: torch.zeros(*t.shape, 6), torch.full((1, 4), 9), mask_id)


def test_tokens_outside_the_model_vocabulary_are_refused():
    x = torch.tensor([[7, 5, 5]])
    with pytest.raises(ValueError, match=r"x holds ids outside \[0, 5\]"):
        decoders.sample_left_to_right(lambda t: torch.zeros(*t.shape, 6), x, 5)


# --- the exact chain at an impossible context ------------------------------------------------------

def test_chain_denoiser_conditions_on_the_left_where_the_context_is_impossible():
    P = markov.with_end_of_text(markov.zipf_chain(5, 1.5, torch.Generator().manual_seed(0)), 4)
    exact = markov.ChainDenoiser(P, 6)
    x = torch.tensor([[4, exact.mask_id, 1]])  # end-of-text, then a token after it: probability 0
    probs = exact.conditional_probs(x)[0, 1, :5]
    torch.testing.assert_close(probs, P[4], rtol=0, atol=1e-15)
    decoded = decoders.generate(exact, torch.tensor([[1]]), 5, exact.mask_id, tokens_per_step=5, temperature=1.0,
                                generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(decoded.confidence[:, 1:]).all()


# --- properties of every decoder -----------------------------------------------------------------

SCORES = [decoding.confidence, decoding.confidence_with_mask, decoding.margin, decoding.negative_entropy,
          decoding.random_score, decoding.leftmost]


def _check_decoded(decoded, x, mask_id, max_calls, calls):
    given = x != mask_id
    assert not (decoded.tokens == mask_id).any()
    assert torch.equal(decoded.tokens[given], x[given])
    assert decoded.nfe == calls <= max_calls
    assert torch.equal(decoded.order == -1, given)  # every mask was decoded at some step
    assert (decoded.order < decoded.nfe).all()
    if x.shape[0] == 1 and decoded.remasked is None:  # every step commits at least one position
        assert set(decoded.order[given.logical_not()].tolist()) == set(range(decoded.nfe))


class Counting:
    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, **kwargs):
        self.calls += 1
        return self.denoiser(x, **kwargs)


@st.composite
def problems(draw):
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, 9))
    vocab = draw(st.integers(2, 7))
    mask_id = draw(st.integers(0, vocab - 1))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab - 1, (batch, length), generator=g)
    tokens = tokens + (tokens >= mask_id).long()  # never the mask
    masked = torch.rand(batch, length, generator=g) < draw(st.floats(0.0, 1.0))
    return torch.where(masked, mask_id, tokens), vocab, mask_id, seed


SETTINGS = dict(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@settings(**SETTINGS)
@given(problems(), st.integers(1, 10), st.sampled_from([0.0, 0.4, 1.0, 2.5]))
def test_property_samplers_over_the_whole_sequence(problem, k, temperature):
    x, vocab, mask_id, seed = problem
    masks = int((x == mask_id).sum(-1).max())
    for _name, run, max_calls in [
        ("all at once", lambda d: decoders.sample_all_at_once(d, x, mask_id, None, temperature), min(masks, 1)),
        ("one at a time", lambda d: decoders.sample_one_at_a_time(d, x, mask_id, torch.Generator().manual_seed(seed),
                                                                  temperature), masks),
        ("left to right", lambda d: decoders.sample_left_to_right(d, x, mask_id, k, None, temperature),
         math.ceil(masks / k)),
        ("partial init", lambda d: decoders.sample_partial_random_init(d, x, mask_id, vocab, 0.5, k,
                                                                       torch.Generator().manual_seed(seed),
                                                                       temperature), masks),
    ]:
        model = Counting(RandomLogits(x.shape[1], vocab, seed))
        _check_decoded(run(model), x, mask_id, max_calls, model.calls)


@settings(**SETTINGS)
@given(problems(), st.integers(1, 9), st.floats(0.0, 0.95))
def test_property_remasking_makes_exactly_its_calls(problem, steps, eta):
    x, vocab, mask_id, seed = problem
    total = (x == mask_id).sum(-1)
    fewest = int(total[total > 0].min()) if (total > 0).any() else 0
    model = Counting(RandomLogits(x.shape[1], vocab, seed))
    if steps > max(fewest, 1):
        with pytest.raises(ValueError, match="must not exceed the masks"):
            decoders.sample_with_remasking(model, x, mask_id, steps, eta, torch.Generator().manual_seed(seed))
        return
    decoded = decoders.sample_with_remasking(model, x, mask_id, steps, eta, torch.Generator().manual_seed(seed))
    _check_decoded(decoded, x, mask_id, steps if fewest else 0, model.calls)
    assert decoded.nfe == (steps if fewest else 0)


@st.composite
def generations(draw):
    batch, prompt_length = draw(st.integers(1, 3)), draw(st.integers(0, 4))
    block_length, blocks = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    vocab = draw(st.integers(2, 7))
    mask_id = draw(st.integers(0, vocab - 1))
    seed = draw(st.integers(0, 2**16))
    tokens = torch.randint(0, vocab - 1, (batch, prompt_length), generator=torch.Generator().manual_seed(seed))
    prompt = tokens + (tokens >= mask_id).long()
    gen_length = block_length * blocks
    schedule = draw(st.sampled_from(["k", "threshold", "steps"]))
    if schedule == "k":
        kwargs, max_calls = dict(tokens_per_step=draw(st.integers(1, block_length))), None
        max_calls = blocks * math.ceil(block_length / kwargs["tokens_per_step"])
    elif schedule == "threshold":
        kwargs, max_calls = dict(threshold=draw(st.floats(0.01, 1.0))), gen_length
    else:
        per_block = draw(st.integers(1, block_length))
        kwargs, max_calls = dict(steps=per_block * blocks), per_block * blocks
    kwargs.update(score=draw(st.sampled_from(SCORES)), temperature=draw(st.sampled_from([0.0, 0.7, 1.0])),
                  block_length=block_length, generator=torch.Generator().manual_seed(seed))
    return prompt, gen_length, vocab, mask_id, seed, kwargs, max_calls


@settings(**SETTINGS)
@given(generations())
def test_property_generate(case):
    prompt, gen_length, vocab, mask_id, seed, kwargs, max_calls = case
    model = Counting(RandomLogits(prompt.shape[1] + gen_length, vocab, seed))
    decoded = decoders.generate(model, prompt, gen_length, mask_id, **kwargs)
    x = torch.cat([prompt, torch.full((prompt.shape[0], gen_length), mask_id)], 1)
    _check_decoded(decoded, x, mask_id, max_calls, model.calls)
    if "steps" in kwargs:
        assert decoded.nfe == kwargs["steps"]
    block = kwargs["block_length"]
    for row in decoded.order[:, prompt.shape[1]:]:  # blocks are filled one after another
        steps = row.view(-1, block)
        assert (steps[:-1].max(-1).values < steps[1:].min(-1).values).all()


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(generations(), st.booleans())
def test_property_block_causal_decoding(case, use_cache):
    prompt, gen_length, vocab, mask_id, seed, kwargs, max_calls = case
    torch.manual_seed(seed)
    net = Denoiser(DenoiserConfig(vocab_size=vocab, max_seq_len=32, d_model=16, n_layers=1, n_heads=2)).eval()
    model = Counting(net)
    model.config, model.step = net.config, net.step
    block = kwargs.pop("block_length")
    decoded = block_causal.generate_block_causal(model, prompt, gen_length, mask_id, block, use_cache=use_cache,
                                                 **kwargs)
    x = torch.cat([prompt, torch.full((prompt.shape[0], gen_length), mask_id)], 1)
    assert not (decoded.tokens == mask_id).any() and torch.equal(decoded.tokens[:, :prompt.shape[1]], prompt)
    assert decoded.nfe <= max_calls and torch.equal(decoded.order == -1, x != mask_id)


# --- the loop's speed tricks change nothing ------------------------------------------------------

def _same(a, b) -> bool:
    return (torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order) and a.nfe == b.nfe
            and torch.equal(a.confidence.isnan(), b.confidence.isnan())
            and torch.equal(a.confidence.nan_to_num(), b.confidence.nan_to_num()))


@settings(**SETTINGS)
@given(problems(), st.integers(1, 4), st.sampled_from(SCORES), st.sampled_from([0.0, 1.0]), st.integers(1, 3))
def test_property_a_count_known_in_advance_decodes_as_one_asked_at_every_step(problem, k, score, temperature, blocks):
    # an int count takes the counted path (steps counted in advance, NaN looked for at the block's
    # end, every row promised an open position); the same k from a function asks at every step
    x, vocab, mask_id, seed = problem
    edges = sorted({0, x.shape[1], *torch.linspace(0, x.shape[1], blocks + 1).long().tolist()})
    read = decoding.DenoiserReader(RandomLogits(x.shape[1], vocab, seed), mask_id)
    runs = [decoding.unmask(read, x, mask_id, list(zip(edges[:-1], edges[1:], strict=True)), count=count,
                            score=score, temperature=temperature, generator=torch.Generator().manual_seed(seed))
            for count in (k, lambda i, open_, masks: k)]
    assert _same(*runs)


@settings(**SETTINGS)
@given(st.integers(1, 4), st.integers(1, 9), st.integers(0, 2**16))
def test_property_select_promised_an_open_position_in_every_row_takes_the_leftmost_best(batch, n, seed):
    g = torch.Generator().manual_seed(seed)
    scores = (4 * torch.rand(batch, n, generator=g, dtype=torch.float64)).round() / 4  # many ties
    open_ = torch.rand(batch, n, generator=g) < 0.5
    open_[:, 0] |= ~open_.any(-1)  # every row has an open position
    expected = torch.zeros_like(open_)
    for row in range(batch):
        best = max(float(scores[row, j]) for j in range(n) if open_[row, j])
        expected[row, next(j for j in range(n) if open_[row, j] and float(scores[row, j]) == best)] = True
    assert torch.equal(decoding._select(scores, open_, 1, None, every_row_open=True), expected)
    assert torch.equal(decoding.select(scores, open_, 1), expected)


def test_a_score_that_declares_it_carries_nan_is_recorded_as_it_is_and_still_refused():
    def declared(prediction, generator=None):
        return prediction.chosen_log_prob.exp()
    declared.carries_nan = True
    model = RandomLogits(7, 6, 3)
    for schedule in (dict(threshold=0.3), dict(tokens_per_step=2)):
        runs = [decoders.generate(model, torch.tensor([[1], [2]]), 6, 5, score=score, **schedule)
                for score in (declared, lambda p, g=None: p.chosen_log_prob.exp())]
        assert _same(*runs)
        with pytest.raises(ValueError, match="row 0, position 3"):
            decoders.generate(_nan_at(0, 3), torch.tensor([[1]]), 4, 4, score=declared, **schedule)


def test_unmask_takes_one_kind_of_step_and_a_count_of_at_least_one():
    read, x = decoding.DenoiserReader(RandomLogits(3, 4), 3), torch.full((1, 3), 3)
    with pytest.raises(ValueError, match="^give at most one of view and remask$"):
        decoding.unmask(read, x, 3, [(0, 3)], count=1, view=lambda tokens, open_, g: (tokens, open_),
                        remask=lambda i, tokens, given, g: torch.zeros_like(given))
    with pytest.raises(ValueError, match=r"^count must be an int >= 1 \(positions committed per step\); got 0$"):
        decoding.unmask(read, x, 3, [(0, 3)], count=0)
    with pytest.raises(ValueError, match="^give exactly one of count and threshold$"):
        decoding.unmask(read, x, 3, [(0, 3)])


# --- a tiny temperature, a denoiser that edits its input, logits of another dtype or device -----------

@pytest.mark.parametrize("temperature", [1e-310, 5e-324, 1e-250])
@pytest.mark.parametrize("mask_id", [0, 3])
def test_a_tiny_temperature_draws_the_argmax_never_token_0_or_the_mask(temperature, mask_id):
    # log p / T is -inf for every token at T = 1e-310 (1e-250: the second best and below): the
    # argmax of a row of -inf was token 0, the mask where mask_id = 0
    model, prompt = RandomLogits(7, 6, 1), torch.tensor([[1], [2]])
    greedy = decoders.generate(model, prompt, 6, mask_id, tokens_per_step=2)
    tiny = decoders.generate(model, prompt, 6, mask_id, tokens_per_step=2, temperature=temperature,
                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(tiny.tokens, greedy.tokens) and not (tiny.tokens == mask_id).any()
    log_probs = torch.tensor([[-math.inf, -2.0, -0.5, -1.0]], dtype=torch.float64)  # the mask at 0, best at 2
    assert decoding.draw(log_probs, temperature, torch.Generator().manual_seed(0))[0].item() == 2


def test_below_the_tiny_temperature_the_draw_still_follows_the_tempered_law():
    # log-probabilities 1e-250 apart at T = 1e-250 are the law softmax(0, -1, -3): the stable form
    # argmax(log p + T g) draws it; log p / T + g would give the same law here (no overflow)
    temperature = 1e-250
    assert temperature < decoding.TINY_TEMPERATURE
    n, law = 40_000, torch.softmax(torch.tensor([0.0, -1.0, -3.0], dtype=torch.float64), 0)
    log_probs = torch.tensor([0.0, -1e-250, -3e-250], dtype=torch.float64).expand(n, 3)
    tokens, _ = decoding.draw(log_probs, temperature, torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=3).double() / n
    assert ((freq - law).abs() <= 4 * torch.sqrt(law * (1 - law) / n)).all()


def test_from_the_tiny_temperature_up_the_draw_is_the_gumbel_argmax_of_log_p_over_t():
    # the reference: LLaDA's form argmax(exp(log p) / (-log u)^T) with the same u, in logs
    log_probs = torch.log_softmax(torch.randn(500, 9, generator=torch.Generator().manual_seed(2),
                                              dtype=torch.float64), -1)
    for temperature in (decoding.TINY_TEMPERATURE, 1e-3, 0.7, 1.0, 3.0):
        u = torch.rand(500, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        expected = (log_probs - temperature * torch.log(-torch.log(u))).argmax(-1)
        got, _ = decoding.draw(log_probs, temperature, torch.Generator().manual_seed(4))
        assert torch.equal(got, expected)


class EditsItsInput:
    """A denoiser with ``RandomLogits``' logits that then overwrites its input with the mask, in place."""

    def __init__(self, length, vocab_size, seed=0):
        self.model, self.mask_id = RandomLogits(length, vocab_size, seed), vocab_size - 1

    def __call__(self, x):
        logits = self.model(x)
        x.fill_(self.mask_id)
        return logits


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_a_denoiser_that_edits_its_input_changes_nothing(name):
    x = torch.tensor([[1, 4, 4, 4, 4], [0, 4, 3, 4, 4]])
    torch.manual_seed(0)  # DECODERS sample from the global stream
    honest = DECODERS[name](RandomLogits(5, 5, 3), x, 4)
    torch.manual_seed(0)
    editing = DECODERS[name](EditsItsInput(5, 5, 3), x, 4)
    for a, b in zip(honest if isinstance(honest, tuple) else [honest.tokens],
                    editing if isinstance(editing, tuple) else [editing.tokens], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(x, torch.tensor([[1, 4, 4, 4, 4], [0, 4, 3, 4, 4]]))


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_logits_that_are_not_floating_point_are_refused_naming_the_dtype(name, dtype):
    with pytest.raises(ValueError, match=rf"^the denoiser must return floating-point logits \(float16, bfloat16, "
                                         rf"float32 or float64\); got dtype {dtype}$"):
        DECODERS[name](lambda x: torch.zeros(*x.shape, 5, dtype=dtype), torch.tensor([[1, 4, 4, 4, 4]]), 4)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_logits_on_another_device_are_refused_naming_both(name):
    with pytest.raises(ValueError, match=r"^the denoiser returned logits on meta for tokens on cpu; it must return "
                                         r"them on its input's device \(move them with \.to\(x\.device\)\)$"):
        DECODERS[name](lambda x: torch.zeros(*x.shape, 5, device="meta"), torch.tensor([[1, 4, 4, 4, 4]]), 4)


def test_logits_over_fewer_than_two_ids_are_refused():
    with pytest.raises(ValueError, match=r"^the denoiser's logits must cover at least 2 ids .* got V = 1$"):
        decoders.sample_left_to_right(lambda x: torch.zeros(*x.shape, 1), torch.tensor([[0, 0]]), 0)


def test_a_score_that_writes_the_mask_into_its_prediction_is_refused():
    def writes_the_mask(prediction, generator=None):
        prediction.chosen.fill_(4)
        return prediction.chosen_log_prob.exp()
    for schedule in (dict(tokens_per_step=2), dict(threshold=0.5)):
        with pytest.raises(ValueError, match=r"^the mask is left at batch row 0, position 1 after its block was "
                                             r"decoded: the score 'writes_the_mask' changed the prediction"):
            decoders.generate(RandomLogits(5, 5), torch.tensor([[1]]), 4, 4, score=writes_the_mask, **schedule)


def test_a_view_that_leaves_nothing_decodable_is_refused_rather_than_looping():
    read, x = decoding.DenoiserReader(RandomLogits(3, 4), 3), torch.tensor([[3, 3, 1]])
    with pytest.raises(ValueError, match=r"^view left no open position of the block \[0, 3\) decodable"):
        decoding.unmask(read, x, 3, [(0, 3)], count=1,
                        view=lambda tokens, open_, g: (tokens, torch.zeros_like(open_)))


# --- no mask and no id outside the vocabulary in any output, whatever the denoiser -----------------

def _hostile(kind, vocab, mask_id, seed):
    """Logits (B, L, V) that favour the mask, hold NaN or -inf rows, or only the mask, or are random."""
    def denoiser(x):
        g = torch.Generator().manual_seed(seed + int(x.sum()))
        logits = 3 * torch.randn(*x.shape, vocab, generator=g)
        if kind == "mask on top":
            logits[..., mask_id] = 50.0
        elif kind == "only the mask":
            logits.fill_(-math.inf)[..., mask_id] = 0.0
        elif kind in ("nan rows", "-inf rows"):
            rows = torch.rand(x.shape, generator=g) < 0.3  # (B, L)
            logits[rows] = math.nan if kind == "nan rows" else -math.inf
        return logits
    return denoiser


def _as_is(run):
    """A decoder of ``DECODERS`` called with the arguments of ``ALL_DECODERS``: (d, x, m, v, t, g)."""
    return lambda d, x, m, v, t, g: run(d, x, m)


ALL_DECODERS = {  # DECODERS' own random init and Gibbs take vocab_size 5: here with the model's
    **{name: _as_is(run) for name, run in DECODERS.items() if name not in ("partial random init", "gibbs")},
    "all at once T": lambda d, x, m, v, t, g: decoders.sample_all_at_once(d, x, m, g, t),
    "one at a time T": lambda d, x, m, v, t, g: decoders.sample_one_at_a_time(d, x, m, g, t),
    "generate T": lambda d, x, m, v, t, g: decoders.generate(d, x[:, :1], x.shape[1] - 1, m, temperature=t,
                                                             generator=g, score=decoding.margin),
    "partial random init T": lambda d, x, m, v, t, g: decoders.sample_partial_random_init(d, x, m, v, 0.5, 1, g, t),
    "remasking T": lambda d, x, m, v, t, g: decoders.sample_with_remasking(d, x, m, 2, 0.5, g, t),
    "gibbs T": lambda d, x, m, v, t, g: decoders.sample_gibbs_from_random_start(d, x, m, v, 3, 2, g),
}


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ALL_DECODERS)),
       st.sampled_from(["random", "mask on top", "only the mask", "nan rows", "-inf rows"]),
       st.integers(3, 6), st.data(), st.sampled_from([0.0, 5e-324, 1e-310, 1e-250, 1e-200, 0.3, 1.0, 1e300]),
       st.integers(0, 2**16))
def test_property_no_decoder_outputs_the_mask_or_an_id_outside_the_vocabulary(name, kind, vocab, data, temperature,
                                                                              seed):
    mask_id = data.draw(st.integers(0, vocab - 1))
    x = torch.full((2, 4), mask_id)
    x[:, 0] = (mask_id + 1) % vocab
    try:
        out = ALL_DECODERS[name](_hostile(kind, vocab, mask_id, seed), x, mask_id, vocab, temperature,
                                 torch.Generator().manual_seed(seed))
    except ValueError as error:  # only logits without a distribution where a token is drawn
        assert kind in ("only the mask", "nan rows", "-inf rows") and "distribution" in str(error)
        return
    tokens = out[0] if isinstance(out, tuple) else out.tokens
    assert not (tokens == mask_id).any() and ((tokens >= 0) & (tokens < vocab)).all()
    assert torch.equal(tokens[:, 0], x[:len(tokens), 0])
