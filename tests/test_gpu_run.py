"""``scripts/gpu-run.sh``, the one command for the GPU results, runs its stages on a CPU at test
sizes: each benchmark and an experiment write their JSON, and the manifest records every stage."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import torch

from maskdiff_tutor.experiments.result import ExperimentResult

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu-run.sh"


def _run(*args, timeout=600):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
                               "HOME": str(pathlib.Path.home())})


def test_the_gpu_run_plumbing_at_ci_scale_on_a_cpu(tmp_path):
    pytest.importorskip("transformers")  # the throughput benchmark builds ModernBERT (the bench extra)
    book, bench = tmp_path / "book", tmp_path / "bench"
    done = _run("--scale", "ci", "--device", "cpu", "--experiments", "generation-order", "--book-results", book,
                "--bench-results", bench, "--budget", 500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((bench / "gpu_run_cpu_ci.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["train_throughput_cpu_plumbing", "blocks_and_cache_cpu_plumbing",
                                                       "generation-order"]
    assert all(s["status"] == "ok" and s["returncode"] == 0 for s in manifest["stages"])
    assert manifest["hardware"]["device"] == "cpu" and manifest["scale"] == "ci"
    throughput = json.loads((bench / "train_throughput_cpu_plumbing.json").read_text())
    assert throughput["settings"]["precision"] == "fp32" and throughput["hardware"]["device"] == "cpu"
    assert throughput["results"]["ours"]["tokens_per_s_median"] > 0
    blocks = json.loads((bench / "blocks_and_cache_cpu_plumbing.json").read_text())
    assert blocks["hardware"]["device"] == "cpu"
    result = ExperimentResult.load(book / "generation_order_ci.json")
    assert result.scale == "ci" and result.environment.device == "cpu"
    assert sorted(p.name for p in book.iterdir()) == ["generation_order_ci.json"]


def test_a_stage_past_its_budget_is_stopped_reported_and_the_run_exits_1(tmp_path):
    book, bench = tmp_path / "book", tmp_path / "bench"
    done = _run("--scale", "ci", "--device", "cpu", "--experiments", "--book-results", book, "--bench-results", bench,
                "--budget", 0.5)
    assert done.returncode == 1
    manifest = json.loads((bench / "gpu_run_cpu_ci.json").read_text())
    assert {s["status"] for s in manifest["stages"]} == {"timed_out"}
    assert "not ok: train_throughput_cpu_plumbing, blocks_and_cache_cpu_plumbing" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_the_gpu_scale_without_a_gpu_says_what_to_run_instead(tmp_path):
    done = _run("--book-results", tmp_path / "book", "--bench-results", tmp_path / "bench")
    assert done.returncode == 2
    assert "sees no CUDA device" in done.stderr and "--scale ci --device cpu" in done.stderr
    assert not (tmp_path / "bench").exists()
