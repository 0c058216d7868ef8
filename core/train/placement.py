"""Where a run trains: the config's `device` and `mixed_precision` turned into an `accelerate.Accelerator`.

Every loop trains through the Accelerator that `accelerator_for` builds, so one config runs on a CPU, one GPU or
several processes (`accelerate launch --num_processes N -m core.train ...` on GPUs; `torchrun --standalone
--nproc_per_node N -m core.train ... --set device=cpu` on a CPU, gloo). Impossible requests (a GPU that is not
there, fp16 on a CPU) are refused before anything is built or written.
"""
from __future__ import annotations

import os

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


def single_device(device: str) -> torch.device:
    """The one device of a single-process job (a probe, a report) that a config's `device` asks for."""
    check_placement(device, "no")
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def launched_processes() -> int:
    """How many processes the launcher (torchrun, accelerate launch) started for this run; 1 when run directly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launch_rank() -> int:
    """This process's rank among the launched ones (0 when run directly): only rank 0 prints a run's report."""
    return int(os.environ.get("RANK", "0"))


def accelerator_for(device: str, mixed_precision: str):
    """The Accelerator of a run: the GPU for `auto` when there is one, DDP across the launched processes (NCCL on
    GPUs, gloo on the CPU). In a single process the accelerator state is rebuilt, so that runs with other settings
    may follow one another in the same interpreter (tests, the VAE beta family)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    check_placement(device, mixed_precision)
    if launched_processes() == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
    else:
        AcceleratorState._reset_state(reset_partial_state=False)
    cpu = device == "cpu" or not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision)
