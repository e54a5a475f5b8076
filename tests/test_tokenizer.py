"""Tokenizer: GPT-2 known values from the fixture BPE files, pad choice, round trips, padding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from llmclassify.errors import ModelLoadError
from llmclassify.loaders.tokenizer_files import (
    tokenizer_from_gpt2_files,
    tokenizer_from_hf_dir,
    tokenizer_from_json,
)
from llmclassify.tokenizer import Tokenizer, pad_batch

GPT2 = Path(__file__).parent / "fixtures" / "gpt2-tokenizer"


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return tokenizer_from_gpt2_files(GPT2 / "encoder.json", GPT2 / "vocab.bpe")


def test_gpt2_known_values(gpt2):
    assert gpt2.encode("Hello, world!") == [15496, 11, 995, 0]
    assert gpt2.encode("<|endoftext|>") == [50256]
    assert gpt2.encode("a<|endoftext|>b") == [64, 50256, 65]
    assert gpt2.vocab_size == 50257


def test_gpt2_pad_is_eos(gpt2):
    assert (gpt2.eos_id, gpt2.pad_id, gpt2.pad_source, gpt2.add_bos) == (50256, 50256, "eos", False)
    d = gpt2.describe()
    assert "pad id 50256" in d and "eos" in d and "\n" not in d


def test_pad_token_preferred_over_eos(gpt2):
    t = Tokenizer(gpt2.tok, eos_id=50256, pad_id=0)
    assert (t.pad_id, t.pad_source) == (0, "pad token")
    assert "the model's pad token" in t.describe()
    same = Tokenizer(gpt2.tok, eos_id=50256, pad_id=50256)
    assert same.pad_source == "pad token" and "same as eos" in same.describe()


def test_add_bos(gpt2):
    t = Tokenizer(gpt2.tok, eos_id=50256, bos_id=50256, add_bos=True)
    assert t.encode("Hello") == [50256, 15496]
    assert t.encode_batch(["Hello", ""]) == [[50256, 15496], [50256]]
    with pytest.raises(ModelLoadError):
        Tokenizer(gpt2.tok, eos_id=1, add_bos=True)


def test_round_trip_and_batch(gpt2):
    texts = ["Hello, world!", "naïve café — 東京 🙂", "  spaces\tand\nnewlines  ", "", "x" * 300]
    for s in texts:
        assert gpt2.decode(gpt2.encode(s)) == s
    assert gpt2.encode_batch(texts) == [gpt2.encode(s) for s in texts]
    cut = gpt2.encode_batch(texts, max_length=3)
    assert cut == [gpt2.encode(s)[:3] for s in texts]
    assert cut[0] == [15496, 11, 995]


def test_save_load_round_trip(gpt2, tmp_path):
    t = Tokenizer(gpt2.tok, eos_id=50256, bos_id=50256, pad_id=11, add_bos=True)
    t.save(tmp_path / "tok")
    assert {p.name for p in (tmp_path / "tok").iterdir()} == {"tokenizer.json", "tokenizer_meta.json"}
    u = Tokenizer.load(tmp_path / "tok")
    assert u.meta() == t.meta()
    for s in ["Hello, world!", "<|endoftext|> x", "東京"]:
        assert u.encode(s) == t.encode(s)
    gpt2.save(tmp_path / "g")
    assert Tokenizer.load(tmp_path / "g").pad_source == "eos"


def test_from_hf_dir_gpt2_files(tmp_path):
    shutil.copy(GPT2 / "encoder.json", tmp_path / "vocab.json")
    shutil.copy(GPT2 / "vocab.bpe", tmp_path / "merges.txt")
    (tmp_path / "config.json").write_text(json.dumps({"bos_token_id": 50256, "eos_token_id": 50256}))
    t = tokenizer_from_hf_dir(tmp_path)
    assert t.encode("Hello, world!") == [15496, 11, 995, 0]
    assert (t.eos_id, t.pad_id, t.pad_source, t.add_bos) == (50256, 50256, "eos", False)


def test_from_hf_dir_tokenizer_json_with_config(gpt2, tmp_path):
    gpt2.tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": {"content": "<|endoftext|>"}, "bos_token": "<|endoftext|>",
        "pad_token": "!", "add_bos_token": True}))
    t = tokenizer_from_hf_dir(tmp_path)
    assert (t.eos_id, t.bos_id, t.pad_id, t.pad_source, t.add_bos) == (50256, 50256, 0, "pad token", True)
    assert t.encode("Hello") == [50256, 15496]


def test_from_hf_dir_bos_from_post_processor(gpt2, tmp_path):
    data = json.loads(gpt2.tok.to_str())
    data["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [50256],
                                              "tokens": ["<|endoftext|>"]}}}]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<|endoftext|>",
                                                                  "eos_token": "<|endoftext|>"}))
    t = tokenizer_from_hf_dir(tmp_path)
    assert t.add_bos and t.encode("Hello") == [50256, 15496]  # once, not twice


def test_missing_files_are_one_line_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no tokenizer.json"):
        tokenizer_from_hf_dir(tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        tokenizer_from_gpt2_files(tmp_path / "v.json", tmp_path / "m.txt")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="tokenizer.json"):
        tokenizer_from_json(tmp_path / "tokenizer.json")


def test_pad_batch_right_and_left():
    seqs = [[5, 6, 7], [8], []]
    ids, mask = pad_batch(seqs, pad_id=0, side="right")
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    ids, mask = pad_batch(seqs, pad_id=9, side="left")
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8], [9, 9, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]
    ids, mask = pad_batch([], pad_id=0)
    assert ids.shape == (0, 0)
    with pytest.raises(ValueError):
        pad_batch(seqs, 0, side="middle")


def test_pad_equal_to_eos_is_masked(gpt2):
    # a real eos inside the text stays a real token: the mask, not the id, says what is padding
    seqs = [gpt2.encode("Hi<|endoftext|>"), gpt2.encode("Hello there friend")]
    ids, mask = pad_batch(seqs, gpt2.pad_id)
    assert ids[0, 1].item() == 50256 and mask[0].tolist() == [1, 1, 0]
