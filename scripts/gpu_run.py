"""The GPU results in one command: every GPU-scale experiment and the GPU benchmarks.

Run through ``scripts/gpu-run.sh`` (it picks the Python and puts the repository on its path).
Stages, in order, each a separate process with its own time limit inside one overall budget:

1. benchmarks, one at a time (they time the GPU and must have it to themselves):
   training throughput of our denoiser and ModernBERT in bf16, in fp32, and in bf16 with
   ``torch.compile`` (``benchmarks/train_throughput.py``, with MFU); blockwise training and
   cached against uncached block sampling (``benchmarks/blocks_and_cache.py``);
2. the four experiments at ``--scale gpu`` (``python -m maskdiff_tutor.cli``), side by side: they
   are small models, which leave most of an H100 idle when run one at a time.

Results go to ``book/results/<experiment>_gpu.json`` (the file names the chapters read) and
``benchmarks/results/*_cuda_*.json``; each records its hardware. A manifest,
``benchmarks/results/gpu_run_<device>.json``, records the command, the commit, the hardware and
every stage's command, seconds, status and the end of its log. ``--scale ci --device cpu`` runs
the same stages at sizes a CPU finishes in a minute (the test suite does that, into a temporary
folder).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import signal
import subprocess
import sys
import tempfile
import time

import torch

from maskdiff_tutor.device import hardware_description
from maskdiff_tutor.files import write_atomically

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = {  # CLI name -> the file the chapters read (``<name>_<scale>.json``)
    "joint-vs-marginal": "joint_vs_marginal",
    "ground-truth": "ground_truth",
    "generation-order": "generation_order",
    "blocks": "blocks_chain",
}
# Per scale: the benchmark runs (file stem, script, arguments, time limit in seconds).
BENCHMARKS = {
    "gpu": [
        ("train_throughput_cuda_base_bf16", "train_throughput.py",
         ["--preset", "base", "--vocab-size", "32768", "--seq-len", "1024", "--batch-size", "32", "--steps", "10",
          "--repeats", "3", "--warmup", "3", "--precision", "bf16"], 90),
        ("train_throughput_cuda_base_fp32", "train_throughput.py",
         ["--preset", "base", "--vocab-size", "32768", "--seq-len", "1024", "--batch-size", "32", "--steps", "10",
          "--repeats", "3", "--warmup", "3", "--precision", "fp32"], 90),
        ("train_throughput_cuda_base_bf16_compile", "train_throughput.py",
         ["--preset", "base", "--vocab-size", "32768", "--seq-len", "1024", "--batch-size", "32", "--steps", "10",
          "--repeats", "3", "--warmup", "5", "--precision", "bf16", "--compile"], 180),
        ("blocks_and_cache_cuda_small", "blocks_and_cache.py",
         ["--preset", "small", "--seq-lens", "256", "1024", "--train-batch", "8", "--sample-batch", "8",
          "--repeats", "3"], 120),
    ],
    "ci": [  # the same scripts at sizes that only prove the plumbing
        ("train_throughput_cpu_plumbing", "train_throughput.py",
         ["--preset", "toy", "--vocab-size", "64", "--seq-len", "16", "--batch-size", "2", "--steps", "1",
          "--repeats", "1", "--warmup", "0", "--precision", "fp32"], 120),
        ("blocks_and_cache_cpu_plumbing", "blocks_and_cache.py",
         ["--preset", "toy", "--vocab-size", "32", "--seq-lens", "32", "--train-blocks", "4", "--sample-block", "4",
          "--repeats", "1"], 120),
    ],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu-run.sh", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scale", choices=("gpu", "ci"), default="gpu",
                   help="gpu: the GPU-scale experiments and benchmarks; ci: the same stages at CPU test sizes")
    p.add_argument("--device", default=None, help="cuda (default for --scale gpu) or cpu (default for --scale ci)")
    p.add_argument("--budget", type=float, default=540.0,
                   help="seconds for the whole run; a stage still running when its share is spent is stopped and "
                        "marked timed_out")
    p.add_argument("--experiments", nargs="*", default=list(EXPERIMENTS), choices=list(EXPERIMENTS),
                   help="which experiments to run (none: benchmarks only)")
    p.add_argument("--no-benchmarks", action="store_true", help="run the experiments only")
    p.add_argument("--book-results", default=str(ROOT / "book" / "results"), help="folder for the experiments' JSON")
    p.add_argument("--bench-results", default=str(ROOT / "benchmarks" / "results"),
                   help="folder for the benchmarks' JSON and the manifest")
    return p.parse_args(argv)


def run_stage(name: str, command: list, log: pathlib.Path, limit: float, env: dict) -> dict:
    """Start ``command`` in its own process group; wait at most ``limit`` seconds."""
    started = time.time()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                   start_new_session=True)
    return {"name": name, "command": command, "process": process, "started": started, "limit": limit, "log": log}


def finish(stage: dict, deadline: float) -> dict:
    """Wait for a started stage until its limit or the deadline; stop it there."""
    process = stage["process"]
    remaining = min(stage["started"] + stage["limit"], deadline) - time.time()
    status = "ok"
    try:
        returncode = process.wait(timeout=max(0.0, remaining))
        if returncode != 0:
            status = "failed"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        returncode, status = process.wait(), "timed_out"
    text = stage["log"].read_text(errors="replace")
    record = {"name": stage["name"], "command": " ".join(map(str, stage["command"])), "status": status,
              "returncode": returncode, "seconds": round(time.time() - stage["started"], 1),
              "limit_seconds": stage["limit"], "log_tail": text[-2000:]}
    print(f"  {stage['name']}: {status} in {record['seconds']} s" + ("" if status == "ok" else
                                                                       f"\n{text[-1500:]}"), flush=True)
    return record


def main(argv=None) -> int:
    args = parse_args(argv)
    device = args.device or ("cuda" if args.scale == "gpu" else "cpu")
    refused = _device_error(device)
    if refused:
        print(f"gpu-run: error: {refused}", file=sys.stderr)
        return 2
    book, bench = pathlib.Path(args.book_results), pathlib.Path(args.bench_results)
    for folder in (book, bench):
        folder.mkdir(parents=True, exist_ok=True)
    start = time.time()
    deadline = start + args.budget
    logs = pathlib.Path(tempfile.mkdtemp(prefix="gpu-run-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    print(f"gpu-run: scale {args.scale} on {device}, budget {args.budget:.0f} s; logs in {logs}", flush=True)
    stages, outputs = [], {}
    if not args.no_benchmarks:
        _run_benchmarks(args.scale, device, bench, logs, env, deadline, stages, outputs)
    threads = max(1, (os.cpu_count() or 1) // max(1, len(args.experiments)))
    _run_experiments(args, device, book, logs, {**env, "OMP_NUM_THREADS": str(threads)}, deadline, stages, outputs)
    manifest = {
        "run": "gpu_run", "scale": args.scale, "device": device,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["scripts/gpu-run.sh", *(sys.argv[1:] if argv is None else argv)]),
        "commit": _commit(), "budget_seconds": args.budget, "wall_seconds": round(time.time() - start, 1),
        "hardware": hardware_description(torch.device(device)), "python": platform.python_version(),
        "experiments_side_by_side": device != "cpu", "threads_per_experiment": threads,
        "stages": stages, "outputs": outputs,
    }
    path = bench / f"gpu_run_{device}{'' if args.scale == 'gpu' else '_' + args.scale}.json"
    write_atomically(path, json.dumps(manifest, indent=1) + "\n")
    failed = [s["name"] for s in stages if s["status"] != "ok"]
    print(f"gpu-run: {len(stages) - len(failed)} of {len(stages)} stages ok in {manifest['wall_seconds']} s"
          + (f"; not ok: {', '.join(failed)}" if failed else "") + f"; manifest {path}", flush=True)
    return 1 if failed else 0


def _device_error(device: str) -> str | None:
    """Why ``device`` cannot run the stages, or None."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        return (f"--device {device} but torch {torch.__version__} sees no CUDA device; on a CPU, "
                "`scripts/gpu-run.sh --scale ci --device cpu` runs the same stages at test sizes")
    if device not in ("cuda", "cpu"):
        return f"--device must be cuda or cpu; got {device!r}"
    return None


