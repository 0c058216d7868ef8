"""Devices by name: `auto` (the GPU when there is one), `cpu` or `cuda`, and the mixed precisions a device can
run; requests this machine cannot give are refused with a message before any work."""
from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("no", "fp16", "bf16")


def check_placement(device: str, mixed_precision: str) -> None:
    """Raise ValueError for a device or precision that this machine cannot give."""
    if device not in DEVICES:
        raise ValueError(f"config key 'device' must be one of {', '.join(DEVICES)}, got {device!r}")
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"config key 'mixed_precision' must be one of {', '.join(PRECISIONS)}, got "
                         f"{mixed_precision!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda, but this process sees no CUDA GPU (torch.cuda.is_available() is False); "
                         "use device: auto (the GPU when there is one) or device: cpu")
    on_cpu = device == "cpu" or not torch.cuda.is_available()
    if mixed_precision == "fp16" and on_cpu:
        raise ValueError("mixed_precision: fp16 needs a CUDA GPU, and this run is placed on the CPU; use "
                         "mixed_precision: bf16 or no there")


def resolve_device(device: str) -> str:
    """The one device a single-process job (an app, a probe, a report) gets for `device`: auto -> cuda when a GPU
    is present, else cpu; cuda without a GPU is refused."""
    check_placement(device, "no")
    return "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
