"""GGUF files (llama.cpp) -> LoadedModel: config from the metadata, float32 weights, tokenizer.

Weight conversion is data plus named transforms:

- a key map per architecture (GGUF tensor name -> our name, ``{}`` = block index);
- ``unpermute_qk`` (architecture ``llama`` only): llama.cpp's converter reorders each head's
  Q and K rows from Hugging Face's rotate_half layout to interleaved pairs; we undo it;
- ``split_qkv`` (``gpt2``): one fused attn_qkv tensor -> q, k, v;
- ``tie_duplicate_output``: an ``output.weight`` byte-identical to ``token_embd.weight`` is
  dropped and the embeddings are tied.

Every quantization type `gguf.quants.dequantize` knows is read (F32, F16, BF16, Q4_0, Q4_1,
Q5_*, Q8_0, K-quants, ...). Dequantizing and parsing the vocabulary take seconds, so the first
load stores the result in the user cache (see cache.py), keyed by the file's sha256; later loads
read that safetensors file instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import cache as _cache
from ..config import ModelConfig
from ..errors import ModelLoadError
from ..files import sha256_file
from .base import LoadedModel, check_state_dict, expected_shapes

GGUF_MAGIC = b"GGUF"
# Bump when the conversion changes, so stale dequantized caches are not reused.
CACHE_VERSION = "v1"
_CACHE_WEIGHTS, _CACHE_META = "model.safetensors", "meta.json"

_LLAMA_KEYS = {
    "token_embd.weight": "tok_emb.weight",
    "output_norm.weight": "final_norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{}.attn_norm.weight": "blocks.{}.norm1.weight",
    "blk.{}.ffn_norm.weight": "blocks.{}.norm2.weight",
    "blk.{}.attn_q.weight": "blocks.{}.attn.q_proj.weight",
    "blk.{}.attn_k.weight": "blocks.{}.attn.k_proj.weight",
    "blk.{}.attn_v.weight": "blocks.{}.attn.v_proj.weight",
    "blk.{}.attn_q.bias": "blocks.{}.attn.q_proj.bias",
    "blk.{}.attn_k.bias": "blocks.{}.attn.k_proj.bias",
    "blk.{}.attn_v.bias": "blocks.{}.attn.v_proj.bias",
    "blk.{}.attn_output.weight": "blocks.{}.attn.o_proj.weight",
    "blk.{}.ffn_gate.weight": "blocks.{}.mlp.gate_proj.weight",
    "blk.{}.ffn_up.weight": "blocks.{}.mlp.up_proj.weight",
    "blk.{}.ffn_down.weight": "blocks.{}.mlp.down_proj.weight",
}

_GPT2_KEYS = {
    "token_embd.weight": "tok_emb.weight",
    "position_embd.weight": "pos_emb.weight",
    "output_norm.weight": "final_norm.weight",
    "output_norm.bias": "final_norm.bias",
    "output.weight": "lm_head.weight",
    "blk.{}.attn_norm.weight": "blocks.{}.norm1.weight",
    "blk.{}.attn_norm.bias": "blocks.{}.norm1.bias",
    "blk.{}.ffn_norm.weight": "blocks.{}.norm2.weight",
    "blk.{}.ffn_norm.bias": "blocks.{}.norm2.bias",
    # fused; split_qkv turns it into q_proj / k_proj / v_proj
    "blk.{}.attn_qkv.weight": "blocks.{}.attn.qkv.weight",
    "blk.{}.attn_qkv.bias": "blocks.{}.attn.qkv.bias",
    "blk.{}.attn_output.weight": "blocks.{}.attn.o_proj.weight",
    "blk.{}.attn_output.bias": "blocks.{}.attn.o_proj.bias",
    "blk.{}.ffn_up.weight": "blocks.{}.mlp.up_proj.weight",
    "blk.{}.ffn_up.bias": "blocks.{}.mlp.up_proj.bias",
    "blk.{}.ffn_down.weight": "blocks.{}.mlp.down_proj.weight",
    "blk.{}.ffn_down.bias": "blocks.{}.mlp.down_proj.bias",
}

# general.architecture -> (key map, whether llama.cpp permuted Q/K rows on conversion)
ARCHITECTURES: dict[str, tuple[dict[str, str], bool]] = {
    "llama": (_LLAMA_KEYS, True),  # also Mistral, SmolLM2 and Llama 3 files
    "qwen2": (_LLAMA_KEYS, False),  # convert_hf_to_gguf leaves Qwen2's Q/K as they are
    "gpt2": (_GPT2_KEYS, False),
}

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(.+)$")


# --- public ----------------------------------------------------------------------------------
def is_gguf(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a file starting with the GGUF magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def load_gguf(
    path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> LoadedModel:
    """Load a GGUF file: ModelConfig from its metadata, float32 state dict in our names,
    Tokenizer from its vocabulary. Dequantized weights are cached by the file's sha256."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such GGUF file")
    if not is_gguf(p):
        raise ModelLoadError(f"{p}: not a GGUF file (bad magic bytes)")
    sha = _cache.cached_sha256(p, cache_dir) if use_cache else sha256_file(p)
    identity = {"kind": "gguf", "source": str(p.resolve()), "sha256": sha}
    cdir = _cache_entry(sha, cache_dir)
    if use_cache and (cdir / _CACHE_META).is_file():
        try:
            return _load_cached(cdir, identity)
        except Exception as e:  # a damaged cache entry: rebuild it from the GGUF file
            print(f"llmclassify: ignoring damaged cache {cdir} ({e})", file=sys.stderr)
            shutil.rmtree(cdir, ignore_errors=True)
    lm = _load_from_file(p, identity)
    if use_cache:
        try:
            _write_cache(cdir, lm)
        except OSError as e:
            print(f"llmclassify: could not cache dequantized weights in {cdir} ({e})", file=sys.stderr)
    return lm


