"""HF directory and Hub loaders: sharded files, identity, clear one-line errors, offline cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmclassify.config import ModelConfig
from llmclassify.errors import ModelLoadError
from llmclassify.files import sha256_files
from llmclassify.loaders.hf import load_hf_dir
from llmclassify.loaders.hub import load_hub
from llmclassify.model import Decoder

try:  # tests/ imported as a package (tests/__init__.py) or as a plain directory
    from .tiny import tiny_gpt2_hf, tiny_llama_hf
except ImportError:
    from tiny import tiny_gpt2_hf, tiny_llama_hf


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return tiny_gpt2_hf(tmp_path_factory.mktemp("g"))[0]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama_hf(tmp_path_factory.mktemp("l"))[0]


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def _err(path) -> str:
    with pytest.raises(ModelLoadError) as e:
        load_hf_dir(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_load_hf_dir_result(gpt2_dir):
    lm = load_hf_dir(gpt2_dir)
    assert lm.config.family == "gpt2" and lm.config.n_layers == 2
    assert all(t.dtype == torch.float32 for t in lm.state_dict.values())
    assert "lm_head.weight" not in lm.state_dict  # tied: dropped
    assert lm.tokenizer is None  # no tokenizer files in this dir
    assert lm.identity == {"kind": "hf-dir", "source": str(gpt2_dir),
                           "sha256": sha256_files([gpt2_dir / "model.safetensors"])}
    Decoder(lm.config).load_state_dict(lm.state_dict, strict=True)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sharded_checkpoint_equals_single_file(tmp_path, family):
    build = tiny_gpt2_hf if family == "gpt2" else tiny_llama_hf
    single, _ = build(tmp_path / "one")
    sharded, _ = build(tmp_path / "many", max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 1
    a, b = load_hf_dir(single), load_hf_dir(sharded)
    assert a.state_dict.keys() == b.state_dict.keys()
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k])
    assert b.identity["sha256"] == sha256_files(shards)


def test_prefixless_keys_and_fp16_and_skipped_buffers(tmp_path, llama_dir):
    # Some exports drop the `model.` prefix, store half precision or carry rotary buffers.
    d = _copy(llama_dir, tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    sd = {k.removeprefix("model."): v.half() for k, v in sd.items()}
    sd["layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    save_file(sd, str(d / "model.safetensors"))
    lm = load_hf_dir(d)
    assert all(t.dtype == torch.float32 for t in lm.state_dict.values())
    ref = load_hf_dir(llama_dir).state_dict
    torch.testing.assert_close(lm.state_dict["blocks.1.mlp.gate_proj.weight"],
                               ref["blocks.1.mlp.gate_proj.weight"].half().float())


def test_gpt2_causal_mask_buffers_skipped(tmp_path, gpt2_dir):
    d = _copy(gpt2_dir, tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    sd["h.0.attn.bias"] = torch.ones(1, 1, 4, 4)
    sd["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(sd, str(d / "model.safetensors"))
    assert load_hf_dir(d).state_dict.keys() == load_hf_dir(gpt2_dir).state_dict.keys()


def test_tokenizer_loaded_when_present(tmp_path):
    pytest.importorskip("llmclassify.tokenizer")
    d, _ = tiny_gpt2_hf(tmp_path, tokenizer=True)
    tok = load_hf_dir(d).tokenizer
    assert tok is not None
    assert len(tok.encode("hi")) == 2  # byte-level, no merges: one token per byte


# --- errors: one line, naming the file (and tensor) --------------------------------------


def test_not_a_directory(tmp_path):
    assert str(tmp_path / "nope") in _err(tmp_path / "nope")


def test_no_config_json(tmp_path):
    assert "no config.json" in _err(tmp_path)


def test_bad_config_json(tmp_path, gpt2_dir):
    d = _copy(gpt2_dir, tmp_path)
    (d / "config.json").write_text("{not json")
    msg = _err(d)
    assert str(d / "config.json") in msg


def test_unsupported_architecture(tmp_path, gpt2_dir):
    d = _copy(gpt2_dir, tmp_path)
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    msg = _err(d)
    assert "config.json" in msg and "bert" in msg


def test_pickle_checkpoint_refused(tmp_path, gpt2_dir):
    d = _copy(gpt2_dir, tmp_path)
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    msg = _err(d)
    assert "pytorch_model.bin" in msg and "only safetensors" in msg


def test_no_weights(tmp_path, gpt2_dir):
    d = _copy(gpt2_dir, tmp_path)
    (d / "model.safetensors").unlink()
    assert "model.safetensors" in _err(d)


def test_missing_tensor(tmp_path, gpt2_dir):
    d = _copy(gpt2_dir, tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    del sd[next(k for k in sd if k.endswith("h.1.mlp.c_fc.weight"))]
    save_file(sd, str(d / "model.safetensors"))
    msg = _err(d)
    assert str(d / "model.safetensors") in msg and "blocks.1.mlp.up_proj.weight" in msg


def test_wrong_shape(tmp_path, llama_dir):
    d = _copy(llama_dir, tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    sd["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(32, 32)  # GQA wants (16, 32)
    save_file(sd, str(d / "model.safetensors"))
    msg = _err(d)
    assert str(d / "model.safetensors") in msg and "layers.0.self_attn.k_proj.weight" in msg
    assert "(16, 32)" in msg


def test_unexpected_tensor(tmp_path, llama_dir):
    d = _copy(llama_dir, tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    sd["score.weight"] = torch.zeros(2, 32)
    save_file(sd, str(d / "model.safetensors"))
    msg = _err(d)
    assert "model.safetensors" in msg and "score.weight" in msg


def test_truncated_safetensors(tmp_path, gpt2_dir):
    d = _copy(gpt2_dir, tmp_path)
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert str(f) in _err(d)
    f.write_bytes(b"\x01\x02")  # not even a header
    assert str(f) in _err(d)


def test_missing_shard(tmp_path):
    d, _ = tiny_gpt2_hf(tmp_path, max_shard_size="20KB")
    shard = sorted(d.glob("model-*.safetensors"))[-1]
    shard.unlink()
    assert str(shard) in _err(d)


def test_transformers_v4_config_fields():
    # Hub checkpoints written by transformers 4 keep rope_theta / rope_scaling at top level;
    # transformers 5 nests them in rope_parameters. Both must read the same.
    base = dict(model_type="llama", vocab_size=10, hidden_size=32, num_hidden_layers=1,
                num_attention_heads=4, intermediate_size=64)
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8}
    v4 = ModelConfig.from_hf_config(dict(base, rope_theta=5e5, rope_scaling=scaling))
    v5 = ModelConfig.from_hf_config(dict(base, rope_parameters=dict(scaling, rope_theta=5e5)))
    assert v4.rope_theta == v5.rope_theta == 5e5
    assert v4.rope_scaling == v5.rope_scaling == scaling
    plain = ModelConfig.from_hf_config(
        dict(base, rope_parameters={"rope_theta": 1e4, "rope_type": "default"}))
    assert plain.rope_scaling is None and plain.rope_theta == 1e4


# --- Hub: offline, from the cache -------------------------------------------------------------


def test_hub_offline_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as e:
        load_hub("openai-community/gpt2")
    msg = str(e.value)
    assert "\n" not in msg
    assert "openai-community/gpt2" in msg and "hf download openai-community/gpt2" in msg
    assert str(tmp_path / "hub") in msg and "local model directory" in msg


def test_hub_loads_from_cache_offline(tmp_path, monkeypatch, gpt2_dir):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "home" / "hub" / "models--tiny-org--tiny-gpt2"
    snap = repo / "snapshots" / commit
    shutil.copytree(gpt2_dir, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    lm = load_hub("tiny-org/tiny-gpt2")
    assert lm.identity["kind"] == "hub" and lm.identity["source"] == "tiny-org/tiny-gpt2"
    assert lm.identity["revision"] == commit
    assert lm.identity["sha256"] == sha256_files([snap / "model.safetensors"])
    Decoder(lm.config).load_state_dict(lm.state_dict, strict=True)
