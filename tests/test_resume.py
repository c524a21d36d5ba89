"""A training run killed at any point, or stopped with Ctrl-C, resumes from its last checkpoint to
the same final weights and history as a run that was never interrupted; checkpoints are written
atomically and loaded with weights_only=True."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from maskdiff_tutor import checkpoints
from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
from maskdiff_tutor.schedules import CosineSchedule
from maskdiff_tutor.train import TrainConfig, train

CONFIG = dict(steps=30, batch_size=8, lr=3e-3, warmup_steps=3, log_every=4, checkpoint_every=10)

# A child process: trains the same model as ``_run`` and, at the given step, either kills itself
# (SIGKILL: no handler runs) or sends itself Ctrl-C (SIGINT) or SIGTERM.
CHILD = textwrap.dedent("""
    import os, signal, sys, torch
    from maskdiff_tutor import train as training
    from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
    at, how, checkpoint = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell may start background jobs with it ignored
    original, calls = training.training_loss, []
    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), {"kill": signal.SIGKILL, "interrupt": signal.SIGINT, "term": signal.SIGTERM}[how])
        return original(*args, **kwargs)
    training.training_loss = counting
    torch.manual_seed(0)
    model = Denoiser(DenoiserConfig(vocab_size=9, max_seq_len=6, d_model=16, n_layers=1, n_heads=2))
    data = torch.randint(0, 8, (64, 6), generator=torch.Generator().manual_seed(1))
    training.train(model, data, 8, training.TrainConfig(**{config}), device="cpu", checkpoint=checkpoint,
                   progress=False)
