"""``train()`` under ``torchrun``: two CPU processes (gloo) take the same steps, to float rounding,
as one process on the same global batches, for every objective; Ctrl-C in one process stops both
after the same step and the run resumes exactly; a stop reaching both while rank 0 writes slowly
keeps the checkpoint of that step. And the helpers answer as a single process outside torchrun."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from maskdiff_tutor import checkpoints, distributed
from maskdiff_tutor.train import TrainConfig, train

sys.path.insert(0, os.path.dirname(__file__))
import ddp_worker  # noqa: E402  (the script the two processes run)

TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _torchrun_command(*args) -> tuple[list[str], dict]:
    env = {key: value for key, value in os.environ.items() if key not in TORCHRUN_ENV}
    return ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             ddp_worker.__file__, *map(str, args)], {**env, "OMP_NUM_THREADS": "1"})


def _torchrun(*args):
    command, env = _torchrun_command(*args)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    return out, _torchrun(out)


@pytest.mark.parametrize("case", sorted(ddp_worker.CASES))
def test_two_processes_take_the_steps_of_one_on_the_same_global_batch(two_processes, case):
    out, _ = two_processes
    shared = torch.load(out / f"{case}.pt", weights_only=True)
    assert shared["world_size"] == 2
    train_overrides, model_overrides, pad_id = ddp_worker.CASES[case]
    torch.set_num_threads(1)
    alone = ddp_worker.model(**model_overrides)
    history = train(alone, ddp_worker.data(pad_id is not None), ddp_worker.MASK, ddp_worker.config(**train_overrides),
                    device="cpu", pad_id=pad_id, progress=False)
    for name, value in alone.state_dict().items():
        torch.testing.assert_close(shared["weights"][name], value, rtol=1e-4, atol=2e-6, msg=name)
    moved = max((value - ddp_worker.model(**model_overrides).state_dict()[name]).abs().max().item()
                for name, value in alone.state_dict().items())
    assert moved > 1e-3  # training changed the weights, so the agreement is not trivial
    assert shared["history"]["step"] == history.step and shared["history"]["tokens"] == history.tokens
    torch.testing.assert_close(shared["history"]["loss"], history.loss, rtol=1e-5, atol=0)  # the mean over both
    torch.testing.assert_close(shared["history"]["grad_norm"], history.grad_norm, rtol=1e-4, atol=0)


def test_ctrl_c_in_one_process_stops_both_after_the_same_step_and_resumes_exactly(two_processes):
    out, done = two_processes
    record = torch.load(out / "dropout.pt", weights_only=True)
    assert record["interrupted_at"] == 3
    lines = [line for line in done.stderr.splitlines() if "training interrupted" in line]
    assert len(lines) == 1 and "training interrupted after step 3 of 6" in lines[0]  # rank 0 alone says it
    for name, value in record["uninterrupted"].items():
        assert torch.equal(record["resumed"][name], value), name
    assert record["resumed_history"] == record["uninterrupted_history"]


def test_a_checkpoint_of_two_processes_is_not_resumed_by_one(two_processes):
    out, _ = two_processes
    with pytest.raises(ValueError, match=r"written by a run of 2 process\(es\); resume it with the same number "
                                         r"\(torchrun --nproc-per-node 2\), not 1"):
        train(ddp_worker.model(dropout=0.2), ddp_worker.data(False), ddp_worker.MASK,
              TrainConfig(**ddp_worker.DROPOUT), device="cpu", checkpoint=out / "dropout.ckpt", resume=True,
              progress=False)


def _worker_pids(folder, launcher, timeout: float = 120) -> list[int]:
    """The two workers' process ids, once both are training (each writes its id and a newline then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launcher.poll() is None:
        texts = [(folder / f"rank{rank}.pid").read_text() if (folder / f"rank{rank}.pid").exists() else ""
                 for rank in range(2)]
        if all(text.endswith("\n") for text in texts):
            return [int(text) for text in texts]
        time.sleep(0.05)
    raise AssertionError(f"the workers did not start training: {launcher.communicate()[1][-3000:]}")


