"""Files the package writes and reads: one check of an output path (``check_output``, called
before any work), one atomic writer for results, checkpoints and reports that replaces only
regular files, and one strict JSON reader whose errors name the file and what it should hold."""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import signal
import stat
import tempfile
import threading
from collections.abc import Callable
from typing import BinaryIO


def write_atomically(path: str | pathlib.Path, content: str | bytes | Callable[[BinaryIO], None]) -> pathlib.Path:
    """Write ``content`` to ``path`` (parent folders created) through a temporary file in the same
    folder and a rename, so a failed or interrupted write never leaves half a file or destroys what
    was at ``path``. ``content`` is text (UTF-8), bytes, or a function that writes into the open
    binary file (e.g. ``lambda f: torch.save(state, f)``).

    Only a regular file is replaced: a folder, device, FIFO or socket at ``path`` is refused
    (``check_output``) before anything is written. A symlink is followed: the link stays and the
    file it points to is replaced (a dangling link's target is created). The file has the mode
    ``open()`` would give it: the replaced file's permissions, or 0666 less the umask for a new
    file. SIGTERM or SIGINT during the write removes the temporary file, then ends the process as
    the signal would have (``_signals_clean_up``). Returns ``path``."""
    check_output(path, "path")
    path = pathlib.Path(path)
    with _signals_clean_up():
        _write_through_temporary(pathlib.Path(os.path.realpath(path)) if path.is_symlink() else path, content)
    return path


