"""Decoder: parity with transformers on tiny random models, padding invariance, block pieces."""

from __future__ import annotations

import pytest
import torch

import llmclassify.model as model_module
from llmclassify.config import ModelConfig
from llmclassify.loaders.hf import load_hf_dir
from llmclassify.model import Decoder, attention_bias, attention_mask_bool, matmul_attention

try:  # tests/ imported as a package (tests/__init__.py) or as a plain directory
    from .tiny import padded_batch, tiny_gpt2_hf, tiny_llama_hf
except ImportError:
    from tiny import padded_batch, tiny_gpt2_hf, tiny_llama_hf

LLAMA3_SCALING = {
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    # Small so the tiny head's frequencies fall in all three bands (kept, smoothed, scaled).
    "original_max_position_embeddings": 8,
}

VARIANTS = {
    "gpt2": lambda d: tiny_gpt2_hf(d),
    "llama-gqa": lambda d: tiny_llama_hf(d, gqa=True),
    "qwen2-bias": lambda d: tiny_llama_hf(d, qwen=True),
    "llama3-rope-scaling": lambda d: tiny_llama_hf(d, rope_scaling=LLAMA3_SCALING, rope_theta=5000.0),
    "llama-head-dim-16-tied": lambda d: tiny_llama_hf(d, gqa=False, head_dim=16, tie=True),
}

TEXTS = [[5, 6, 7, 8, 9, 10, 11, 12, 40, 50], [3, 4, 5], [200, 100, 17, 256, 9, 1]]


def _load(tmp_path, variant):
    path, hf = VARIANTS[variant](tmp_path)
    lm = load_hf_dir(path)
    model = Decoder(lm.config).eval()
    model.load_state_dict(lm.state_dict, strict=True)
    return model, hf


def _hf_run(hf, ids, mask):
    # Same positions as ours (cumsum - 1), so left padding is comparable.
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, position_ids=Decoder.positions(mask),
                 output_hidden_states=True)
    return out.hidden_states[-1], out.logits


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parity_with_transformers(tmp_path, variant):
    model, hf = _load(tmp_path, variant)
    batches = [padded_batch(TEXTS[:1])]  # a single text, no padding
    batches += [padded_batch(TEXTS, pad_id=256, side=side) for side in ("right", "left")]
    for ids, mask in batches:
        want_h, want_logits = _hf_run(hf, ids, mask)
        with torch.no_grad():
            h = model(ids, mask)
            logits = model.lm_logits(h)
        real = mask.bool()  # HF's padded rows are not defined the same way; compare real tokens
        torch.testing.assert_close(h[real], want_h[real])
        torch.testing.assert_close(logits[real], want_logits[real])


def _random_model(family: str, seed: int = 0) -> Decoder:
    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = ModelConfig(family="gpt2", vocab_size=257, emb_dim=32, n_layers=2, n_heads=4,
                          context_length=64, qkv_bias=True, out_bias=True, mlp_bias=True)
    else:
        cfg = ModelConfig(family="llama", vocab_size=257, emb_dim=32, n_layers=2, n_heads=4,
                          n_kv_heads=2, hidden_dim=64, context_length=64, qkv_bias=True,
                          tie_embeddings=False, rope_scaling=dict(LLAMA3_SCALING))
    return Decoder(cfg).eval()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_text_alone_equals_text_in_padded_batch(family, side):
    model = _random_model(family)
    ids, mask = padded_batch(TEXTS, pad_id=0, side=side)
    with torch.no_grad():
        batch_h = model(ids, mask)
        assert torch.isfinite(batch_h).all()  # padded rows attend to themselves: no NaN
        for i, text in enumerate(TEXTS):
            alone = model(torch.tensor([text]))[0]
            torch.testing.assert_close(batch_h[i][mask[i].bool()], alone, atol=1e-5, rtol=1e-5)


def test_positions_from_mask():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
    assert Decoder.positions(mask).tolist() == [[0, 1, 2, 2, 2], [0, 0, 0, 1, 2], [0] * 5]


