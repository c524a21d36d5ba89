"""Fuzz tests of the files the package reads and writes (``files.read_json``, ``files.write_atomically``,
``files.check_output``, ``ExperimentResult.save`` and ``load``): generated file contents (strict
JSON, garbage bytes, truncated text, NaN and infinity literals, duplicate keys, other encodings,
deep nesting, huge numbers) and paths that are not a regular file (missing, a folder, a FIFO, a
character device, symlinks to each, a symlink loop, a path below a file, a NUL byte, odd types)."""

from __future__ import annotations

import json
import math
import os
import pathlib
import stat
import tempfile

import pytest
from fuzzing import DEVICES, attempt, case, fuzz, make_device, working_in
from hypothesis import example, given
from hypothesis import strategies as st
from result_cases import ENVIRONMENT, FuzzConfig, FuzzMetrics, FuzzResult, Row

from maskdiff_tutor import files
from maskdiff_tutor.experiments.result import ExperimentResult

STRICT = st.recursive(st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(max_size=6)
                      | st.floats(allow_nan=False, allow_infinity=False),
                      lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children,
                                                                                         max_size=3),
                      max_leaves=8)


@st.composite
def contents(draw):
    """(what kind of content, its bytes): strict JSON must be read back; NaN and infinity literals,
    numbers beyond float64 and duplicate keys must be refused; anything else may be either."""
    kind = draw(st.sampled_from(("strict", "non-finite", "duplicate key", "truncated", "garbage", "encoding",
                                 "nested", "huge number")))
    value = draw(STRICT)
    text = json.dumps(value)
    if kind == "non-finite":
        literal = draw(st.sampled_from(("NaN", "Infinity", "-Infinity", "1e999", "-1e400")))
        text = draw(st.sampled_from((literal, f"[{text}, {literal}]", f'{{"a": {{"b": [1, {literal}]}}}}')))
    elif kind == "duplicate key":
        text = draw(st.sampled_from(('{"a": 1, "a": 2}', f'{{"k": {text}, "x": 0, "k": {text}}}',
                                     f'[{{"b": {{"c": 1, "c": 1}}}}, {text}]')))
    elif kind == "truncated":
        text = text[:draw(st.integers(0, max(len(text) - 1, 0)))]
    elif kind == "nested":
        depth = draw(st.sampled_from((10, 900, 100_000)))
        text = "[" * depth + "]" * depth
    elif kind == "huge number":
        text = draw(st.sampled_from(("1" * 5000, "-" + "9" * 4301, "0." + "1" * 5000, "1e308")))
    if kind == "garbage":
        return kind, draw(st.binary(max_size=40) | st.sampled_from((b"\xff\xfe{}", b"\xef\xbb\xbf{}", b"\x00")))
    if kind == "encoding":
        return kind, json.dumps({"é": "ü"}, ensure_ascii=False).encode(draw(st.sampled_from(("latin-1", "utf-16"))))
    return kind, text.encode("utf-8")


