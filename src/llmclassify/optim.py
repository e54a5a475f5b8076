"""Optimizer, learning-rate schedule and gradient clipping for the fit loop.

This module owns how the trainable parameters are updated: AdamW with decoupled weight decay
on matrices only, a warmup-then-decay schedule as a `LambdaLR`, and gradient-norm clipping.
Steps here are *optimizer* steps (after gradient accumulation), not batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .errors import UserError

SCHEDULES = ("constant", "linear", "cosine")


class OptimConfigError(UserError, ValueError):
    """A bad optimizer or schedule setting (one-line UserError, and a ValueError)."""


def param_groups(params, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed and an undecayed AdamW group.

    params: an nn.Module, or an iterable of Parameters or of (name, Parameter) pairs. Only
    tensors with ``requires_grad`` are kept. Tensors with two or more dimensions (Linear
    weights, LoRA A/B, embeddings) are decayed; one-dimensional ones (biases, LayerNorm /
    RMSNorm weights) are not. Why: weight decay pulls a parameter towards zero, which for a
    matrix is a useful prior (small weights, or for LoRA: stay near the pretrained weights), but
    a norm gain's neutral value is 1 and a bias is an offset, so shrinking them only distorts the
    pretrained scale and shift; they are too few to overfit anyway. Same rule as nanoGPT/litgpt.
    """
    if isinstance(params, nn.Module):
        params = params.parameters()
    decay, no_decay, seen = [], [], set()
    for p in params:
        if isinstance(p, tuple):
            p = p[1]
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if not groups:
        raise OptimConfigError("nothing to train: no parameter requires grad")
    return groups


def build_optimizer(params, lr: float, weight_decay: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over `params` (see `param_groups`): weight decay on matrices, none on biases/norms."""
    if not lr > 0:
        raise OptimConfigError(f"learning rate must be positive (got {lr})")
    if weight_decay < 0:
        raise OptimConfigError(f"weight decay must be >= 0 (got {weight_decay})")
    return torch.optim.AdamW(param_groups(params, weight_decay), lr=lr, betas=betas, eps=eps)


def resolve_warmup(total_steps: int, warmup_steps: int | None = None,
                   warmup_ratio: float | None = None) -> int:
    """Warmup length in optimizer steps from a count or a fraction of `total_steps` (not both)."""
    if warmup_steps is not None and warmup_ratio is not None:
        raise OptimConfigError("give warmup steps or a warmup ratio, not both")
    if warmup_ratio is not None:
        if not 0.0 <= warmup_ratio <= 1.0:
            raise OptimConfigError(f"warmup ratio must be in [0, 1] (got {warmup_ratio})")
        return int(math.ceil(warmup_ratio * total_steps))
    w = int(warmup_steps or 0)
    if not 0 <= w <= total_steps:
        raise OptimConfigError(f"warmup steps must be in [0, {total_steps}] (got {w})")
    return w


def lr_factor(step: int, total_steps: int, warmup: int, kind: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate for 0-based optimizer step `step`.

    Warmup: steps 0..warmup-1 ramp linearly, (step + 1) / warmup, so the first step already
    moves (a factor of 0 would waste it) and step warmup-1 reaches the full rate. Then
    `constant` stays at 1; `linear` and `cosine` go from 1 at step `warmup` down to
    `min_ratio` at step `total_steps` (the step after the last).
    """
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if kind == "linear":
        decay = 1.0 - progress
    elif kind == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise OptimConfigError(f"unknown schedule '{kind}' (choose from {', '.join(SCHEDULES)})")
    return min_ratio + (1.0 - min_ratio) * decay


def build_scheduler(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int | None = None,
                    warmup_ratio: float | None = None, kind: str = "constant",
                    min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR for `lr_factor`: call ``scheduler.step()`` once after each ``opt.step()``.

    total_steps: optimizer steps in the whole run (epochs x ceil(batches / grad_accum)).
    Early stopping simply leaves the tail of the schedule unused.
    """
    if kind not in SCHEDULES:
        raise OptimConfigError(f"unknown schedule '{kind}' (choose from {', '.join(SCHEDULES)})")
    if total_steps < 1:
        raise OptimConfigError(f"total steps must be at least 1 (got {total_steps})")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise OptimConfigError(f"min lr ratio must be in [0, 1] (got {min_lr_ratio})")
    warmup = resolve_warmup(total_steps, warmup_steps, warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total_steps, warmup, kind, min_lr_ratio)
    )


def clip_gradients(params: Iterable[torch.Tensor], max_norm: float | None) -> float:
    """Clip the global gradient norm of `params` to `max_norm`; return the norm before clipping.

    max_norm None or <= 0: no clipping, the norm is still returned (worth logging).
    Parameters without a gradient are skipped.
    """
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    limit = max_norm if max_norm and max_norm > 0 else math.inf
    return float(torch.nn.utils.clip_grad_norm_(grads, limit))