def _end(launcher, folder) -> None:
    """If the launcher still runs (the test failed): end it and the workers it started (each leads its own
    process group; a launcher that ended by itself has ended its workers)."""
    if launcher.poll() is not None:
        return
    launcher.kill()
    launcher.communicate()
    for marker in folder.glob("rank*.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(marker.read_text()), signal.SIGKILL)


def test_a_stop_under_torchrun_keeps_the_checkpoint_of_its_step(tmp_path):
    # Ctrl-C reaching both workers, as torchrun passes a stop on (to each worker's process group), while
    # rank 0's checkpoint write takes seconds: rank 1 must not leave first, or torchrun ends rank 0 mid-write
    command, env = _torchrun_command("stop", tmp_path)
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for pid in _worker_pids(tmp_path, launcher):
            os.killpg(pid, signal.SIGINT)
        _, stderr = launcher.communicate(timeout=120)
    finally:
        _end(launcher, tmp_path)
    lines = [line for line in stderr.splitlines() if "training interrupted after step" in line]
    assert len(lines) == 1, stderr[-6000:]
    step = int(lines[0].split("after step ")[1].split()[0])
    assert checkpoints.read(tmp_path / "stop.ckpt")["step"] == step  # whole, verified, of the step it stopped at
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.pid", "rank1.pid", "stop.ckpt"]  # no .tmp left


def test_outside_torchrun_everything_is_one_process(monkeypatch):
    for key in TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    assert distributed.start() == (0, 1)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.gather("x") == ["x"]
    assert distributed.local_device(torch.device("cuda", 3)) == torch.device("cuda", 3)


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "two"}, r"WORLD_SIZE must be an integer \(torchrun sets it\); got 'two'"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, r"inconsistent torchrun environment: RANK=2, LOCAL_RANK=0, WORLD_SIZE=2"),
    ({"WORLD_SIZE": "0"}, r"inconsistent torchrun environment"),
])
def test_a_broken_torchrun_environment_is_named(monkeypatch, env, message):
    for key in TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=message):
        distributed.start()


def test_an_experiment_runs_unchanged_under_torchrun_and_rank_0_alone_writes(tmp_path, monkeypatch):
    from maskdiff_tutor.experiments import joint_vs_marginal
    from maskdiff_tutor.experiments.result import ExperimentResult

    done = _torchrun("cli", tmp_path)
    saved = [line for line in done.stdout.splitlines() if line.startswith("saved")]
    assert len(saved) == 1 and saved[0].endswith(", 2 processes)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "result.json"]  # no stray temporary files
    shared = ExperimentResult.load(tmp_path / "result.json")
    assert shared.environment.processes == 2 and shared.scale == "plumbing"
    monkeypatch.setitem(joint_vs_marginal.SCALES, "plumbing", joint_vs_marginal.Scale(**ddp_worker.PLUMBING))
    torch.set_num_threads(1)
    alone = joint_vs_marginal.run("plumbing", device="cpu")
    assert alone.environment.processes == 1
    # the same training, so the same model to float rounding
    torch.testing.assert_close(shared.curves.weighted.loss, alone.curves.weighted.loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(shared.curves.unweighted.loss, alone.curves.unweighted.loss, rtol=1e-5, atol=0)
    for a, b in zip(shared.metrics.models(), alone.metrics.models(), strict=True):
        pairs = ((a.p_a, b.p_a), (a.p_b, b.p_b), (a.exact_nelbo_per_sequence, b.exact_nelbo_per_sequence))
        for value, expected in pairs:
            assert value == pytest.approx(expected, rel=1e-4), a.objective


def test_a_global_batch_that_does_not_split_evenly_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "start", lambda: (0, 3))
    with pytest.raises(ValueError, match=r"^batch_size 8 must be divisible by the number of processes \(3, "
                                         r"torchrun's WORLD_SIZE\)"):
        train(ddp_worker.model(), ddp_worker.data(False), ddp_worker.MASK, ddp_worker.config(), device="cpu",
              progress=False)


def test_under_torchrun_each_process_uses_its_own_gpu_or_the_cpu(monkeypatch):
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.local_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"under torchrun each process uses cuda:LOCAL_RANK \(cuda:1 here\)"):
        distributed.local_device(torch.device("cuda", 0))
    with pytest.raises(ValueError, match=r"several processes train on 'cuda' \(NCCL\) or 'cpu' \(gloo\) only"):
        distributed.local_device(torch.device("mps"))


def test_rows_that_select_nothing_are_refused():
    from maskdiff_tutor.objectives import masked_diffusion_loss
    from maskdiff_tutor.schedules import LinearSchedule

    x0 = ddp_worker.data(False)[:4]
    with pytest.raises(ValueError, match=r"rows=slice\(4, 8, None\) selects no row of a batch of 4"):
        masked_diffusion_loss(ddp_worker.model(), x0, LinearSchedule(), ddp_worker.MASK, rows=slice(4, 8))


def test_the_rows_share_of_a_padded_batch_averages_to_the_whole_batch_loss():
    from maskdiff_tutor.objectives import masked_diffusion_loss
    from maskdiff_tutor.schedules import LinearSchedule

    x0, net = ddp_worker.data(True)[:8], ddp_worker.model()
    whole = masked_diffusion_loss(net, x0, LinearSchedule(), ddp_worker.MASK, torch.Generator().manual_seed(3),
                                  pad_id=ddp_worker.PAD)
    halves = [masked_diffusion_loss(net, x0, LinearSchedule(), ddp_worker.MASK, torch.Generator().manual_seed(3),
                                    pad_id=ddp_worker.PAD, rows=rows) for rows in (slice(0, 4), slice(4, 8))]
    assert int((x0[:4] != ddp_worker.PAD).sum()) != int((x0[4:] != ddp_worker.PAD).sum())  # unequal token counts ...
    torch.testing.assert_close((halves[0].loss + halves[1].loss) / 2, whole.loss)  # ... yet the mean is exact
    torch.testing.assert_close(torch.cat([h.nll for h in halves]), whole.nll)  # the same noise, split
