"""Tokenizers from model sources: GPT-2 BPE files, a ``tokenizer.json``, a Hugging Face model
directory (special tokens from its config files), a GGUF file's vocabulary -> `Tokenizer`.

The loaders call these (hf.py, gguf.py); `llmclassify.tokenizer` owns the runtime object
(encode, pad, save / load of a run's tokenizer) and knows nothing of model sources.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors

from ..errors import ModelLoadError
from ..tokenizer import TOKENIZER_FILE, Tokenizer, _one_line, _read_json

# GGUF token types (llama.cpp's llama_token_type).
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4

# Split patterns of byte-level BPE families, as in their Hugging Face tokenizer.json files.
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _pre_gpt2():
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _pre_digits_gpt2():
    # StarCoder / SmolLM: every digit on its own, then GPT-2's split.
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), _pre_gpt2()]
    )


def _pre_split(pattern: str):
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


# GGUF `tokenizer.ggml.pre` -> (pre-tokenizer factory, NFC normalizer?, BPE ignore_merges).
_GGUF_PRE: dict[str, tuple[Any, bool, bool]] = {
    "default": (_pre_gpt2, False, False),
    "gpt2": (_pre_gpt2, False, False),
    "gpt-2": (_pre_gpt2, False, False),
    "smollm": (_pre_digits_gpt2, False, False),
    "starcoder": (_pre_digits_gpt2, False, False),
    "refact": (_pre_digits_gpt2, False, False),
    "llama-bpe": (lambda: _pre_split(_LLAMA3_PATTERN), False, True),
    "llama3": (lambda: _pre_split(_LLAMA3_PATTERN), False, True),
    "smaug-bpe": (lambda: _pre_split(_LLAMA3_PATTERN), False, True),
    "qwen2": (lambda: _pre_split(_QWEN2_PATTERN), True, False),
    "deepseek-r1-qwen": (lambda: _pre_split(_QWEN2_PATTERN), True, False),
}


def tokenizer_from_gpt2_files(
    vocab: str | os.PathLike[str], merges: str | os.PathLike[str]
) -> Tokenizer:
    """GPT-2 byte-level BPE from encoder.json / vocab.json and vocab.bpe / merges.txt."""
    for p in (vocab, merges):
        if not Path(p).is_file():
            raise ModelLoadError(f"{p}: tokenizer file not found")
    try:
        bpe = models.BPE.from_file(str(vocab), str(merges))
    except Exception as e:  # tokenizers raises plain Exception on bad files
        raise ModelLoadError(f"{vocab}: cannot read GPT-2 BPE files ({_one_line(e)})") from None
    tok = tokenizers.Tokenizer(bpe)
    tok.pre_tokenizer = _pre_gpt2()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    eos = tok.token_to_id("<|endoftext|>")
    if eos is not None:
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return Tokenizer(tok, eos_id=eos, bos_id=eos, pad_id=None, add_bos=False)

def tokenizer_from_json(
    path: str | os.PathLike[str],
    *,
    eos_id: int | None = None,
    pad_id: int | None = None,
    bos_id: int | None = None,
    add_bos: bool = False,
) -> Tokenizer:
    """A ``tokenizer.json`` with the special ids given by the caller."""
    try:
        tok = tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:
        raise ModelLoadError(f"{path}: cannot read tokenizer ({_one_line(e)})") from None
    return Tokenizer(tok, eos_id=eos_id, bos_id=bos_id, pad_id=pad_id, add_bos=add_bos)

def tokenizer_from_hf_dir(path: str | os.PathLike[str]) -> Tokenizer:
    """A Hugging Face model directory: tokenizer.json (else vocab.json + merges.txt), with
    eos / bos / pad from tokenizer_config.json, special_tokens_map.json or config.json."""
    d = Path(path)
    tj = d / TOKENIZER_FILE
    tj_data: dict = {}
    if tj.is_file():
        self = tokenizer_from_json(tj)
        tj_data = _read_json(tj)
    elif (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
        self = tokenizer_from_gpt2_files(d / "vocab.json", d / "merges.txt")
    else:
        raise ModelLoadError(f"{d}: no tokenizer.json (or vocab.json + merges.txt)")
    tcfg = _read_json(d / "tokenizer_config.json")
    smap = _read_json(d / "special_tokens_map.json")
    mcfg = _read_json(d / "config.json")

    def find(role: str) -> int | None:
        for src in (tcfg, smap):
            v = src.get(f"{role}_token")
            if isinstance(v, dict):
                v = v.get("content")
            if isinstance(v, str):
                i = self.tok.token_to_id(v)
                if i is not None:
                    return i
        v = mcfg.get(f"{role}_token_id")
        if isinstance(v, list):
            v = v[0] if v else None
        return v if isinstance(v, int) else None

    eos, bos, pad = find("eos"), find("bos"), find("pad")
    if "add_bos_token" in tcfg:
        add_bos = bool(tcfg["add_bos_token"])
    else:
        add_bos = bos is not None and _post_processor_adds(
            tj_data.get("post_processor"), self.tok.id_to_token(bos)
        )
    if bos is None:
        add_bos = False
    if eos is None:
        eos = self.eos_id  # the GPT-2 files' <|endoftext|>
    if bos is None and self.bos_id is not None and self.bos_id == eos:
        bos = self.bos_id
    return Tokenizer(self.tok, eos_id=eos, bos_id=bos, pad_id=pad, add_bos=add_bos)

def tokenizer_from_gguf(reader: Any, source: str = "") -> Tokenizer:
    """The vocabulary stored in a GGUF file's metadata (`gguf.GGUFReader`); byte-level BPE
    (``tokenizer.ggml.model == "gpt2"``) with the pre-tokenizer ``tokenizer.ggml.pre`` names."""
    where = source or getattr(reader, "path", "") or "GGUF file"
    fields = reader.fields

    def get(key: str, default: Any = None) -> Any:
        f = fields.get(key)
        return default if f is None else f.contents()

    model = get("tokenizer.ggml.model")
    if model is None:
        raise ModelLoadError(f"{where}: no tokenizer in the GGUF metadata")
    if model != "gpt2":
        raise ModelLoadError(
            f"{where}: unsupported GGUF tokenizer model '{model}' (supported: gpt2 byte-level BPE)"
        )
    pre = get("tokenizer.ggml.pre", "default")
    if pre not in _GGUF_PRE:
        raise ModelLoadError(
            f"{where}: unsupported GGUF pre-tokenizer '{pre}' (supported: {', '.join(sorted(_GGUF_PRE))})"
        )
    make_pre, nfc, ignore_merges = _GGUF_PRE[pre]
    tokens: list[str] = get("tokenizer.ggml.tokens")
    merges_raw: list[str] = get("tokenizer.ggml.merges") or []
    types = get("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for m in merges_raw:
        a, sep, b = m.partition(" ")
        if not sep:
            raise ModelLoadError(f"{where}: malformed merge rule '{m}' in tokenizer.ggml.merges")
        merges.append((a, b))
    tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = make_pre()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    special = [t for t, ty in zip(tokens, types) if ty == _GGUF_CONTROL]
    user = [t for t, ty in zip(tokens, types) if ty == _GGUF_USER_DEFINED]
    if special:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    if user:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])
    bos = get("tokenizer.ggml.bos_token_id")
    return Tokenizer(
        tok,
        eos_id=get("tokenizer.ggml.eos_token_id"),
        bos_id=bos,
        pad_id=get("tokenizer.ggml.padding_token_id"),
        add_bos=bool(get("tokenizer.ggml.add_bos_token", False)) and bos is not None,
    )


def _post_processor_adds(pp: dict | None, bos_token: str | None) -> bool:
    """Whether a tokenizer.json post-processor puts `bos_token` first in a single sequence."""
    if not pp or bos_token is None:
        return False
    if pp.get("type") == "Sequence":
        return any(_post_processor_adds(p, bos_token) for p in pp.get("processors", []))
    if pp.get("type") == "TemplateProcessing":
        single = pp.get("single") or []
        first = single[0] if single else {}
        return first.get("SpecialToken", {}).get("id") == bos_token
    return False
