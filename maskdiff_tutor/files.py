"""Files the package writes and reads: one atomic writer for results, checkpoints and reports,
and one JSON reader whose errors name the file and what it should hold."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def write_atomically(path: str | pathlib.Path, content: str | bytes | Callable[[BinaryIO], None]) -> pathlib.Path:
    """Write ``content`` to ``path`` (parent folders created) through a temporary file in the same
    folder and a rename, so a failed or interrupted write never leaves half a file or destroys what
    was at ``path``. ``content`` is text (UTF-8), bytes, or a function that writes into the open
    binary file (e.g. ``lambda f: torch.save(state, f)``)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            if callable(content):
                content(file)
            else:
                file.write(content.encode("utf-8") if isinstance(content, str) else content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return path


def check_output(path: str | pathlib.Path, argument: str, *, kind: str = "file") -> None:
    """Raise a one-line ``ValueError`` naming ``argument`` unless a regular file can be written at
    ``path``: nothing there, or a regular file, in a folder that exists or can be created. A folder,
    a device, a FIFO or a socket at ``path`` is refused (a symlink is followed: its target is
    checked). ``kind`` names what the path should be (``"JSON file"``) in the message."""
    target = pathlib.Path(path)
    if target.is_symlink():
        target = pathlib.Path(os.path.realpath(target))
    special = special_file(target)
    if special == "a folder":
        raise ValueError(f"{argument} {path} is a folder; give the path of a {kind}")
    if special is not None:
        raise ValueError(f"{argument} {path} is {special}, not a regular file; give the path of a {kind}")
    _check_writable_folder(argument, path, target.parent)


def check_output_folder(path: str | pathlib.Path, argument: str) -> None:
    """Raise a one-line ``ValueError`` naming ``argument`` unless ``path`` is, or can become, a
    writable folder."""
    target = pathlib.Path(path)
    if target.exists() and not target.is_dir():
        what = special_file(target) or "a file"
        raise ValueError(f"{argument} {path} is {what}; give a folder")
    _check_writable_folder(argument, path, target)


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
    """The JSON in the file at ``path``; a file that is missing, unreadable or not JSON raises
    ``ValueError`` naming the file and ``what`` it should hold."""
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (expected {what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable as {what} ({type(error).__name__}: {error})") from None