""")


def _model():
    torch.manual_seed(0)
    return Denoiser(DenoiserConfig(vocab_size=9, max_seq_len=6, d_model=16, n_layers=1, n_heads=2))


def _data():
    return torch.randint(0, 8, (64, 6), generator=torch.Generator().manual_seed(1))


def _child(tmp_path, at, how):
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("{config}", repr(CONFIG)))
    checkpoint = tmp_path / "run.pt"
    done = subprocess.run([sys.executable, str(script), str(at), how, str(checkpoint)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    return done, checkpoint


@pytest.fixture(scope="module")
def uninterrupted():
    torch.set_num_threads(1)
    model = _model()
    history = train(model, _data(), 8, TrainConfig(**CONFIG), device="cpu", progress=False)
    return model.state_dict(), history


@pytest.mark.parametrize("at", [14, 20, 27])  # between checkpoints, on the step after one, just before the end
def test_a_killed_run_resumes_to_the_same_weights(tmp_path, uninterrupted, at):
    done, checkpoint = _child(tmp_path, at, "kill")
    assert done.returncode == -signal.SIGKILL
    saved = checkpoints.read(checkpoint)["step"]
    assert saved == 10 * ((at - 1) // 10)  # the last checkpoint before the kill
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    model = _model()
    history = train(model, _data(), 8, TrainConfig(**CONFIG), device="cpu", checkpoint=checkpoint, resume=True,
                    progress=False)
    weights, expected = uninterrupted
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert history == expected


def test_ctrl_c_finishes_the_step_saves_and_says_so_in_one_line(tmp_path, uninterrupted):
    done, checkpoint = _child(tmp_path, 13, "interrupt")
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("training interrupted")]
    assert lines == [f"training interrupted after step 13 of 30: checkpoint saved to {checkpoint}; "
                     f"train(..., resume=True) continues"]
    assert checkpoints.read(checkpoint)["step"] == 13
    model = _model()
    history = train(model, _data(), 8, TrainConfig(**CONFIG), device="cpu", checkpoint=checkpoint, resume=True,
                    progress=False)
    weights, expected = uninterrupted
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())
    assert history == expected  # the running loss between history entries was saved too


def test_sigterm_finishes_the_step_saves_and_then_ends_the_process_as_sigterm_does(tmp_path, uninterrupted):
    done, checkpoint = _child(tmp_path, 13, "term")
    assert done.returncode == -signal.SIGTERM  # the signal reached its default handler, after the checkpoint
    lines = [line for line in done.stderr.splitlines() if line.startswith("training interrupted")]
    assert lines == [f"training interrupted after step 13 of 30: checkpoint saved to {checkpoint}; "
                     f"train(..., resume=True) continues"]
    assert checkpoints.read(checkpoint)["step"] == 13
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    model = _model()
    history = train(model, _data(), 8, TrainConfig(**CONFIG), device="cpu", checkpoint=checkpoint, resume=True,
                    progress=False)
    weights, expected = uninterrupted
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())
    assert history == expected


def _signalling_at(monkeypatch, call: int, number: int) -> None:
    """Make the training loss send ``number`` to this process in its ``call``-th call (1-based)."""
    from maskdiff_tutor import train as training

    original, calls = training.training_loss, []

    def signalling(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), number)
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "training_loss", signalling)


def test_sigterm_reaches_the_programs_own_handler_after_the_checkpoint(tmp_path, monkeypatch):
    path, seen = tmp_path / "run.pt", []
    _signalling_at(monkeypatch, 2, signal.SIGTERM)
    previous = signal.signal(signal.SIGTERM, lambda number, frame: seen.append(checkpoints.read(path)["step"]))
    try:
        with pytest.raises(KeyboardInterrupt):  # the handler returned, and the run still stops
            train(_model(), _data(), 8, TrainConfig(**CONFIG), device="cpu", checkpoint=path, progress=False)
        assert seen == [2]  # called once, when the checkpoint of step 2 was whole
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_signal_stays_ignored(tmp_path, monkeypatch):
    _signalling_at(monkeypatch, 2, signal.SIGINT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a job a shell started in the background
    try:
        history = train(_model(), _data(), 8, TrainConfig(**SMALL), device="cpu", checkpoint=tmp_path / "run.pt",
                        progress=False)
        assert history.step[-1] == 6  # trained to the end
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=rf"^{bad}: not a training checkpoint that can be loaded"):
        train(_model(), _data(), 8, TrainConfig(**CONFIG), device="cpu", checkpoint=bad, resume=True, progress=False)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match=rf"^{other}: not a training checkpoint of this package"):
        train(_model(), _data(), 8, TrainConfig(**CONFIG), device="cpu", checkpoint=other, resume=True, progress=False)


def test_a_checkpoint_holding_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"model": pathlib.Path("x")}, evil)  # an arbitrary object: weights_only refuses to build it
    with pytest.raises(ValueError, match="not a training checkpoint that can be loaded"):
        train(_model(), _data(), 8, TrainConfig(**CONFIG), device="cpu", checkpoint=evil, resume=True, progress=False)


# ----------------------------------------------------------------------------- resume trusts nothing

SMALL = dict(steps=6, batch_size=8, lr=3e-3, warmup_steps=2, log_every=2, checkpoint_every=3)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two checkpoints of one SMALL run: ``mid`` at step 3 (the run stopped by an error in step 4) and
    ``done`` at its end, step 6."""
    from maskdiff_tutor import train as training

    folder = tmp_path_factory.mktemp("made")
    original, calls = training.training_loss, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("stopped in step 4")
        return original(*args, **kwargs)

    training.training_loss = failing
    try:
        with pytest.raises(RuntimeError, match="stopped in step 4"):
            train(_model(), _data(), 8, TrainConfig(**SMALL), device="cpu", checkpoint=folder / "mid.pt",
                  progress=False)
    finally:
        training.training_loss = original
    train(_model(), _data(), 8, TrainConfig(**SMALL), device="cpu", checkpoint=folder / "done.pt", progress=False)
    return folder


def _copy(made, tmp_path, name="done"):
    copy = tmp_path / f"{name}.pt"
    copy.write_bytes((made / f"{name}.pt").read_bytes())
    return copy


def _resume(path, model=None, data=None, mask_id=8, **kwargs):
    settings = {**SMALL, **{key: kwargs.pop(key) for key in list(kwargs) if key in TrainConfig.__dataclass_fields__}}
    return train(model if model is not None else _model(), data if data is not None else _data(), mask_id,
                 TrainConfig(**settings), device="cpu", checkpoint=path, resume=True, progress=False, **kwargs)


def _refused(path, message, **kwargs):
    """The resume is refused with exactly ``message`` (after the file's name, for a line that starts with it)."""
    with pytest.raises(ValueError, match="^" + re.escape(message.format(path=path)) + "$"):
        _resume(path, **kwargs)


MAY = "(on resume only steps may change, upwards, and log_every, checkpoint_every, compile)"


