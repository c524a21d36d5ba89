"""Files the package writes and reads: one atomic writer for results, checkpoints and reports,
and one JSON reader whose errors name the file and what it should hold."""

from __future__ import annotations

import json
import os
import pathlib
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
