"""One line saying what a measurement ran on, shared by the benchmark and training reports."""
from __future__ import annotations

import os
import platform

import torch


def describe(device: torch.device) -> str:
    """The GPU's name on CUDA; else the CPU's model name, its cores and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:  # Linux names the model here; platform.processor() often does not
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)"
