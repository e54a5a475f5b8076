"""Optimizer groups, learning-rate schedules and gradient clipping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llmclassify.optim import (
    build_optimizer,
    build_scheduler,
    clip_gradients,
    param_groups,
)


def lrs(kind, total=20, warmup_steps=None, warmup_ratio=None, lr=1.0, **kw):
    """Learning rate used by each of `total` optimizer steps, plus the one after the last."""
    p = nn.Parameter(torch.zeros(2, 2))
    opt = build_optimizer([p], lr=lr)
    sch = build_scheduler(opt, total, warmup_steps=warmup_steps, warmup_ratio=warmup_ratio, kind=kind, **kw)
    out = []
    for _ in range(total + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out


def test_no_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2, bias=False))
    model[2].weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert decay == {id(model[0].weight)}  # frozen model[2].weight left out
    assert no_decay == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    opt = build_optimizer(model.named_parameters(), lr=1e-3, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in opt.param_groups) == 4


def test_no_decay_group_really_is_not_decayed():
    w, b = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2))
    opt = build_optimizer([w, b], lr=0.1, weight_decay=0.5)
    w.grad, b.grad = torch.zeros_like(w), torch.zeros_like(b)
    opt.step()
    assert torch.all(w < 1) and torch.all(b == 1)


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
    opt = build_optimizer([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown schedule"):
        build_scheduler(opt, 10, kind="step")
    with pytest.raises(ValueError, match="not both"):
        build_scheduler(opt, 10, warmup_steps=1, warmup_ratio=0.1)
    with pytest.raises(ValueError, match="warmup steps"):
        build_scheduler(opt, 10, warmup_steps=11)
    with pytest.raises(ValueError, match="learning rate"):
        build_optimizer([nn.Parameter(torch.zeros(1))], lr=0)
    with pytest.raises(ValueError, match="nothing to train"):
        build_optimizer([nn.Parameter(torch.zeros(1), requires_grad=False)], lr=1.0)


def test_clipping_caps_the_norm():
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(4))
    c = nn.Parameter(torch.zeros(2))  # no grad: skipped
    a.grad = torch.tensor([3.0, 0.0, 0.0])
    b.grad = torch.tensor([0.0, 4.0, 0.0, 0.0])
    before = clip_gradients([a, b, c], max_norm=1.0)
    assert before == pytest.approx(5.0)
    after = math.sqrt(a.grad.pow(2).sum() + b.grad.pow(2).sum())
    assert after == pytest.approx(1.0, rel=1e-5)
    assert a.grad[0] == pytest.approx(0.6, rel=1e-5)  # direction kept
    # Under the limit, or no limit: untouched, norm still reported.
    assert clip_gradients([a, b], max_norm=10.0) == pytest.approx(1.0, rel=1e-5)
    assert a.grad[0] == pytest.approx(0.6, rel=1e-5)
    a.grad.mul_(100)
    assert clip_gradients([a, b], max_norm=None) == pytest.approx(math.hypot(60, 0.8), rel=1e-5)
    assert clip_gradients([c], max_norm=1.0) == 0.0
