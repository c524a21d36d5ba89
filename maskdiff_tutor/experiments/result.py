"""The record every experiment returns: what was run, with which settings, on what, and what it measured."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch

from .. import distributed
from .._checks import read_json
from ..device import hardware_description


@dataclass
class ExperimentResult:
    """What an experiment run returns and saves: its settings, numbers, curves and environment."""
    experiment: str  # module name of the experiment
    scale: str  # "ci" or "gpu"
    seed: int  # the seed the run used
    config: dict  # every setting that produced the numbers
    metrics: dict = field(default_factory=dict)  # the numbers (JSON-serialisable)
    curves: dict = field(default_factory=dict)  # training histories and other series
    environment: dict = field(default_factory=dict)  # versions, hardware, wall time

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the result as strict JSON (parent folders created), atomically: a temporary file
        in the same folder, then a rename, so a failed write never leaves half a file or destroys
        an earlier result at ``path``. A non-finite number (NaN, +-inf) is written as null and
        named, with its place, in ``environment["non_finite_values"]``."""
        path = pathlib.Path(path)
        record = _strict(asdict(self), "", found := [])
        if found:
            record["environment"] = {**record["environment"], "non_finite_values": found}
        write_atomically(path, json.dumps(record, indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "ExperimentResult":
        """Read a result written by ``save``; a file that is not one raises ``ValueError`` naming it."""
        path = pathlib.Path(path)
        record = read_json(path, "an experiment result")
        if not isinstance(record, dict):
            raise ValueError(f"{path}: a result is a JSON object; got {type(record).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = sorted(set(fields) - set(record)), sorted(set(record) - set(fields))
        if missing or unknown:
            raise ValueError(f"{path}: not an experiment result (missing {missing}, unknown {unknown})")
        for name, kind in (("experiment", str), ("scale", str), ("seed", int), ("config", dict), ("metrics", dict),
                           ("curves", dict), ("environment", dict)):
            if not isinstance(record[name], kind) or isinstance(record[name], bool):
                raise ValueError(f"{path}: {name!r} must be a JSON {_JSON_NAMES[kind]}; got {record[name]!r:.60}")
        return cls(**record)


_JSON_NAMES = {str: "string", int: "integer", dict: "object"}


def write_atomically(path: str | pathlib.Path, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _strict(value, where: str, found: list):
    """``value`` as plain JSON values (tensors and numpy scalars converted), with every non-finite
    float replaced by None and its place appended to ``found``."""
    if isinstance(value, dict):
        return {key: _strict(item, f"{where}.{key}" if where else str(key), found) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item, f"{where}[{i}]", found) for i, item in enumerate(value)]
    if isinstance(value, torch.Tensor):
        return _strict(value.tolist(), where, found)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{where}: {value}")
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a result")


def environment(device: torch.device, started: float) -> dict:
    """Library versions, hardware and wall time of a run that began at ``started`` (time.time())."""
    import numpy

    from .. import __version__

    return {"maskdiff_tutor": __version__, "numpy": numpy.__version__, "python": platform.python_version(),
            **hardware_description(device), "processes": distributed.world_size(),
            "wall_seconds": round(time.time() - started, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
