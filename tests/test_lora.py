"""LoRA adapters: a fresh adapter is the identity, merging is exact, adapters round-trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from llmclassify.config import ModelConfig
from llmclassify.heads import SequenceClassifier
from llmclassify.lora import (
    LORA_TARGETS,
    LoRALinear,
    apply_lora,
    lora_config,
    lora_modules,
    lora_state_dict,
    merge_lora,
)
from llmclassify.model import Decoder

CFGS = {
    "llama": ModelConfig(family="llama", vocab_size=257, emb_dim=32, n_layers=3, n_heads=4,
                         n_kv_heads=2, hidden_dim=64, context_length=64, qkv_bias=True),
    "gpt2": ModelConfig(family="gpt2", vocab_size=257, emb_dim=32, n_layers=3, n_heads=4,
                        context_length=64, qkv_bias=True, out_bias=True, mlp_bias=True),
}


def make_clf(family: str, seed: int = 0, pooling: str = "last") -> SequenceClassifier:
    torch.manual_seed(seed)
    clf = SequenceClassifier(Decoder(CFGS[family]), num_classes=3, pooling=pooling)
    with torch.no_grad():  # nonzero biases / norms so a dropped term would show
        for p in clf.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return clf.eval()


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 257, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding
    mask[2, :3] = 0  # left padding
    return ids, mask


def train_steps(clf, steps: int = 5, lr: float = 0.05):
    ids, mask = batch()
    y = torch.tensor([0, 1, 2, 1])
    opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=lr)
    clf.train()
    for _ in range(steps):
        loss = F.cross_entropy(clf(ids, mask), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ALL])
def test_fresh_lora_equals_base(family, targets):
    clf = make_clf(family)
    ids, mask = batch()
    with torch.no_grad():
        before = clf(ids, mask)
        apply_lora(clf, rank=4, alpha=8, targets=targets)
        after = clf(ids, mask)
    assert_close(after, before, rtol=0, atol=0)
    assert len(lora_modules(clf)) == len(targets) * 3


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_merged_equals_unmerged_after_training(family, pooling):
    clf = make_clf(family, pooling=pooling)
    ids, mask = batch()
    with torch.no_grad():
        base = clf(ids, mask)
    targets = ALL + (("gate_proj",) if family == "llama" else ())
    apply_lora(clf, rank=4, alpha=8, dropout=0.1, targets=targets)
    train_steps(clf)
    with torch.no_grad():
        unmerged = clf(ids, mask)
        assert (unmerged - base).abs().max() > 1e-3, "training should have moved the adapters"
        assert merge_lora(clf) == len(targets) * 3
        merged = clf(ids, mask)
    assert not lora_modules(clf)
    assert all(type(m) is nn.Linear for n, m in clf.named_modules() if n.endswith("_proj"))
    assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)


def test_state_dict_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    clf = make_clf("llama")
    apply_lora(clf, rank=4, alpha=16, targets=("q_proj", "v_proj", "down_proj"), blocks=1)
    train_steps(clf)
    ids, mask = batch(seed=7)
    with torch.no_grad():
        expect = clf(ids, mask)

    adapters = lora_state_dict(clf)
    assert adapters and all(k.endswith((".lora_A", ".lora_B")) for k in adapters)
    assert len(adapters) == 2 * 3 * 2  # 2 tensors x 3 targets x blocks 1, 2
    # What the trainer saves: adapters + head + final norm (= the trainable set).
    trainable = {n: p.detach() for n, p in clf.named_parameters() if p.requires_grad}
    assert set(adapters) <= set(trainable)
    save_file({k: v.contiguous() for k, v in trainable.items()}, tmp_path / "w.safetensors")
    spec = lora_config(clf)
    assert spec == {"rank": 4, "alpha": 16.0, "dropout": 0.0,
                    "targets": ["q_proj", "v_proj", "down_proj"], "blocks": [1, 2]}

    fresh = make_clf("llama")  # same seed: the same "pretrained" weights, an untrained head
    assert apply_lora(fresh, **spec) == 1
    loaded = load_file(tmp_path / "w.safetensors")
    fresh.load_state_dict(loaded, strict=False)  # adapters + head + final norm, as predict loads a run
    with torch.no_grad():
        got = fresh(ids, mask)
    assert_close(got, expect, rtol=0, atol=0)


def test_only_adapters_head_and_norm_train():
    clf = make_clf("llama")
    for p in clf.parameters():
        p.requires_grad_(True)
    apply_lora(clf, rank=2, targets=("q_proj", "k_proj"))
    names = {n for n, p in clf.named_parameters() if p.requires_grad}
    adapters = {n for n in names if n.endswith((".lora_A", ".lora_B"))}
    assert len(adapters) == 2 * 2 * 3
    assert names - adapters == {"head.weight", "head.bias", "decoder.final_norm.weight"}
    for n in names:
        assert dict(clf.named_parameters())[n].dtype == torch.float32
    # Gradients reach exactly those tensors.
    ids, mask = batch()
    F.cross_entropy(clf(ids, mask), torch.tensor([0, 1, 2, 0])).backward()
    got = {n for n, p in clf.named_parameters() if p.grad is not None}
    assert got == names


def test_state_dict_names_of_the_base_are_kept():
    clf = make_clf("llama")
    before = set(clf.state_dict())
    apply_lora(clf, targets=("q_proj", "up_proj"))
    after = set(clf.state_dict())
    assert before <= after
    assert after - before == set(lora_state_dict(clf))


def test_boundary_and_cached_trunk():
    clf = make_clf("gpt2")
    assert apply_lora(clf, rank=4, blocks=-1) == 2
    assert all(not isinstance(m, LoRALinear) for m in clf.decoder.blocks[:2].modules())
    train_steps(clf, steps=2)
    ids, mask = batch()
    with torch.no_grad():
        x = clf.trunk(ids, mask, end=2)  # what the trunk cache stores
        assert_close(clf.top(x, mask, start=2), clf(ids, mask))
    clf = make_clf("gpt2")
    assert apply_lora(clf, blocks=[2, 1]) == 1
    clf = make_clf("gpt2")
    assert apply_lora(clf) == 0


def test_target_validation():
    clf = make_clf("llama")
    with pytest.raises(ValueError) as e:
        apply_lora(clf, targets=("q_proj", "query"))
    msg = str(e.value)
    assert "'query'" in msg and all(t in msg for t in LORA_TARGETS)
    with pytest.raises(ValueError, match="at least one"):
        apply_lora(clf, targets=())
    with pytest.raises(ValueError, match="blocks"):
        apply_lora(clf, blocks=3)
    with pytest.raises(ValueError, match="rank"):
        apply_lora(clf, rank=0)
    assert not lora_modules(clf)
    gpt2 = make_clf("gpt2")
    with pytest.raises(ValueError, match="gate_proj.*gpt2"):
        apply_lora(gpt2, targets=("q_proj", "gate_proj"))
    assert not lora_modules(gpt2), "a bad target must fail before anything is wrapped"
    apply_lora(clf)
    with pytest.raises(ValueError, match="already"):
        apply_lora(clf)


def test_bfloat16_base_keeps_float32_adapters():
    clf = make_clf("llama")
    clf.decoder.to(torch.bfloat16)
    apply_lora(clf, rank=4)
    m = next(iter(lora_modules(clf).values()))
    assert m.weight.dtype == torch.bfloat16 and m.lora_A.dtype == torch.float32
    x = torch.randn(2, 5, 32, dtype=torch.bfloat16)
    assert m(x).dtype == torch.bfloat16
    merged = m.merged_linear()
    assert merged.weight.dtype == torch.bfloat16


def test_lora_linear_formula():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    m = LoRALinear(base, rank=2, alpha=6)
    with torch.no_grad():
        m.lora_B.normal_()
    x = torch.randn(3, 6)
    expect = base(x) + x @ m.lora_A.T @ m.lora_B.T * 3.0
    assert_close(m(x), expect)
    assert m.weight is base.weight and not m.weight.requires_grad
