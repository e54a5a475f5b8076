"""GGUF loader on tiny files written with gguf's own writer (no downloads, seconds).

The source weights are in Hugging Face layout; the writer applies llama.cpp's Q/K permutation
exactly as convert_hf_to_gguf does, so loading must give the source weights back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from llmclassify.errors import ModelLoadError  # noqa: E402
from llmclassify.loaders import gguf as gguf_loader  # noqa: E402
from llmclassify.loaders import load_model  # noqa: E402
from llmclassify.loaders.gguf import load_gguf, permute_qk, unpermute_qk  # noqa: E402

D, F, N_HEAD, N_KV, N_LAYER, CTX = 32, 64, 4, 2, 2, 64
Q8 = gguf.GGMLQuantizationType.Q8_0


@pytest.fixture(autouse=True)
def _cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCLASSIFY_CACHE", str(tmp_path / "cache"))


def _hf_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.LlamaModel.permute, verbatim."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


MERGES = ["h e", "Ġ t", "Ġt he", "l l", "he ll"]
SPECIALS = ["<|endoftext|>", "<|im_end|>"]


def tiny_vocab() -> tuple[list[str], list[int]]:
    tokens = SPECIALS + _bytes_to_unicode() + [m.replace(" ", "") for m in MERGES]
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    return tokens, types


def tiny_weights(seed: int = 0, tie: bool = True, qkv_bias: bool = False) -> dict[str, np.ndarray]:
    """Source weights in our names and Hugging Face layout (float32)."""
    rng = np.random.default_rng(seed)
    vocab = len(tiny_vocab()[0])
    hd = D // N_HEAD

    def r(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    w = {"tok_emb.weight": r(vocab, D), "final_norm.weight": 1 + r(D)}
    for i in range(N_LAYER):
        b = f"blocks.{i}"
        w |= {
            f"{b}.norm1.weight": 1 + r(D),
            f"{b}.norm2.weight": 1 + r(D),
            f"{b}.attn.q_proj.weight": r(N_HEAD * hd, D),
            f"{b}.attn.k_proj.weight": r(N_KV * hd, D),
            f"{b}.attn.v_proj.weight": r(N_KV * hd, D),
            f"{b}.attn.o_proj.weight": r(D, N_HEAD * hd),
            f"{b}.mlp.gate_proj.weight": r(F, D),
            f"{b}.mlp.up_proj.weight": r(F, D),
            f"{b}.mlp.down_proj.weight": r(D, F),
        }
        if qkv_bias:
            w |= {
                f"{b}.attn.q_proj.bias": r(N_HEAD * hd),
                f"{b}.attn.k_proj.bias": r(N_KV * hd),
                f"{b}.attn.v_proj.bias": r(N_KV * hd),
            }
    if not tie:
        w["lm_head.weight"] = r(vocab, D)
    return w


_TO_GGUF = {
    "tok_emb.weight": "token_embd.weight",
    "final_norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "norm1.weight": "attn_norm.weight",
    "norm2.weight": "ffn_norm.weight",
    "attn.q_proj.weight": "attn_q.weight",
    "attn.k_proj.weight": "attn_k.weight",
    "attn.v_proj.weight": "attn_v.weight",
    "attn.q_proj.bias": "attn_q.bias",
    "attn.k_proj.bias": "attn_k.bias",
    "attn.v_proj.bias": "attn_v.bias",
    "attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(ours: str) -> str:
    if ours in _TO_GGUF:
        return _TO_GGUF[ours]
    _, i, rest = ours.split(".", 2)
    return f"blk.{i}.{_TO_GGUF[rest]}"


def write_tiny_gguf(path, weights, arch="llama", quantized=("mlp.up_proj", "attn.v_proj"),
                    shape_override=None, pre="gpt2", add_bos=False):
    """Write `weights` (our names, HF layout) as a GGUF file the way convert_hf_to_gguf does:
    Q/K permuted for llama, tensors whose name contains one of `quantized` as Q8_0."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-test")
    w.add_block_count(N_LAYER)
    w.add_context_length(CTX)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    tokens, types = tiny_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.add_pad_token_id(1)
    w.add_add_bos_token(add_bos)
    for name, t in weights.items():
        if arch == "llama" and ".q_proj." in name:
            t = _hf_permute(t, N_HEAD)
        elif arch == "llama" and ".k_proj." in name:
            t = _hf_permute(t, N_KV)
        if shape_override and name in shape_override:
            t = np.zeros(shape_override[name], dtype=np.float32)
        if any(q in name for q in quantized) and t.ndim == 2:
            w.add_tensor(gguf_name(name), gguf.quants.quantize(t, Q8), raw_dtype=Q8)
        else:
            w.add_tensor(gguf_name(name), np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _assert_weights(sd, weights, quantized=("mlp.up_proj", "attn.v_proj")):
    assert set(sd) == set(weights)
    for k, src in weights.items():
        got = sd[k].numpy()
        if any(q in k for q in quantized) and src.ndim == 2:
            # Q8_0: per 32-value block, error at most half a step of max|x|/127
            tol = np.abs(src).max() / 127 * 0.5 + 1e-6
            np.testing.assert_allclose(got, src, rtol=0, atol=tol, err_msg=k)
        else:
            np.testing.assert_array_equal(got, src, err_msg=k)


def test_unpermute_small_example():
    # one head of 4 dims: HF halves [x0 x1 | y0 y1] are stored interleaved as [x0 y0 x1 y1]
    hf = np.arange(4, dtype=np.float32)[:, None]
    stored = _hf_permute(hf, 1)
    assert stored[:, 0].tolist() == [0, 2, 1, 3]
    np.testing.assert_array_equal(unpermute_qk(stored, 1), hf)
    w = np.random.default_rng(0).standard_normal((24, 5)).astype(np.float32)
    np.testing.assert_array_equal(permute_qk(w, 3), _hf_permute(w, 3))
    np.testing.assert_array_equal(unpermute_qk(permute_qk(w, 3), 3), w)


def test_load_tiny_llama_matches_source(tmp_path):
    weights = tiny_weights()
    path = write_tiny_gguf(tmp_path / "tiny.gguf", weights)
    lm = load_gguf(path)
    c = lm.config
    assert (c.family, c.n_layers, c.emb_dim, c.n_heads, c.n_kv_heads, c.hidden_dim) == (
        "llama", N_LAYER, D, N_HEAD, N_KV, F)
    assert (c.vocab_size, c.context_length, c.rope_theta, c.norm_eps) == (
        len(tiny_vocab()[0]), CTX, 10000.0, 1e-5)
    assert c.tie_embeddings and not c.qkv_bias
    _assert_weights(lm.state_dict, weights)
    assert all(t.dtype == torch.float32 for t in lm.state_dict.values())
    assert lm.identity["kind"] == "gguf" and len(lm.identity["sha256"]) == 64
    assert lm.identity["source"] == str(path.resolve())


def test_tokenizer_from_gguf_metadata(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_weights())
    tok = load_gguf(path).tokenizer
    tokens, _ = tiny_vocab()
    ids = tok.encode("hello the<|im_end|>")
    assert [tokens[i] for i in ids] == ["hell", "o", "Ġthe", "<|im_end|>"]
    assert tok.decode(ids) == "hello the<|im_end|>"
    assert (tok.eos_id, tok.bos_id, tok.pad_id, tok.pad_source, tok.add_bos) == (0, 0, 1, "pad token", False)
    tok2 = load_gguf(write_tiny_gguf(tmp_path / "bos.gguf", tiny_weights(), add_bos=True)).tokenizer
    assert tok2.encode("hello")[0] == 0


def test_logits_match_transformers_llama(tmp_path):
    """Our Decoder on the loaded weights == HF LlamaForCausalLM on the source weights (F32 only)."""
    transformers = pytest.importorskip("transformers")
    from llmclassify.model import Decoder

    weights = tiny_weights(seed=1)
    lm = load_gguf(write_tiny_gguf(tmp_path / "t.gguf", weights, quantized=()))
    hc = transformers.LlamaConfig(
        vocab_size=lm.config.vocab_size, hidden_size=D, intermediate_size=F, num_hidden_layers=N_LAYER,
        num_attention_heads=N_HEAD, num_key_value_heads=N_KV, rms_norm_eps=1e-5, rope_theta=10000.0,
        max_position_embeddings=CTX, tie_word_embeddings=True)
    hf = transformers.LlamaForCausalLM(hc).eval()
    ren = {"tok_emb": "model.embed_tokens", "final_norm": "model.norm", "blocks.": "model.layers.",
           ".attn.": ".self_attn.", "norm1": "input_layernorm", "norm2": "post_attention_layernorm"}
    hsd = {}
    for k, v in weights.items():
        for a, b in ren.items():
            k = k.replace(a, b)
        hsd[k] = torch.from_numpy(v)
    hsd["lm_head.weight"] = hsd["model.embed_tokens.weight"]
    hf.load_state_dict(hsd, strict=True)
    m = Decoder(lm.config)
    m.load_state_dict(lm.state_dict, strict=True)
    m.eval()
    ids = torch.tensor([[5, 17, 99, 200, 3, 42, 7, 8]])
    with torch.no_grad():
        ours = m.lm_logits(m(ids, torch.ones_like(ids)))
        ref = hf(ids).logits
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_qwen2_not_permuted_with_bias(tmp_path):
    weights = tiny_weights(qkv_bias=True, tie=False)
    lm = load_gguf(write_tiny_gguf(tmp_path / "q.gguf", weights, arch="qwen2"))
    assert lm.config.qkv_bias and not lm.config.tie_embeddings
    _assert_weights(lm.state_dict, weights)


def test_llama_bias_is_unpermuted(tmp_path):
    weights = tiny_weights(qkv_bias=True)
    lm = load_gguf(write_tiny_gguf(tmp_path / "b.gguf", weights))
    _assert_weights(lm.state_dict, weights)


def test_second_load_reads_cache_without_dequantizing(tmp_path, monkeypatch):
    weights = tiny_weights()
    path = write_tiny_gguf(tmp_path / "tiny.gguf", weights)
    first = load_gguf(path)
    entry = gguf_loader.cache_entry_for(path)
    assert entry.parent.parent.parent == tmp_path / "cache"
    assert (entry / "model.safetensors").is_file() and (entry / "meta.json").is_file()
    assert not [p for p in entry.parent.iterdir() if p.name.endswith(".tmp")]

    def boom(t):
        raise AssertionError("dequantize called on a cached load")

    monkeypatch.setattr(gguf_loader, "_dequantize", boom)
    second = load_gguf(path)
    assert second.config == first.config
    assert second.identity == first.identity
    for k in first.state_dict:
        assert torch.equal(first.state_dict[k], second.state_dict[k]), k
    assert second.tokenizer.encode("hello the") == first.tokenizer.encode("hello the")
    assert second.tokenizer.meta() == first.tokenizer.meta()
    # use_cache=False goes back to the file
    with pytest.raises(ModelLoadError, match="dequantize called"):
        load_gguf(path, use_cache=False)


def test_damaged_cache_is_rebuilt(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_weights())
    load_gguf(path)
    entry = gguf_loader.cache_entry_for(path)
    (entry / "model.safetensors").write_bytes(b"garbage")
    lm = load_gguf(path)
    _assert_weights(lm.state_dict, tiny_weights())


def test_truncated_file_is_one_line_error(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_weights())
    data = path.read_bytes()
    for cut in (len(data) - 100, len(data) // 2, 10):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError) as e:
            load_gguf(bad)
        msg = str(e.value)
        assert str(bad) in msg and "\n" not in msg


def test_wrong_shape_names_file_and_tensor(tmp_path):
    weights = tiny_weights()
    path = write_tiny_gguf(tmp_path / "s.gguf", weights,
                           shape_override={"blocks.1.mlp.gate_proj.weight": (F, D + 32)})
    with pytest.raises(ModelLoadError, match=r"s\.gguf.*'blk\.1\.ffn_gate\.weight'"):
        load_gguf(path)


def test_missing_tensor_is_named(tmp_path):
    weights = tiny_weights()
    del weights["blocks.0.mlp.down_proj.weight"]
    with pytest.raises(ModelLoadError, match="blocks.0.mlp.down_proj.weight"):
        load_gguf(write_tiny_gguf(tmp_path / "m.gguf", weights))


def test_unsupported_architecture(tmp_path):
    path = write_tiny_gguf(tmp_path / "a.gguf", tiny_weights(), arch="mamba")
    with pytest.raises(ModelLoadError, match="unsupported GGUF architecture 'mamba'"):
        load_gguf(path)


def test_load_model_dispatch(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_weights())
    assert load_model(str(path)).config.n_layers == N_LAYER
    (tmp_path / "x.gguf").write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="x.gguf: not a GGUF file"):
        load_model(tmp_path / "x.gguf")
    missing = tmp_path / "nope" / "model.gguf"
    with pytest.raises(ModelLoadError, match="no such file or directory") as e:
        load_model(missing)
    assert str(missing) in str(e.value)
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model("./not-here")


def test_gpt2_architecture_split_qkv_and_duplicate_output(tmp_path):
    """GPT-2 GGUFs hold one fused attn_qkv (already nn.Linear layout) and repeat token_embd as
    output.weight; we split the former and tie the latter."""
    rng = np.random.default_rng(3)
    vocab = len(tiny_vocab()[0])

    def r(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    ours = {"tok_emb.weight": r(vocab, D), "pos_emb.weight": r(CTX, D),
            "final_norm.weight": r(D), "final_norm.bias": r(D)}
    g = {"token_embd.weight": ours["tok_emb.weight"], "output.weight": ours["tok_emb.weight"],
         "position_embd.weight": ours["pos_emb.weight"], "output_norm.weight": ours["final_norm.weight"],
         "output_norm.bias": ours["final_norm.bias"]}
    for i in range(N_LAYER):
        b = f"blocks.{i}"
        layer = {
            "norm1.weight": r(D), "norm1.bias": r(D), "norm2.weight": r(D), "norm2.bias": r(D),
            "attn.q_proj.weight": r(D, D), "attn.k_proj.weight": r(D, D), "attn.v_proj.weight": r(D, D),
            "attn.q_proj.bias": r(D), "attn.k_proj.bias": r(D), "attn.v_proj.bias": r(D),
            "attn.o_proj.weight": r(D, D), "attn.o_proj.bias": r(D),
            "mlp.up_proj.weight": r(4 * D, D), "mlp.up_proj.bias": r(4 * D),
            "mlp.down_proj.weight": r(D, 4 * D), "mlp.down_proj.bias": r(D),
        }
        ours |= {f"{b}.{k}": v for k, v in layer.items()}
        names = {"norm1": "attn_norm", "norm2": "ffn_norm", "attn.o_proj": "attn_output",
                 "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
        for k, v in layer.items():
            stem, kind = k.rsplit(".", 1)
            if stem in names:
                g[f"blk.{i}.{names[stem]}.{kind}"] = v
        for kind in ("weight", "bias"):
            g[f"blk.{i}.attn_qkv.{kind}"] = np.concatenate(
                [layer[f"attn.{p}_proj.{kind}"] for p in "qkv"], axis=0)
    w = gguf.GGUFWriter(str(tmp_path / "g.gguf"), "gpt2")
    w.add_block_count(N_LAYER)
    w.add_context_length(CTX)
    w.add_embedding_length(D)
    w.add_feed_forward_length(4 * D)
    w.add_head_count(N_HEAD)
    w.add_layer_norm_eps(1e-5)
    tokens, types = tiny_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_eos_token_id(0)
    for name, t in g.items():
        w.add_tensor(name, np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    lm = load_gguf(tmp_path / "g.gguf")
    assert lm.config.family == "gpt2" and lm.config.tie_embeddings
    assert lm.tokenizer.pad_id == 0 and lm.tokenizer.pad_source == "eos"
    _assert_weights(lm.state_dict, ours, quantized=())
