"""Our classifier weights -> Hugging Face transformers' *ForSequenceClassification, for the benchmark.

The mapping is `llmclassify export --format hf`'s (llmclassify.export.hf: the loaders' key maps
inverted, GPT-2's Conv1D transposed and q/k/v fused into c_attn), built in memory here: a
Llama-family `ModelConfig` becomes `LlamaForSequenceClassification`, a GPT-2 one
`GPT2ForSequenceClassification`. HF's `score` has no bias; our head's bias stays with the
caller, which adds it where it needs identical logits (prediction parity).
"""

from __future__ import annotations

import torch

from llmclassify.export.hf import hf_config, hf_state_dict


def build_hf_classifier(cfg, sd: dict[str, torch.Tensor], head_weight: torch.Tensor, num_labels: int, pad_id: int):
    """LlamaForSequenceClassification / GPT2ForSequenceClassification (SDPA attention) with
    our weights; every tensor checked (strict load)."""
    from transformers import AutoModelForSequenceClassification

    hcfg = hf_config(cfg, [f"LABEL_{i}" for i in range(num_labels)], pad_id)
    model = AutoModelForSequenceClassification.from_config(hcfg, attn_implementation="sdpa")
    mapped = hf_state_dict(cfg, sd, head_weight)
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
