"""Tests of maskdiff_tutor.files: the output-path checks (a device, FIFO, socket or folder refused,
naming the argument), the atomic writer (only regular files replaced, symlinks followed, the
umask's mode, no temporary file left by SIGTERM or SIGINT, checked in a real child process) and
the strict JSON reader (NaN, infinities and duplicate keys refused, naming the file and the key)."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import threading

import pytest

from maskdiff_tutor import files
from maskdiff_tutor.files import check_output, check_output_folder, read_json, write_atomically

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def fifo(tmp_path) -> pathlib.Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        yield path


@pytest.fixture
def never_replaced(monkeypatch):
    """Fail the test, instead of touching the file, should the writer get as far as writing
    (a regression run as root would otherwise replace /dev/null)."""
    monkeypatch.setattr(files.tempfile, "mkstemp", lambda *a, **k: pytest.fail("a temporary file was made"))
    monkeypatch.setattr(files.os, "replace", lambda *a, **k: pytest.fail("the file was replaced"))


def _names(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- the output-path checks -------------------------------------------------------------------------

def test_a_new_path_or_a_regular_file_passes_the_check(tmp_path):
    check_output(tmp_path / "new" / "r.json", "--out")
    (tmp_path / "r.json").write_text("old")
    check_output(tmp_path / "r.json", "--out")
    check_output_folder(tmp_path / "models", "--save-models")


def test_dev_null_is_refused_naming_the_argument():
    with pytest.raises(ValueError, match=r"^--out /dev/null is a character device, not a regular file; give the "
                                         r"path of a file$"):
        check_output("/dev/null", "--out")


def test_a_fifo_a_socket_and_a_folder_are_refused(tmp_path, fifo, unix_socket):
    with pytest.raises(ValueError, match=rf"^--out {fifo} is a FIFO, not a regular file; give the path of a "
                                         r"JSON file$"):
        check_output(fifo, "--out", kind="JSON file")
    with pytest.raises(ValueError, match=rf"^path {unix_socket} is a socket, not a regular file"):
        check_output(unix_socket, "path")
    with pytest.raises(ValueError, match=rf"^--out {tmp_path} is a folder; give the path of a file$"):
        check_output(tmp_path, "--out")
    with pytest.raises(ValueError, match=rf"^--out {fifo} is a FIFO; give a folder$"):
        check_output_folder(fifo, "--out")


def test_a_symlink_is_checked_by_what_it_points_to(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to("/dev/null")
    with pytest.raises(ValueError, match=rf"^--out {link} is a character device, not a regular file"):
        check_output(link, "--out")
    loop_a, loop_b = tmp_path / "a", tmp_path / "b"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    with pytest.raises(ValueError, match=rf"^--out {loop_a} is a symlink that never reaches a file \(a loop\)"):
        check_output(loop_a, "--out")
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "later" / "r.json")
    check_output(dangling, "--out")


def test_a_path_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "r.json"
    with pytest.raises(ValueError, match=rf"^--out {out}: {tmp_path / 'file'} is a file, so the folder "):
        check_output(out, "--out")


# --- the writer: only regular files --------------------------------------------------------------------

def test_the_writer_refuses_a_fifo_before_writing(tmp_path, fifo):
    with pytest.raises(ValueError, match=rf"^path {fifo} is a FIFO, not a regular file"):
        write_atomically(fifo, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and _names(tmp_path) == ["pipe"]


def test_the_writer_and_save_leave_dev_null_alone(never_replaced):
    from maskdiff_tutor.experiments.result import ExperimentResult

    before = os.stat("/dev/null")
    with pytest.raises(ValueError, match=r"^path /dev/null is a character device, not a regular file"):
        write_atomically("/dev/null", "x")
    with pytest.raises(ValueError, match=r"^path /dev/null is a character device, not a regular file"):
        ExperimentResult.save(object(), "/dev/null")  # the path is checked before the result is looked at
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev, before.st_ino)


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target.name)
    assert write_atomically(link, "new") == link
    assert link.is_symlink() and os.readlink(link) == target.name and target.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "later" / "r.json")
    write_atomically(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "later" / "r.json").read_text() == "made"
    assert _names(tmp_path) == ["dangling.json", "later", "link.json", "target.json"]


# --- the writer: modes ----------------------------------------------------------------------------------

@pytest.fixture
def umask():
    def set_umask(value: int) -> None:
        os.umask(value)

    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_follows_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert files._umask() == mask
    write_atomically(tmp_path / "r.json", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == mode


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "r.json"
    path.write_text("old")
    path.chmod(0o604)
    write_atomically(path, "new")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o604 and path.read_text() == "new"


# --- the writer: signals --------------------------------------------------------------------------------

CHILD = """
import signal, sys, time
from maskdiff_tutor.files import write_atomically
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, {sigint})
def slow(file):
    file.write(b"half of the new")
    file.flush()
    print("writing", flush=True)
    time.sleep(60)
