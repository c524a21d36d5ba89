"""What every fuzz test shares: the hypothesis settings, the time limit of a case, the check that an
error is the package's own and names what is wrong, and small random denoisers, good and hostile.

The fuzz tests (``tests/fuzz/test_fuzz_*.py``) generate calls of the public API and check
properties that hold for every input, not answers to particular ones:

- no case hangs: each runs under an alarm of ``CASE_SECONDS``;
- a call either returns, or raises one of the package's own errors (``OWN_ERRORS``) on one line
  whose message names the argument (or the file, or the flag) that is wrong; any other exception
  (a raw torch, numpy, pathlib or json error) fails the test as it is;
- what a call returns holds no NaN and, from a decoder, no mask id.

Every test runs a fixed number of generated cases (``derandomize=True``: the same cases on every
run and machine); ``tests/fuzz/conftest.py`` prints how many ran and how long they took.
``MASKDIFF_FUZZ_SCALE=10 pytest tests/fuzz`` searches ten times as deep, with new cases on each run.
A case of issue 22 that is not fixed yet is an expected failure (``known``), with its reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import tempfile
import time
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, settings

OWN_ERRORS = (ValueError, TypeError, FileNotFoundError)  # what the package raises for a bad input
CASE_SECONDS = 10  # a case that runs longer has hung: every case here takes milliseconds (seconds at most)
MAX_LENGTH, MAX_VOCAB = 12, 16  # the largest sequence length and vocabulary a fuzz case uses
RUN = {"cases": 0, "seconds": 0.0}  # generated cases run in this session, and their time
# MASKDIFF_FUZZ_SCALE=k runs k times as many cases, new ones on each run (not derandomized): a deeper
# search by hand; the test command runs the default, the same cases on every machine
SCALE = int(os.environ.get("MASKDIFF_FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    """The settings of a fuzz test: ``max_examples`` cases, the same on every run (``derandomize``),
    no example database; the time limit is the per-case alarm, not hypothesis' deadline (which
    cannot stop a case that hangs, and flakes on a loaded machine)."""
    return settings(max_examples=max_examples * SCALE, derandomize=SCALE == 1, database=None, deadline=None,
                    print_blob=SCALE > 1, suppress_health_check=[
                        HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                        HealthCheck.function_scoped_fixture])


def make_device(path) -> None:
    """A character device node at ``path``: a copy of /dev/null's (it writes nowhere)."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.stat("/dev/null").st_rdev)


def _can_make_devices() -> bool:
    """Whether this process may make a device node (root, with the capability: not in every container)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            make_device(os.path.join(folder, "null"))
        except (OSError, AttributeError):
            return False
    return True


DEVICES = _can_make_devices()  # a device at an output path is fuzzed only where one can be made


def known(values, failing: dict[str, str]) -> list:
    """``values`` for ``pytest.mark.parametrize``, each one in ``failing`` marked as an expected failure
    with its reason: a case of issue 22 not fixed yet (remove the entry once it is)."""
    return [pytest.param(value, marks=pytest.mark.xfail(strict=False, reason=failing[value]))
            if value in failing else value for value in values]


class Hang(AssertionError):
    """A case ran past ``CASE_SECONDS``."""


@contextlib.contextmanager
def case(seconds: float = CASE_SECONDS, generated: bool = True):
    """One case: stopped by ``Hang`` if it runs past ``seconds``; counted and timed if ``generated``
    (a case of a plain parametrized test is not). torch's global generator is seeded (and restored
    afterwards), so a call without a generator draws the same numbers on every run."""
    def alarm(signum, frame):
        raise Hang(f"the case ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if generated:
            RUN["cases"] += 1
            RUN["seconds"] += time.perf_counter() - started


@contextlib.contextmanager
def working_in(folder, umask: int | None = None):
    """Run in ``folder`` (a relative path then writes nothing elsewhere), with ``umask`` if given."""
    here = os.getcwd()
    previous = None if umask is None else os.umask(umask)
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)
        if previous is not None:
            os.umask(previous)


def names(message: str, name: str) -> bool:
    """``message`` names ``name``: as a word (an argument, a flag) or, for a path, anywhere."""
    if "/" in name:
        return name in message
    if len(name) == 1:  # "s", "N", "p", "x": the name of an argument, not a letter of a word
        return re.search(rf"(^|[\s(\[`'\"]){re.escape(name)}($|[\s\[=:,.)`'\"])", message) is not None
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w])", message) is not None


def check_refusal(error: BaseException, words) -> None:
    """``error`` is one of the package's own, one line, and names one of ``words``."""
    message = str(error)
    assert isinstance(error, OWN_ERRORS), f"not the package's own error: {type(error).__name__}: {message}"
    assert "\n" not in message.strip(), f"the message is not one line: {message!r}"
    assert any(names(message, word) for word in words), \
        f"the message names none of {sorted(words)}: {type(error).__name__}: {message}"


def attempt(call, words):
    """``(call(), None)``, or ``(None, error)`` where ``call`` raised one of the package's own errors
    naming one of ``words``; any other exception propagates as it is (the failure to report)."""
    try:
        return call(), None
    except OWN_ERRORS as error:
        check_refusal(error, words)
        return None, error


