"""Text -> token ids (and back), plus the padding that turns id lists into a batch.

`Tokenizer` wraps a `tokenizers.Tokenizer` and the few facts a classifier needs about it: the
end-of-sequence id, the optional beginning-of-sequence id and whether to add it, and the pad id
(the model's pad token, else its eos token). Whatever the source (GPT-2 BPE files, a
``tokenizer.json``, a Hugging Face directory, a GGUF vocabulary), encoding never lets the
underlying library add special tokens: BOS is added here, only when ``add_bos`` is set.

The pad id only fills space; pooling reads the attention mask (pad may equal eos).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors

from .errors import ModelLoadError, UserError
from .files import atomic_open

if TYPE_CHECKING:
    import torch

META_FILE = "tokenizer_meta.json"
TOKENIZER_FILE = "tokenizer.json"

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


class Tokenizer:
    """A byte-level BPE (or any `tokenizers`) tokenizer plus eos / bos / pad facts."""

    def __init__(
        self,
        tok: tokenizers.Tokenizer,
        *,
        eos_id: int | None,
        bos_id: int | None = None,
        pad_id: int | None = None,
        add_bos: bool = False,
        pad_source: str | None = None,
    ) -> None:
        self.tok = tok
        self.eos_id = None if eos_id is None else int(eos_id)
        self.bos_id = None if bos_id is None else int(bos_id)
        self.add_bos = bool(add_bos)
        if self.add_bos and self.bos_id is None:
            raise ModelLoadError("tokenizer: add_bos is set but there is no bos token")
        if pad_id is not None:
            self.pad_id = int(pad_id)
            self.pad_source = pad_source or "pad token"
        elif self.eos_id is not None:
            # GPT-2 and Llama 3 have no pad token: pad with eos; pooling reads the mask anyway.
            self.pad_id, self.pad_source = self.eos_id, "eos"
        else:
            self.pad_id, self.pad_source = 0, "id 0"

    # --- constructors ----------------------------------------------------------------------
    @classmethod
    def from_gpt2_files(
        cls, vocab: str | os.PathLike[str], merges: str | os.PathLike[str]
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
        return cls(tok, eos_id=eos, bos_id=eos, pad_id=None, add_bos=False)

    @classmethod
    def from_file(
        cls,
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
        return cls(tok, eos_id=eos_id, bos_id=bos_id, pad_id=pad_id, add_bos=add_bos)

    @classmethod
    def from_hf_dir(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """A Hugging Face model directory: tokenizer.json (else vocab.json + merges.txt), with
        eos / bos / pad from tokenizer_config.json, special_tokens_map.json or config.json."""
        d = Path(path)
        tj = d / TOKENIZER_FILE
        tj_data: dict = {}
        if tj.is_file():
            self = cls.from_file(tj)
            tj_data = _read_json(tj)
        elif (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
            self = cls.from_gpt2_files(d / "vocab.json", d / "merges.txt")
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
        return cls(self.tok, eos_id=eos, bos_id=bos, pad_id=pad, add_bos=add_bos)

    @classmethod
    def from_gguf(cls, reader: Any, source: str = "") -> Tokenizer:
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
        return cls(
            tok,
            eos_id=get("tokenizer.ggml.eos_token_id"),
            bos_id=bos,
            pad_id=get("tokenizer.ggml.padding_token_id"),
            add_bos=bool(get("tokenizer.ggml.add_bos_token", False)) and bos is not None,
        )

    # --- use -------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; BOS first only if ``add_bos``."""
        try:
            ids = self.tok.encode(text, add_special_tokens=False).ids
        except TypeError:  # the Rust library's message ("must be str") names no text
            raise _bad_text([text]) from None
        return [self.bos_id, *ids] if self.add_bos else ids

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text (parallel in the Rust library); keeps the first `max_length`."""
        texts = list(texts)
        try:
            encs = self.tok.encode_batch(texts, add_special_tokens=False)
        except TypeError:
            raise _bad_text(texts) from None
        out = []
        for e in encs:
            ids = [self.bos_id, *e.ids] if self.add_bos else list(e.ids)
            out.append(ids[:max_length] if max_length is not None else ids)
        return out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token(self, i: int | None) -> str | None:
        return None if i is None else self.tok.id_to_token(i)

    def describe(self) -> str:
        """One line saying which pad id was chosen and why."""
        pad = f"pad id {self.pad_id} {self.token(self.pad_id)!r}"
        if self.pad_source == "pad token":
            why = "the model's pad token" + (", same as eos" if self.pad_id == self.eos_id else "")
        elif self.pad_source == "eos":
            why = "eos; the model has no pad token"
        else:
            why = "no pad or eos token"
        bos = f"adds bos {self.token(self.bos_id)!r}" if self.add_bos else "adds no bos"
        return f"{pad} ({why}); eos id {self.eos_id} {self.token(self.eos_id)!r}; {bos}; vocab {self.vocab_size}"

    # --- persistence -----------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "eos_id": self.eos_id,
            "bos_id": self.bos_id,
            "pad_id": self.pad_id,
            "pad_source": self.pad_source,
            "add_bos": self.add_bos,
        }

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write tokenizer.json and tokenizer_meta.json into `directory` (created if needed)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_open(d / TOKENIZER_FILE, "w") as f:
            f.write(self.tok.to_str(pretty=True))  # what tokenizers' own save() writes
        with atomic_open(d / META_FILE, "w") as f:
            f.write(json.dumps(self.meta(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Tokenizer:
        """Read what `save` wrote (a directory without tokenizer_meta.json is read as an HF dir)."""
        d = Path(directory)
        if not (d / META_FILE).is_file():
            return cls.from_hf_dir(d)
        meta = _read_json(d / META_FILE)
        try:
            tok = tokenizers.Tokenizer.from_file(str(d / TOKENIZER_FILE))
        except Exception as e:
            raise ModelLoadError(f"{d / TOKENIZER_FILE}: cannot read tokenizer ({_one_line(e)})") from None
        return cls(
            tok,
            eos_id=meta.get("eos_id"),
            bos_id=meta.get("bos_id"),
            pad_id=meta.get("pad_id"),
            add_bos=meta.get("add_bos", False),
            pad_source=meta.get("pad_source"),
        )

    def __repr__(self) -> str:
        return f"Tokenizer({self.describe()})"


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists to the longest one: (input_ids, attention_mask), both LongTensor (B, T)."""
    import torch

    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    n = len(seqs)
    t = max((len(s) for s in seqs), default=0)
    ids = torch.full((n, t), int(pad_id), dtype=torch.long)
    mask = torch.zeros((n, t), dtype=torch.long)
    for i, s in enumerate(seqs):
        k = len(s)
        if k == 0:
            continue
        sl = slice(0, k) if side == "right" else slice(t - k, t)
        ids[i, sl] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


# --- helpers -------------------------------------------------------------------------------
def _bad_text(texts: Sequence[Any]) -> UserError:
    """The error for a text the tokenizer refuses: not a str, or a str that is not valid
    Unicode (a lone surrogate, which only Python code can make; files are decoded strictly)."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            return UserError(f"text {i}: expected a string, found {type(t).__name__}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            return UserError(
                f"text {i}: not valid Unicode (lone surrogate U+{ord(t[e.start]):04X} at character {e.start})"
            )
    return UserError("a text could not be tokenized")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: cannot read JSON ({_one_line(e)})") from None
    return data if isinstance(data, dict) else {}


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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
