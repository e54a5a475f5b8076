"""Text -> token ids (and back), plus the padding that turns id lists into a batch.

`Tokenizer` wraps a `tokenizers.Tokenizer` and the few facts a classifier needs about it: the
end-of-sequence id, the optional beginning-of-sequence id and whether to add it, and the pad id
(the model's pad token, else its eos token). Built from a model source (GPT-2 BPE files, a
``tokenizer.json``, a Hugging Face directory, a GGUF vocabulary) by
`loaders/tokenizer_files.py`; saved into and loaded from a run directory here. Encoding never
lets the underlying library add special tokens: BOS is added here, only when ``add_bos`` is set.

The pad id only fills space; pooling reads the attention mask (pad may equal eos).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tokenizers

from .errors import ModelLoadError, UserError
from .files import atomic_open

if TYPE_CHECKING:
    import torch

META_FILE = "tokenizer_meta.json"
TOKENIZER_FILE = "tokenizer.json"

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
            # Not written by `save`: a model directory (the loaders own reading those).
            from .loaders.tokenizer_files import tokenizer_from_hf_dir

            return tokenizer_from_hf_dir(d)
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


def pad_arrays(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Pad id lists to the longest one: (input_ids, attention_mask), both int64 arrays (B, T).
    Torch-free, for the ONNX predictor; `pad_batch` gives the same as tensors."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    n = len(seqs)
    t = max((len(s) for s in seqs), default=0)
    ids = np.full((n, t), int(pad_id), dtype=np.int64)
    mask = np.zeros((n, t), dtype=np.int64)
    for i, s in enumerate(seqs):
        k = len(s)
        if k == 0:
            continue
        sl = slice(0, k) if side == "right" else slice(t - k, t)
        ids[i, sl] = s
        mask[i, sl] = 1
    return ids, mask


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists to the longest one: (input_ids, attention_mask), both LongTensor (B, T)."""
    import torch

    ids, mask = pad_arrays(seqs, pad_id, side)
    return torch.from_numpy(ids), torch.from_numpy(mask)


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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
