"""Cheaper arithmetic for the frozen trunk pass, and the machine facts that decide it.

One pass over every text is nearly all of a run's cost. Its blocks can run in:
- float32: the decoder's own weights;
- bfloat16: a copy of the blocks converted once (fast where the CPU has AVX512-BF16 or AMX,
  and on GPUs; on an AVX2-only CPU several times slower than float32, so `auto` avoids it);
- int8: a copy whose Linear layers (but the MLP's output projection) are dynamically quantized
  (int8 weights, activations quantized per batch, PyTorch's fbgemm kernels), CPU only.
RMSNorm statistics, rotary angles and softmax accumulate in float32 either way (model.py).
`auto` picks bfloat16 where it is fast, else float32: int8 changes features more (see
benchmarks/results/precision.md) and is opt-in. A probe records the choice (spec.trunk_dtype)
and prediction runs the same arithmetic where the machine has it.
"""

from __future__ import annotations

import copy
import os
import platform
import warnings

import torch

TRUNK_DTYPES = ("float32", "bfloat16", "int8")
# Kept in float32 under int8: the MLP's output projection reads the few huge activations of
# these models; quantizing it per batch drops the features' cosine to float32 from about 0.99
# to 0.88 at layers 8-30 (SmolLM2-135M, 24 SMS texts; benchmarks/results/precision.md).
INT8_KEEPS_FLOAT = ("down_proj",)
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")


def cpu_features() -> dict:
    """CPU model, the instruction-set flags that matter here, cores, torch version: recorded with
    every result (metrics.json, benchmarks)."""
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


def fast_bfloat16(device) -> bool:
    """Whether bfloat16 matmuls beat float32 here: a GPU that supports them, or a CPU with
    AVX512-BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(set(cpu_features()["flags"]) & {"avx512_bf16", "amx_bf16"})


def choose_trunk_dtype(device, requested: str = "auto") -> str:
    """The trunk pass's arithmetic: `requested` unless it is `auto`."""
    if requested not in ("auto", *TRUNK_DTYPES):
        raise ValueError(f"unknown trunk dtype {requested!r}")
    if requested == "int8" and torch.device(device).type != "cpu":
        raise ValueError("int8 trunk arithmetic is for CPUs (dynamic quantization)")
    if requested != "auto":
        return requested
    return "bfloat16" if fast_bfloat16(device) else "float32"


def activation_dtype(trunk_dtype: str) -> torch.dtype:
    """The dtype of the hidden states flowing through blocks of this arithmetic."""
    return torch.bfloat16 if trunk_dtype == "bfloat16" else torch.float32


def reduced_blocks(blocks: torch.nn.ModuleList, trunk_dtype: str) -> torch.nn.ModuleList:
    """`blocks` to run in `trunk_dtype`: themselves for float32, else a converted copy (the
    originals stay float32 for fine-tuned top blocks and for prediction)."""
    if trunk_dtype == "float32":
        return blocks
    reduced = copy.deepcopy(blocks)
    return reduce_in_place(reduced, trunk_dtype)


def reduce_in_place(blocks: torch.nn.ModuleList, trunk_dtype: str) -> torch.nn.ModuleList:
    """Convert `blocks` themselves to `trunk_dtype` (prediction: a probe's blocks)."""
    if trunk_dtype == "bfloat16":
        return blocks.to(torch.bfloat16)
    if trunk_dtype == "int8":
        return quantize_int8(blocks, keep_float=INT8_KEEPS_FLOAT)
    return blocks


def quantize_int8(module: torch.nn.Module, keep_float: tuple[str, ...] = ()) -> torch.nn.Module:
    """Swap `module`'s Linear layers, in place, for dynamic int8 ones (int8 weights, activations
    quantized per batch), but those named in `keep_float`. `--quantize int8` at prediction
    quantizes every Linear; the int8 trunk keeps INT8_KEEPS_FLOAT."""
    linear = {name for name, m in module.named_modules()
              if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in keep_float}
    with warnings.catch_warnings():  # torch.ao's deprecation notice: it still ships, no extra dependency
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(module, linear, dtype=torch.qint8, inplace=True)
