"""A training run killed at any point, or stopped with Ctrl-C, resumes from its last checkpoint to
the same final weights and history as a run that was never interrupted; checkpoints are written
atomically and loaded with weights_only=True."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
from maskdiff_tutor.train import TrainConfig, train

CONFIG = dict(steps=30, batch_size=8, lr=3e-3, warmup_steps=3, log_every=4, checkpoint_every=10)

# A child process: trains the same model as ``_run`` and, at the given step, either kills itself
# (SIGKILL: no handler runs) or sends itself Ctrl-C (SIGINT).
CHILD = textwrap.dedent("""
    import os, signal, sys, torch
    from maskdiff_tutor import train as training
    from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig
    at, how, checkpoint = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    original, calls = training.training_loss, []
    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGINT)
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
    saved = torch.load(checkpoint, weights_only=True)["step"]
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
    assert torch.load(checkpoint, weights_only=True)["step"] == 13
    model = _model()
    history = train(model, _data(), 8, TrainConfig(**CONFIG), device="cpu", checkpoint=checkpoint, resume=True,
                    progress=False)
    weights, expected = uninterrupted
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())
    assert history == expected  # the running loss between history entries was saved too


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
