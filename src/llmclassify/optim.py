"""Optimizer and learning-rate schedule for the fit loop.

This module owns how the trainable parameters are updated: AdamW (decoupled weight decay on
every trainable tensor, as the book's recipe) and a warmup-then-decay schedule as a `LambdaLR`.
Steps here are *optimizer* steps (after gradient accumulation), not batches.
"""

from __future__ import annotations

import math

import torch

from .errors import UserError

SCHEDULES = ("constant", "linear", "cosine")


class OptimConfigError(UserError, ValueError):
    """A bad optimizer or schedule setting (one-line UserError, and a ValueError)."""


def build_optimizer(params: list[torch.Tensor], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over every trainable tensor, weight decay on all of them, as the book's recipe does.

    The fused AdamW: one kernel per step instead of a dozen per tensor, the same update to float
    rounding. On CPU torch's default is its per-tensor loop: for the last block's 3.5M
    parameters 8.6 ms a step against fused's 1.5 ms, 1.2e-7 apart after 655 steps (the
    reference recipe's: 1,045 texts, batch 8, 5 epochs; benchmarks/results/optimizer-step.md).
    """
    if not lr > 0:
        raise OptimConfigError(f"learning rate must be positive (got {lr})")
    if weight_decay < 0:
        raise OptimConfigError(f"weight decay must be >= 0 (got {weight_decay})")
    if not params:
        raise OptimConfigError("nothing to train: no parameter requires grad")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)


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
