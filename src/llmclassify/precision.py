"""Cheaper arithmetic for the frozen trunk pass, and the machine facts that decide it.
(Placeholder of the precision branch's module: same API, merged over by it.)"""

from __future__ import annotations

import os
import platform

import torch

_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")


def cpu_features() -> dict:
    name, flags = platform.processor() or "CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("", "CPU", platform.processor()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"cpu": name, "flags": sorted(f for f in _FLAGS if f in flags), "cores": os.cpu_count(),
            "torch": torch.__version__}


def choose_trunk_dtype(device, requested: str = "auto", features: dict | None = None) -> torch.dtype:
    if requested != "auto":
        return getattr(torch, requested)
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    flags = set((features or cpu_features())["flags"])
    return torch.bfloat16 if flags & {"avx512_bf16", "amx_bf16"} else torch.float32
