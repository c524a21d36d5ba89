"""Trained models saved beside an experiment, and the book's own set shipped with the package.

An experiment trains its denoisers, then measures them. Training is the slow part and, on a CPU,
the part that is not portable: kernels for different instruction sets (AVX2, AVX-512) round the
last bits differently and training amplifies that, so two machines that train with the same seed
end with slightly different weights. The book therefore trains its CPU-scale models once
(``maskdiff-tutor book-models``), keeps the weights in ``BOOK_MODELS``, and its chapters measure
those stored weights, in float64 (``device.evaluation_dtype``), which gives the same numbers on
every machine. ``maskdiff-tutor book-models --check`` retrains them and shows that the numbers a
chapter rests on come back within the tolerances each experiment states (its ``headline``).

A folder written by ``save`` holds one sub-folder per model (``denoiser.save_denoiser``) and
``training.json``: the experiment, the settings that determine the weights, each model's training
history and where and how long it trained. ``load`` refuses a folder whose settings differ from the
run that asks for it, so stored weights can never be measured under settings they were not
trained with.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import shutil
import tempfile
from dataclasses import dataclass

import torch

from .. import distributed
from ..denoiser import Denoiser, load_denoiser, save_denoiser
from ..files import read_json
from ..records import from_json, to_json
from ..train import History
from .result import Environment

BOOK_MODELS = pathlib.Path(__file__).resolve().parent.parent / "book_models"  # the book's trained models
RECORD = "training.json"


@dataclass(frozen=True)
class TrainedModels:
    """A run's trained models with their training histories and the environment that trained them."""
    models: dict[str, Denoiser]  # name -> model, in training order
    histories: dict[str, History]  # name -> the training history
    environment: Environment  # versions, hardware and wall time of the training run


def book_folder(experiment: str) -> pathlib.Path:
    """The folder of the book's stored models for ``experiment`` (a module name such as "ground_truth")."""
    folder = BOOK_MODELS / experiment
    if not (folder / RECORD).is_file():
        stored = sorted(p.name for p in BOOK_MODELS.iterdir() if (p / RECORD).is_file()) if BOOK_MODELS.is_dir() else []
        raise ValueError(f"the book stores no trained models for experiment {experiment!r} (stored: {stored}); "
                         "make them with `maskdiff-tutor book-models`")
    return folder


def folder_name(model_name: str) -> str:
    """The sub-folder of a model: its name with spaces and '=' replaced by '_' ("blockwise B=4" -> "blockwise_B_4")."""
    return model_name.replace(" ", "_").replace("=", "_")


def training_settings(scale, fields: tuple, seed: int, model_config, **extra) -> dict:
    """What determines a run's trained weights: the ``fields`` of its ``scale``, the seed, the
    model's configuration and anything ``extra`` (e.g. the language). ``load`` compares it."""
    return {**{name: getattr(scale, name) for name in fields}, "seed": seed,
            "model": dataclasses.asdict(model_config), **extra}


def train_or_load(experiment: str, settings: dict, train, save_models=None, models=None,
                  device: str | torch.device = "cpu") -> TrainedModels:
    """A run's trained models: ``train()`` them (and ``save`` them in ``save_models`` when given), or
    ``load`` them from the folder ``models``, which must hold models trained with ``settings``."""
    if models is not None:
        if save_models is not None:
            raise ValueError("give at most one of models= (measure saved models) and save_models= (train and save)")
        return load(models, experiment, settings, device)
    trained = train()
    if save_models is not None and distributed.is_main():  # under torchrun, rank 0 writes
        save(save_models, experiment, settings, trained)
    return trained


def _normalised(settings: dict) -> dict:
    """``settings`` as JSON reads it back (tuples become lists), so stored and current compare equal."""
    return json.loads(json.dumps(settings))


def save(folder: str | pathlib.Path, experiment: str, settings: dict, trained: TrainedModels) -> pathlib.Path:
    """Write every model and ``training.json`` into ``folder``, replacing what was there.

    The set is written into a temporary folder beside ``folder`` and renamed into place at the
    end, so an interrupted save leaves the earlier set whole."""
    folder = pathlib.Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, model in trained.models.items():
            save_denoiser(model, staging / folder_name(name))
        record = {"experiment": experiment, "settings": _normalised(settings),
                  "models": {name: {"folder": folder_name(name), "history": to_json(trained.histories[name])}
                             for name in trained.models},
                  "environment": to_json(trained.environment)}
        (staging / RECORD).write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(staging, folder)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def load(folder: str | pathlib.Path, experiment: str, settings: dict,
         device: str | torch.device = "cpu") -> TrainedModels:
    """Read a set written by ``save``; its experiment and settings must equal ``experiment`` and
    ``settings`` (the error names the first setting that differs)."""
    folder = pathlib.Path(folder)
    path = folder / RECORD
    if not path.is_file():
        raise ValueError(f"models folder {str(folder)!r} has no {RECORD}; write it with the experiment's save_models "
                         "(or `maskdiff-tutor book-models` for the book's)")
    record = read_json(path, "the record of a set of trained models")
    if not isinstance(record, dict) or record.get("experiment") != experiment:
        held = record.get("experiment") if isinstance(record, dict) else None
        raise ValueError(f"models folder {str(folder)!r} holds models of experiment {held!r}, "
                         f"not {experiment!r}")
    difference = _first_difference(record.get("settings"), _normalised(settings))
    if difference is not None:
        raise ValueError(f"the models in {str(folder)!r} were trained with other settings than this run's "
                         f"({difference}); retrain them (`maskdiff-tutor book-models` for the book's) or run "
                         "with the settings they were trained with")
    models = {name: load_denoiser(folder / entry["folder"], device) for name, entry in record["models"].items()}
    histories = {name: from_json(History, entry["history"], f"{path}: models.{name}.history")
                 for name, entry in record["models"].items()}
    return TrainedModels(models, histories, from_json(Environment, record["environment"], f"{path}: environment"))


def _first_difference(stored, current, where: str = "settings") -> str | None:
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in sorted(set(stored) | set(current)):
            if key not in stored or key not in current:
                where_not = "missing from the stored record" if key not in stored else "not a setting now"
                return f"{where}.{key} is {where_not}"
            found = _first_difference(stored[key], current[key], f"{where}.{key}")
            if found is not None:
                return found
        return None
    if stored != current:
        return f"{where}: stored {stored!r}, now {current!r}"
    return None


@dataclass(frozen=True)
class Comparison:
    """One headline number of the stored models beside the same number of models trained again."""
    name: str  # the number, as the experiment's ``headline`` names it
    stored: float  # its value on the stored models
    retrained: float  # its value on the retrained models
    difference: float  # |stored - retrained|
    tolerance: float  # how far retraining may move it (the experiment's ``headline``)
    within: bool  # difference <= tolerance (False where the difference is not finite)


def compare(stored: dict, retrained: dict) -> list[Comparison]:
    """One row per headline number (name -> (value, tolerance), from an experiment's ``headline``):
    the stored models' value, the retrained models' value, their difference and whether it lies
    within the tolerance."""
    rows = []
    for name, (a, tolerance) in stored.items():
        b = retrained[name][0]
        difference = abs(a - b)
        within = bool(math.isfinite(difference) and difference <= tolerance)
        rows.append(Comparison(name, a, b, difference, tolerance, within))
    return rows