write_atomically(sys.argv[1], slow)
"""


@pytest.mark.parametrize("number, sigint", [
    (signal.SIGTERM, "signal.default_int_handler"),
    (signal.SIGINT, "signal.default_int_handler"),  # Python's own: KeyboardInterrupt
    (signal.SIGINT, "signal.SIG_DFL"),  # the default action would end the process at once
])
def test_a_signal_during_the_write_leaves_no_temporary_file(tmp_path, number, sigint):
    path = tmp_path / "r.json"
    path.write_text("old")
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(sigint=sigint), str(path)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n", child.stderr.read()
        assert len(_names(tmp_path)) == 2  # the temporary file is there while writing
        child.send_signal(number)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -number  # it still ends by the signal
    assert _names(tmp_path) == ["r.json"] and path.read_text() == "old"


def test_the_handlers_are_restored_and_a_programs_own_handler_is_left_to_act(tmp_path):
    noted = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: noted.append(number))
    try:
        write_atomically(tmp_path / "r.json", lambda file: (os.kill(os.getpid(), signal.SIGTERM), file.write(b"all")))
        assert noted == [signal.SIGTERM] and (tmp_path / "r.json").read_text() == "all"
    finally:
        signal.signal(signal.SIGTERM, previous)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    write_atomically(tmp_path / "r.json", "again")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers



def test_a_write_from_another_thread_leaves_the_handlers_alone(tmp_path):
    errors = []

    def write():
        try:
            write_atomically(tmp_path / "r.json", "from a thread")
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            errors.append(error)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=30)
    assert not errors and (tmp_path / "r.json").read_text() == "from a thread"


# --- the strict reader ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, place", [
    ('{"metrics": {"ppl": NaN}}', r"metrics\.ppl: NaN \(strict JSON has no NaN or infinities"),
    ('{"a": [1, {"b": Infinity}]}', r"a\[1\]\.b: Infinity \("),
    ('{"a": -Infinity}', r"a: -Infinity \("),
    ("NaN", r"the whole file: NaN \("),
    ('{"metrics": {"ppl": 1, "k": 2, "ppl": 3}}', r"metrics\.ppl: the key appears twice in one object"),
    ('[{"m": 1}, {"m": 1, "m": 2}]', r"\[1\]\.m: the key appears twice in one object"),
    # numbers Python cannot read exactly: beyond a float, or longer than it reads from text
    ("[1e999]", r"\[0\]: 1e999 \(a number beyond the largest float"),
    ('{"a": {"b": -1e400}}', r"a\.b: -1e400 \(a number beyond the largest float"),
    ('{"k": ' + "9" * 5000 + "}", r"k: an integer of 5000 digits \(more than Python reads from text\)"),
    ("-" + "1" * 4301, r"the whole file: an integer of 4301 digits"),
])
def test_the_reader_refuses_what_strict_json_does_not_hold_or_python_cannot_read(tmp_path, text, place):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{path}: not strict JSON \(a test record\): {place}"):
        read_json(path, "a test record")


def test_the_reader_reads_strict_json_as_it_is(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"a": [1, 2.5, null, "NaN"], "b": {"c": {}}}')
    assert read_json(path, "a test record") == {"a": [1, 2.5, None, "NaN"], "b": {"c": {}}}
    assert type(read_json(path, "a test record")["b"]) is dict


def test_the_reader_reads_the_largest_numbers_it_can_hold(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("[1.7976931348623157e308, 1e-999, " + "9" * 4300 + "]")
    assert read_json(path, "a test record") == [1.7976931348623157e308, 0.0, int("9" * 4300)]


def test_the_reader_names_the_file_nested_too_deep(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=rf"^{path}: not readable as a test record \(nested deeper than Python's "
                                         r"JSON parser follows\)$"):
        read_json(path, "a test record")


@pytest.fixture
def no_hang():
    """Fail a test that runs past 5 s (a read that waits on a FIFO), instead of hanging the suite."""
    def alarm(signum, frame):
        pytest.fail("the read waited (on a FIFO?)")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 5)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_the_reader_refuses_a_fifo_before_opening_it(tmp_path, fifo, no_hang):
    link = tmp_path / "link"
    link.symlink_to(fifo)
    for path in (fifo, link):
        with pytest.raises(ValueError, match=rf"^{path} is a FIFO, not a regular file \(expected a test record\)$"):
            read_json(path, "a test record")
    with pytest.raises(ValueError, match=rf"^{tmp_path} is a folder, not a regular file \(expected a test record\)$"):
        read_json(tmp_path, "a test record")


def test_a_path_with_a_nul_byte_is_named_by_readers_and_writers(tmp_path):
    path = str(tmp_path / "a\0b")
    message = r" '.*a\\x00b' holds a NUL byte, which no file name can; give a path without one$"
    with pytest.raises(ValueError, match="^path" + message):
        read_json(path, "a test record")
    with pytest.raises(ValueError, match="^path" + message):
        write_atomically(path, "text")
    with pytest.raises(ValueError, match="^--out" + message):
        check_output(path, "--out")
    with pytest.raises(ValueError, match="^--save-models" + message):
        check_output_folder(path, "--save-models")
    assert _names(tmp_path) == []


def test_a_path_that_is_not_a_path_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"^path must be a str or pathlib.Path \(a file path\); got int 3$"):
        read_json(3, "a test record")
    with pytest.raises(TypeError, match=r"^--out must be a str or pathlib.Path \(a file path\); got bytes b'r.json'$"):
        check_output(b"r.json", "--out")
