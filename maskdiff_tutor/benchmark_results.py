"""Typed readers of the benchmark results the book shows (``benchmarks/results/*.json``).

The benchmark scripts in ``benchmarks/`` write plain JSON (their layout is theirs); the chapter
"Semi-AR blocks" reads ``benchmarks/blocks_and_cache.py``'s results through
:func:`load_blocks_and_cache`, as typed records, so it finds a speed-up by attribute::

    run = benchmark_results.load_blocks_and_cache("benchmarks/results/blocks_and_cache_cpu.json")
    [(row.seq_len, row.block_length, row.speedup) for row in run.results.training]
    run.hardware.threads_and_kernels  # "cpu, 2 thread(s), AVX512"

and ``benchmarks/training_cost.py``'s through :func:`load_training_cost` (what one training sequence
costs under each objective, forward tokens and wall time, for the paper's claim that its blockwise
scheme is cheaper to learn, Section 3.4.2)::

    cost = benchmark_results.load_training_cost("benchmarks/results/training_cost_cpu.json")
    cost.row("blockwise_literal", 8).seconds_ratio  # wall time per sequence / random masking's
    cost.table()
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

from .files import read_json
from .notebook import Table
from .records import from_json

__all__ = ["BlocksAndCache", "BlocksAndCacheResults", "BlocksAndCacheSettings", "Hardware", "SamplingSpeedup",
           "Speedup", "TrainingCost", "TrainingCostRow", "TrainingCostSettings", "TrainingSpeedup",
           "load_blocks_and_cache", "load_training_cost"]

TRAINING = "training step: one pass / loop"  # what a training row compares
SAMPLING = "sampling: cache / recompute"  # what a sampling row compares


@dataclass(frozen=True)
class Hardware:
    """What ran a benchmark (``device.hardware_description``)."""
    device: str  # "cpu", "cuda:0", ...
    torch: str  # torch's version
    python: str
    platform: str
    processor: str
    cpu_threads: int  # torch's intra-op threads
    cpu_capability: str | None = None  # the CPU kernels torch picked (AVX512, AVX2, ...)
    gpu: str | None = None  # the GPU's name on CUDA
    gpu_memory_gib: float | None = None
    cuda: str | None = None  # CUDA version of torch's build

    @property
    def threads_and_kernels(self) -> str:
        """The device with its threads and CPU kernels, e.g. "cpu, 2 thread(s), AVX512"."""
        return f"{self.device}, {self.cpu_threads} thread(s), {self.cpu_capability}"


@dataclass(frozen=True)
class BlocksAndCacheSettings:
    """The command-line settings of ``benchmarks/blocks_and_cache.py``."""
    preset: str  # model size (DenoiserConfig.preset)
    vocab_size: int  # vocabulary including the mask
    seq_lens: list[int]  # sequence lengths L
    train_blocks: list[int]  # block lengths of the training measurement (empty: not measured)
    sample_block: int  # block length of the sampling measurement
    train_batch: int  # sequences per training step
    sample_batch: int  # sequences generated at once
    repeats: int  # timed repeats per measurement (the median is compared)
    device: str | None  # the device asked for (None: the best available)
    out: str | None  # the JSON path asked for


@dataclass(frozen=True)
class TrainingSpeedup:
    """One training step, the one-pass block-causal loss against the loop over blocks."""
    seq_len: int  # L
    block_length: int  # B
    tokens_per_step: int  # tokens of data per training step
    seconds: dict[str, list[float]]  # "one_pass" and "loop": wall time of each repeat, seconds
    one_pass_tokens_per_s: float  # median throughput of the one pass, tokens per second
    loop_tokens_per_s: float  # median throughput of the loop, tokens per second
    speedup: float  # one pass / loop


@dataclass(frozen=True)
class SamplingSpeedup:
    """Sampling in blocks, with the cache of finished blocks against recomputing the prefix."""
    seq_len: int  # L
    block_length: int  # B
    generated_tokens: int  # tokens generated per run
    seconds: dict[str, list[float]]  # "cached" and "uncached": wall time of each repeat, seconds
    cached_tokens_per_s: float  # median throughput with the cache, tokens per second
    uncached_tokens_per_s: float  # median throughput without it, tokens per second
    speedup: float  # cached / uncached
    sampler_overhead_share: float  # share of a cached run spent outside the model's calls


@dataclass(frozen=True)
class BlocksAndCacheResults:
    """The measurements of one run of ``benchmarks/blocks_and_cache.py``."""
    training: list[TrainingSpeedup]  # one per (L, B); empty when training was not measured
    sampling: list[SamplingSpeedup]  # one per L


@dataclass(frozen=True)
class Speedup:
    """One comparison of a run, as the book's table shows it."""
    preset: str  # model size
    compared: str  # TRAINING or SAMPLING: what is compared with what
    seq_len: int  # L
    block_length: int  # B
    speedup: float  # how many times faster the first is than the second
    hardware: str  # Hardware.threads_and_kernels of the run


