"""Typed readers of the benchmark results the book shows (``benchmarks/results/*.json``).

The benchmark scripts in ``benchmarks/`` write plain JSON (their layout is theirs); the chapter
"Semi-AR blocks" reads ``benchmarks/blocks_and_cache.py``'s results through
:func:`load_blocks_and_cache`, as typed records, so it finds a speed-up by attribute::

    run = benchmark_results.load_blocks_and_cache("benchmarks/results/blocks_and_cache_cpu.json")
    [(row.seq_len, row.block_length, row.speedup) for row in run.results.training]
    run.hardware.threads_and_kernels  # "cpu, 2 thread(s), AVX512"
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

from .files import read_json
from .records import from_json

__all__ = ["BlocksAndCache", "BlocksAndCacheResults", "BlocksAndCacheSettings", "Hardware", "SamplingSpeedup",
           "Speedup", "TrainingSpeedup", "load_blocks_and_cache"]

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
