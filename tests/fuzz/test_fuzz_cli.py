"""Fuzz test of the command line (``maskdiff_tutor.cli.main``) with generated argv: every command,
known and unknown flags, and bad values for --scale, --device, --seed, --out (a folder, a FIFO, a
device, below a file, a NUL byte), --save-models, --models, --dtype. No experiment runs: each
experiment's ``run`` is replaced by one that does what every run does first (picks the device,
seeds its generator) and returns a small typed result; the book's and the small model's makers
stop the case as soon as they are called (the command line then accepted its arguments)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import io
import os
import pathlib
import stat
import tempfile

import pytest
import torch
from fuzzing import DEVICES, case, fuzz, make_device, names, working_in
from hypothesis import example, given
from hypothesis import strategies as st
from result_cases import ENVIRONMENT

from maskdiff_tutor import cli
from maskdiff_tutor.device import pick_device
from maskdiff_tutor.experiments import book, small_masked_lm
from maskdiff_tutor.experiments.result import ExperimentResult

COMMANDS = (*cli.EXPERIMENTS, "book-models", "book-results", "small-masked-lm")
PATHS = ("r.json", "new/folder/r.json", "folder", "fifo", "file", "file/r.json", "link-to-fifo", "", "a\x00b",
         *(("device",) if DEVICES else ()))
VALUES = {  # flag -> the values a case may give it (paths relative to the case's own folder)
    "--scale": ("ci", "cpu", "gpu", "exact", "", "CI"),
    "--device": ("cpu", "cuda", "cuda:7", "mps", "cpu:0", "tpu", "", "cuda:-1", "meta", "0"),
    "--seed": ("0", "7", "-1", "18446744073709551616", "-99999999999999999999", "1.5", "abc", "", "0x10", "1_000"),
    "--out": PATHS,
    "--save-models": ("models", "file", "fifo", "new/models"),
    "--models": ("models", "missing", "file"),
    "--text": ("text.txt", "missing.txt", "folder", "fifo"),
    "--model": ("org/name", "folder"),
    "--revision": ("main",),
    "--dtype": ("bf16", "fp16", "fp32", "int8", ""),
    "--experiment": ("joint-vs-marginal", "ground-truth", "nope"),
    "--preset": ("small", "1m", "huge", ""),
    "--trust-remote-code": None, "--no-progress": None, "--check": None, "--spread": None, "--bogus": None,
    "-x": None,
}


@dataclasses.dataclass(frozen=True)
class CliFuzzResult(ExperimentResult):
    EXPERIMENT = "cli_fuzz"


class Started(Exception):
    """A maker of the book's models or results was called: the command line accepted its arguments."""


def _fake_run(scale="ci", device=None, seed=0, progress=False, **options):
    """What every experiment's run does first: pick the device (refusing one that is absent) and seed
    a generator with ``seed``; then a small typed result instead of the experiment."""
    device = pick_device(device)
    torch.Generator().manual_seed(seed)
    return CliFuzzResult(scale, seed, {"options": sorted(options)}, {"value": 1.0}, {},
                         dataclasses.replace(ENVIRONMENT, device=str(device)))


def _started(*args, **kwargs):
    raise Started


@contextlib.contextmanager
def _no_experiment_runs():
    with pytest.MonkeyPatch.context() as patch:
        for name, _ in cli.EXPERIMENTS.values():
            module = importlib.import_module(name)  # the fake keeps run's signature: the parser reads it
            patch.setattr(module, "run", functools.wraps(module.run)(_fake_run))
        for name in ("make", "check", "spread", "save_results"):
            patch.setattr(book, name, _started)
        patch.setattr(small_masked_lm, "make", _started)
        yield


def _flags_of(command: str) -> tuple[str, ...]:
    """The options the real parser gives ``command`` (without --help)."""
    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return tuple(sorted(flag for flag in commands.choices[command]._option_string_actions
                        if flag.startswith("--") and flag != "--help"))


