"""Shared fixtures: a tiny random GPT-2 with the real GPT-2 tokenizer, a small labelled file,
and a trained run directory made from them (seconds on a CPU)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def make_tiny_gpt2_dir(path: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-dim random GPT-2 saved as a Hugging Face directory, with GPT-2's real
    BPE files (vocab.json + merges.txt) so texts tokenize as they would for gpt2."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=50257, n_positions=256, n_embd=32, n_layer=2, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    GPT2LMHeadModel(cfg).save_pretrained(path, safe_serialization=True)
    tok = FIXTURES / "gpt2-tokenizer"
    shutil.copy(tok / "encoder.json", path / "vocab.json")
    shutil.copy(tok / "vocab.bpe", path / "merges.txt")
    return path


def write_small_sms(path: Path, n_ham: int = 60, n_spam: int = 40) -> Path:
    """The first n_ham ham and n_spam spam messages of the built-in SMS data, as a TSV."""
    from llmclassify.data import load_dataset

    t = load_dataset("sms-spam")
    rows, counts = [], {"ham": 0, "spam": 0}
    want = {"ham": n_ham, "spam": n_spam}
    for text, label in zip(t.texts, t.labels):
        if counts[label] < want[label] and text not in {r[1] for r in rows}:
            rows.append((label, text))
            counts[label] += 1
    path.write_text("".join(f"{lab}\t{txt}\n" for lab, txt in rows))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_gpt2_dir(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    return write_small_sms(tmp_path_factory.mktemp("data") / "sms_small.tsv")


def tiny_train_config(model_dir: Path, data: Path, out: Path, **kw):
    from llmclassify.train import TrainConfig

    base = dict(model=str(model_dir), data=str(data), output_dir=str(out), epochs=2, batch_size=8,
                lr=1e-3, progress=False, seed=7, recipe="finetune")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir, small_data) -> Path:
    """A trained run directory (2 classes: ham, spam) on the tiny model."""
    from llmclassify.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_train_config(tiny_model_dir, small_data, out))
    return out
