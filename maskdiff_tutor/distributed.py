"""Several processes training one model: PyTorch's DistributedDataParallel under ``torchrun``.

Nothing here distributes work by itself. ``torchrun --nproc-per-node N`` starts N copies of a
program and tells each its place in the environment variables ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``. ``start()`` reads them and opens PyTorch's process group (NCCL between GPUs, gloo
between CPU processes); ``train()`` then wraps the model in ``DistributedDataParallel``, which
averages the gradients of the processes after every backward pass. Outside ``torchrun`` every
function here answers as a single process would (rank 0 of 1), so the same code runs either way.

How ``train()`` shares a step between N processes (its docstring has the details):

- every process draws the same global batch and the same noise from the shared, identically
  seeded generator, and computes the loss on its own :math:`1/N` of the rows;
- the dropout generator is seeded ``seed + rank``, so the processes drop different units;
- only rank 0 shows progress and writes checkpoints, saved models and results.
"""

from __future__ import annotations

import os

import torch

ENVIRONMENT = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


def _from_environment() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's variables; (0, 0, 1) when they are absent."""
    values = {}
    for name in ENVIRONMENT:
        text = os.environ.get(name)
        if text is None:
            values[name] = 1 if name == "WORLD_SIZE" else 0
            continue
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"the environment variable {name} must be an integer (torchrun sets it); "
                             f"got {text!r}") from None
    rank, local_rank, world = values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"]
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, LOCAL_RANK={local_rank}, "
                         f"WORLD_SIZE={world} (need 0 <= RANK < WORLD_SIZE)")
    return rank, local_rank, world


def is_distributed() -> bool:
    """True inside an open process group of more than one process."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def start() -> tuple[int, int]:
    """Open the process group when launched by torchrun with more than one process; returns
    (rank, world size), (0, 1) for a single process. Calling it again changes nothing.

    The backend is NCCL when CUDA is available (each process then uses ``cuda:LOCAL_RANK``) and gloo
    otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank, local_rank, world = _from_environment()
    if world == 1:
        return 0, 1
    if not torch.distributed.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} asks for {world} processes, but this torch build has no "
                           "torch.distributed")
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are "
                             f"visible; start at most {torch.cuda.device_count()} processes per node")
        torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        torch.distributed.init_process_group("gloo")
    return rank, world


def stop() -> None:
    """Close the process group, if one is open (the end of a torchrun program)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 outside a process group)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files and shows progress: rank 0, or a lone process."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device this process computes on: under a process group a CUDA device becomes
    ``cuda:LOCAL_RANK``; a CUDA device with another index, or MPS, is refused there."""
    if not is_distributed():
        return device
    local_rank = _from_environment()[1]
    if device.type == "cuda":
        if device.index not in (None, local_rank):
            raise ValueError(f"device {str(device)!r}: under torchrun each process uses cuda:LOCAL_RANK "
                             f"(cuda:{local_rank} here); pass device=None or 'cuda'")
        return torch.device("cuda", local_rank)
    if device.type != "cpu":
        raise ValueError(f"device {str(device)!r}: several processes train on 'cuda' (NCCL) or 'cpu' (gloo) only")
    return device


def gather(value) -> list:
    """Every process's ``value`` (any picklable object, tensors included), in rank order; [value]
    for a single process. All processes must call it together."""
    if not is_distributed():
        return [value]
    values = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def barrier() -> None:
    """Wait until every process has reached this call (at once for a single process). ``train()`` calls
    it after rank 0 writes a checkpoint, so that no process leaves, and has torchrun end the others,
    before the file is whole."""
    if is_distributed():
        torch.distributed.barrier()
