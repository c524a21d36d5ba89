"""The one place where the compute device is chosen and randomness is seeded.

Used by training and the experiments. ``pick_device()`` prefers CUDA, then Apple's MPS, then the
CPU; a device that is asked for by name but absent is an error, never a silent fallback.
``evaluation_dtype()`` says in which precision a trained model is measured on that device.
"""

from __future__ import annotations

import random

import torch

from ._checks import check_number

DEVICE_KINDS = ("cuda", "mps", "cpu")


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """The device to compute on.

    Args:
        requested: None for the best available (cuda, then mps, then cpu), or a device name
            such as "cpu", "cuda" or "cuda:1", which must exist.
    """
    if requested is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be None or one of {DEVICE_KINDS} (optionally with an index, "
                         f"'cuda:1'); got {requested!r}") from error
    if device.type not in DEVICE_KINDS:
        raise ValueError(f"device must be None or one of {DEVICE_KINDS}; got {requested!r}")
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {requested!r} was requested but no such CUDA device is available "
                         f"({torch.cuda.device_count()} found); pass device=None to use the best available")
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {requested!r} was requested but MPS is not available; "
                         "pass device=None to use the best available")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def evaluation_dtype(device: torch.device) -> torch.dtype:
    """The dtype a trained model is measured in: float64 on the CPU, float32 elsewhere.

    CPU kernels for different instruction sets (AVX2, AVX-512) and libraries round the last bits
    of float32 sums differently. Measured in float64, a model's probabilities agree between such
    machines to about 1e-15, far below any printed digit, and its sampled tokens agree too; so the
    numbers the book prints from stored models are the same on every CPU. GPUs keep float32
    (Apple's MPS has no float64)."""
    return torch.float64 if device.type == "cpu" else torch.float32


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, torch's (all devices) global generators and return a fresh CPU generator
    seeded with ``seed`` for code that takes an explicit ``torch.Generator``."""
    check_number("seed", seed, integer=True, at_least=0)
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def hardware_description(device: torch.device) -> dict:
    """What ran a computation, for the records saved beside results."""
    import platform

    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}  # the kernels torch picked: AVX512, AVX2, ...
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    return info


def generator_on(device: torch.device, generator: torch.Generator, seed: int) -> torch.Generator:
    """The generator for an experiment's bulk random draws (decoding, sampling a language) on ``device``.

    On the CPU it is ``generator`` itself (the stream the book's numbers come from). On a CUDA
    device it is a CUDA generator seeded with ``seed``: a decoder draws float64 noise for every
    sequence, open position and token at each step, and a Markov language's sampler a row of P per
    token, which on the CPU would take longer than the model. Results on CUDA therefore use other
    random numbers than on the CPU, and are recorded with their device."""
    if device.type != "cuda":
        return generator
    return torch.Generator(device=device).manual_seed(seed)
