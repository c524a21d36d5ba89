"""Training checkpoints that trust nothing: what a run needs to continue exactly, what it was made
with, and a checksum over both.

Used by ``train()`` (README, "Long runs are safe to stop"). A checkpoint file has three parts: the
line ``maskdiff-tutor checkpoint 2``, the line ``sha256 <hex digest of the payload>``, and the
payload, a ``torch.save`` of one dict: the model, optimiser and scheduler states, the generators,
the history, the loop's counters, and ``made_with`` (``made_with()``): the run's settings, a
fingerprint of its data, the model's shape and the number of processes. ``read`` compares the
checksum before it unpickles anything (and then only with ``weights_only=True``), so a changed,
added or missing byte anywhere in the file is refused as damage, naming the file. ``check_resume``
refuses to continue a checkpoint with settings, data or a model other than its own, naming what
differs.

What a resumed run may change, and what it must keep:

- ``steps`` may grow (train longer: from the resumed step on, the cosine decay of the learning rate
  stretches to the new total); it may not shrink, and never below the checkpoint's step.
- ``log_every``, ``checkpoint_every`` and ``compile`` may change (``MAY_CHANGE``): they decide what
  is recorded, how often it is saved and how fast a step runs, not where training goes. So may the
  device.
- Everything else must match: the other ``TrainConfig`` fields (batch size, learning rate and its
  schedule, weight decay, clipping, weighting, antithetic times, objective, block length), the seed,
  ``mask_id``, ``pad_id``, the noise schedule, the data (its bytes, shape and dtype), the model (its
  config where it has one, and every parameter's and buffer's name and shape) and the number of
  processes.

Checkpoints of the format before this one (a bare ``torch.save``, with neither ``made_with`` nor a
checksum) are refused with a message that says so: nothing in them can be checked, so a run resumed
from one could continue silently with other settings or data; train again.
"""

from __future__ import annotations

import hashlib
import io
import pathlib
from dataclasses import asdict, is_dataclass

import torch

from .files import write_atomically

HEADER = b"maskdiff-tutor checkpoint 2\n"  # the first line of every checkpoint; 2: the format with a checksum
MAY_CHANGE = ("steps", "log_every", "checkpoint_every", "compile")  # TrainConfig fields a resume may change
RUN_ARGUMENTS = ("seed", "mask_id", "pad_id", "schedule")  # train()'s arguments beyond the config that must match
NEEDED = frozenset({"model", "optimizer", "scheduler", "generator", "torch_rng", "history", "step", "running_loss",
                    "running_steps", "made_with"})
OLD_FORMAT = frozenset(NEEDED - {"made_with"})  # what a checkpoint held before it recorded what it was made with


def made_with(config, model: torch.nn.Module, data: torch.Tensor, *, seed: int, mask_id: int, pad_id: int | None,
              schedule, world_size: int) -> dict:
    """What a ``train()`` run is made with, as the plain values a checkpoint stores and ``check_resume``
    compares: every field of ``config`` (a ``TrainConfig``), the seed, mask and padding ids, the noise
    schedule, the data's ``fingerprint``, the model's config (where it has a dataclass ``config``) and the
    shape of every entry of its ``state_dict``, and the number of processes."""
    model_config = getattr(model, "config", None)
    return {"settings": asdict(config), "seed": seed, "mask_id": mask_id, "pad_id": pad_id,
            # a schedule's parameters are in its dataclass repr; another class's repr holds an address
            "schedule": repr(schedule) if is_dataclass(schedule) else type(schedule).__qualname__,
            "data": fingerprint(data),
            "model_config": asdict(model_config) if is_dataclass(model_config) else None,
            "shapes": {name: list(value.shape) for name, value in model.state_dict().items()},
            "world_size": world_size}


def fingerprint(data: torch.Tensor) -> dict:
    """The SHA-256 of a tensor's bytes, with its shape and dtype: equal for equal data on any device."""
    values = data.detach().cpu().contiguous()
    return {"sha256": hashlib.sha256(values.numpy()).hexdigest(), "shape": list(values.shape),
            "dtype": str(values.dtype).removeprefix("torch.")}


def write(path: str | pathlib.Path, state: dict) -> pathlib.Path:
    """Write ``state`` (a dict holding at least ``NEEDED``) to ``path`` as a checkpoint: the header, the
    SHA-256 of the payload and the payload, atomically (``files.write_atomically``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    checksum = b"sha256 " + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n"

    def parts(file) -> None:
        for part in (HEADER, checksum, payload):
            file.write(part)

    return write_atomically(path, parts)


def read(path: str | pathlib.Path) -> dict:
    """The state a checkpoint holds, after its header and checksum are verified; loaded onto the CPU with
    ``weights_only=True`` (no code runs). A damaged file, a file of another kind and a checkpoint of the
    older format without a checksum are each refused with a one-line ``ValueError`` naming the file."""
    with open(path, "rb") as file:
        if file.read(len(HEADER)) != HEADER:
            _refuse_without_header(path)
        line = file.readline()
        payload = file.read()
    expected = line.removeprefix(b"sha256 ").rstrip(b"\n").decode("ascii", errors="replace")
    if not line.startswith(b"sha256 ") or hashlib.sha256(payload).hexdigest() != expected:
        raise ValueError(f"{path}: a damaged checkpoint: its contents do not match the checksum written with "
                         "them (a byte changed, added or missing); resume from another checkpoint or train again")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # a crafted file: train() never writes one that its checksum passes and torch refuses
        raise ValueError(f"{path}: a checkpoint whose checksum matches but which torch cannot load "
                         f"({_first_line(error)})") from None
    if not isinstance(state, dict) or not set(state) >= NEEDED:
        _refuse_lacking(path, state)
    return state


def _refuse_without_header(path) -> None:
    """Raise the right ``ValueError`` for a file that does not begin with ``HEADER``: one torch cannot
    load (damaged, or of another kind), an older checkpoint of this package, or another torch file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for a file that is not a torch file
        raise ValueError(f"{path}: not a training checkpoint that can be loaded: damaged, or not written by "
                         f"train() ({_first_line(error)})") from None
    if isinstance(state, dict) and set(state) >= OLD_FORMAT:
        raise ValueError(f"{path}: a checkpoint written by an older version of maskdiff-tutor, which did not "
                         "record the settings, data and model it was made with, nor a checksum, so it cannot be "
                         "checked; train again without resume=True")
    _refuse_lacking(path, state)


