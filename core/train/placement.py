"""Where a run trains: the config's `device` and `mixed_precision` turned into an `accelerate.Accelerator`.

Every loop trains through the Accelerator that `accelerator_for` builds, so one config runs on a CPU, one GPU or
several processes (`accelerate launch --num_processes N -m core.train ...` on GPUs; `torchrun --standalone
--nproc_per_node N -m core.train ... --set device=cpu` on a CPU, gloo). Impossible requests (a GPU that is not
there, fp16 on a CPU) are refused before anything is built or written.
"""
from __future__ import annotations

import os

import torch

from core.devices import check_placement

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
