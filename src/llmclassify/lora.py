"""LoRA: low-rank adapters on the decoder's Linear layers, as a module wrapper.

This module owns which Linear layers get an adapter, the adapter itself, merging adapters
into the base weights for prediction, and the adapters' state dict.

A `LoRALinear` computes ``y = x W^T + b + dropout(x) A^T B^T * (alpha / rank)`` with the
pretrained ``W``, ``b`` frozen, ``A`` (rank, in) Kaiming-uniform and ``B`` (out, rank) zero, so
a fresh adapter leaves the model's output unchanged and training starts from the pretrained
function (Hu et al., 2021).

The wrapper keeps the base layer's own ``weight`` and ``bias`` Parameters under the same names
(``blocks.0.attn.q_proj.weight``) and adds ``lora_A`` / ``lora_B`` beside them. So the decoder's
state-dict names (docs/architecture.md) do not change: a loader's state dict still loads with
``strict=True`` after `apply_lora`, and a saved run that holds only the trainable tensors
(``...lora_A``, ``...lora_B``, ``head.*``, ``decoder.final_norm.*``) loads onto a base model with
adapters applied.

Trainable after `apply_lora`: the adapters, the classification head and the final norm, all
float32. Blocks below the lowest adapted block are untouched and frozen: that index is the
*boundary* (as in freeze.py), below which train.py may cache the trunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError

#: Linear layers inside a block that may carry an adapter (mlp.gate_proj: llama family only).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_ADAPTER_KEYS = ("lora_A", "lora_B")


class LoRAError(UserError, ValueError):
    """A bad LoRA setting or adapter file: a UserError (one line, CLI exit 2) and a ValueError."""


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update ``B @ A * (alpha / rank)``.

    Holds the base layer's ``weight`` and ``bias`` Parameters themselves (same objects, same
    names), so wrapping changes no existing state-dict key. ``lora_A`` is (rank, in_features),
    ``lora_B`` is (out_features, rank); both float32 whatever the base dtype, since a low-rank
    update in bfloat16 loses most of its small early steps.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps nn.Linear, not {type(base).__name__}")
        if rank < 1:
            raise LoRAError(f"LoRA rank must be at least 1 (got {rank})")
        if not 0.0 <= dropout < 1.0:
            raise LoRAError(f"LoRA dropout must be in [0, 1) (got {dropout})")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha = int(rank), float(alpha)
        self.scale = self.alpha / self.rank
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        dev = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, device=dev))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, device=dev))
        # Same initialisation as nn.Linear's weight (and peft's lora_A); B = 0 makes the
        # update zero until the first step.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def delta_weight(self) -> torch.Tensor:
        """The update ``B @ A * scale`` as an (out, in) float32 matrix."""
        return (self.lora_B @ self.lora_A) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        a = self.dropout(x).to(self.lora_A.dtype)
        upd = F.linear(F.linear(a, self.lora_A), self.lora_B) * self.scale  # (..., out)
        return y + upd.to(y.dtype)

    def merged_linear(self) -> nn.Linear:
        """A plain nn.Linear whose weight is ``W + B @ A * scale`` (in W's dtype)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device="meta")  # no init work: both parameters are replaced below
        with torch.no_grad():
            w = (self.weight.float() + self.delta_weight()).to(self.weight.dtype)
        lin.weight = nn.Parameter(w, requires_grad=False)
        if self.bias is not None:
            lin.bias = self.bias
        return lin

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, alpha={self.alpha:g}")


def _check_targets(targets: Iterable[str]) -> tuple[str, ...]:
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    if not targets:
        raise LoRAError(f"LoRA needs at least one target (choose from {', '.join(LORA_TARGETS)})")
    bad = [t for t in targets if t not in LORA_TARGETS]
    if bad:
        raise LoRAError(
            f"unknown LoRA target '{bad[0]}' (choose from {', '.join(LORA_TARGETS)})"
        )
    return targets


def _block_indices(blocks: int | Iterable[int] | None, n_layers: int) -> list[int]:
    """None: every block; an int k: blocks k..n-1 (negative counts from the end); or indices."""
    if blocks is None:
        return list(range(n_layers))
    if isinstance(blocks, int):
        start = blocks + n_layers if blocks < 0 else blocks
        if not 0 <= start < n_layers:
            raise LoRAError(f"LoRA blocks start {blocks}: the model has {n_layers} blocks")
        return list(range(start, n_layers))
    idx = sorted({int(i) for i in blocks})
    if not idx or idx[0] < 0 or idx[-1] >= n_layers:
        raise LoRAError(f"LoRA blocks {idx}: the model has {n_layers} blocks (0-{n_layers - 1})")
    return idx


def apply_lora(
    clf: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: Iterable[str] = ("q_proj", "v_proj"),
    blocks: int | Iterable[int] | None = None,
) -> int:
    """Wrap the `targets` Linear layers of `clf.decoder.blocks` in `LoRALinear`; freeze the rest.

    clf: a SequenceClassifier. targets: names from `LORA_TARGETS` (a target missing from
    this architecture, like gate_proj in GPT-2, is an error). blocks: None for every block,
    an int k for blocks k and up (-2: the last two), or explicit indices. Afterwards only the
    adapters, ``clf.head`` and ``clf.decoder.final_norm`` require grad, and all three are
    float32. Returns the boundary: the lowest block index with an adapter.
    """
    targets = _check_targets(targets)
    if int(rank) != rank or rank < 1:
        raise LoRAError(f"LoRA rank must be a positive integer (got {rank})")
    if not 0.0 <= dropout < 1.0:
        raise LoRAError(f"LoRA dropout must be in [0, 1) (got {dropout})")
    dec = clf.decoder
    idx = _block_indices(blocks, len(dec.blocks))
    if lora_modules(clf):
        raise LoRAError("LoRA is already applied to this model")
    # Find every layer first, so a bad target fails before anything is wrapped.
    sites = []
    for i in idx:
        block = dec.blocks[i]
        for t in targets:
            parent = block.attn if t in ("q_proj", "k_proj", "v_proj", "o_proj") else block.mlp
            if not isinstance(getattr(parent, t, None), nn.Linear):
                family = getattr(getattr(dec, "cfg", None), "family", "this")
                raise LoRAError(f"LoRA target '{t}' does not exist in a {family} model's blocks")
            sites.append((parent, t))
    for p in clf.parameters():
        p.requires_grad_(False)
    for parent, t in sites:
        base = getattr(parent, t)
        setattr(parent, t, LoRALinear(base, rank=rank, alpha=alpha, dropout=dropout))
    for mod in (clf.head, dec.final_norm):
        mod.float()
        for p in mod.parameters():
            p.requires_grad_(True)
    return idx[0]


def lora_modules(clf: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRALinear in `clf`, by module name (e.g. ``decoder.blocks.1.attn.q_proj``)."""
    return {n: m for n, m in clf.named_modules() if isinstance(m, LoRALinear)}


def lora_config(clf: nn.Module) -> dict | None:
    """The `apply_lora` keyword arguments that rebuild `clf`'s adapters (JSON-ready), or None.

    For the run config: ``apply_lora(fresh_clf, **lora_config(clf))`` wraps the same layers.
    """
    mods = lora_modules(clf)
    if not mods:
        return None
    first = next(iter(mods.values()))
    blocks = sorted({int(n.split("blocks.", 1)[1].split(".", 1)[0]) for n in mods})
    targets = [t for t in LORA_TARGETS if any(n.endswith("." + t) for n in mods)]
    drop = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    return {"rank": first.rank, "alpha": first.alpha, "dropout": drop, "targets": targets,
            "blocks": blocks}


def merge_lora(clf: nn.Module) -> int:
    """Fold every adapter into its base weight and put plain nn.Linear layers back.

    For prediction: the merged model computes the same function with no extra matmuls, and
    is again quantizable (`quantize_dynamic` only sees nn.Linear). Irreversible in place.
    Returns the number of layers merged.
    """
    mods = lora_modules(clf)
    for name, m in mods.items():
        parent_name, _, attr = name.rpartition(".")
        setattr(clf.get_submodule(parent_name), attr, m.merged_linear())
    return len(mods)


def lora_state_dict(clf: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors (``<module>.lora_A`` / ``.lora_B``), detached, by full name.

    The head and final norm are not included: the trainer saves them with the trainable set.
    """
    return {
        f"{name}.{k}": getattr(m, k).detach()
        for name, m in lora_modules(clf).items()
        for k in _ADAPTER_KEYS
    }