def _write_through_temporary(path: pathlib.Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), mode)  # mkstemp makes it 0600
            if callable(content):
                content(file)
            else:
                file.write(content.encode("utf-8") if isinstance(content, str) else content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None:
            pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (changing it, even for
    an instant, would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
        return umask


class _Signalled(BaseException):
    """Raised by the handler ``_signals_clean_up`` installs, so the writer's cleanup runs."""

    def __init__(self, number: int):
        super().__init__(f"signal {number}")
        self.number = number


@contextlib.contextmanager
def _signals_clean_up():
    """While the block runs in the main thread, SIGTERM and SIGINT whose handler is the default
    (which would end the process at once, leaving the temporary file) raise an exception instead,
    so the writer removes its temporary file; afterwards the old handler is restored and the signal
    delivered again, so the process still ends by that signal. A handler the program installed
    itself (Python's own SIGINT handler raises ``KeyboardInterrupt``; a training loop may only take
    note) is left to do what it does; an ignored signal stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(number, frame):
        received.append(number)
        if len(received) == 1:  # a second signal must not interrupt the cleanup of the first
            raise _Signalled(number)

    previous = {}
    try:
        for number in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(number) is signal.SIG_DFL:
                previous[number] = signal.signal(number, handler)
        yield
    except _Signalled:
        pass
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
    if received:
        signal.raise_signal(received[0])  # the default action: the process ends here
        raise SystemExit(128 + received[0])


def check_output(path: str | pathlib.Path, argument: str, *, kind: str = "file") -> None:
    """Raise a one-line ``ValueError`` naming ``argument`` unless a regular file can be written at
    ``path``: nothing there, or a regular file, in a folder that exists or can be created. A folder,
    a device, a FIFO or a socket at ``path`` is refused (a symlink is followed: its target is
    checked). ``kind`` names what the path should be (``"JSON file"``) in the message."""
    target = check_path(path, argument)
    if target.is_symlink():
        target = pathlib.Path(os.path.realpath(target))
        if target.is_symlink():
            raise ValueError(f"{argument} {path} is a symlink that never reaches a file (a loop); give the path of "
                             f"a {kind}")
    try:
        special = special_file(target)
    except OSError as error:
        raise ValueError(f"{argument} {path}: {error.strerror}; give the path of a {kind}") from None
    if special == "a folder":
        raise ValueError(f"{argument} {path} is a folder; give the path of a {kind}")
    if special is not None:
        raise ValueError(f"{argument} {path} is {special}, not a regular file; give the path of a {kind}")
    _check_writable_folder(argument, path, target.parent)


def check_output_folder(path: str | pathlib.Path, argument: str) -> None:
    """Raise a one-line ``ValueError`` naming ``argument`` unless ``path`` is, or can become, a
    writable folder."""
    target = check_path(path, argument)
    if target.exists() and not target.is_dir():
        what = special_file(target) or "a file"
        raise ValueError(f"{argument} {path} is {what}; give a folder")
    _check_writable_folder(argument, path, target)


def check_path(path, argument: str) -> pathlib.Path:
    """``path`` as a ``pathlib.Path``: a one-line ``TypeError`` naming ``argument`` if it is not a
    str or path, a ``ValueError`` if it holds a NUL byte (which no file name can; the OS call would
    fail with Python's bare "embedded null byte")."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a str or pathlib.Path (a file path); got {type(path).__name__} "
                        f"{path!r:.60}")
    if "\0" in str(path):
        raise ValueError(f"{argument} {str(path)!r} holds a NUL byte, which no file name can; give a path without one")
    return pathlib.Path(path)


def special_file(path: str | pathlib.Path) -> str | None:
    """What sits at ``path`` if it is neither nothing nor a regular file (symlinks followed): ``"a folder"``,
    ``"a character device"``, ``"a block device"``, ``"a FIFO"``, ``"a socket"`` or ``"a special file"``;
    ``None`` for a regular file or nothing."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there (or a file where a folder should be)
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def _check_writable_folder(argument: str, path, folder: pathlib.Path) -> None:
    existing = folder
    while not existing.exists():  # the nearest folder that exists must let us create the rest
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{argument} {path}: {existing} is a file, so the folder {folder} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{argument} {path}: the folder {existing} is not writable")


def read_json(path: str | pathlib.Path, what: str):
    """The JSON in the file at ``path``, read strictly; a file that is missing, unreadable or not
    JSON raises ``ValueError`` naming the file and ``what`` it should hold. Only a regular file (or
    a symlink to one) is opened: a folder, FIFO (which would wait for a writer), device or socket is
    refused first. Strict JSON has no ``NaN``, ``Infinity`` or ``-Infinity``, no number beyond the
    largest float (``1e999``), no integer longer than Python reads from text (4300 digits) and no
    key twice in one object: each is refused, naming the file and the place (``metrics.ppl``) where
    it stands; so is nesting deeper than Python's parser follows."""
    path = check_path(path, "path")
    parse = _StrictParse()
    try:
        special = special_file(path)
        if special is not None:
            raise ValueError(f"{path} is {special}, not a regular file (expected {what})")
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=parse.constant, parse_int=parse.integer,
                          parse_float=parse.number, object_pairs_hook=parse.object)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (expected {what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable as {what} ({type(error).__name__}: {error})") from None
    except RecursionError:
        raise ValueError(f"{path}: not readable as {what} (nested deeper than Python's JSON parser follows)") from None
    if parse.marked:
        raise ValueError(f"{path}: not strict JSON ({what}): {_first_marked(data)}")
    return data


class _StrictParse:
    """The parser's hooks for what ``read_json`` refuses. They do not know where in the tree they
    are, so they mark the value (``_Marked``) and the place is found after parsing."""

    def __init__(self):
        self.marked = False

    def constant(self, text: str):
        self.marked = True
        return _Marked(f"{text} (strict JSON has no NaN or infinities; a result writes them as null)")

    def integer(self, text: str):
        try:
            return int(text)
        except ValueError:  # longer than sys.get_int_max_str_digits()
            self.marked = True
            return _Marked(f"an integer of {len(text.lstrip('-'))} digits (more than Python reads from text)")

    def number(self, text: str) -> float:
        value = float(text)
        if math.isinf(value):
            self.marked = True
            return _Marked(f"{text} (a number beyond the largest float, 1.8e308)")
        return value

    def object(self, pairs: list) -> dict:
        data = dict(pairs)
        if len(data) == len(pairs):
            return data
        seen = set()
        for key, _ in pairs:
            if key in seen:
                self.marked = True
                return _Twice(data, key)
            seen.add(key)


class _Marked:
    """A value ``read_json`` refuses, and why."""

    def __init__(self, problem: str):
        self.problem = problem


class _Twice(dict):
    """An object in which ``key`` appeared twice."""

    def __init__(self, data: dict, key: str):
        super().__init__(data)
        self.key = key


def _first_marked(data, where: str = "") -> str | None:
    """``"<place>: <problem>"`` for the first value ``_StrictParse`` marked in ``data``, or None."""
    if isinstance(data, _Marked):
        return f"{where or 'the whole file'}: {data.problem}"
    if isinstance(data, _Twice):
        return f"{_place(where, data.key)}: the key appears twice in one object"
    if isinstance(data, dict):
        children = ((_place(where, key), item) for key, item in data.items())
    else:
        children = ((f"{where}[{i}]", item) for i, item in enumerate(data if isinstance(data, list) else ()))
    return next((found for place, item in children if (found := _first_marked(item, place)) is not None), None)


def _place(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
