"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2`` (gloo, CPU).

For each case of ``CASES`` every process trains the same model with ``train()``; rank 0 saves the
final weights and history to ``<out>/<case>.pt``. The test compares them with one process trained
on the same global batches. Then a run with dropout is stopped by Ctrl-C (SIGINT) that only rank 1
receives, at its third step, and resumed by two processes; rank 0 saves that result too.

``ddp_worker.py cli <out>`` instead runs the command line's joint-vs-marginal experiment at the
small scale ``PLUMBING`` (trained in seconds), saving its result and models under ``<out>``.

``ddp_worker.py stop <out>`` trains a long run whose checkpoint writer takes ``SLOW_WRITE`` seconds
(a sleep injected into the atomic writer, while its temporary file exists); each process writes its
process id and a newline to ``<out>/rank<r>.pid`` once it is training, and trains until the test
sends it a signal.
"""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import time

import torch

from maskdiff_tutor import checkpoints, cli, distributed
from maskdiff_tutor import train as training
from maskdiff_tutor.denoiser import Denoiser, DenoiserConfig

STEPS, BATCH, SEQ_LEN, VOCAB, MASK, PAD = 5, 8, 8, 10, 9, 0

# name -> (TrainConfig overrides, DenoiserConfig overrides, pad_id)
CASES = {
    "random_padded": (dict(objective="random"), {}, PAD),
    "random_time_conditioned": (dict(objective="random", antithetic=False), dict(time_conditioning=True), None),
    "blockwise": (dict(objective="blockwise", block_length=4), {}, None),
    "blockwise_literal": (dict(objective="blockwise_literal", block_length=4), {}, None),
    "left_to_right": (dict(objective="left_to_right"), {}, None),
}
PLUMBING = dict(preset="toy", steps=10, batch_size=16, lr=3e-3, samples=200)
SLOW_WRITE = 3.0  # seconds the injected sleep holds rank 0 inside its checkpoint write
DROPOUT = dict(steps=6, batch_size=BATCH, lr=3e-3, warmup_steps=2, log_every=2, checkpoint_every=2)


def model(**overrides) -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(DenoiserConfig(vocab_size=VOCAB, max_seq_len=SEQ_LEN, d_model=16, n_layers=1, n_heads=2,
                                   **overrides))


def data(padded: bool) -> torch.Tensor:
    tokens = torch.randint(1, MASK, (32, SEQ_LEN), generator=torch.Generator().manual_seed(1))
    if padded:  # rows end in 0 to 5 padding tokens, so the processes' shares hold unequal token counts
        for row in range(tokens.shape[0]):
            tokens[row, SEQ_LEN - row % 6:] = PAD
    return tokens


def config(**overrides) -> training.TrainConfig:
    return training.TrainConfig(**{**dict(steps=STEPS, batch_size=BATCH, lr=3e-3, warmup_steps=2, log_every=1),
                                   **overrides})


def main(out: pathlib.Path) -> None:
    torch.set_num_threads(1)
    for name, (train_overrides, model_overrides, pad_id) in CASES.items():
        net = model(**model_overrides)
        history = training.train(net, data(pad_id is not None), MASK, config(**train_overrides), device="cpu",
                                 pad_id=pad_id, progress=False)
        if distributed.is_main():
            torch.save({"weights": net.state_dict(), "history": history.to_dict(),
                        "world_size": distributed.world_size()}, out / f"{name}.pt")

    # Ctrl-C reaching rank 1 alone, in its third step: both processes stop after step 3 and save
    checkpoint, calls, original = out / "dropout.ckpt", [], training.training_loss

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3 and distributed.rank() == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    training.training_loss = interrupting
    try:
        training.train(model(dropout=0.2), data(False), MASK, training.TrainConfig(**DROPOUT), device="cpu",
                       checkpoint=checkpoint, progress=False)
        raise AssertionError("the run was not interrupted")
    except KeyboardInterrupt:
        pass
    training.training_loss = original
    step = checkpoints.read(checkpoint)["step"]
    resumed = model(dropout=0.2)
    history = training.train(resumed, data(False), MASK, training.TrainConfig(**DROPOUT), device="cpu",
                             checkpoint=checkpoint, resume=True, progress=False)
    uninterrupted = model(dropout=0.2)
    expected = training.train(uninterrupted, data(False), MASK, training.TrainConfig(**DROPOUT), device="cpu",
                              progress=False)
    if distributed.is_main():
        torch.save({"interrupted_at": step, "resumed": resumed.state_dict(), "resumed_history": history.to_dict(),
                    "uninterrupted": uninterrupted.state_dict(), "uninterrupted_history": expected.to_dict()},
                   out / "dropout.pt")
    distributed.stop()


def run_cli(out: pathlib.Path) -> int:
    from maskdiff_tutor.experiments import joint_vs_marginal

    joint_vs_marginal.SCALES["plumbing"] = joint_vs_marginal.Scale(**PLUMBING)
    return cli.main(["joint-vs-marginal", "--scale", "plumbing", "--device", "cpu", "--out", str(out / "result.json"),
                     "--save-models", str(out / "models"), "--no-progress"])


def stop_during_a_slow_write(out: pathlib.Path) -> None:
    torch.set_num_threads(1)
    write, loss = checkpoints.write_atomically, training.training_loss

    def slow_write(path, content):
        def sleeping(file):
            time.sleep(SLOW_WRITE)  # the temporary file exists; a process killed now loses the checkpoint
            content(file)
        return write(path, sleeping)

    def marking(*args, **kwargs):
        marker = out / f"rank{distributed.rank()}.pid"
        if not marker.exists():  # training now, and where to send the signal
            marker.write_text(f"{os.getpid()}\n")
        time.sleep(0.02)  # the run must still be training when the signal comes
        return loss(*args, **kwargs)

    checkpoints.write_atomically, training.training_loss = slow_write, marking
    training.train(model(), data(False), MASK, config(steps=100_000), device="cpu", checkpoint=out / "stop.ckpt",
                   progress=False)
    raise AssertionError("the run was not stopped")


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        sys.exit(run_cli(pathlib.Path(sys.argv[2])))
    elif sys.argv[1] == "stop":
        stop_during_a_slow_write(pathlib.Path(sys.argv[2]))
    else:
        main(pathlib.Path(sys.argv[1]))