FLAGS = {command: _flags_of(command) for command in COMMANDS}


@st.composite
def argvs(draw):
    """A command and up to four of its flags with values, in any order (now and then a flag of
    another command, an unknown one, or no command at all); an experiment mostly with --out."""
    command = draw(st.sampled_from(COMMANDS) | st.sampled_from(("", "nope", "--help")))
    own = FLAGS.get(command, ())
    flags = draw(st.lists(st.sampled_from(own), max_size=4)) if own else []
    if draw(st.integers(0, 7)) == 0:
        flags.append(draw(st.sampled_from(tuple(VALUES))))
    if command in cli.EXPERIMENTS and draw(st.integers(0, 4)):
        flags.append("--out")
    argv = [command] if command else []
    for flag in draw(st.permutations(flags)):
        argv.append(flag)
        if VALUES[flag] is not None:
            argv.append(draw(st.sampled_from(VALUES[flag])))
    return argv


def _make_paths(folder: pathlib.Path) -> None:
    """The things the paths of ``VALUES`` name, in the case's folder."""
    (folder / "file").write_text("a file")
    (folder / "text.txt").write_text("some text")
    (folder / "folder").mkdir()
    (folder / "models").mkdir()
    os.mkfifo(folder / "fifo")
    os.symlink(folder / "fifo", folder / "link-to-fifo")
    if DEVICES:
        make_device(folder / "device")


def _kind(path: pathlib.Path) -> str:
    try:
        return stat.filemode(os.stat(path).st_mode)[0]
    except (OSError, ValueError):
        return "nothing"


def _words(argv: list[str]) -> set[str]:
    """What a refusal may name: a flag given, its name without the dashes, or a value given."""
    flags = {word for word in argv if word.startswith("-")}
    return flags | {flag.lstrip("-") for flag in flags} | {word for word in argv if word and word not in flags}


@fuzz(150)
@given(argv=argvs())
@example(argv=["ground-truth", "--seed", "18446744073709551616", "--out", "r.json"])  # the cases of
@example(argv=["blocks", "--out", "a\x00b"])  # issue 22, every run
@example(argv=["generation-order", "--out", "link-to-fifo"])
def test_the_command_line_runs_or_refuses_in_one_line(argv):
    """Every argv ends in a second with an exit status: argparse's usage error (status 2), or the
    run (status 0, the result written to --out as a regular file that loads), or one line
    "maskdiff-tutor: error: ..." (status 2) naming a flag or value given; never a traceback, and
    a folder, FIFO or device named by a flag is still there afterwards."""
    with tempfile.TemporaryDirectory() as name, working_in(pathlib.Path(name)), _no_experiment_runs(), \
            case(seconds=10):
        folder = pathlib.Path(name)
        _make_paths(folder)
        special = {path: kind for path in PATHS if path and "\x00" not in path
                   if (kind := _kind(folder / path)) in "dpc"}  # a folder, a FIFO, a character device
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(list(argv))
            except SystemExit as exit:  # argparse: a usage error (2) or --help (0)
                status = ("argparse", exit.code)
            except Started:
                status = "started"
        lines = err.getvalue().strip().splitlines()
        assert {path: _kind(folder / path) for path in special} == special, f"replaced: {special}"
        assert os.path.islink(folder / "link-to-fifo"), "the symlink to the FIFO was replaced"
        if isinstance(status, tuple):
            assert status[1] == 0 or (status[1] == 2 and "error:" in lines[-1]), (status, lines)
        elif status == 2:
            assert len(lines) == 1 and lines[0].startswith("maskdiff-tutor: error: "), lines
            assert any(names(lines[0], word) for word in _words(argv)), f"names nothing given: {lines[0]}"
        elif status == 0:
            given_out = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--out"]
            written = folder / given_out[-1]
            assert written.is_file(), f"status 0, but --out {given_out[-1]!r} is {_kind(written)}"
            CliFuzzResult.load(written)
        else:
            assert status == "started", f"exit status {status}: {lines}"
