"""Fuzz tests of every decoder (``maskdiff_tutor.decoders``) with generated shapes (0 included), ids,
mask ids, temperatures (0, 1e-310, huge), thresholds, steps, block lengths, scores and small
random denoisers, good and hostile (see ``fuzzing`` for the properties)."""

from __future__ import annotations

import pytest
import torch
from decoder_cases import (
    AT_A_MASK,
    BAD_ARGUMENTS,
    CASES,
    NEEDS_THE_VOCABULARY,
    TINY,
    Case,
    bad_value,
    check_decoded,
    draws_only_to_sample,
    token_ids,
)
from fuzzing import (
    DENOISER_WORDS,
    Counted,
    EditsItsInput,
    MaskPeak,
    NanLogits,
    NoCleanToken,
    OtherDevice,
    Table,
    WrongDtype,
    WrongOutput,
    WrongVocabulary,
    attempt,
    case,
    fuzz,
    names,
)
from hypothesis import assume, given
from hypothesis import strategies as st

from maskdiff_tutor import decoders
from maskdiff_tutor.decoders import beam_search
from maskdiff_tutor.decoding import confidence, random_score

GOOD_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
EXACT_DTYPES = (torch.float32, torch.float64)  # no ties between logits to speak of


@st.composite
def good_denoisers(draw, case: Case):
    seed, dtype = draw(st.integers(0, 1000)), draw(st.sampled_from(GOOD_DTYPES))
    if draw(st.booleans()):
        return Table(case.vocab, seed, dtype)
    return MaskPeak(case.vocab, seed, dtype, mask_id=case.mask_id)


@st.composite
def hostile_denoisers(draw, case: Case):
    vocab, mask_id = case.vocab, case.mask_id
    seed, dtype = draw(st.integers(0, 1000)), draw(st.sampled_from(GOOD_DTYPES))
    kind = draw(st.sampled_from(("nan", "no clean token", "vocabulary", "edits", "output", "dtype", "device")))
    if kind == "nan":
        return NanLogits(vocab, seed, dtype, position=draw(st.none() | st.integers(0, 11)))
    if kind == "no clean token":
        return NoCleanToken(vocab, seed, dtype, mask_id=mask_id, position=draw(st.integers(0, 11)))
    if kind == "vocabulary":
        returned = draw(st.integers(1, vocab + 3).filter(lambda v: v != vocab))
        return WrongVocabulary(vocab, seed, dtype, returned=returned)
    if kind == "edits":
        edit = draw(st.sampled_from(("zero", "mask", "unmask")))
        return EditsItsInput(vocab, seed, dtype, mask_id=mask_id, edit=edit)
    if kind == "output":
        return WrongOutput(vocab, seed, dtype, kind=draw(st.sampled_from(
            ("short", "long", "2-d", "4-d", "list", "numpy", "model output", "None"))))
    if kind == "dtype":
        return WrongDtype(vocab, seed, draw(st.sampled_from((torch.int64, torch.int32, torch.bool, torch.complex64))))
    return OtherDevice(vocab, seed, dtype)


def _tensors(args: dict) -> dict:
    return {name: value.clone() for name, value in args.items() if isinstance(value, torch.Tensor)}


def _unchanged(before: dict, args: dict) -> None:
    for name, value in before.items():
        assert torch.equal(value, args[name]), f"the decoder changed its argument {name}: {value} -> {args[name]}"


def _empty(case: Case) -> bool:
    return case.args[case.sequences].numel() == 0


@pytest.mark.parametrize("decoder", CASES)
@fuzz(15)
@given(data=st.data())
def test_a_valid_call_fills_every_mask(decoder, data):
    """A valid call returns its sequences with every mask filled by an id of the vocabulary (never
    the mask, even where the mask's logit is the largest), the given tokens kept and the caller's
    tensors untouched; only an empty batch or sequence, or a temperature so small that log p / T
    overflows, may be refused instead, naming it."""
    call = data.draw(CASES[decoder], label="case")
    denoiser = data.draw(good_denoisers(call), label="denoiser")
    with case():
        before = _tensors(call.args)
        out, error = _run(call, denoiser)
        _unchanged(before, call.args)
        if error is not None:
            temperature = call.args.get("temperature", 1.0)
            refused_for = [name for name, why in ((call.sequences, _empty(call)),
                                                  ("temperature", 0 < temperature < 1e-30)) if why]
            assert any(names(str(error), name) for name in refused_for), f"a valid call was refused: {error}"
            return
        check_decoded(call, out, call.vocab)


@pytest.mark.parametrize("decoder", ("sample_all_at_once", "sample_left_to_right", "generate"))
@fuzz(10)
@given(data=st.data())
def test_a_temperature_near_zero_gives_the_tokens_of_temperature_zero(decoder, data):
    """Sampling at a temperature that underflows (1e-310: log p / T is -inf for every token) or
    nearly does gives the argmax, the tokens of temperature 0, never token 0 or the mask; or the
    temperature is refused, naming it. (Where the generator is used by the draws alone.)"""
    call = data.draw(CASES[decoder], label="case")
    filled = call.filled()
    assume(filled.numel() > 0)
    if not (filled == call.mask_id).any():
        call.args["x"][..., 0] = call.mask_id
    if decoder == "generate" and call.args["score"] is random_score:
        call.args["score"] = confidence
    assert draws_only_to_sample(call)
    temperature = data.draw(st.sampled_from((*TINY, 1e-100, 1e-12)), label="temperature")
    denoiser = data.draw(st.builds(Table, st.just(call.vocab), st.integers(0, 1000), st.sampled_from(EXACT_DTYPES)),
                         label="denoiser")
    with case():
        out, error = attempt(lambda: call.run(denoiser, temperature=temperature), ("temperature",))
        if error is None:
            argmax = call.run(denoiser, temperature=0.0)
            assert torch.equal(out.tokens, argmax.tokens), \
                f"temperature {temperature} gave {out.tokens}, temperature 0 gave {argmax.tokens}"


