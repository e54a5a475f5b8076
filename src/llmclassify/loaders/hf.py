"""Hugging Face model directories: config.json + safetensors weights -> LoadedModel.

Weight conversion is data: one key map per family (Hugging Face name pattern -> our name
pattern, see docs/architecture.md), plus a short named list of real transforms. Only
safetensors are read; pickle checkpoints (pytorch_model.bin) are refused, never unpickled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import ModelLoadError
from ..files import sha256_files
from .base import LoadedModel, check_state_dict, expected_shapes

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")

# --- the key maps: HF name (without `transformer.` / `model.`) -> (our names, transform) ---
# `{}` stands for the layer number. A transform takes the HF tensor and returns one tensor
# per target name.

GPT2_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "wte.weight": (("tok_emb.weight",), "copy"),
    "wpe.weight": (("pos_emb.weight",), "copy"),
    "h.{}.ln_1.weight": (("blocks.{}.norm1.weight",), "copy"),
    "h.{}.ln_1.bias": (("blocks.{}.norm1.bias",), "copy"),
    "h.{}.attn.c_attn.weight": (
        ("blocks.{}.attn.q_proj.weight", "blocks.{}.attn.k_proj.weight",
         "blocks.{}.attn.v_proj.weight"), "conv1d_split3"),
    "h.{}.attn.c_attn.bias": (
        ("blocks.{}.attn.q_proj.bias", "blocks.{}.attn.k_proj.bias",
         "blocks.{}.attn.v_proj.bias"), "split3"),
    "h.{}.attn.c_proj.weight": (("blocks.{}.attn.o_proj.weight",), "conv1d"),
    "h.{}.attn.c_proj.bias": (("blocks.{}.attn.o_proj.bias",), "copy"),
    "h.{}.ln_2.weight": (("blocks.{}.norm2.weight",), "copy"),
    "h.{}.ln_2.bias": (("blocks.{}.norm2.bias",), "copy"),
    "h.{}.mlp.c_fc.weight": (("blocks.{}.mlp.up_proj.weight",), "conv1d"),
    "h.{}.mlp.c_fc.bias": (("blocks.{}.mlp.up_proj.bias",), "copy"),
    "h.{}.mlp.c_proj.weight": (("blocks.{}.mlp.down_proj.weight",), "conv1d"),
    "h.{}.mlp.c_proj.bias": (("blocks.{}.mlp.down_proj.bias",), "copy"),
    "ln_f.weight": (("final_norm.weight",), "copy"),
    "ln_f.bias": (("final_norm.bias",), "copy"),
    "lm_head.weight": (("lm_head.weight",), "copy"),
}

LLAMA_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "embed_tokens.weight": (("tok_emb.weight",), "copy"),
    "layers.{}.input_layernorm.weight": (("blocks.{}.norm1.weight",), "copy"),
    "layers.{}.post_attention_layernorm.weight": (("blocks.{}.norm2.weight",), "copy"),
    **{
        f"layers.{{}}.self_attn.{p}.{w}": ((f"blocks.{{}}.attn.{p}.{w}",), "copy")
        for p in ("q_proj", "k_proj", "v_proj", "o_proj") for w in ("weight", "bias")
    },
    **{
        f"layers.{{}}.mlp.{p}.{w}": ((f"blocks.{{}}.mlp.{p}.{w}",), "copy")
        for p in ("gate_proj", "up_proj", "down_proj") for w in ("weight", "bias")
    },
    "norm.weight": (("final_norm.weight",), "copy"),
    "lm_head.weight": (("lm_head.weight",), "copy"),
}

KEY_MAPS = {"gpt2": GPT2_KEYS, "llama": LLAMA_KEYS}

# Buffers some checkpoints carry that are not weights (causal-mask tables, RoPE frequencies).
SKIP_PATTERNS = (
    r"h\.\d+\.attn\.bias",
    r"h\.\d+\.attn\.masked_bias",
    r"(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq",
)

HF_PREFIXES = ("transformer.", "model.")


def _conv1d(w: torch.Tensor) -> list[torch.Tensor]:
    # GPT-2's Conv1D stores (in, out); nn.Linear wants (out, in).
    return [w.t().contiguous()]


def _split3(t: torch.Tensor) -> list[torch.Tensor]:
    # GPT-2 fuses q, k, v along the output dim.
    if t.shape[0] % 3:
        raise ValueError(f"fused q/k/v dim {t.shape[0]} is not divisible by 3")
    return [c.contiguous() for c in t.chunk(3, dim=0)]


# The named transforms (everything else is a rename).
TRANSFORMS: dict[str, Callable[[torch.Tensor], list[torch.Tensor]]] = {
    "copy": lambda t: [t],
    "conv1d": _conv1d,
    "split3": _split3,
    "conv1d_split3": lambda t: _split3(_conv1d(t)[0]),
}


def _compile(keymap: dict[str, tuple[tuple[str, ...], str]]):
    """Patterns -> (regex, targets, transform); `{}` matches a layer number."""
    out = []
    for pat, (targets, transform) in keymap.items():
        rx = re.compile("^" + re.escape(pat).replace(r"\{\}", r"(\d+)") + "$")
        out.append((rx, targets, transform))
    return out


_COMPILED = {fam: _compile(km) for fam, km in KEY_MAPS.items()}
_SKIP = re.compile("^(" + "|".join(SKIP_PATTERNS) + ")$")


def strip_prefix(key: str) -> str:
    for p in HF_PREFIXES:
        if key.startswith(p):
            return key[len(p):]
    return key


def convert_tensor(cfg: ModelConfig, hf_key: str, t: torch.Tensor, source: str) -> dict[str, torch.Tensor]:
    """One HF tensor -> {our name: float32 tensor}; {} for skipped buffers / a tied lm_head.

    Raises ModelLoadError naming `source` and the tensor for an unknown name or a bad shape.
    """
    key = strip_prefix(hf_key)
    if _SKIP.match(key):
        return {}
    if key == "lm_head.weight" and cfg.tie_embeddings:
        return {}  # tied: the output layer is tok_emb (saved copies are identical)
    for rx, targets, transform in _COMPILED[cfg.family]:
        m = rx.match(key)
        if not m:
            continue
        names = [tgt.replace("{}", m.group(1)) if m.groups() else tgt for tgt in targets]
        try:
            parts = TRANSFORMS[transform](t.to(torch.float32))
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{source}: tensor '{hf_key}' shape {tuple(t.shape)}: {e}") from None
        want = expected_shapes(cfg)
        out = {}
        for name, p in zip(names, parts):
            if name not in want:
                raise ModelLoadError(
                    f"{source}: tensor '{hf_key}' ({name}) is not part of this model's config")
            if tuple(p.shape) != want[name]:
                raise ModelLoadError(
                    f"{source}: tensor '{hf_key}' gives '{name}' shape {tuple(p.shape)}, "
                    f"expected {want[name]}")
            out[name] = p
        return out
    raise ModelLoadError(f"{source}: unexpected tensor '{hf_key}' for a {cfg.family} model")


# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"{path}: cannot read JSON ({msg})") from None


def weight_files(path: Path) -> tuple[list[Path], Path]:
    """The safetensors files of a model dir, and the file to name in errors (file or index)."""
    single, index = path / WEIGHTS, path / INDEX
    if single.is_file():
        return [single], single
    if index.is_file():
        wm = _read_json(index).get("weight_map")
        if not isinstance(wm, dict) or not wm:
            raise ModelLoadError(f"{index}: no 'weight_map' in the shard index")
        files = [path / f for f in sorted(set(wm.values()))]
        for f in files:
            if not f.is_file():
                raise ModelLoadError(f"{f}: shard listed in {INDEX} is missing")
        return files, index
    for name in PICKLE_WEIGHTS:
        if (path / name).is_file():
            raise ModelLoadError(
                f"{path / name}: only safetensors weights are read (pickle checkpoints are not "
                f"loaded); convert it to {WEIGHTS} or use a safetensors copy of the model")
    raise ModelLoadError(f"{path}: no {WEIGHTS} or {INDEX} in the model directory")


def read_safetensors(cfg: ModelConfig, files: list[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of `files` converted to our names (shapes checked per tensor)."""
    from safetensors import SafetensorError, safe_open

    sd: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                for hf_key in fh.keys():
                    for name, t in convert_tensor(cfg, hf_key, fh.get_tensor(hf_key), str(f)).items():
                        if name in sd:
                            raise ModelLoadError(f"{f}: tensor '{hf_key}' gives '{name}' twice")
                        sd[name] = t
        except (SafetensorError, OSError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelLoadError(f"{f}: not a readable safetensors file ({msg})") from None
    return sd


def _tokenizer(path: Path):
    """The directory's tokenizer, or None when it has no tokenizer files."""
    has_gpt2_files = (path / "vocab.json").is_file() and (path / "merges.txt").is_file()
    if not ((path / "tokenizer.json").is_file() or has_gpt2_files):
        return None
    from .tokenizer_files import tokenizer_from_hf_dir  # lazy: pulls in `tokenizers`

    return tokenizer_from_hf_dir(path)


def load_hf_dir(path: str | Path) -> LoadedModel:
    """Load a Hugging Face model directory (config.json + safetensors, single or sharded).

    Returns our config, a float32 state dict in our names (checked against the config), the
    directory's tokenizer (None if it has none) and identity {"kind": "hf-dir", "source",
    "sha256"}. Every problem raises a one-line ModelLoadError naming the file (and tensor).
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: no such model directory")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelLoadError(f"{path}: not a Hugging Face model directory (no config.json)")
    raw = _read_json(cfg_file)
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{cfg_file}: expected a JSON object")
    try:
        cfg = ModelConfig.from_hf_config(raw, name=path.name)
    except ModelLoadError as e:
        raise ModelLoadError(f"{cfg_file}: {e}") from None
    files, source = weight_files(path)
    sd = read_safetensors(cfg, files)
    check_state_dict(cfg, sd, str(source))
    identity = {"kind": "hf-dir", "source": str(path), "sha256": sha256_files(files)}
    return LoadedModel(config=cfg, state_dict=sd, tokenizer=_tokenizer(path), identity=identity)
