"""The record every experiment returns: what was run, with which settings, on what, and what it measured.

Each experiment defines its result as a subclass of :class:`ExperimentResult` whose ``config``,
``metrics`` and ``curves`` are typed records (frozen dataclasses, named for what they measure), so
a chapter reads ``result.metrics.weighted.p_a`` instead of indexing nested dicts by strings. The
envelope is common to all: the experiment's name and schema version, the scale and seed, and the
:class:`Environment` (library versions, hardware, wall time).

A result saves as strict JSON (``save``) and reads back into the same types (``load``), every value
checked against its field. A file of another experiment, or one written under another schema
version, is refused with a message that names both: numbers are never read into fields that
mean something else.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .. import distributed
from ..device import hardware_description
from ..files import check_output, read_json, write_atomically
from ..records import from_json, non_finite_places, to_json

# The experiments whose results ``ExperimentResult.load`` can read: name -> module. (``nelbo_checks`` and
# ``distance_bound`` compute exactly in seconds and return plain typed records, never saved as results.)
EXPERIMENT_MODULES = ("joint_vs_marginal", "ground_truth", "generation_order", "blocks", "real_model",
                      "nelbo_checks", "distance_bound", "ladder")


@dataclass(frozen=True)
class Environment:
    """Where and with what a run was made: versions, hardware and wall time."""

    maskdiff_tutor: str  # the package's version
    numpy: str
    python: str
    torch: str
    device: str  # the device the run measured on ("cpu", "cuda:0")
    platform: str
    processor: str
    cpu_threads: int  # torch's intra-op threads
    wall_seconds: float  # the run's wall time
    finished: str  # UTC time stamp, ISO 8601
    cpu_capability: str | None = None  # the CPU kernels torch picked (AVX512, AVX2, ...)
    processes: int = 1  # processes under torchrun
    gpu: str | None = None  # the GPU's name on CUDA
    gpu_memory_gib: float | None = None
    cuda: str | None = None  # CUDA version of torch's build
    training: Environment | None = None  # where the measured models were trained (None: no models, or trained here)
    non_finite_values: tuple[str, ...] = ()  # places of NaN and infinities, written as null

    @classmethod
    def now(cls, device: torch.device, started: float, training: Environment | None = None) -> Environment:
        """The environment of a run on ``device`` that began at ``started`` (``time.time()``)."""
        import numpy

        from .. import __version__

        hardware = hardware_description(device)
        return cls(maskdiff_tutor=__version__, numpy=numpy.__version__, processes=distributed.world_size(),
                   wall_seconds=round(time.time() - started, 2),
                   finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), training=training, **hardware)

    @property
    def hardware(self) -> str:
        """The hardware in a few words (the GPU's name, or the CPU with its kernels and threads)."""
        if self.gpu is not None:
            return self.gpu
        kernels = f"{self.cpu_capability} kernels, " if self.cpu_capability else ""
        return f"CPU ({kernels}{self.cpu_threads} threads)"


@dataclass(frozen=True)
class ExperimentResult:
    """What an experiment run returns and saves. Subclasses set ``EXPERIMENT`` (the module name)
    and ``SCHEMA``, and type ``config``, ``metrics`` and ``curves``."""

    EXPERIMENT: ClassVar[str] = ""  # the experiment's module name, e.g. "ground_truth"
    SCHEMA: ClassVar[int] = 2  # the version of the file layout; a file of another version is refused

    scale: str  # "ci", "cpu" or "gpu"
    seed: int  # the seed the run used
    config: Any  # every setting that produced the numbers (a typed record)
    metrics: Any  # the numbers (a typed record)
    curves: Any  # training histories and other series (a typed record)
    environment: Environment  # versions, hardware, wall time

    _TYPES: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.EXPERIMENT:
            ExperimentResult._TYPES[cls.EXPERIMENT] = cls

    def to_json(self) -> dict:
        """The result as plain JSON values, the envelope first; non-finite floats are null and
        their places listed in ``environment.non_finite_values``."""
        found: list[str] = []
        body = to_json(self, "", found)  # a field typed Any (config, metrics, curves not typed) is untyped
        if found:
            body["environment"]["non_finite_values"] = found
        return {"experiment": self.EXPERIMENT, "schema": self.SCHEMA, **body}

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the result as strict JSON (parent folders created), atomically: a failed write
        never leaves half a file or destroys an earlier result at ``path``; only a regular file
        is replaced (``files.write_atomically``). The path is checked first, then the whole
        result is converted and read back as its own type, so a value that cannot be stored, or
        that would not load as its field's type, is refused (``TypeError`` naming its place)
        before the file is opened."""
        check_output(path, "path")
        record = self.to_json()
        try:
            type(self).from_json(record, type(self).__name__)
        except ValueError as error:
            raise TypeError(f"{type(self).__name__} not saved, as it would not load: {error}") from None
        return write_atomically(path, json.dumps(record, indent=2, allow_nan=False) + "\n")

    @classmethod
    def check_type(cls, value, argument: str = "result") -> None:
        """Raise ``TypeError`` naming ``argument`` unless ``value`` is a result of this class
        (a function of one experiment's result, given another's, says so)."""
        if not isinstance(value, cls):
            given = type(value).__name__
            if isinstance(value, ExperimentResult):
                given += f" (a result of {value.EXPERIMENT!r})"
            raise TypeError(f"{argument} must be a {cls.__name__} (a result of {cls.EXPERIMENT!r}); got {given}")

    @classmethod
    def from_json(cls, record, source: str = "the record"):
        """A result from ``to_json``'s values. Called on a subclass, the record must be of that
        experiment; called on ``ExperimentResult``, the record's experiment picks the class."""
        if not isinstance(record, dict):
            raise ValueError(f"{source}: a result is a JSON object; got {type(record).__name__}")
        experiment, schema = record.get("experiment"), record.get("schema", 1)
        kind = cls._result_type(experiment, source) if not cls.EXPERIMENT else cls
        if experiment != kind.EXPERIMENT:
            raise ValueError(f"{source} holds a result of experiment {experiment!r}, not of {kind.EXPERIMENT!r}; "
                             f"load it with the class of its own experiment (or ExperimentResult.load)")
        if schema != kind.SCHEMA:
            raise ValueError(f"{source} holds a result of {experiment!r} written under schema {schema!r} (a file "
                             f"with no 'schema' is schema 1); this version reads schema {kind.SCHEMA} of "
                             f"{kind.EXPERIMENT!r}: run the experiment again to write it anew")
        body = {key: value for key, value in record.items() if key not in ("experiment", "schema")}
        environment = body.get("environment")
        places = environment.get("non_finite_values", []) if isinstance(environment, dict) else []
        return from_json(kind, body, "", non_finite_places(places))

    @classmethod
    def load(cls, path: str | pathlib.Path):
        """Read a result written by ``save``; a file that is not one, or one of another experiment
        or schema, raises ``ValueError`` naming the file, what it holds and what was expected."""
        path = pathlib.Path(path)
        record = read_json(path, "an experiment result")
        try:
            return cls.from_json(record, str(path))
        except ValueError as error:
            message = str(error)
            raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None

    @staticmethod
    def _result_type(experiment, source: str) -> type:
        if experiment not in EXPERIMENT_MODULES:
            raise ValueError(f"{source}: not an experiment result (experiment {experiment!r}; results are of "
                             f"{list(EXPERIMENT_MODULES)})")
        importlib.import_module(f"{__package__}.{experiment}")
        if experiment not in ExperimentResult._TYPES:
            raise ValueError(f"{source}: experiment {experiment!r} has no typed result class")
        return ExperimentResult._TYPES[experiment]


__all__ = ["Environment", "ExperimentResult", "EXPERIMENT_MODULES"]
