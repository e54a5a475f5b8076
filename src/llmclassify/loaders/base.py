"""What every loader returns, and the shape check they all share.

A loader maps a source's tensors onto our names (docs/architecture.md) and must hand back
exactly the tensors `expected_shapes(config)` lists, each with that shape; `check_state_dict`
enforces it and names the file and tensor in its error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import ModelConfig
from ..errors import ModelLoadError

if TYPE_CHECKING:  # torch stays out of import time for light callers
    import torch

    from ..tokenizer import Tokenizer


@dataclass
class LoadedModel:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: Tokenizer | None
    # Where the weights came from: {"kind": "preset|hf-dir|hub|gguf", "source": str,
    # "sha256": str (of the weights file(s)), ...}. Saved in run directories so a run can
    # find and verify its base model again.
    identity: dict[str, Any] = field(default_factory=dict)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name in our state dict with its shape (nn.Linear layout: out, in)."""
    d, hd, f = cfg.emb_dim, cfg.head_dim, cfg.hidden_dim
    q, kv = cfg.n_heads * hd, cfg.n_kv_heads * hd
    gpt2 = cfg.is_gpt2
    s: dict[str, tuple[int, ...]] = {"tok_emb.weight": (cfg.vocab_size, d)}
    if gpt2:
        s["pos_emb.weight"] = (cfg.context_length, d)

    def norm(prefix: str) -> None:
        s[f"{prefix}.weight"] = (d,)
        if gpt2:
            s[f"{prefix}.bias"] = (d,)

    for i in range(cfg.n_layers):
        b = f"blocks.{i}"
        norm(f"{b}.norm1")
        norm(f"{b}.norm2")
        for name, out in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            s[f"{b}.attn.{name}.weight"] = (out, d)
            if cfg.qkv_bias:
                s[f"{b}.attn.{name}.bias"] = (out,)
        s[f"{b}.attn.o_proj.weight"] = (d, q)
        if cfg.out_bias:
            s[f"{b}.attn.o_proj.bias"] = (d,)
        if not gpt2:
            s[f"{b}.mlp.gate_proj.weight"] = (f, d)
        s[f"{b}.mlp.up_proj.weight"] = (f, d)
        s[f"{b}.mlp.down_proj.weight"] = (d, f)
        if cfg.mlp_bias:
            s[f"{b}.mlp.up_proj.bias"] = (f,)
            s[f"{b}.mlp.down_proj.bias"] = (d,)
    norm("final_norm")
    if not cfg.tie_embeddings:
        s["lm_head.weight"] = (cfg.vocab_size, d)
    return s


def check_state_dict(cfg: ModelConfig, sd: dict[str, Any], source: str) -> None:
    """Raise ModelLoadError naming `source` and the tensor if any name or shape is off."""
    want = expected_shapes(cfg)
    missing = [k for k in want if k not in sd]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelLoadError(f"{source}: missing tensor '{missing[0]}'{more}")
    extra = [k for k in sd if k not in want]
    if extra:
        raise ModelLoadError(f"{source}: unexpected tensor '{extra[0]}'")
    for k, shape in want.items():
        got = tuple(sd[k].shape)
        if got != shape:
            raise ModelLoadError(f"{source}: tensor '{k}' has shape {got}, expected {shape}")
