"""Tests of maskdiff_tutor.device: device choice (never a silent fallback), seeding, and the
hardware record."""

from __future__ import annotations

import platform
import random
import re

import pytest
import torch

from maskdiff_tutor.device import DEVICE_KINDS, hardware_description, pick_device, seed_everything

CUDA = torch.cuda.is_available()
MPS = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


@pytest.mark.skipif(CUDA or MPS, reason="an accelerator is available: the best device is not the CPU")
def test_best_available_is_the_cpu_here():
    assert pick_device(None) == torch.device("cpu")
    assert pick_device() == torch.device("cpu")


@pytest.mark.skipif(not CUDA, reason="no CUDA device here")
def test_best_available_is_cuda_when_present():
    assert pick_device(None).type == "cuda"


@pytest.mark.parametrize("requested", ["cpu", torch.device("cpu"), "cpu:0"])
def test_cpu_by_name(requested):
    device = pick_device(requested)
    assert isinstance(device, torch.device) and device.type == "cpu"


@pytest.mark.skipif(CUDA, reason="CUDA is available here: the request is valid")
@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "cuda:1", torch.device("cuda")])
def test_unavailable_cuda_raises_naming_the_device(requested):
    with pytest.raises(ValueError, match=re.escape(f"device {requested!r} was requested but no such CUDA device")):
        pick_device(requested)


@pytest.mark.skipif(not CUDA, reason="no CUDA device here")
def test_cuda_index_beyond_the_devices_raises():
    with pytest.raises(ValueError, match="no such CUDA device"):
        pick_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(MPS, reason="MPS is available here: the request is valid")
def test_unavailable_mps_raises_naming_the_device():
    with pytest.raises(ValueError, match="device 'mps' was requested but MPS is not available"):
        pick_device("mps")


@pytest.mark.parametrize("requested", ["tpu", "banana", "", "cuda:x"])
def test_unknown_device_names_raise_naming_the_device(requested):
    with pytest.raises(ValueError, match=r"^device must be None or one of .*got " + re.escape(repr(requested)) + "$"):
        pick_device(requested)


@pytest.mark.parametrize("requested", ["meta", "xpu", torch.device("meta")])
def test_devices_torch_knows_but_the_package_does_not_support_raise(requested):
    with pytest.raises(ValueError, match=r"^device must be None or one of \('cuda', 'mps', 'cpu'\)"):
        pick_device(requested)


def test_device_kinds():
    assert DEVICE_KINDS == ("cuda", "mps", "cpu")


# ----------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**40])
def test_seed_everything_returns_a_seeded_generator(seed):
    g = seed_everything(seed)
    assert isinstance(g, torch.Generator) and g.device == torch.device("cpu")
    assert g.initial_seed() == seed
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=torch.Generator().manual_seed(seed)))


def test_seed_everything_seeds_the_global_generators():
    seed_everything(7)
    a_torch, a_py = torch.rand(4), [random.random() for _ in range(3)]
    seed_everything(7)
    b_torch, b_py = torch.rand(4), [random.random() for _ in range(3)]
    assert torch.equal(a_torch, b_torch) and a_py == b_py
    seed_everything(8)
    assert not torch.equal(torch.rand(4), a_torch)
    # the same streams as seeding them directly
    seed_everything(7)
    torch_draw, py_draw = torch.rand(4), random.random()
    torch.manual_seed(7)
    random.seed(7)
    assert torch.equal(torch.rand(4), torch_draw) and random.random() == py_draw


def test_generators_are_independent_of_the_global_state():
    g = seed_everything(3)
    torch.rand(100)  # advancing the global generator does not move the returned one
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3", None])
def test_bad_seeds_raise(seed):
    with pytest.raises(ValueError, match=rf"^seed must be an int >= 0; got {seed!r}$"):
        seed_everything(seed)


# ----------------------------------------------------------------------------- hardware


def test_hardware_description_on_the_cpu():
    info = hardware_description(torch.device("cpu"))
    assert {"device", "torch", "python", "platform", "processor", "cpu_threads"} <= set(info)
    assert info["device"] == "cpu"
    assert info["torch"] == torch.__version__
    assert info["python"] == platform.python_version()
    assert info["cpu_threads"] == torch.get_num_threads() >= 1
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and info["cpu_capability"]
    assert isinstance(info["processor"], str) and info["processor"]
    assert not {"gpu", "gpu_memory_gib", "cuda"} & set(info)


@pytest.mark.skipif(not CUDA, reason="no CUDA device here")
def test_hardware_description_on_cuda():
    info = hardware_description(torch.device("cuda"))
    assert {"gpu", "gpu_memory_gib", "cuda"} <= set(info) and info["gpu_memory_gib"] > 0