@pytest.mark.parametrize("changed, was, has", [
    (dict(lr=2e-3), "lr=0.003", "lr=0.002"),
    (dict(batch_size=16), "batch_size=8", "batch_size=16"),
    (dict(warmup_steps=0), "warmup_steps=2", "warmup_steps=0"),
    (dict(objective="blockwise", block_length=3), "objective='random', block_length=None",
     "objective='blockwise', block_length=3"),
    (dict(weighted=False, antithetic=False), "weighted=True, antithetic=True", "weighted=False, antithetic=False"),
    (dict(seed=1), "seed=0", "seed=1"),
    (dict(pad_id=0), "pad_id=None", "pad_id=0"),
    (dict(schedule=CosineSchedule()), "schedule='LinearSchedule()'", "schedule='CosineSchedule()'"),
])
def test_a_resume_with_other_settings_is_refused_naming_them(made, tmp_path, changed, was, has):
    _refused(_copy(made, tmp_path), f"checkpoint {{path}} was made with {was}; this run has {has} {MAY}", **changed)


def test_steps_below_the_checkpoints_step_are_refused_naming_both(made, tmp_path):
    _refused(_copy(made, tmp_path), "checkpoint {path} is at step 6; this run has steps=4, below it "
                                    "(resume with steps >= 6)", steps=4)


def test_steps_may_not_shrink_even_above_the_checkpoints_step(made, tmp_path):
    _refused(_copy(made, tmp_path, "mid"), f"checkpoint {{path}} was made with steps=6; this run has steps=5 {MAY}",
             steps=5)


def test_steps_may_grow_and_the_cosine_decay_stretches_to_the_new_total(made, tmp_path):
    path = _copy(made, tmp_path, "mid")
    history = _resume(path, steps=10, log_every=1, checkpoint_every=0)  # so may log_every and checkpoint_every
    grown = TrainConfig(**{**SMALL, "steps": 10})
    assert history.step == [2, 4, 5, 6, 7, 8, 9, 10]  # every 2 steps before the resume at 3, every step after it
    assert history.lr[1:] == [grown.lr_at(step - 1) for step in range(4, 11)]  # the rate each step ran at ...
    assert grown.lr_at(3) != TrainConfig(**SMALL).lr_at(3)  # ... the first resumed one too: on the new schedule
    assert checkpoints.read(path)["made_with"]["settings"]["steps"] == 10


def test_a_resume_with_other_data_is_refused(made, tmp_path):
    path, data = _copy(made, tmp_path), _data()
    data[0, 0] = (data[0, 0] + 1) % 8
    with pytest.raises(ValueError, match=rf"^checkpoint {re.escape(str(path))} was made with other data \(sha256 "
                                         r"[0-9a-f]{16}\.\.\., shape \(64, 6\), int64\); this run's data: sha256 "
                                         r"[0-9a-f]{16}\.\.\., shape \(64, 6\), int64$"):
        _resume(path, data=data)
    with pytest.raises(ValueError, match=r"other data .* shape \(64, 6\), int64\); this run's data: .* shape "
                                         r"\(32, 6\), int64$"):
        _resume(path, data=_data()[:32])


def test_a_resume_into_another_model_is_refused_naming_what_differs(made, tmp_path):
    path = _copy(made, tmp_path)
    config = dict(vocab_size=9, max_seq_len=6, n_layers=1, n_heads=2)
    _refused(path, "checkpoint {path} was made for a model with d_model=16 (embed.weight 9x16); this "
                   "model has d_model=32 (embed.weight 9x32)",
             model=Denoiser(DenoiserConfig(d_model=32, **config)))
    _refused(path, "checkpoint {path} was made for a model with dropout=0.0; this model has dropout=0.1",
             model=Denoiser(DenoiserConfig(d_model=16, dropout=0.1, **config)))


