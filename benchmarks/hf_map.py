"""Our classifier weights -> Hugging Face transformers' *ForSequenceClassification, for the benchmark.

The inverse of our loaders' key maps: a Llama-family `ModelConfig` becomes a `LlamaConfig` and
`LlamaForSequenceClassification`; a GPT-2 one a `GPT2Config` and `GPT2ForSequenceClassification`
(Conv1D weights are (in, out): transposed, and q/k/v fused into c_attn). HF's `score` has no
bias; our head's bias is returned separately so callers can add it where they need identical
logits (prediction parity).
"""

from __future__ import annotations

import torch


def hf_config(cfg, num_labels: int, pad_id: int):
    """A transformers config equivalent to our ModelConfig `cfg`."""
    if cfg.is_gpt2:
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.emb_dim,
            n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.hidden_dim,
            layer_norm_epsilon=cfg.norm_eps, activation_function="gelu_new",
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
            pad_token_id=pad_id, num_labels=num_labels, tie_word_embeddings=True,
        )
    from transformers import LlamaConfig

    if cfg.rope_scaling:
        rope = dict(cfg.rope_scaling, rope_theta=cfg.rope_theta)
    else:
        rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    return LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.emb_dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
        max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
        rope_parameters=rope, attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias,
        attention_dropout=0.0, tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=pad_id, num_labels=num_labels,
    )


def to_hf_state_dict(cfg, sd: dict[str, torch.Tensor], head_weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Our decoder state dict (names of docs/architecture.md) + head weight -> HF names."""
    out: dict[str, torch.Tensor] = {}
    n = cfg.n_layers
    if cfg.is_gpt2:
        out["transformer.wte.weight"] = sd["tok_emb.weight"]
        out["transformer.wpe.weight"] = sd["pos_emb.weight"]
        for i in range(n):
            p, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
                out[h + theirs + ".weight"] = sd[p + ours + ".weight"]
                out[h + theirs + ".bias"] = sd[p + ours + ".bias"]
            qkv = [sd[p + f"attn.{x}_proj.weight"] for x in "qkv"]
            out[h + "attn.c_attn.weight"] = torch.cat(qkv, 0).t().contiguous()  # Conv1D: (in, out)
            out[h + "attn.c_attn.bias"] = torch.cat([sd[p + f"attn.{x}_proj.bias"] for x in "qkv"])
            out[h + "attn.c_proj.weight"] = sd[p + "attn.o_proj.weight"].t().contiguous()
            out[h + "attn.c_proj.bias"] = sd[p + "attn.o_proj.bias"]
            out[h + "mlp.c_fc.weight"] = sd[p + "mlp.up_proj.weight"].t().contiguous()
            out[h + "mlp.c_fc.bias"] = sd[p + "mlp.up_proj.bias"]
            out[h + "mlp.c_proj.weight"] = sd[p + "mlp.down_proj.weight"].t().contiguous()
            out[h + "mlp.c_proj.bias"] = sd[p + "mlp.down_proj.bias"]
        out["transformer.ln_f.weight"] = sd["final_norm.weight"]
        out["transformer.ln_f.bias"] = sd["final_norm.bias"]
    else:
        out["model.embed_tokens.weight"] = sd["tok_emb.weight"]
        for i in range(n):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            out[h + "input_layernorm.weight"] = sd[p + "norm1.weight"]
            out[h + "post_attention_layernorm.weight"] = sd[p + "norm2.weight"]
            for x in ("q", "k", "v", "o"):
                for suf in ("weight", "bias"):
                    if p + f"attn.{x}_proj.{suf}" in sd:
                        out[h + f"self_attn.{x}_proj.{suf}"] = sd[p + f"attn.{x}_proj.{suf}"]
            for x in ("gate", "up", "down"):
                for suf in ("weight", "bias"):
                    if p + f"mlp.{x}_proj.{suf}" in sd:
                        out[h + f"mlp.{x}_proj.{suf}"] = sd[p + f"mlp.{x}_proj.{suf}"]
        out["model.norm.weight"] = sd["final_norm.weight"]
        if "lm_head.weight" in sd:
            pass  # a sequence classifier has no vocabulary head
    out["score.weight"] = head_weight
    return out


def build_hf_classifier(cfg, sd: dict[str, torch.Tensor], head_weight: torch.Tensor, num_labels: int, pad_id: int):
    """LlamaForSequenceClassification / GPT2ForSequenceClassification (SDPA attention) with
    our weights; every tensor checked (strict load)."""
    from transformers import AutoModelForSequenceClassification

    hcfg = hf_config(cfg, num_labels, pad_id)
    model = AutoModelForSequenceClassification.from_config(hcfg, attn_implementation="sdpa")
    mapped = to_hf_state_dict(cfg, sd, head_weight)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    # Non-persistent buffers (GPT-2's causal mask) are not in the state dict; nothing else may be missing.
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias", "rotary_emb.inv_freq"))]
    if missing or unexpected:
        raise RuntimeError(f"HF mapping: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


def hf_trainable(model) -> list[torch.nn.Parameter]:
    """Freeze all but the last block + final norm + score (our `last-block` strategy)."""
    for p in model.parameters():
        p.requires_grad_(False)
    base = model.base_model
    if hasattr(base, "layers"):  # llama
        parts = [base.layers[-1], base.norm, model.score]
    else:  # gpt2
        parts = [base.h[-1], base.ln_f, model.score]
    params = []
    for m in parts:
        for p in m.parameters():
            p.requires_grad_(True)
            params.append(p)
    return params
