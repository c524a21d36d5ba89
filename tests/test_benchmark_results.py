"""The typed reader of the stored blocks-and-cache benchmark results (the chapter "Semi-AR blocks"
shows them): every speed-up read by attribute equals the file's, and a file of another benchmark
is refused."""

from __future__ import annotations

import json
import pathlib

import pytest

from maskdiff_tutor import benchmark_results

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"
STORED = sorted(RESULTS.glob("blocks_and_cache_*.json"))


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
def test_a_stored_run_reads_typed_with_the_file_s_numbers(path):
    run, raw = benchmark_results.load_blocks_and_cache(path), json.loads(path.read_text())
    assert run.settings.preset == raw["settings"]["preset"]
    hardware = raw["hardware"]
    assert run.hardware.threads_and_kernels == (f"{hardware['device']}, {hardware['cpu_threads']} thread(s), "
                                                f"{hardware['cpu_capability']}")
    rows = run.speedups()
    expected = [(kind, r["seq_len"], r["block_length"], r["speedup"])
                for kind, key in ((benchmark_results.TRAINING, "training"), (benchmark_results.SAMPLING, "sampling"))
                for r in raw["results"][key]]
    assert [(row.compared, row.seq_len, row.block_length, row.speedup) for row in rows] == expected
    for record in raw["results"]["sampling"]:
        assert run.sampling_at(record["seq_len"]).speedup == record["speedup"]


def test_lookups_and_other_benchmarks_are_refused(tmp_path):
    run = benchmark_results.load_blocks_and_cache(RESULTS / "blocks_and_cache_cpu_small_sampling.json")
    with pytest.raises(ValueError, match=r"seq_len must be one of \[1024\] .*; got 256"):
        run.sampling_at(256)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"benchmark": "train_throughput"}))
    with pytest.raises(ValueError, match=r"other\.json holds a result of benchmark 'train_throughput', not of "
                                         r"'blocks_and_cache'"):
        benchmark_results.load_blocks_and_cache(other)