def test_attention_mask_is_causal_and_padding_with_self():
    mask = torch.tensor([[0, 1, 1]])
    m = attention_mask_bool(mask)[0, 0].int().tolist()
    assert m == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]  # pad query row sees only itself
    m = attention_mask_bool(mask, causal=False)[0, 0].int().tolist()
    assert m == [[1, 1, 1], [0, 1, 1], [0, 1, 1]]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_pieces_compose_to_forward(family):
    model = _random_model(family)
    ids, mask = padded_batch(TEXTS, side="left")
    with torch.no_grad():
        pos = Decoder.positions(mask)
        x = model.embed(ids, pos)
        x = model.run_blocks(x, mask, pos, start=0, end=1)
        x = model.run_blocks(x, mask, pos, start=1)
        torch.testing.assert_close(model.final_norm(x), model(ids, mask))


@pytest.mark.parametrize("variant", ["gpt2", "llama-gqa", "qwen2-bias", "llama-head-dim-16-tied"])
def test_fused_projections_compute_the_same_blocks(tmp_path, variant):
    """Block.fuse_projections (q/k/v and gate/up stacked, as the trunk pass runs them): the same
    states, whole and at a query index, and the three / two Linears gone."""
    import copy

    model, _ = _load(tmp_path, variant)
    fused = copy.deepcopy(model)
    for block in fused.blocks:
        block.fuse_projections()
    names = set(fused.state_dict())
    assert "blocks.0.attn.qkv_proj.weight" in names and "blocks.0.attn.q_proj.weight" not in names
    gated = variant != "gpt2"
    assert ("blocks.0.mlp.gate_up_proj.weight" in names) == gated
    assert ("blocks.0.mlp.up_proj.weight" in names) != gated
    ids, mask = padded_batch(TEXTS, side="right")
    last = mask.shape[1] - 1 - mask.flip(-1).argmax(-1)
    with torch.no_grad():
        torch.testing.assert_close(fused(ids, mask), model(ids, mask))
        pos = Decoder.positions(mask)
        x = model.run_blocks(model.embed(ids, pos), mask, pos, end=-1)
        torch.testing.assert_close(fused.blocks[-1](x, mask, pos, query_index=last),
                                   model.blocks[-1](x, mask, pos, query_index=last))


def test_int8_blocks_are_the_same_fused_or_not(tmp_path):
    """reduce_in_place fuses before quantizing: one scale per token of the shared input and one
    per output channel, int32 sums, so fused int8 blocks give exactly the separate ones' states."""
    import copy

    from llmclassify import precision

    model, _ = _load(tmp_path, "qwen2-bias")
    fused = precision.reduce_in_place(copy.deepcopy(model.blocks), "int8")
    separate = copy.deepcopy(model.blocks)
    for block in separate:
        block.fuse_projections = lambda: None  # as before fusing
    separate = precision.reduce_in_place(separate, "int8")
    assert hasattr(fused[0].attn, "qkv_proj") and hasattr(separate[0].attn, "q_proj")
    ids, mask = padded_batch(TEXTS, side="right")
    with torch.no_grad():
        pos = Decoder.positions(mask)
        x = model.embed(ids, pos)
        a, b = x, x
        for f, s in zip(fused, separate):
            a, b = f(a, mask, pos), s(b, mask, pos)
        assert torch.equal(a, b)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_block_query_index_equals_full_block(family, side):
    model = _random_model(family)
    ids, mask = padded_batch(TEXTS, side=side)
    with torch.no_grad():
        pos = Decoder.positions(mask)
        x = model.run_blocks(model.embed(ids, pos), mask, pos, end=-1)
        block = model.blocks[-1]
        full = block(x, mask, pos)
        rows = torch.arange(len(TEXTS))
        last = mask.shape[1] - 1 - mask.flip(-1).argmax(-1)  # last real token per row
        for qi in (last, torch.zeros_like(last), torch.tensor([1, 2, 0])):
            got = block(x, mask, pos, query_index=qi)
            assert got.shape == (len(TEXTS), 1, model.cfg.emb_dim)
            torch.testing.assert_close(got[:, 0], full[rows, qi])