def _finite(value) -> bool:
    """No NaN or infinity anywhere in ``value`` (walked without recursion: a file may nest 900 deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        stack.extend(item.values() if isinstance(item, dict) else item if isinstance(item, list) else ())
    return True


@fuzz(80)
@given(content=contents())
@example(content=("non-finite", b"[1e999]"))  # the cases of issue 22, every run
@example(content=("huge number", b"1" * 5000))
@example(content=("nested", b"[" * 100_000 + b"]" * 100_000))
def test_read_json_reads_strict_json_or_names_the_file(content):
    """``read_json`` returns the JSON of a strict file exactly; on anything else it returns strict
    JSON values (no NaN or infinity) or raises a ``ValueError`` naming the file; NaN and infinity
    literals, numbers beyond float64 and duplicate keys are refused."""
    kind, data = content
    with case(), tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "f.json"
        path.write_bytes(data)
        value, error = attempt(lambda: files.read_json(path, "a fuzz file"), (str(path),))
        if kind == "strict":
            assert error is None and value == json.loads(data), f"strict JSON {data!r:.200} read as {value!r:.200}"
        if error is None:
            assert kind not in ("non-finite", "duplicate key"), f"{kind} {data!r:.200} was read: {value!r:.200}"
            assert _finite(value), f"a non-finite number was read from {data!r:.200}: {value!r:.200}"


# --- paths that are not a regular file ---------------------------------------------------------------

TARGETS = ("missing", "missing folders", "regular file", "empty file", "folder", "FIFO", "device", "link to file",
           "link to FIFO", "link to folder", "dangling link", "link loop", "below a file", "NUL byte", "empty string")
REGULAR = ("missing", "missing folders", "regular file", "empty file", "link to file", "dangling link")


def _make(kind: str, folder: pathlib.Path):
    """A path of ``kind`` in ``folder`` (which also holds "file", a regular file)."""
    (folder / "file").write_text('{"old": 1}')
    target = folder / "target"
    if kind in ("regular file", "link to file"):
        target.write_text('{"old": 2}')
    if kind == "empty file":
        target.write_text("")
    if kind == "folder":
        target.mkdir()
    if kind in ("FIFO", "link to FIFO"):
        os.mkfifo(folder / "fifo")
    if kind == "device":
        make_device(target)
    links = {"link to file": "target", "link to FIFO": "fifo", "link to folder": ".", "dangling link": "nowhere",
             "link loop": "loop"}
    if kind in links:
        os.symlink(folder / links[kind], folder / "loop" if kind == "link loop" else folder / "link")
        return folder / ("loop" if kind == "link loop" else "link")
    return {"FIFO": folder / "fifo", "missing folders": folder / "a" / "b" / "r.json", "below a file":
            folder / "file" / "r.json", "NUL byte": str(folder / "a\x00b"), "empty string": ""}.get(kind, target)


def _state(path) -> tuple:
    """What sits at ``path`` (the link itself, not its target): its kind and, for a file, its text."""
    try:
        info = os.lstat(path)
    except (OSError, ValueError):
        return ("nothing",)
    if stat.S_ISLNK(info.st_mode):
        try:
            target = stat.filemode(os.stat(path).st_mode)[0]
        except OSError:  # dangling, or a loop
            target = "nothing"
        return ("link", os.readlink(path), target)
    if stat.S_ISREG(info.st_mode):
        return ("file", pathlib.Path(path).read_text())
    return (stat.filemode(info.st_mode)[0],)


READERS = {"read_json": lambda path: files.read_json(path, "a fuzz file"), "load": FuzzResult.load,
           "ExperimentResult.load": ExperimentResult.load}


KINDS = [kind for kind in TARGETS if DEVICES or kind != "device"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", READERS)
def test_a_path_that_is_not_a_regular_file_is_named_when_read(reader, kind, tmp_path):
    """Reading a path that is not a JSON file (missing, a folder, a FIFO that no one writes to, a
    device, a symlink loop, below a file, with a NUL byte, empty) raises one of the package's errors
    naming the path at once: no read waits on a FIFO. (Every kind of path once: not counted as
    generated cases.)"""
    with working_in(tmp_path, 0o022), case(seconds=1, generated=False):
        path = _make(kind, tmp_path)
        words = (str(path), "path") if str(path) else ("path", ".", "the whole file")
        value, error = attempt(lambda: READERS[reader](path), words)
        assert error is not None or kind in ("regular file", "link to file"), f"read {kind}: {value!r:.200}"


RESULT = FuzzResult("ci", 0, FuzzConfig(1, "demo", None), FuzzMetrics({1: 2.0}, {}, [], Row(1, 2.0), (1, "a"), (), []),
                    {}, ENVIRONMENT)
WRITERS = {"write_atomically text": lambda path: files.write_atomically(path, '{"new": 1}'),
           "write_atomically bytes": lambda path: files.write_atomically(path, b'{"new": 1}'),
           "write_atomically callable": lambda path: files.write_atomically(path, lambda f: f.write(b'{"new": 1}')),
           "ExperimentResult.save": RESULT.save,
           "check_output": lambda path: files.check_output(path, "--out")}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("writer", WRITERS)
@fuzz(3)
@given(umask=st.sampled_from((0o022, 0o077, 0o002)))
def test_a_write_replaces_only_a_regular_file(writer, kind, umask):
    """A write to a folder, FIFO, device, a symlink to one, a link loop, below a file, a NUL byte or
    "" is refused naming the path (or the argument), before anything is written: what was there
    stays. A write to a regular file or a new path (through a symlink: the link stays) writes the
    file with the umask's mode; no temporary file is left either way."""
    with tempfile.TemporaryDirectory() as name, working_in(pathlib.Path(name), umask), case(seconds=2):
        folder = pathlib.Path(name)
        path = _make(kind, folder)
        before = _state(path)
        words = (str(path), "path", "--out") if str(path) else ("path", "--out")
        _, error = attempt(lambda: WRITERS[writer](path), words)
        leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
        assert leftovers == [], f"temporary files left: {leftovers}"
        if error is not None or writer == "check_output":
            assert error is None or kind not in REGULAR, f"a write to {kind} was refused: {error}"
            assert error is not None or kind in REGULAR, f"{writer} accepted {kind}"
            assert _state(path) == before, f"{writer} changed {kind}: {before} -> {_state(path)}"
            return
        assert kind in REGULAR, f"{writer} wrote to {kind}: {before} -> {_state(path)}"
        written = pathlib.Path(os.path.realpath(path))
        assert '"new"' in written.read_text() or "fuzz_result" in written.read_text(), written.read_text()
        if "link" in kind:
            assert os.path.islink(path), f"the symlink was replaced: {_state(path)}"
        if kind not in ("regular file", "empty file", "link to file"):  # a new file: 0666 less the umask
            assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask, oct(written.stat().st_mode)