@dataclass(frozen=True)
class BlocksAndCache:
    """One stored run of ``benchmarks/blocks_and_cache.py``."""
    benchmark: str  # "blocks_and_cache"
    date: str  # when it ran, ISO 8601
    settings: BlocksAndCacheSettings  # its command-line settings
    model: Any  # the model's configuration and parameter count (not read by the book)
    hardware: Hardware  # what it ran on
    results: BlocksAndCacheResults  # the measurements

    def speedups(self) -> list[Speedup]:
        """Every comparison of the run, training first, as rows of one table."""
        return [Speedup(self.settings.preset, compared, row.seq_len, row.block_length, row.speedup,
                        self.hardware.threads_and_kernels)
                for compared, rows in ((TRAINING, self.results.training), (SAMPLING, self.results.sampling))
                for row in rows]

    def sampling_at(self, seq_len: int) -> SamplingSpeedup:
        """The sampling measurement at sequence length ``seq_len``."""
        for row in self.results.sampling:
            if row.seq_len == seq_len:
                return row
        raise ValueError(f"seq_len must be one of {[row.seq_len for row in self.results.sampling]} (the sampling "
                         f"measurements of this run); got {seq_len!r}")


def load_blocks_and_cache(path: str | pathlib.Path) -> BlocksAndCache:
    """Read a result file of ``benchmarks/blocks_and_cache.py``; a file of another benchmark, or
    one that does not fit the layout, raises ``ValueError`` naming the file and what is wrong."""
    record = read_json(path, "a result of benchmarks/blocks_and_cache.py")
    held = record.get("benchmark") if isinstance(record, dict) else None
    if held != "blocks_and_cache":
        raise ValueError(f"{path} holds a result of benchmark {held!r}, not of 'blocks_and_cache'")
    return from_json(BlocksAndCache, record, str(path))


@dataclass(frozen=True)
class TrainingCostSettings:
    """The settings of a ``benchmarks/training_cost.py`` run, its scale's defaults filled in."""
    scale: str  # the blocks experiment's scale the defaults came from ("ci": the book's stored models)
    seq_len: int  # L, tokens per training sequence
    preset: str  # model size (DenoiserConfig.preset)
    vocab_size: int  # vocabulary including the mask
    batch_size: int  # sequences per training step
    lr: float  # peak learning rate (does not change the time)
    objectives: list[str]  # as asked: "random", "blockwise:4", ...
    steps: int  # timed steps per repeat and objective
    repeats: int  # timed repeats per objective, interleaved across the objectives
    warmup: int  # untimed steps per objective first
    device: str
    threads: int  # torch's CPU threads
    seed: int
    out: str | None  # the JSON path asked for
    autocast: str | None  # "bf16" on CUDA, None elsewhere
    data_sequences: int  # sequences the batches are drawn from
    data: str  # what the data is
    step: str  # what one timed step does
    order: str  # the order of warm-up and repeats