def cache_entry_for(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory that holds (or will hold) the dequantized weights of `path`."""
    return _cache_entry(_cache.cached_sha256(Path(path), cache_dir), cache_dir)


# --- named transforms ------------------------------------------------------------------------
def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo convert_hf_to_gguf's ``permute``: per head, interleaved (x0, y0, x1, y1, ...) rows
    back to Hugging Face's halves (x0, x1, ..., y0, y1, ...). `w` is (n_head*head_dim, ...)."""
    rest = w.shape[1:]
    # (n_head, head_dim/2, 2, *rest) -> swap -> (n_head, 2, head_dim/2, *rest)
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's own permutation (HF layout -> GGUF layout); the inverse of `unpermute_qk`."""
    rest = w.shape[1:]
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)


# --- reading ---------------------------------------------------------------------------------
def _dequantize(t: Any) -> np.ndarray:
    """Float32 array of a GGUF tensor, numpy order (reversed ggml ne: (rows, cols))."""
    from gguf.quants import dequantize

    w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
    # F32 tensors come back as views of the read-only memory map
    return w if w.flags.writeable else w.copy()


def _meta(fields: dict, key: str, where: str, default: Any = ...) -> Any:
    f = fields.get(key)
    if f is None:
        if default is ...:
            raise ModelLoadError(f"{where}: missing metadata key '{key}'")
        return default
    v = f.contents()
    return v


def _f32(x: float) -> float:
    """A float32 metadata value as the decimal it was written from (9.99999975e-06 -> 1e-05)."""
    return float(f"{float(x):.7g}")