def _run_benchmarks(scale: str, device: str, bench: pathlib.Path, logs: pathlib.Path, env: dict, deadline: float,
                    stages: list, outputs: dict) -> None:
    """The benchmarks of ``scale``, one at a time (each must have the device to itself)."""
    for stem, script, extra, limit in BENCHMARKS[scale]:
        out = bench / f"{stem}.json"
        command = [sys.executable, str(ROOT / "benchmarks" / script), *extra, "--device", device, "--out", str(out)]
        stages.append(finish(run_stage(stem, command, logs / f"{stem}.log", limit, env), deadline))
        outputs[stem] = str(out)


def _run_experiments(args, device: str, book: pathlib.Path, logs: pathlib.Path, env: dict, deadline: float,
                     stages: list, outputs: dict) -> None:
    """The experiments through the command line, each writing its typed result; side by side on a
    GPU, one after another on the CPU."""
    running = []
    for name in args.experiments:
        out = book / f"{EXPERIMENTS[name]}_{args.scale}.json"
        command = [sys.executable, "-m", "maskdiff_tutor.cli", name, "--scale", args.scale, "--device", device,
                   "--out", str(out), "--no-progress"]
        stage = run_stage(name, command, logs / f"{name}.log", deadline - time.time(), env)
        if device == "cpu":  # side by side only where the work is on the GPU
            stages.append(finish(stage, deadline))
        else:
            running.append(stage)
        outputs[name] = str(out)
    stages.extend(finish(stage, deadline) for stage in running)


def _commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
