"""The record every experiment returns: what was run, with which settings, on what, and what it measured."""

from __future__ import annotations

import json
import pathlib
import platform
import time
from dataclasses import asdict, dataclass, field

import torch

from ..device import hardware_description


@dataclass
class ExperimentResult:
    experiment: str  # module name of the experiment
    scale: str  # "ci" or "gpu"
    seed: int  # the seed the run used
    config: dict  # every setting that produced the numbers
    metrics: dict = field(default_factory=dict)  # the numbers (JSON-serialisable)
    curves: dict = field(default_factory=dict)  # training histories and other series
    environment: dict = field(default_factory=dict)  # versions, hardware, wall time

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the result as JSON (parent folders created)."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, default=_jsonable) + "\n")
        return path

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "ExperimentResult":
        return cls(**json.loads(pathlib.Path(path).read_text()))


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a result")


def environment(device: torch.device, started: float) -> dict:
    """Library versions, hardware and wall time of a run that began at ``started`` (time.time())."""
    import numpy

    from .. import __version__

    return {"maskdiff_tutor": __version__, "numpy": numpy.__version__, "python": platform.python_version(),
            **hardware_description(device), "wall_seconds": round(time.time() - started, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