@dataclass(frozen=True)
class TrainingCostRow:
    """What one training sequence costs under one objective."""
    objective: str  # a key of train.OBJECTIVES
    block_length: int | None  # B of the blockwise objectives; None for the others
    forward_tokens_per_sequence: int  # tokens through the model per sequence (train.forward_tokens_per_sequence)
    forward_tokens_ratio: float  # forward tokens / random masking's
    seconds_per_repeat: list[float]  # wall time of each timed repeat of ``steps`` steps
    seconds_per_sequence: float  # median over the repeats of wall seconds per training sequence
    seconds_per_sequence_min: float  # the fastest repeat's
    seconds_per_sequence_max: float  # the slowest repeat's
    seconds_ratio: float  # seconds_per_sequence / random masking's
    forward_tokens_per_s: float  # forward tokens per sequence / seconds_per_sequence
    last_loss_per_repeat: list[float]  # the loss of each repeat's last step

    @property
    def name(self) -> str:
        """The row's name, as the blocks chapter names models ("random", "blockwise B=4", ...)."""
        return self.objective if self.block_length is None else f"{self.objective} B={self.block_length}"


@dataclass(frozen=True)
class TrainingCost:
    """One stored run of ``benchmarks/training_cost.py``."""
    benchmark: str  # "training_cost"
    date: str  # when it ran, ISO 8601
    command: str  # the command line
    settings: TrainingCostSettings
    model: Any  # the model's configuration and parameter count (not read by the book)
    versions: dict[str, str | None]  # torch, python and the git commit of the code that ran
    hardware: Hardware  # what it ran on
    results: list[TrainingCostRow]  # one per objective, in the order asked
    wall_seconds: float  # the benchmark's warm-up and timed repeats
    cpu_busy_fraction_before: float | None  # share of the CPUs busy in the second before the run
    cpu_busy_fraction_after: float | None
    load_average_before: list[float] | None  # 1, 5 and 15 minute load averages
    load_average_after: list[float] | None

    def row(self, objective: str, block_length: int | None = None) -> TrainingCostRow:
        """The row of ``objective`` (with its ``block_length`` for the blockwise ones)."""
        for row in self.results:
            if (row.objective, row.block_length) == (objective, block_length):
                return row
        raise ValueError(f"(objective, block_length) must be one of "
                         f"{[(row.objective, row.block_length) for row in self.results]} (the rows of this run); "
                         f"got {(objective, block_length)!r}")

    def table(self) -> Table:
        """Forward tokens and wall milliseconds per training sequence, each beside its ratio to random masking."""
        s = self.settings
        columns = {"objective": "objective", "B": "block_length",
                   "forward tokens / sequence": "forward_tokens_per_sequence",
                   "tokens × random": "forward_tokens_ratio",
                   "wall ms / sequence": lambda row: 1e3 * row.seconds_per_sequence,
                   "time × random": "seconds_ratio"}
        caption = (f"One training sequence: forward tokens and wall time (median of {s.repeats} repeats of "
                   f"{s.steps} steps, batch {s.batch_size}), L = {s.seq_len}, preset {s.preset}; "
                   f"{self.hardware.threads_and_kernels}, torch {self.hardware.torch}")
        return Table.of(self.results, columns, {"tokens × random": ".2f", "wall ms / sequence": ".3f",
                                                "time × random": ".2f"}, caption)


def load_training_cost(path: str | pathlib.Path) -> TrainingCost:
    """Read a result file of ``benchmarks/training_cost.py``; a missing file, a file of another
    benchmark, one that does not fit the layout or one without its random-masking row (every ratio
    is to it) raises ``ValueError`` naming the file and what is wrong."""
    record = read_json(path, "a result of benchmarks/training_cost.py")
    held = record.get("benchmark") if isinstance(record, dict) else None
    if held != "training_cost":
        raise ValueError(f"{path} holds a result of benchmark {held!r}, not of 'training_cost'")
    cost = from_json(TrainingCost, record, str(path))
    if sum(row.objective == "random" for row in cost.results) != 1:
        raise ValueError(f"{path}: results must hold exactly one row of objective 'random' (every ratio is to it); "
                         f"got {[row.name for row in cost.results]}")
    return cost
