"""Confidence-ordered decoding against a plain reference loop, blocks, thresholds and errors."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import RandomLogits

from maskdiff_tutor import decoders, decoding, markov

V, MASK = 6, 5  # token ids 0..4, the mask 5


def reference(denoiser, prompt, gen_length, k=None, threshold=None, block_length=None, score="confidence"):
    """One sequence, greedy, written as plainly as possible."""
    x = prompt[0].tolist() + [MASK] * gen_length
    P, block_length = prompt.shape[1], block_length or gen_length
    order, step = [-1] * len(x), 0
    for start in range(P, P + gen_length, block_length):
        block = range(start, start + block_length)
        while any(x[i] == MASK for i in block):
            logits = denoiser(torch.tensor([x]))[0].double()
            logits[:, MASK] = -math.inf
            probs = torch.softmax(logits, -1)
            candidates = []
            for i in block:
                if x[i] != MASK:
                    continue
                p = probs[i]
                if score == "confidence":
                    value = p.max().item()
                elif score == "margin":
                    top = sorted(p.tolist(), reverse=True)
                    value = top[0] - top[1]
                else:
                    value = sum(q * math.log(q) for q in p.tolist() if q > 0)
                candidates.append((value, i, int(p.argmax())))
            candidates.sort(key=lambda c: -c[0])
            if threshold is None:
                keep = candidates[:k]
            else:
                keep = [c for c in candidates if c[0] >= threshold] or candidates[:1]
            for _, i, token in keep:
                x[i], order[i] = token, step
            step += 1
    return x, order, step


@pytest.mark.parametrize("k,block_length", [(1, None), (2, None), (3, None), (1, 3), (2, 3), (3, 3)])
@pytest.mark.parametrize("score_name", ["confidence", "margin", "entropy"])
def test_top_k_decoding_matches_the_reference_loop(k, block_length, score_name):
    score = {"confidence": decoding.confidence, "margin": decoding.margin,
             "entropy": decoding.negative_entropy}[score_name]
    for seed in range(3):
        model = RandomLogits(8, V, seed)
        prompt = torch.tensor([[1, 3]])
        got = decoders.generate(model, prompt, 6, MASK, score=score, tokens_per_step=k, block_length=block_length)
        tokens, order, nfe = reference(model, prompt, 6, k=k, block_length=block_length, score=score_name)
        assert got.tokens[0].tolist() == tokens and got.order[0].tolist() == order and got.nfe == nfe


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9, 1.0])
def test_threshold_decoding_matches_the_reference_loop(threshold):
    for seed in range(3):
        model = RandomLogits(8, V, seed)
        prompt = torch.tensor([[0]])
        got = decoders.generate(model, prompt, 7, MASK, tokens_per_step=None, threshold=threshold)
        tokens, order, nfe = reference(model, prompt, 7, threshold=threshold)
        assert got.tokens[0].tolist() == tokens and got.order[0].tolist() == order and got.nfe == nfe
    if threshold == 1.0:
        assert got.nfe == 7  # nothing reaches certainty: one position per step


def test_blocks_are_filled_left_to_right():
    model = RandomLogits(13, V, 4)
    got = decoders.generate(model, torch.tensor([[2], [4]]), 12, MASK, tokens_per_step=2, block_length=4)
    for row in got.order:
        blocks = row[1:].view(3, 4)
        assert (blocks[:-1].max(-1).values < blocks[1:].min(-1).values).all()
    assert got.nfe == 6 and (got.tokens != MASK).all()


def test_random_score_is_seeded_and_decodes_in_some_order():
    model = RandomLogits(9, V, 0)

    def run(seed):
        return decoders.generate(model, torch.tensor([[1]]), 8, MASK, score=decoding.random_score,
                                 generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(0).order, run(0).order)
    assert sorted(run(0).order[0, 1:].tolist()) == list(range(8))
    assert not torch.equal(run(0).order, run(1).order)


def test_scores_have_their_closed_forms():
    log_probs = torch.log(torch.tensor([[[0.5, 0.3, 0.2]]], dtype=torch.float64))
    chosen = torch.tensor([[1]])
    logits = torch.cat([log_probs, torch.log(torch.tensor([[[1 / 3]]], dtype=torch.float64))], -1)  # mask: 1/4 of all
    prediction = decoding.Prediction(logits, log_probs, chosen, log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1))
    assert decoding.confidence(prediction).item() == pytest.approx(0.3)
    assert decoding.confidence_with_mask(prediction).item() == pytest.approx(0.3 * 0.75)
    assert decoding.margin(prediction).item() == pytest.approx(0.2)
    entropy = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    assert decoding.negative_entropy(prediction).item() == pytest.approx(-entropy)
    assert decoding.leftmost(prediction).item() == 0


def test_confidence_decoding_of_a_markov_chain_is_left_to_right():
    """With the exact denoiser of a chain and a prompt on the left, the nearest mask is always the
    surest: one-token-per-step confidence decoding is exactly autoregressive (claim 12)."""
    P = markov.zipf_chain(32, 2.0, torch.Generator().manual_seed(0), function_words=2)
    exact = markov.ChainDenoiser(P, 17)
    got = decoders.generate(exact, torch.arange(8).unsqueeze(1), 16, exact.mask_id)
    assert (got.order[:, 1:] == torch.arange(16)).all()


def test_sampling_uses_the_generator():
    model = RandomLogits(6, V, 1)

    def run(seed):
        return decoders.generate(model, torch.tensor([[0]]), 5, MASK, temperature=1.0,
                                 generator=torch.Generator().manual_seed(seed)).tokens
    assert torch.equal(run(3), run(3))
    assert any(not torch.equal(run(0), run(s)) for s in range(1, 6))


@pytest.mark.parametrize("kwargs,match", [
    (dict(gen_length=6, block_length=4), "divisible"),
    (dict(gen_length=6, tokens_per_step=7), "tokens_per_step"),
    (dict(gen_length=6, tokens_per_step=2, threshold=0.5), "at most one"),
    (dict(gen_length=6, steps=3, threshold=0.5), "at most one"),
    (dict(gen_length=6, threshold=0.0), r"threshold must be a finite number in \(0, 1\]"),
    (dict(gen_length=6, threshold=1.5), r"threshold must be a finite number in \(0, 1\]"),
    (dict(gen_length=6, threshold=float("nan")), "threshold"),
    (dict(gen_length=6, steps=7), "steps"),
    (dict(gen_length=6, block_length=3, steps=3), "multiple of the number of blocks"),
    (dict(gen_length=6, temperature=-1.0), "temperature"),
    (dict(gen_length=6, temperature=float("inf")), "temperature"),
    (dict(gen_length=0), "gen_length"),
    (dict(gen_length=6, block_length=0), "block_length"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        decoders.generate(RandomLogits(8, V), torch.tensor([[1]]), mask_id=MASK, **kwargs)


def test_a_prompt_containing_the_mask_is_refused():
    with pytest.raises(ValueError, match="prompt"):
        decoders.generate(RandomLogits(8, V), torch.tensor([[1, MASK]]), 4, MASK)


def test_select_treats_scores_equal_to_nine_decimals_as_ties_and_takes_the_leftmost():
    select = decoding.select
    # The same tie computed with different last bits (as on another CPU) must choose the same position.
    open_ = torch.ones(2, 4, dtype=torch.bool)
    for jitter in (1e-15, -1e-15):
        scores = torch.tensor([[0.2, 0.5, 0.5 + jitter, 0.1], [0.3, 0.3 + jitter, 0.3, 0.3 - jitter]],
                              dtype=torch.float64)
        commit = select(scores, open_, 1, None)
        assert commit.tolist() == [[False, True, False, False], [True, False, False, False]]
        commit = select(scores, open_, 2, None)
        assert commit.tolist() == [[False, True, True, False], [True, True, False, False]]
    # genuinely different scores still rank by score, and closed positions are never chosen
    scores = torch.tensor([[0.2, 0.5, 0.5 + 1e-6, 0.9]], dtype=torch.float64)
    commit = select(scores, torch.tensor([[True, True, True, False]]), 1, None)
    assert commit.tolist() == [[False, False, True, False]]
    # the threshold compares to nine decimals too; at least the surest (leftmost of ties) commits
    scores = torch.tensor([[0.9 - 1e-15, 0.4, 0.9, 0.2]], dtype=torch.float64)
    commit = select(scores, torch.ones(1, 4, dtype=torch.bool), None, 0.9)
    assert commit.tolist() == [[True, False, True, False]]
    commit = select(scores, torch.ones(1, 4, dtype=torch.bool), None, 0.95)
    assert commit.tolist() == [[True, False, False, False]]


SCORE_NAMES = (r"decoding\.confidence, decoding\.confidence_with_mask, decoding\.margin, decoding\.negative_entropy, "
               r"decoding\.random_score, decoding\.leftmost")


@pytest.mark.parametrize("batch", [1, 0])  # an empty batch never calls the score: refused all the same
@pytest.mark.parametrize(("score", "shown"), [("confidence", r"'confidence' \(a str\)"), (None, r"None \(a NoneType\)"),
                                              (1, r"1 \(a int\)")])
def test_a_score_that_is_not_a_function_is_refused_naming_score_and_the_scores(batch, score, shown):
    with pytest.raises(TypeError, match=rf"^score must be a function \(prediction, generator\) -> scores \(B, n\), "
                                        rf"such as {SCORE_NAMES}; got {shown}$"):
        decoders.generate(RandomLogits(8, V), torch.ones(batch, 1, dtype=torch.long), 4, MASK, score=score)


def test_a_prompt_id_outside_the_models_vocabulary_is_named_as_the_prompt():
    with pytest.raises(ValueError, match=rf"^prompt holds ids outside \[0, {V - 1}\] \(vocab_size = {V}\)$"):
        decoders.generate(lambda x: torch.zeros(*x.shape, V), torch.tensor([[1, V]]), 4, MASK)