class Bare(torch.nn.Module):
    """A model without a ``config``: only its state_dict's names and shapes can be compared."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x_t):
        return self.inner(x_t)


def test_a_model_without_a_config_is_compared_by_its_tensors(tmp_path):
    path = tmp_path / "bare.pt"
    config = dict(vocab_size=9, max_seq_len=6, n_layers=1, n_heads=2)
    train(Bare(Denoiser(DenoiserConfig(d_model=16, **config))), _data(), 8, TrainConfig(**SMALL), device="cpu",
          checkpoint=path, progress=False)
    _refused(path, "checkpoint {path} was made for a model with inner.embed.weight 9x16; this model has "
                   "inner.embed.weight 9x32", model=Bare(Denoiser(DenoiserConfig(d_model=32, **config))))
    _refused(path, "checkpoint {path} was made for a model with other parameters or buffers (this model lacks "
                   "inner.embed.weight, inner.positions.weight, inner.blocks.0.norm1.weight and 12 more; it has "
                   "embed.weight, positions.weight, blocks.0.norm1.weight and 12 more that the checkpoint lacks)",
             model=_model())  # the same network, not wrapped: other names


@pytest.mark.parametrize("where", ["header", "checksum", "payload start", "payload middle", "last byte"])
def test_a_flipped_byte_anywhere_is_refused_as_damage(made, tmp_path, where):
    path = _copy(made, tmp_path)
    content = bytearray(path.read_bytes())
    payload = content.index(b"\n", len(checkpoints.HEADER)) + 1
    at = {"header": 3, "checksum": len(checkpoints.HEADER) + 10, "payload start": payload,
          "payload middle": (payload + len(content)) // 2, "last byte": len(content) - 1}[where]
    content[at] ^= 0x01
    path.write_bytes(bytes(content))
    damaged = "a damaged checkpoint: its contents do not match the checksum written with them (a byte changed, added " \
              "or missing); resume from another checkpoint or train again"
    message = "not a training checkpoint that can be loaded: damaged, or not written by train() (" \
        if where == "header" else damaged
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: {message}")):
        _resume(path)


@pytest.mark.parametrize("keep", [0, 10, 40, 0.5, -1])  # bytes kept (a fraction of the file; -1: all but the last)
def test_a_truncated_file_is_refused_as_damage(made, tmp_path, keep):
    path = _copy(made, tmp_path)
    content = path.read_bytes()
    path.write_bytes(content[:int(keep * len(content)) if isinstance(keep, float) else keep])
    with pytest.raises(ValueError, match="^" + re.escape(str(path)) + r": (a damaged checkpoint|not a training "
                                         r"checkpoint that can be loaded: damaged)"):
        _resume(path)


def test_a_byte_added_at_the_end_is_refused_as_damage(made, tmp_path):
    path = _copy(made, tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: a damaged checkpoint"):
        _resume(path)


def test_a_checkpoint_of_the_older_format_is_refused_saying_so(made, tmp_path):
    path = _copy(made, tmp_path)
    old = checkpoints.read(path)
    del old["made_with"]
    torch.save(old, path)  # as train() wrote it before checkpoints recorded what they were made with
    _refused(path, "{path}: a checkpoint written by an older version of maskdiff-tutor, which did not record the "
                   "settings, data and model it was made with, nor a checksum, so it cannot be checked; train again "
                   "without resume=True")


def test_a_payload_holding_code_is_refused_even_under_a_matching_checksum(tmp_path):
    buffer = io.BytesIO()
    torch.save({"model": pathlib.Path("x")}, buffer)  # an arbitrary object: weights_only refuses to build it
    payload = buffer.getvalue()
    path = tmp_path / "crafted.pt"
    path.write_bytes(checkpoints.HEADER + b"sha256 " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: a checkpoint whose checksum matches but which "
                                         r"torch cannot load \(UnpicklingError: "):
        _resume(path)


def test_a_checkpoint_records_what_it_was_made_with(made):
    made_with = checkpoints.read(made / "done.pt")["made_with"]
    assert made_with["settings"] == dataclasses.asdict(TrainConfig(**SMALL))
    assert (made_with["seed"], made_with["mask_id"], made_with["pad_id"]) == (0, 8, None)
    assert made_with["schedule"] == "LinearSchedule()" and made_with["world_size"] == 1
    data = _data()
    assert made_with["data"] == {"sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest(), "shape": [64, 6],
                                 "dtype": "int64"}
    assert made_with["model_config"]["d_model"] == 16
    assert made_with["shapes"] == {name: list(value.shape) for name, value in _model().state_dict().items()}
    content = (made / "done.pt").read_bytes()
    header, checksum, payload = content.split(b"\n", 2)
    assert header + b"\n" == checkpoints.HEADER
    assert checksum == b"sha256 " + hashlib.sha256(payload).hexdigest().encode()
