"""Fuzz tests of the NELBO estimators (``maskdiff_tutor.nelbo``: ``continuous_nelbo``, ``count_nelbo``,
``t_step_nelbo``, ``exact_nelbo``) with generated batches (0 included), ids, mask ids, schedules,
sample and step counts and small random denoisers, good and hostile (see ``fuzzing``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from decoder_cases import BAD_COUNTS, token_ids
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
from hypothesis import given
from hypothesis import strategies as st

from maskdiff_tutor import nelbo
from maskdiff_tutor.schedules import CosineSchedule, LinearSchedule, LogLinearSchedule, PolynomialSchedule

ESTIMATORS = ("continuous_nelbo", "count_nelbo", "t_step_nelbo", "exact_nelbo")
SCHEDULES = (LinearSchedule(), CosineSchedule(), PolynomialSchedule(0.5), PolynomialSchedule(3.0),
             LogLinearSchedule(eps=0.0))
GOOD_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
EXACT_LENGTH = 6  # exact_nelbo enumerates 2^L mask patterns


@dataclass
class Call:
    """``nelbo.<estimator>(denoiser, **args, generator=...)`` with a fresh generator seeded ``seed``."""

    estimator: str
    args: dict
    vocab: int
    seed: int = 0

    def run(self, denoiser, **changes):
        args = {**self.args, **changes}
        if self.estimator != "exact_nelbo":
            args["generator"] = torch.Generator().manual_seed(self.seed)
        return getattr(nelbo, self.estimator)(denoiser, **args)


@st.composite
def calls(draw, estimator: str, empty: bool = True):
    """A valid call of ``estimator``; with ``empty``, x0 may have no sequence or no position."""
    low = 0 if empty else 1
    length = EXACT_LENGTH if estimator == "exact_nelbo" else 12
    vocab, mask_id, x0 = draw(token_ids(clean=True, batch=(low, 3), length=(low, length)))
    args = {"x0": x0, "mask_id": mask_id}
    if estimator in ("continuous_nelbo", "t_step_nelbo"):
        args.update(schedule=draw(st.sampled_from(SCHEDULES)), antithetic=draw(st.booleans()))
    if estimator in ("continuous_nelbo", "count_nelbo"):
        args["samples"] = draw(st.integers(1, 3))
    if estimator == "t_step_nelbo":
        args["num_steps"] = draw(st.integers(1, 50))
    if estimator == "exact_nelbo":
        loss = draw(st.sampled_from(("continuous", "t steps", "unweighted") if x0.shape[1] <= 3 else
                                    ("continuous", "t steps")))  # the unweighted loss takes seconds from L = 4
        schedule = draw(st.sampled_from(SCHEDULES))
        args.update({"continuous": {"schedule": draw(st.none() | st.just(schedule))},
                     "t steps": {"schedule": schedule, "num_steps": draw(st.integers(1, 20))},
                     "unweighted": {"schedule": schedule, "weighted": False}}[loss])
    return Call(estimator, args, vocab, draw(st.integers(0, 2**32 - 1)))


def _values(estimator: str, out) -> dict:
    """The tensors an estimator returns, by name."""
    if estimator == "exact_nelbo":
        return {"exact_nelbo": out}
    return {name: getattr(out, name) for name in ("value", "per_sequence", "per_token", "nll", "weight")}


def check_nelbo(call: Call, out) -> None:
    """No NaN in any part of the result, and a NELBO (a sum of weighted -log p) that is not negative."""
    for name, value in _values(call.estimator, out).items():
        assert isinstance(value, torch.Tensor), f"{name} is {type(value).__name__}"
        assert not torch.isnan(value).any(), f"NaN in {name}: {value}"
    total = out if call.estimator == "exact_nelbo" else out.per_sequence
    assert (total >= 0).all(), f"a negative NELBO: {total}"


@pytest.mark.parametrize("estimator", ESTIMATORS)
@fuzz(15)
@given(data=st.data())
def test_a_valid_call_gives_a_nelbo_without_nan(estimator, data):
    """A valid call gives finite parts and a NELBO >= 0 with a good denoiser (of any float dtype,
    the mask's logit the largest or not); an empty batch or sequence may be refused, naming x0."""
    call = data.draw(calls(estimator), label="call")
    seed, dtype = data.draw(st.integers(0, 1000), label="seed"), data.draw(st.sampled_from(GOOD_DTYPES), label="dtype")
    mask_id = call.args["mask_id"]
    denoiser = data.draw(st.sampled_from((Table(call.vocab, seed, dtype),
                                          MaskPeak(call.vocab, seed, dtype, mask_id=mask_id))), label="denoiser")
    with case():
        before = call.args["x0"].clone()
        out, error = attempt(lambda: call.run(denoiser), (*call.args, *DENOISER_WORDS))
        assert torch.equal(before, call.args["x0"]), "the estimator changed x0"
        if error is not None:
            assert call.args["x0"].numel() == 0 and names(str(error), "x0"), f"a valid call was refused: {error}"
            return
        check_nelbo(call, out)


def _bad_values(call: Call, name: str) -> list:
    x0, vocab, mask_id = call.args["x0"], call.vocab, call.args["mask_id"]
    if name == "x0":
        wrong_ids = []
        for value in (-1, vocab, vocab + 3, mask_id):  # negative, outside the vocabulary, the mask
            bad = x0.clone()
            bad[0, -1] = value
            wrong_ids.append(bad)
        return [x0.int(), x0.float(), x0.bool(), x0[0], x0[None], x0.tolist(), x0[:0], *wrong_ids]
    if name == "mask_id":
        return [-1, vocab, vocab + 3, float(mask_id), True, None, str(mask_id)]
    if name == "schedule":
        return [LogLinearSchedule(eps=1e-3), "linear", 1.0] + ([None] if call.estimator != "exact_nelbo" else [])
    if name == "num_steps" and call.estimator == "exact_nelbo":
        return [v for v in BAD_COUNTS if v is not None]  # None: the continuous-time NELBO
    return list(BAD_COUNTS)  # samples, num_steps


BAD_ARGUMENTS = {"continuous_nelbo": ("x0", "mask_id", "schedule", "samples"),
                 "count_nelbo": ("x0", "mask_id", "samples"),
                 "t_step_nelbo": ("x0", "mask_id", "schedule", "num_steps"),
                 "exact_nelbo": ("x0", "mask_id", "schedule", "num_steps")}


@pytest.mark.parametrize("estimator", ESTIMATORS)
@fuzz(15)
@given(data=st.data())
def test_a_bad_argument_is_refused_naming_it(estimator, data):
    """x0 of another dtype or shape, empty, with a negative id, an id outside the vocabulary or the
    mask; a mask id that is negative, outside the vocabulary or not an int; a schedule that is not
    one or does not end fully masked; a sample or step count that is not an int >= 1: refused with
    one of the package's errors naming that argument."""
    call = data.draw(calls(estimator, empty=False), label="call")
    name = data.draw(st.sampled_from(BAD_ARGUMENTS[estimator]), label="argument")
    value = data.draw(st.sampled_from(_bad_values(call, name)), label="bad value")
    changes = {name: value}
    if estimator == "exact_nelbo" and name in ("schedule", "num_steps"):
        changes.update(weighted=True, **({"schedule": LinearSchedule()} if name == "num_steps" else {}))
    with case():
        out, error = attempt(lambda: call.run(Table(call.vocab, 1), **changes), (name,))
        assert error is not None, f"{name} = {value!r:.200} was accepted: {out!r:.300}"


@st.composite
def hostile_denoisers(draw, call: Call):
    vocab, mask_id = call.vocab, call.args["mask_id"]
    seed, dtype = draw(st.integers(0, 1000)), draw(st.sampled_from(GOOD_DTYPES))
    return draw(st.sampled_from((
        NanLogits(vocab, seed, dtype, position=draw(st.none() | st.integers(0, 11))),
        NoCleanToken(vocab, seed, dtype, mask_id=mask_id, position=draw(st.integers(0, 11))),
        WrongVocabulary(vocab, seed, dtype, returned=draw(st.integers(1, vocab + 3).filter(lambda v: v != vocab))),
        EditsItsInput(vocab, seed, dtype, mask_id=mask_id, edit=draw(st.sampled_from(("zero", "mask", "unmask")))),
        WrongOutput(vocab, seed, dtype, kind=draw(st.sampled_from(("short", "long", "2-d", "list", "model output")))),
        WrongDtype(vocab, seed, draw(st.sampled_from((torch.int64, torch.bool, torch.complex64)))),
        OtherDevice(vocab, seed, dtype))))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@fuzz(15)
@given(data=st.data())
def test_a_hostile_denoiser_is_refused_or_does_no_harm(estimator, data):
    """NaN logits, no clean token, another vocabulary, logits of another shape, dtype or device, a
    denoiser that edits its input: refused naming the denoiser (or what its vocabulary rules out),
    or a NELBO without NaN, the same as a well-behaved denoiser's where the logits are the same."""
    call = data.draw(calls(estimator, empty=False), label="call")
    hostile = data.draw(hostile_denoisers(call), label="denoiser")
    denoiser = Counted(hostile)
    with case():
        out, error = attempt(lambda: call.run(denoiser), (*DENOISER_WORDS, "x0", "mask_id"))
        if error is not None:
            return
        assert not isinstance(hostile, (WrongOutput, WrongDtype, OtherDevice)), \
            f"the estimator used what {hostile} returned: {out!r:.300}"
        check_nelbo(call, out)
        if isinstance(hostile, EditsItsInput):
            pure = _values(estimator, call.run(Table(hostile.vocab, hostile.seed, hostile.dtype)))
            for name, value in _values(estimator, out).items():
                assert torch.equal(value, pure[name]), f"a denoiser that edits its input changed {name}"