def _refuse_lacking(path, state) -> None:
    """Raise for a torch file that is not a checkpoint: ``state`` lacks some of ``NEEDED``."""
    raise ValueError(f"{path}: not a training checkpoint of this package (it lacks "
                     f"{sorted(NEEDED - set(state)) if isinstance(state, dict) else 'everything'})")


def _first_line(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def check_resume(path, saved: dict, now: dict, step: int) -> None:
    """Refuse, with a one-line ``ValueError`` naming the checkpoint and what differs, to resume at ``step``
    a checkpoint made with ``saved`` (its ``made_with``) in a run made with ``now``: ``steps`` below
    ``step``, settings that must match (module docstring), other data, another model or another number
    of processes."""
    steps = now["settings"]["steps"]
    if steps < step:
        raise ValueError(f"checkpoint {path} is at step {step}; this run has steps={steps}, below it "
                         f"(resume with steps >= {step})")
    for differs in (_settings_differ, _data_differs, _model_differs, _processes_differ):
        message = differs(saved, now)
        if message is not None:
            raise ValueError(f"checkpoint {path} {message}")


def _settings_differ(saved: dict, now: dict) -> str | None:
    old = {**saved["settings"], **{name: saved[name] for name in RUN_ARGUMENTS}}
    new = {**now["settings"], **{name: now[name] for name in RUN_ARGUMENTS}}
    names = [name for name in {**old, **new} if name not in MAY_CHANGE and old.get(name) != new.get(name)]
    if new["steps"] < old["steps"]:
        names.insert(0, "steps")
    if not names:
        return None
    return (f"was made with {_values(old, names)}; this run has {_values(new, names)} (on resume only steps may "
            f"change, upwards, and {', '.join(MAY_CHANGE[1:])})")


def _data_differs(saved: dict, now: dict) -> str | None:
    old, new = saved["data"], now["data"]
    if old == new:
        return None
    return f"was made with other data ({_data(old)}); this run's data: {_data(new)}"


def _model_differs(saved: dict, now: dict) -> str | None:
    old, new = saved["shapes"], now["shapes"]
    shapes = [name for name in old if name in new and old[name] != new[name]][:1]  # the first that differs
    configs = _config_differs(saved["model_config"], now["model_config"], shapes, old, new)
    if configs is not None:
        return configs
    lacks, extra = [name for name in old if name not in new], [name for name in new if name not in old]
    if lacks or extra:
        return (f"was made for a model with other parameters or buffers (this model lacks {_names(lacks)}; "
                f"it has {_names(extra)} that the checkpoint lacks)")
    if shapes:
        return f"was made for a model with {_shapes(shapes, old)}; this model has {_shapes(shapes, new)}"
    return None


def _config_differs(old: dict | None, new: dict | None, shapes: list[str], old_shapes: dict,
                    new_shapes: dict) -> str | None:
    """The model configs that differ, with the first tensor whose shape differs, if any."""
    if old is None or new is None or old == new:
        return None
    names = [name for name in {**old, **new} if old.get(name) != new.get(name)]
    was, has = _values(old, names), _values(new, names)
    if shapes:
        was, has = f"{was} ({_shapes(shapes, old_shapes)})", f"{has} ({_shapes(shapes, new_shapes)})"
    return f"was made for a model with {was}; this model has {has}"


def _processes_differ(saved: dict, now: dict) -> str | None:
    if saved["world_size"] == now["world_size"]:
        return None
    return (f"was written by a run of {saved['world_size']} process(es); resume it with the same number "
            f"(torchrun --nproc-per-node {saved['world_size']}), not {now['world_size']}")


def _values(values: dict, names: list[str]) -> str:
    return ", ".join(f"{name}={values.get(name)!r}" for name in names)


def _data(fingerprint: dict) -> str:
    return f"sha256 {fingerprint['sha256'][:16]}..., shape {tuple(fingerprint['shape'])}, {fingerprint['dtype']}"


def _shapes(names: list[str], shapes: dict) -> str:
    return ", ".join(f"{name} {'x'.join(map(str, shapes[name])) or 'scalar'}" for name in names)


def _names(names: list[str]) -> str:
    if not names:
        return "nothing"
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def rng_of_rank(state: dict, rank: int, world: int):
    """The dropout generator states (CPU, CUDA or None) process ``rank`` of ``world`` resumes with; a
    checkpoint holds one pair per process of the run that wrote it (``check_resume`` has compared the
    numbers of processes)."""
    if world == 1:
        return state["torch_rng"], state.get("cuda_rng")
    return state["rank_torch_rng"][rank], state["rank_cuda_rng"][rank]
