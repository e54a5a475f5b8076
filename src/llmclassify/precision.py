"""Cheaper arithmetic for the frozen trunk pass, and the machine facts that decide it.

One pass over every text is nearly all of a run's cost. Its blocks can run in:
- float32: the decoder's own weights;
- bfloat16: a copy of the blocks converted once (fast where the CPU has AVX512-BF16 or AMX,
  and on GPUs; on an AVX2-only CPU several times slower than float32, so `auto` avoids it);
- int8: a copy whose Linear layers are `Int8Linear`: int8 weights with a scale per output
  channel, activations quantized to int8 per token at run time, int8 x int8 -> int32 products
  (oneDNN's kernels, through torch._int_mm or oneDNN's matmul primitive: int8_product), CPU
  only. Per token, not per batch as PyTorch's dynamic
  quantization: a text's result does not depend on the texts batched with it, and the few
  tokens whose states are a thousand times the rest (the first token of these models) do not
  flatten every other token's scale. Before that, SmoothQuant's smoothing (Xiao et al. 2023,
  `smooth_for_int8`): a few input CHANNELS carry values a hundred times the rest, which one
  scale per token rounds the others away against. Smoothing divides each such channel by a
  factor and multiplies the weights that read it by the same factor (folded into the preceding
  norm, or the value projection): the float32 function is unchanged, the int8 error is not.
  The factors come from the inputs' largest values over a few texts (`calibration_ids`), which
  the run records (spec.calibration_ids) so that prediction smooths the same way.
RMSNorm statistics, rotary angles and softmax accumulate in float32 either way (model.py).
`auto` picks bfloat16 where it is fast (closest to float32), else int8 where the CPU has int8
dot products (AVX512-VNNI, AVX-VNNI, AMX-INT8), else float32. A run records the choice
(spec.trunk_dtype) and prediction runs the same arithmetic where the machine has it.
"""

from __future__ import annotations

import copy
import os
import platform

import torch

TRUNK_DTYPES = ("float32", "bfloat16", "int8")
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")