def _config_from_meta(fields: dict, arch: str, tensors: dict, where: str) -> ModelConfig:
    def m(key: str, default: Any = ...) -> Any:
        return _meta(fields, f"{arch}.{key}", where, default)

    if "token_embd.weight" not in tensors:
        raise ModelLoadError(f"{where}: missing tensor 'token_embd.weight'")
    vocab = int(tensors["token_embd.weight"].shape[-1])  # ggml ne = (D, vocab)
    n_heads = int(m("attention.head_count"))
    name = str(_meta(fields, "general.name", where, "") or "")
    common = dict(
        vocab_size=vocab,
        emb_dim=int(m("embedding_length")),
        n_layers=int(m("block_count")),
        n_heads=n_heads,
        context_length=int(m("context_length")),
        hidden_dim=int(m("feed_forward_length")),
        tie_embeddings="output.weight" not in tensors,
        name=name,
        extra={"gguf_architecture": arch},
    )
    if arch == "gpt2":
        return ModelConfig(
            family="gpt2",
            norm_eps=_f32(m("attention.layer_norm_epsilon", 1e-5)),
            qkv_bias=True,
            out_bias=True,
            mlp_bias=True,
            **common,
        )
    key_len = int(m("attention.key_length", 0))
    return ModelConfig(
        family="llama",
        n_kv_heads=int(m("attention.head_count_kv", n_heads)),
        head_dim=key_len,
        norm_eps=_f32(m("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=_f32(m("rope.freq_base", 10000.0)),
        qkv_bias="blk.0.attn_q.bias" in tensors,
        out_bias="blk.0.attn_output.bias" in tensors,
        mlp_bias="blk.0.ffn_up.bias" in tensors,
        **common,
    )


def _our_name(gguf_name: str, keymap: dict[str, str]) -> str | None:
    if gguf_name in keymap:
        return keymap[gguf_name]
    mt = _BLOCK_RE.match(gguf_name)
    if mt and f"blk.{{}}.{mt.group(2)}" in keymap:
        return keymap[f"blk.{{}}.{mt.group(2)}"].format(mt.group(1))
    return None


def _load_from_file(p: Path, identity: dict) -> LoadedModel:
    import torch
    from gguf import GGUFReader

    from .tokenizer_files import tokenizer_from_gguf

    where = str(p)
    try:
        reader = GGUFReader(p)
        fields = reader.fields
        tensors = {t.name: t for t in reader.tensors}
    except Exception as e:
        raise ModelLoadError(f"{where}: truncated or corrupt GGUF file ({_one_line(e)})") from None
    arch = _meta(fields, "general.architecture", where)
    if arch not in ARCHITECTURES:
        raise ModelLoadError(
            f"{where}: unsupported GGUF architecture '{arch}' (supported: {', '.join(ARCHITECTURES)})"
        )
    keymap, permuted = ARCHITECTURES[arch]
    cfg = _config_from_meta(fields, arch, tensors, where)
    cfg.name = cfg.name or p.stem
    want = expected_shapes(cfg)
    if arch == "gpt2":  # the fused tensor's expected shape, before split_qkv
        for i in range(cfg.n_layers):
            want[f"blocks.{i}.attn.qkv.weight"] = (3 * cfg.emb_dim, cfg.emb_dim)
            want[f"blocks.{i}.attn.qkv.bias"] = (3 * cfg.emb_dim,)

    # tie_duplicate_output: some converters (GPT-2) write the tied matrix twice.
    out_t, emb_t = tensors.get("output.weight"), tensors.get("token_embd.weight")
    if (
        out_t is not None
        and out_t.tensor_type == emb_t.tensor_type
        and out_t.data.shape == emb_t.data.shape
        and np.array_equal(out_t.data, emb_t.data)
    ):
        del tensors["output.weight"]
        cfg.tie_embeddings = True
        want.pop("lm_head.weight", None)

    sd: dict[str, torch.Tensor] = {}
    for gname, t in tensors.items():
        ours = _our_name(gname, keymap)
        if ours is None:
            raise ModelLoadError(f"{where}: unsupported tensor '{gname}' for architecture '{arch}'")
        shape = tuple(int(x) for x in reversed(list(t.shape)))  # ggml ne -> numpy order
        if ours in want and shape != want[ours]:
            raise ModelLoadError(
                f"{where}: tensor '{gname}' has shape {shape}, expected {want[ours]} ({ours})"
            )
        try:
            w = _dequantize(t)
        except NotImplementedError:
            raise ModelLoadError(
                f"{where}: tensor '{gname}' has quantization type {t.tensor_type.name}, which gguf cannot dequantize"
            ) from None
        except Exception as e:
            raise ModelLoadError(f"{where}: tensor '{gname}' is unreadable ({_one_line(e)})") from None
        if w.shape != shape:
            w = w.reshape(shape) if w.size == int(np.prod(shape)) else w
            if w.shape != shape:
                raise ModelLoadError(f"{where}: tensor '{gname}' holds {w.shape}, header says {shape}")
        if permuted and ours.endswith(("attn.q_proj.weight", "attn.q_proj.bias")):
            w = unpermute_qk(w, cfg.n_heads)
        elif permuted and ours.endswith(("attn.k_proj.weight", "attn.k_proj.bias")):
            w = unpermute_qk(w, cfg.n_kv_heads)
        if ".attn.qkv." in ours:  # split_qkv
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), np.split(w, 3, axis=0)):
                sd[ours.replace("qkv", part)] = torch.from_numpy(np.ascontiguousarray(chunk))
            continue
        sd[ours] = torch.from_numpy(np.ascontiguousarray(w))
    check_state_dict(cfg, sd, where)
    tok = tokenizer_from_gguf(reader, source=where)
    return LoadedModel(config=cfg, state_dict=sd, tokenizer=tok, identity=identity)


# --- dequantized-weights cache ---------------------------------------------------------------
def _cache_entry(sha: str, override: str | os.PathLike[str] | None) -> Path:
    return _cache.cache_dir(override) / "gguf" / CACHE_VERSION / sha


def _write_cache(cdir: Path, lm: LoadedModel) -> None:
    from safetensors.torch import save_file

    cdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cdir.name}.", suffix=".tmp", dir=cdir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
    try:
        save_file({k: v.contiguous() for k, v in lm.state_dict.items()}, str(tmp / _CACHE_WEIGHTS))
        if lm.tokenizer is not None:
            lm.tokenizer.save(tmp)
        meta = {"config": lm.config.to_dict(), "gguf_sha256": lm.identity.get("sha256")}
        # meta.json last: its presence marks a complete entry
        (tmp / _CACHE_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, cdir)  # atomic; fails if another process got there first
        except OSError:
            if not (cdir / _CACHE_META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_cached(cdir: Path, identity: dict) -> LoadedModel:
    from safetensors.torch import load_file

    from ..tokenizer import Tokenizer

    meta = json.loads((cdir / _CACHE_META).read_text(encoding="utf-8"))
    cfg = ModelConfig.from_dict(meta["config"])
    sd = load_file(str(cdir / _CACHE_WEIGHTS))
    check_state_dict(cfg, sd, str(cdir / _CACHE_WEIGHTS))
    tok = Tokenizer.load(cdir)
    return LoadedModel(config=cfg, state_dict=sd, tokenizer=tok, identity=dict(identity))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
