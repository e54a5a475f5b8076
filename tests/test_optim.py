"""The optimizer and learning-rate schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmclassify.optim import build_optimizer, build_scheduler


def lrs(kind, total=20, warmup_steps=None, warmup_ratio=None, lr=1.0, **kw):
    """Learning rate used by each of `total` optimizer steps, plus the one after the last."""
    p = nn.Parameter(torch.zeros(2, 2))
    opt = build_optimizer([p], lr=lr, weight_decay=0.0)
    sch = build_scheduler(opt, total, warmup_steps=warmup_steps, warmup_ratio=warmup_ratio, kind=kind, **kw)
    out = []
    for _ in range(total + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out


def test_optimizer_is_adamw_to_rounding_and_decays_every_tensor():
    """The fused step is torch's reference AdamW (its per-tensor loop) to float rounding, and,
    as the book's recipe, a norm gain and a bias are decayed as well as a matrix."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    twin = [nn.Parameter(p.detach().clone()) for p in model.parameters()]
    opt = build_optimizer(list(model.parameters()), lr=1e-2, weight_decay=0.5)
    ref = torch.optim.AdamW(twin, lr=1e-2, weight_decay=0.5, foreach=False)
    for _ in range(20):
        grads = [torch.randn_like(p) for p in twin]
        for p, q, g in zip(model.parameters(), twin, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q in zip(model.parameters(), twin):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
    gain = nn.Parameter(torch.ones(4))
    opt = build_optimizer([gain], lr=0.1, weight_decay=0.5)
    gain.grad = torch.zeros_like(gain)
    opt.step()
    assert torch.all(gain < 1)


def test_warmup_ramps_linearly_then_constant():
    got = lrs("constant", total=10, warmup_steps=4)
    assert got[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert got[4:] == pytest.approx([1.0] * 7)
    assert lrs("constant", total=10, warmup_ratio=0.4) == pytest.approx(got)


def test_linear_decays_to_zero():
    got = lrs("linear", total=12, warmup_steps=2)
    assert got[:3] == pytest.approx([0.5, 1.0, 1.0])
    diffs = [a - b for a, b in zip(got[2:], got[3:])]
    assert diffs == pytest.approx([0.1] * 10)  # a straight line from step 2 to step 12
    assert got[-1] == pytest.approx(0.0, abs=1e-12)


def test_cosine_reaches_zero_and_min_ratio():
    got = lrs("cosine", total=100, warmup_steps=10, lr=2e-4)
    assert got[9] == pytest.approx(2e-4)
    assert got[10] == pytest.approx(2e-4)
    assert got[55] == pytest.approx(1e-4)  # half way through the decay
    assert all(a >= b for a, b in zip(got[10:], got[11:]))
    assert got[-2] < 1e-7 and got[-1] == pytest.approx(0.0, abs=1e-15)
    floor = lrs("cosine", total=20, lr=1.0, min_lr_ratio=0.1)
    assert floor[0] == pytest.approx(1.0) and floor[-1] == pytest.approx(0.1)


def test_schedule_validation():
    opt = build_optimizer([nn.Parameter(torch.zeros(1))], lr=1.0, weight_decay=0.0)
    with pytest.raises(ValueError, match="unknown schedule"):
        build_scheduler(opt, 10, kind="step")
    with pytest.raises(ValueError, match="not both"):
        build_scheduler(opt, 10, warmup_steps=1, warmup_ratio=0.1)
    with pytest.raises(ValueError, match="warmup steps"):
        build_scheduler(opt, 10, warmup_steps=11)
    with pytest.raises(ValueError, match="learning rate"):
        build_optimizer([nn.Parameter(torch.zeros(1))], lr=0, weight_decay=0.0)
    with pytest.raises(ValueError, match="nothing to train"):
        build_optimizer([], lr=1.0, weight_decay=0.0)