def cpu_features() -> dict:
    """CPU model, the instruction-set flags that matter here, cores, torch version: recorded with
    every result (metrics.json, benchmarks). Where the model name is generic ("AMD EPYC" on a
    cloud machine), its family and model numbers tell the generation, and the arithmetic's
    speed with it (25/17, Zen 4: bfloat16 products 2.17x float32's, int8 3.21x;
    benchmarks/results/int8-ceiling-genoa.md)."""
    name, flags, fields = platform.processor() or "CPU", set(), {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and name in ("", "CPU", platform.processor()):
                    name = value.strip()
                elif key in ("cpu family", "model"):
                    fields[key] = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    if {"cpu family", "model"} <= fields.keys():
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return {"cpu": name, "flags": sorted(f for f in _FLAGS if f in flags), "cores": os.cpu_count(),
            "torch": torch.__version__}


_ALLOCATOR_TUNED = False


def hold_freed_memory() -> None:
    """Keep freed memory in the process (glibc): by default glibc hands every freed block over
    128 KB-32 MB back to the kernel, and the pass allocates and frees tens of MB per layer, so
    each layer faults its pages in again. Blocks up to 32 MB now come from the heap, and up to
    512 MB of freed heap stays resident (the peak is unchanged; memory is returned at exit).
    Measured with precision.py on 300 SMS texts, default vs the same settings through glibc's
    environment variables: float32 pass 21.8 -> 17.7 s, int8 8.2 -> 5.5 s, bfloat16 unchanged.
    Once per process; nothing where the C library is not glibc."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or platform.system() != "Linux":
        return
    _ALLOCATOR_TUNED = True
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 512 << 20)
    except (OSError, AttributeError):  # not glibc (musl, ...): its defaults stay
        pass


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
        raise ValueError("int8 trunk arithmetic is for CPUs (Int8Linear)")
    if requested != "auto":
        return requested
    if fast_bfloat16(device):
        return "bfloat16"
    return "int8" if fast_int8(device) else "float32"


def fast_int8(device) -> bool:
    """Whether the int8 trunk (Int8Linear) is the fast path here: a CPU with int8 dot products,
    AVX512-VNNI, AMX-INT8 or AVX-VNNI (the 256-bit form: Intel's Alder Lake and later client
    CPUs, AMD's Zen 5). Measured with AVX512-VNNI (benchmarks/results/recipes-int8.md): whole
    runs 2.07x and 2.26x faster than float32, test accuracy within 0.1 points; with the
    libraries capped to AVX2 + AVX-VNNI (recipes-avx-vnni.md, emulated): 2.21x, the same test
    accuracy; that emulation ran torch._int_mm's oneDNN GEMM, where a real AVX-VNNI CPU runs
    oneDNN's matmul primitive (int8_product), not measured on one. With AVX2 alone: float32
    (an AVX2-only EPYC: recipes-milan.md)."""
    flags = set(cpu_features()["flags"])
    return torch.device(device).type == "cpu" and bool(flags & {"avx512_vnni", "amx_int8", "avx_vnni"})


def activation_dtype(trunk_dtype: str) -> torch.dtype:
    """The dtype of the hidden states flowing through blocks of this arithmetic."""
    return torch.bfloat16 if trunk_dtype == "bfloat16" else torch.float32


def reduced_blocks(decoder, n_blocks: int, trunk_dtype: str, calibration: list[list[int]] | None = None,
                   causal: bool = True, in_place: bool = False) -> torch.nn.ModuleList:
    """The decoder's first `n_blocks` blocks to run in `trunk_dtype`: themselves for float32,
    else a converted copy (the originals stay float32 for fine-tuned top blocks and for
    prediction), or, `in_place`, the blocks themselves converted. int8 is smoothed on the
    `calibration` texts' token ids (`calibration_ids`) where they are given (runs saved before
    smoothing have none)."""
    blocks = decoder.blocks[:n_blocks]
    if trunk_dtype == "float32":
        return blocks
    smooth = trunk_dtype == "int8" and calibration and n_blocks
    maxima = input_maxima(decoder, n_blocks, calibration, causal) if smooth else None
    # one block at a time: a copy holds one more float32 block at most, not the whole trunk
    return torch.nn.ModuleList(
        reduce_in_place(torch.nn.ModuleList([block if in_place else copy.deepcopy(block)]), trunk_dtype,
                        maxima[k : k + 1] if maxima else None)[0]
        for k, block in enumerate(blocks))


def reduce_in_place(blocks: torch.nn.ModuleList, trunk_dtype: str, maxima: list[dict] | None = None
                    ) -> torch.nn.ModuleList:
    """Convert `blocks` themselves to `trunk_dtype` (prediction: a probe's blocks); int8 smooths
    first where `maxima` (input_maxima of these blocks) are given. Converted blocks only run
    forward: their projections that read one input are fused (Block.fuse_projections)."""
    if trunk_dtype == "float32":
        return blocks
    if trunk_dtype == "int8" and maxima is not None:
        smooth_for_int8(blocks, maxima)
    for block in blocks:
        block.fuse_projections()
    return blocks.to(torch.bfloat16) if trunk_dtype == "bfloat16" else quantize_int8(blocks)


def int8_product() -> str:
    """The int8 x int8 product Int8Linear runs on this CPU. 'int_mm' (torch._int_mm: signed int8
    on both sides) where the CPU has AVX512-VNNI (every CPU with AMX has it too): PyTorch hands it
    to oneDNN's int8 GEMM only there, and elsewhere runs a plain loop, 30 to 60 times slower than
    the float32 layer it replaces on an AVX2-only EPYC (benchmarks/results/int8-ceiling-milan.md;
    the instruction caps of precision.py's emulation leave the CPU's own flags, and so that
    choice, unchanged, which is why they never showed it). 'onednn' elsewhere on x86: oneDNN's
    int8 matmul primitive (torch.ops.onednn.qlinear_pointwise, unsigned activations, zero point
    ONEDNN_ZERO_POINT), which runs AVX2 kernels; without VNNI they sum each pair of u8 x s8
    products in int16 (vpmaddubsw), which saturates past 32,767, so its weights are rounded to
    ONEDNN_WEIGHT_LEVELS levels a side: 2 x 255 x 63 fits. 'int_mm' too where PyTorch has no
    oneDNN (other architectures). A run trained in int8 on one kind of CPU and loaded on the
    other predicts from features within int8's rounding of those it was trained on, not equal."""
    if "avx512_vnni" in cpu_features()["flags"] or not _has_onednn_int8():
        return "int_mm"
    return "onednn"


def _has_onednn_int8() -> bool:
    return (platform.machine() in ("x86_64", "AMD64") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.onednn, "qlinear_pointwise"))


ONEDNN_ZERO_POINT = 128
# 7 bits a side for the weights where the product is oneDNN's (int8_product). The weights, not the
# activations: with 7-bit activations (zero point 64) and 8-bit weights instead, features on 300
# SMS texts were further from float32's (mean cosine over the layers lower, on the Zen 3 EPYC).
ONEDNN_WEIGHT_LEVELS = 63


class Int8Linear(torch.nn.Module):
    """A Linear layer in int8: weights rounded to int8 with one scale per output channel, once;
    each token's input rounded to int8 with its own scale (its largest |value| / 127) at run
    time; the int8 x int8 products summed in int32 (`product`: int8_product()) and scaled back to
    float32. A token's output depends on that token alone."""

    def __init__(self, linear: torch.nn.Linear, product: str | None = None):
        super().__init__()
        self.product = product or int8_product()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        levels = 127 if self.product == "int_mm" else ONEDNN_WEIGHT_LEVELS
        scale = (w.abs().amax(1) / levels).clamp(min=1e-12)
        weight_int8 = torch.round(w / scale[:, None]).to(torch.int8)
        # int_mm reads the weight as (in, out); oneDNN as (out, in), packed for its kernels on first use
        self.register_buffer("weight_int8", weight_int8.t().contiguous() if self.product == "int_mm" else weight_int8)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self._packed = None

    def __getstate__(self):  # oneDNN's packed weight cannot be copied; a copy packs its own
        return {**self.__dict__, "_packed": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        # few full-size temporaries (in-place where it can): each is memory to fault in
        scale = torch.maximum(rows.amax(1, keepdim=True), rows.amin(1, keepdim=True).neg_()).div_(127).clamp_(min=1e-12)
        rounded = rows.div(scale).round_()
        if self.product == "int_mm":
            y = torch._int_mm(rounded.to(torch.int8), self.weight_int8).float().mul_(scale).mul_(self.weight_scale)
        else:
            y = self._onednn_product(rounded.add_(ONEDNN_ZERO_POINT).to(torch.uint8)).mul_(scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.view(*x.shape[:-1], self.out_features)

    def _onednn_product(self, rows_u8: torch.Tensor) -> torch.Tensor:
        """(rows, out) float32: the int32 sums of products times the weights' scales."""
        if self._packed is None:
            self._packed = torch.ops.onednn.qlinear_prepack(self.weight_int8, None)
            self._zero_points = torch.zeros(self.out_features, dtype=torch.long)
        return torch.ops.onednn.qlinear_pointwise(rows_u8, 1.0, ONEDNN_ZERO_POINT, self._packed, self.weight_scale,
                                                  self._zero_points, None, 1.0, 0, torch.float32, "none", [], "")


def quantize_int8(module: torch.nn.Module, product: str | None = None) -> torch.nn.Module:
    """Swap every Linear layer of `module`, in place, for an Int8Linear: the int8 trunk's blocks,
    and `--quantize int8` at prediction (the whole classifier, head included). The product
    (int8_product()) is chosen once for all of them."""
    product = product or int8_product()
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, Int8Linear(child, product))
        else:
            quantize_int8(child, product)
    return module


# --- SmoothQuant for the int8 trunk ------------------------------------------------------------
# Migration strength: a channel's factor is max|x|^a / max|w|^(1 - a). Measured on SmolLM2-135M
# (300 SMS texts, features' mean cosine to float32 over all layers, Int8Linear everywhere):
# 0.5 -> 0.99831, 0.65 -> 0.99853, 0.75 -> 0.99856, 0.85 -> 0.99848 (unsmoothed, 400 texts: 0.99699).
SMOOTHING_ALPHA = 0.75
# Texts spread over the train split, and the tokens kept of each. The factors need the channels'
# scale, not their exact maxima: on 400 SMS texts 16 x 64 tokens (617) gave features at cosine
# 0.99823 to float32 against 0.99827 from 32 x 128 (1,231), in 1.5 s instead of 2.5 s of float32.
CALIBRATION_TEXTS, CALIBRATION_TOKENS = 16, 64


def calibration_ids(ids: list[list[int]]) -> list[list[int]]:
    """CALIBRATION_TEXTS texts spread evenly over `ids` (in order: deterministic), each cut to
    its first CALIBRATION_TOKENS tokens: what the smoothing factors are measured on."""
    n = len(ids)
    picks = sorted({round(i * (n - 1) / max(1, CALIBRATION_TEXTS - 1)) for i in range(min(n, CALIBRATION_TEXTS))})
    return [list(ids[i][:CALIBRATION_TOKENS]) for i in picks if len(ids[i])]


@torch.inference_mode()
def input_maxima(decoder, n_blocks: int, calibration: list[list[int]], causal: bool = True) -> list[dict]:
    """Per block of the first `n_blocks`, in float32, the largest |value| of each input channel
    of what smoothing rescales: 'attn' (the norm1 output q/k/v read), 'mlp' (the norm2 output
    the MLP's first projections read), 'o' (the attention output o_proj reads); over the real
    tokens of `calibration` (each text run alone: no padding)."""
    if not calibration:
        raise ValueError("int8 smoothing needs calibration texts (precision.calibration_ids)")
    maxima = [{} for _ in range(n_blocks)]
    hooks = []
    for k, block in enumerate(decoder.blocks[:n_blocks]):
        first_mlp = block.mlp.gate_proj if block.mlp.gated else block.mlp.up_proj
        for key, module in (("attn", block.attn.q_proj), ("mlp", first_mlp), ("o", block.attn.o_proj)):
            def record(_, inputs, store=maxima[k], key=key):
                m = inputs[0].detach().abs().flatten(0, -2).amax(0).float()
                store[key] = torch.maximum(store[key], m) if key in store else m
            hooks.append(module.register_forward_pre_hook(record))
    try:
        device = next(decoder.parameters()).device
        for ids in calibration:
            x = torch.tensor([ids], device=device)
            mask = torch.ones_like(x)
            pos = decoder.positions(mask)
            decoder.run_blocks(decoder.embed(x, pos).float(), mask, pos, 0, n_blocks, causal)
    finally:
        for h in hooks:
            h.remove()
    return maxima


def _factors(x_max: torch.Tensor, w_max: torch.Tensor, alpha: float = SMOOTHING_ALPHA) -> torch.Tensor:
    return (x_max.clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)


@torch.no_grad()
def smooth_for_int8(blocks: torch.nn.ModuleList, maxima: list[dict]) -> None:
    """SmoothQuant, in place, on float32 blocks: each input channel j of the q/k/v projections
    (and of the MLP's first projections) divided by s_j in the norm before them, their weight
    columns multiplied by it; each value-projection output channel divided by s and the
    o_proj columns that read it (every query head of its key/value group) multiplied by s.
    The float32 function is unchanged (up to rounding)."""
    for block, m in zip(blocks, maxima):
        attn, mlp = block.attn, block.mlp
        for norm, readers, key in ((block.norm1, (attn.q_proj, attn.k_proj, attn.v_proj), "attn"),
                                   (block.norm2, tuple(p for p in (getattr(mlp, "gate_proj", None), mlp.up_proj)
                                                       if p is not None), "mlp")):
            s = _factors(m[key], torch.stack([r.weight.abs().amax(0) for r in readers]).amax(0))
            norm.weight.div_(s)
            if getattr(norm, "bias", None) is not None:
                norm.bias.div_(s)
            for r in readers:
                r.weight.mul_(s)
        groups = attn.n_heads // attn.n_kv_heads  # o_proj input = heads side by side; head h reads value head h // groups
        shape = (attn.n_kv_heads, groups, attn.head_dim)
        s = _factors(m["o"].view(shape).amax(1), attn.o_proj.weight.abs().amax(0).view(shape).amax(1))  # (Hkv, hd)
        attn.v_proj.weight.div_(s.reshape(-1, 1))
        if attn.v_proj.bias is not None:
            attn.v_proj.bias.div_(s.reshape(-1))
        attn.o_proj.weight.mul_(s[:, None, :].expand(shape).reshape(-1))