def test_no_causal_mask_option():
    model = _random_model("llama")
    ids, mask = padded_batch(TEXTS, side="right")
    with torch.no_grad():
        causal = model(ids, mask)
        full = model(ids, mask, causal=False)
    assert torch.isfinite(full).all()
    assert not torch.allclose(causal[0, 0], full[0, 0])  # earlier tokens now see the future
    # After one block the last real token is unchanged: it saw every real token already.
    with torch.no_grad():
        pos = Decoder.positions(mask)
        x = model.embed(ids, pos)
        one_causal = model.run_blocks(x, mask, pos, end=1)
        one_full = model.run_blocks(x, mask, pos, end=1, causal=False)
    last = len(TEXTS[0]) - 1
    torch.testing.assert_close(one_causal[0, last], one_full[0, last])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("heads", [(6, 2), (4, 4)])
def test_matmul_attention_equals_sdpa(heads, side, causal, dtype):
    """In float32 exactly; in bfloat16 to its rounding, against float32 SDPA on the same
    bfloat16 inputs; head_dim 12, so the scale is not a power of two."""
    n_heads, n_kv = heads
    g = torch.Generator().manual_seed(0)
    ids, mask = padded_batch(TEXTS, side=side)
    B, T = mask.shape
    q = torch.randn(B, n_heads, T, 12, generator=g).to(dtype)
    k, v = (torch.randn(B, n_kv, T, 12, generator=g).to(dtype) for _ in range(2))
    allowed = attention_mask_bool(mask, causal)
    want = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=allowed,
                                                            enable_gqa=n_kv != n_heads)
    got = matmul_attention(q, k, v, attention_bias(allowed))
    assert got.dtype == dtype
    tol = {} if dtype == torch.float32 else {"atol": 0.02, "rtol": 0.02}
    torch.testing.assert_close(got.float(), want, **tol)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_bfloat16_pass_attends_by_matmul_like_sdpa(family, monkeypatch):
    """In bfloat16 on the CPU, up to MATMUL_ATTENTION_MAX_TOKENS, blocks attend by two matmuls;
    the pass equals SDPA's to bfloat16 rounding, and past the limit SDPA runs again."""
    model = _random_model(family).to(torch.bfloat16)
    ids, mask = padded_batch(TEXTS, side="left")
    calls = []
    real_mm = model_module.matmul_attention
    monkeypatch.setattr(model_module, "matmul_attention", lambda *a: calls.append(1) or real_mm(*a))
    with torch.no_grad():
        got = model(ids, mask)
        assert len(calls) == len(model.blocks)
        monkeypatch.setattr(model_module, "MATMUL_ATTENTION_MAX_TOKENS", mask.shape[1] - 1)
        want = model(ids, mask)
    assert len(calls) == len(model.blocks)  # not called again past the limit
    real = mask.bool()
    torch.testing.assert_close(got.float()[real], want.float()[real], atol=0.05, rtol=0.02)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_bfloat16(family):
    model = _random_model(family)
    ids, mask = padded_batch(TEXTS, side="left")
    with torch.no_grad():
        ref = model(ids, mask)
        h = model.to(torch.bfloat16)(ids, mask)
    assert h.dtype == torch.bfloat16
    assert torch.isfinite(h).all()
    real = mask.bool()
    torch.testing.assert_close(h.float()[real], ref[real], atol=0.1, rtol=0.05)


def test_rms_norm_in_bfloat16_is_the_float32_norm_to_its_rounding():
    """The reduced-precision RMSNorm (mean square in float32, x scaled in bfloat16) equals
    Hugging Face's definition (x in float32, normalised, cast back, scaled) up to bfloat16's
    rounding, with the large-magnitude rows of a real trunk among the inputs."""
    from llmclassify.model import RMSNorm

    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(64, generator=g) + 0.5)
    x = torch.randn(3, 5, 64, generator=g) * torch.tensor([0.01, 1.0, 300.0])[:, None, None]
    x16 = x.to(torch.bfloat16)
    with torch.no_grad():
        x32 = x16.float()
        want = norm.weight.bfloat16() * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).bfloat16()
        got = norm.to(torch.bfloat16)(x16)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=2**-6, atol=1e-3)


def test_state_dict_names_match_contract():
    from llmclassify.loaders.base import expected_shapes

    for family in ("gpt2", "llama"):
        model = _random_model(family)
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert got == expected_shapes(model.cfg)
