"""ModelConfig: the one typed description of a decoder, and nothing that imports torch.

One decoder class (model.py) is switched by this config. Two families:

- ``gpt2``: LayerNorm with bias, tanh-GELU MLP, learned positions, biases everywhere.
- ``llama``: RMSNorm, SwiGLU MLP, rotary positions (with optional Llama-3 scaling), grouped
  key/value heads. SmolLM2, Llama 3.x, Qwen2/2.5 (``qkv_bias=True``) and Mistral fit here.

`ModelConfig.from_hf_config(dict)` reads a Hugging Face ``config.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ModelLoadError

FAMILIES = ("gpt2", "llama")

# Hugging Face `model_type` values that map onto our two families.
_HF_LLAMA_TYPES = {"llama", "mistral", "qwen2", "smollm", "smollm2"}


@dataclass
class ModelConfig:
    family: str
    vocab_size: int
    emb_dim: int
    n_layers: int
    n_heads: int
    context_length: int
    n_kv_heads: int = 0  # 0 -> n_heads (plain multi-head attention)
    hidden_dim: int = 0  # MLP inner width; 0 -> 4 * emb_dim
    head_dim: int = 0  # 0 -> emb_dim // n_heads
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # Llama-3 style: {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    # "original_max_position_embeddings"}; None for plain RoPE.
    rope_scaling: dict | None = None
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    tie_embeddings: bool = True
    name: str = ""
    extra: dict = field(default_factory=dict)  # free-form provenance (e.g. gguf architecture)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ModelLoadError(f"unsupported model family '{self.family}' (supported: {', '.join(FAMILIES)})")
        for name in ("vocab_size", "emb_dim", "n_layers", "n_heads", "context_length"):
            if int(getattr(self, name)) <= 0:
                raise ModelLoadError(f"model config field '{name}' must be positive, got {getattr(self, name)}")
        if self.n_kv_heads == 0:
            self.n_kv_heads = self.n_heads
        if self.hidden_dim == 0:
            self.hidden_dim = 4 * self.emb_dim
        if self.head_dim == 0:
            if self.emb_dim % self.n_heads:
                raise ModelLoadError(f"emb_dim {self.emb_dim} is not divisible by n_heads {self.n_heads}")
            self.head_dim = self.emb_dim // self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise ModelLoadError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.family == "gpt2" and self.n_kv_heads != self.n_heads:
            raise ModelLoadError("gpt2 family has no grouped key/value heads")

    # --- derived -------------------------------------------------------------------------
    @property
    def is_gpt2(self) -> bool:
        return self.family == "gpt2"

    # --- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelLoadError(f"unknown model config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    @classmethod
    def from_hf_config(cls, d: dict[str, Any], name: str = "") -> ModelConfig:
        """Read a Hugging Face ``config.json`` dict (gpt2, llama, mistral, qwen2)."""
        mt = d.get("model_type")
        try:
            if mt == "gpt2":
                return cls(
                    family="gpt2",
                    vocab_size=d["vocab_size"],
                    emb_dim=d["n_embd"],
                    n_layers=d["n_layer"],
                    n_heads=d["n_head"],
                    context_length=d.get("n_positions", d.get("n_ctx", 1024)),
                    hidden_dim=d.get("n_inner") or 4 * d["n_embd"],
                    norm_eps=d.get("layer_norm_epsilon", 1e-5),
                    qkv_bias=True,
                    out_bias=True,
                    mlp_bias=True,
                    tie_embeddings=True,
                    name=name,
                )
            if mt in _HF_LLAMA_TYPES:
                act = d.get("hidden_act", "silu")
                if act != "silu":
                    raise ModelLoadError(f"unsupported activation '{act}' for {mt} (only silu)")
                # transformers >= 5 writes `rope_parameters` (rope_theta and the scaling inside);
                # older configs (most Hub checkpoints) use `rope_theta` + `rope_scaling`.
                rope_params = d.get("rope_parameters") or {}
                rope_theta = d.get("rope_theta", rope_params.get("rope_theta", 10000.0))
                scaling = d.get("rope_scaling")
                if scaling is None and rope_params:
                    scaling = {k: v for k, v in rope_params.items() if k != "rope_theta"}
                if scaling is not None:
                    kind = scaling.get("rope_type", scaling.get("type", "default"))
                    if kind not in ("llama3", "default"):
                        raise ModelLoadError(f"unsupported rope_scaling type '{kind}' (supported: llama3)")
                    scaling = None if kind == "default" else dict(scaling, rope_type="llama3")
                qkv_bias = mt == "qwen2" or bool(d.get("attention_bias", False))
                return cls(
                    family="llama",
                    vocab_size=d["vocab_size"],
                    emb_dim=d["hidden_size"],
                    n_layers=d["num_hidden_layers"],
                    n_heads=d["num_attention_heads"],
                    n_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
                    context_length=d.get("max_position_embeddings", 2048),
                    hidden_dim=d["intermediate_size"],
                    head_dim=d.get("head_dim") or 0,
                    norm_eps=d.get("rms_norm_eps", 1e-6),
                    rope_theta=float(rope_theta),
                    rope_scaling=scaling,
                    qkv_bias=qkv_bias,
                    out_bias=mt != "qwen2" and bool(d.get("attention_bias", False)),
                    mlp_bias=bool(d.get("mlp_bias", False)),
                    tie_embeddings=bool(d.get("tie_word_embeddings", False)),
                    name=name,
                )
        except KeyError as e:
            raise ModelLoadError(f"config.json of {name or 'model'}: missing field {e}") from None
        raise ModelLoadError(
            f"unsupported architecture '{mt}' in config.json of {name or 'model'} "
            "(supported: gpt2, llama, mistral, qwen2)"
        )
