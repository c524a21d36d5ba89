"""The typed readers of the stored benchmark results the chapter "Semi-AR blocks" shows: every
speed-up of blocks-and-cache read by attribute equals the file's; the training cost's forward tokens
are train()'s count and its ratios follow from its own columns; a file of another benchmark, or one
missing or malformed, is refused naming the file."""

from __future__ import annotations

import json
import pathlib

import pytest

from maskdiff_tutor import benchmark_results
from maskdiff_tutor.train import forward_tokens_per_sequence

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


# --- benchmarks/training_cost.py: what one training sequence costs under each objective --------------

TRAINING_COST = RESULTS / "training_cost_cpu.json"


def test_the_stored_training_cost_counts_forward_tokens_as_train_does():
    cost = benchmark_results.load_training_cost(TRAINING_COST)
    L = cost.settings.seq_len
    assert L == 32 and cost.settings.preset == "toy" and cost.settings.batch_size == 64  # the book's blocks models
    assert [(row.objective, row.block_length) for row in cost.results] == [
        ("random", None), ("blockwise", 4), ("blockwise", 8), ("blockwise_literal", 4), ("blockwise_literal", 8),
        ("left_to_right", None)]
    # L = 32: random L; block-causal and left to right 2L; the paper's scheme B n (n + 1) / 2 with n = L / B
    assert [row.forward_tokens_per_sequence for row in cost.results] == [32, 64, 64, 144, 80, 64]
    for row in cost.results:
        assert row.forward_tokens_per_sequence == forward_tokens_per_sequence(row.objective, L, row.block_length)


def test_the_stored_training_cost_ratios_follow_from_its_own_columns():
    cost = benchmark_results.load_training_cost(TRAINING_COST)
    random = cost.row("random")
    sequences = cost.settings.steps * cost.settings.batch_size
    for row in cost.results:
        per_sequence = sorted(s / sequences for s in row.seconds_per_repeat)
        assert len(per_sequence) == cost.settings.repeats
        assert row.seconds_per_sequence == pytest.approx(per_sequence[len(per_sequence) // 2], rel=1e-12)  # odd
        assert (row.seconds_per_sequence_min, row.seconds_per_sequence_max) == pytest.approx(
            (per_sequence[0], per_sequence[-1]), rel=1e-12)
        assert row.forward_tokens_ratio == row.forward_tokens_per_sequence / random.forward_tokens_per_sequence
        assert row.seconds_ratio == pytest.approx(row.seconds_per_sequence / random.seconds_per_sequence, rel=1e-12)
        assert row.forward_tokens_per_s == pytest.approx(row.forward_tokens_per_sequence / row.seconds_per_sequence,
                                                         rel=1e-12)
    assert cost.row("blockwise_literal", 4).forward_tokens_ratio == 4.5  # 144 / 32


def test_the_training_cost_table_shows_each_row_with_its_hardware():
    cost = benchmark_results.load_training_cost(TRAINING_COST)
    table = cost.table()
    assert table.columns == ["objective", "B", "forward tokens / sequence", "tokens × random", "wall ms / sequence",
                             "time × random"]
    literal = cost.row("blockwise_literal", 8)
    assert table.rows[4] == ["blockwise_literal", 8, 80, 2.5, 1e3 * literal.seconds_per_sequence,
                             literal.seconds_ratio]
    assert cost.hardware.threads_and_kernels in table.caption and "L = 32" in table.caption
    assert cost.row("blockwise", 8).name == "blockwise B=8" and cost.row("random").name == "random"


def test_training_cost_lookups_and_bad_files_are_refused(tmp_path):
    cost = benchmark_results.load_training_cost(TRAINING_COST)
    with pytest.raises(ValueError, match=r"\(objective, block_length\) must be one of .*; got \('blockwise', 16\)"):
        cost.row("blockwise", 16)
    with pytest.raises(ValueError, match=r"missing\.json: no such file \(expected a result of "
                                         r"benchmarks/training_cost\.py\)"):
        benchmark_results.load_training_cost(tmp_path / "missing.json")
    raw = json.loads(TRAINING_COST.read_text())
    bad = tmp_path / "bad.json"
    for edit, message in [
        (lambda r: r.update(benchmark="blocks_and_cache"), r"bad\.json holds a result of benchmark 'blocks_and_cache'"),
        (lambda r: r["results"][1].update(seconds_ratio="fast"), r"bad\.json\.results\[1\]\.seconds_ratio: .*'fast'"),
        (lambda r: r["results"][0].pop("forward_tokens_per_sequence"), r"missing field 'forward_tokens_per_sequence'"),
        (lambda r: r.update(results=r["results"][1:]), r"bad\.json: results must hold exactly one row of objective "
                                                         r"'random'"),
    ]:
        record = json.loads(json.dumps(raw))
        edit(record)
        bad.write_text(json.dumps(record))
        with pytest.raises(ValueError, match=message):
            benchmark_results.load_training_cost(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not readable as a result of benchmarks/training_cost\.py"):
        benchmark_results.load_training_cost(bad)