def _run(call: Case, denoiser):
    """(output, None), or (None, error) for a refusal: one of the package's own errors naming an argument."""
    words = (*call.args, "generator", *DENOISER_WORDS)
    return attempt(lambda: call.run(denoiser), words)


@pytest.mark.parametrize("decoder", CASES)
@fuzz(15)
@given(data=st.data())
def test_a_bad_argument_is_refused_naming_it(decoder, data):
    """One argument of a valid call given a bad value (a wrong dtype or shape of the ids, a negative
    id or one outside the vocabulary, a mask in a prompt, NaN, inf, a negative or non-integer count,
    a string, None, a bool, too many steps or tokens per step, a block length that does not divide,
    a vocab_size other than the logits') is refused with one of the package's errors naming that
    argument. (An id or mask id outside the vocabulary can only be seen once the denoiser has run.)"""
    call = data.draw(CASES[decoder], label="case")
    name = data.draw(st.sampled_from(BAD_ARGUMENTS[decoder]), label="argument")
    value, why = data.draw(bad_value(call, name), label="bad value")
    changes = {name: value}
    if decoder == "generate" and name in ("tokens_per_step", "threshold", "steps"):
        changes.update({other: None for other in ("tokens_per_step", "threshold", "steps") if other != name})
    denoiser = Counted(Table(call.vocab, seed=1))
    with case():
        # one mask fewer, or another mask id (so other masks), may first break a count of masks
        counts = ("steps", "tokens_per_step", "positions") if why.endswith(AT_A_MASK) or name == "mask_id" else ()
        out, error = attempt(lambda: call.run(denoiser, **changes), (name, *counts))
        if error is None and why.startswith(NEEDS_THE_VOCABULARY) and denoiser.calls == 0:
            return  # nothing was decoded, so the vocabulary was never known
        assert error is not None, f"{name} = {value!r:.200} ({why}) was accepted: {out!r:.300}"


@pytest.mark.parametrize("decoder", CASES)
@fuzz(15)
@given(data=st.data())
def test_a_hostile_denoiser_is_refused_or_does_no_harm(decoder, data):
    """A denoiser that returns NaN, no clean token, another vocabulary, logits of another shape,
    dtype or device, or that edits its input in place: the decoder refuses it naming the denoiser
    (or the ids or mask id its vocabulary rules out), or returns what it would return with a
    well-behaved denoiser of the same logits."""
    call = data.draw(CASES[decoder], label="case")
    hostile = data.draw(hostile_denoisers(call), label="denoiser")
    if isinstance(hostile, EditsItsInput) and call.seed is None:
        call.seed = 0  # two runs to compare: the same random numbers in each
    denoiser = Counted(hostile)
    with case():
        out, error = attempt(lambda: call.run(denoiser), (*DENOISER_WORDS, call.sequences, "mask_id", "vocab_size"))
        if error is not None:
            return
        if isinstance(hostile, EditsItsInput):
            pure = call.run(Table(hostile.vocab, hostile.seed, hostile.dtype))
            tokens, expected = (out[0], pure[0]) if decoder == "beam_search" else (out.tokens, pure.tokens)
            assert torch.equal(tokens, expected), \
                f"a denoiser that edits its input changed the output: {expected} -> {tokens}"
        if isinstance(hostile, (WrongOutput, WrongDtype, OtherDevice)):
            assert denoiser.calls == 0, f"the decoder used what {hostile} returned: {out!r:.300}"
        seen = isinstance(hostile, WrongVocabulary) and denoiser.calls  # its vocabulary, if the decoder saw it
        check_decoded(call, out, hostile.returned if seen else call.vocab)


@fuzz(15)
@given(data=st.data())
def test_beam_search_counts_a_repeated_position_once(data):
    """Positions given twice are refused naming ``positions``, or decoded once: the same tokens and
    log-probability as each position given once."""
    vocab, mask_id, x = data.draw(token_ids(batch=(1, 1), length=(1, 8)), label="x")
    masked = (x[0] == mask_id).nonzero().flatten().tolist()
    if not masked:
        x[0, 0], masked = mask_id, [0]
    once = data.draw(st.lists(st.sampled_from(masked), min_size=1, unique=True), label="positions")
    twice = once + data.draw(st.lists(st.sampled_from(once), min_size=1), label="repeated")
    denoiser = Table(vocab, data.draw(st.integers(0, 1000), label="seed"))
    width = data.draw(st.integers(1, 3), label="beam_width")
    with case():
        out, error = attempt(lambda: beam_search(denoiser, x, mask_id, beam_width=width, positions=twice),
                             ("positions",))
        if error is None:
            tokens, log_prob = beam_search(denoiser, x, mask_id, beam_width=width, positions=sorted(once))
            assert torch.equal(out[0], tokens) and torch.isclose(out[1], log_prob), \
                f"positions {twice} gave {out}; each once ({sorted(once)}): {(tokens, log_prob)}"


def test_every_decoder_is_fuzzed():
    """The fuzz tests cover every decoder the module offers that takes a denoiser callable."""
    offered = {name for name in dir(decoders) if name.startswith(("sample_", "generate", "beam_"))}
    assert offered == set(CASES)  # block_causal.generate_block_causal takes a BlockCausalModel, not a callable