def refuse(call, words, what: str) -> None:
    """``call`` must raise one of the package's own errors naming one of ``words``; ``what`` says
    which bad input it was given."""
    result, error = attempt(call, words)
    assert error is not None, f"{what} was accepted; the call returned {result!r:.300}"


# --- denoisers: x (B, L) -> logits (B, L, V) --------------------------------------------------------

@dataclass
class Table:
    """Seeded random logits by position and input token (the token taken modulo V): a pure denoiser,
    in ``dtype``. ``hostile`` is set by the subclasses that misbehave."""

    vocab: int
    seed: int = 0
    dtype: torch.dtype = torch.float32
    hostile = False

    def __post_init__(self):
        generator = torch.Generator().manual_seed(self.seed)
        self.table = 2 * torch.randn(MAX_LENGTH, self.vocab, self.vocab, generator=generator, dtype=torch.float64)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The float64 logits (B, L, V) for x (B, L)."""
        return self.table[torch.arange(x.shape[-1]), x.remainder(self.vocab)]

    def __call__(self, x: torch.Tensor):
        return self.logits(x).to(self.dtype)


@dataclass
class MaskPeak(Table):
    """A good denoiser whose largest logit everywhere is the mask's: a decoder must still never output it."""

    mask_id: int = 0

    def __call__(self, x):
        logits = self.logits(x)
        logits[..., self.mask_id] = 1e4
        return logits.to(self.dtype)


@dataclass
class NanLogits(Table):
    """NaN logits at one position (``position`` modulo L), or everywhere (``position`` None)."""

    position: int | None = None
    hostile = True

    def __call__(self, x):
        logits = self.logits(x)
        if x.shape[-1]:
            logits[..., slice(None) if self.position is None else self.position % x.shape[-1], :] = float("nan")
        return logits.to(self.dtype)


@dataclass
class NoCleanToken(Table):
    """Every clean token's logit -inf at one position: no distribution over clean tokens there."""

    mask_id: int = 0
    position: int = 0
    hostile = True

    def __call__(self, x):
        logits = self.logits(x)
        if x.shape[-1]:
            row = logits[..., self.position % x.shape[-1], :]
            row.fill_(float("-inf"))
            row[..., self.mask_id] = 0.0
        return logits.to(self.dtype)


@dataclass
class WrongVocabulary(Table):
    """Logits over ``returned`` tokens instead of ``vocab``."""

    returned: int = 1
    hostile = True

    def __call__(self, x):
        logits = self.logits(x)
        if self.returned <= self.vocab:
            return logits[..., :self.returned].to(self.dtype)
        extra = torch.zeros(*logits.shape[:-1], self.returned - self.vocab, dtype=torch.float64)
        return torch.cat([logits, extra], -1).to(self.dtype)


@dataclass
class EditsItsInput(Table):
    """Computes the logits of its input, then edits the input in place: ``edit`` is "zero" (every
    id 0), "mask" (every id the mask) or "unmask" (every mask replaced by the first clean id)."""

    mask_id: int = 0
    edit: str = "zero"
    hostile = True

    def __call__(self, x):
        logits = self.logits(x).to(self.dtype)
        if self.edit == "zero":
            x.zero_()
        elif self.edit == "mask":
            x.fill_(self.mask_id)
        else:
            x.masked_fill_(x == self.mask_id, 1 if self.mask_id == 0 else 0)
        return logits


@dataclass
class WrongOutput(Table):
    """Returns something other than logits (B, L, V): ``kind`` says what."""

    kind: str = "short"
    hostile = True

    def __call__(self, x):
        logits = self.logits(x).to(self.dtype)
        return {
            "short": lambda: logits[:, :-1],  # one position too few
            "long": lambda: torch.cat([logits, logits[:, :1]], 1),  # one too many
            "2-d": lambda: logits[..., 0],  # (B, L)
            "4-d": lambda: logits[None],  # (1, B, L, V)
            "list": lambda: logits.tolist(),
            "numpy": lambda: logits.float().numpy(),
            "model output": lambda: _ModelOutput(logits),  # what a Hugging Face model returns
            "None": lambda: None,
        }[self.kind]()


@dataclass
class _ModelOutput:
    logits: torch.Tensor


@dataclass
class WrongDtype(Table):
    """Logits of a dtype that is not floating point: int64, int32, bool or complex64."""

    hostile = True

    def __call__(self, x):
        logits = self.logits(x)
        if self.dtype == torch.bool:
            return logits > 0
        return (10 * logits).to(self.dtype)


@dataclass
class OtherDevice(Table):
    """Logits on another device than the tokens (the meta device stands in for a GPU)."""

    hostile = True

    def __call__(self, x):
        return self.logits(x).to(self.dtype).to("meta")


class Counted:
    """A denoiser that counts its calls."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x):
        self.calls += 1
        return self.denoiser(x)

    def __repr__(self):
        return repr(self.denoiser)


DENOISER_WORDS = ("denoiser", "logits")  # what a refusal caused by the denoiser's output names


def same_tokens(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool((a == b).all())
