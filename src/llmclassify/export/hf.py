"""`llmclassify export RUN --format hf`: a directory plain transformers loads, no custom code.

    model = AutoModelForSequenceClassification.from_pretrained(DIR)   # Llama- or GPT2ForSequenceClassification
    tokenizer = AutoTokenizer.from_pretrained(DIR)
    pipeline("text-classification", model=DIR)(texts, truncation=True)

transformers' *ForSequenceClassification computes: the decoder with positions 0..n-1 from the
left edge and a causal mask, its final norm, a bias-free `score` Linear, the logits of the
rightmost token that is not the pad token; the pipeline applies softmax. A run is exported
only where that is what it predicts (`check_expressible`); where it is not, one line says why
and what would work. What is made expressible without changing a prediction:

- temperature: the score weight is divided by it (softmax(W h / T) = softmax((W / T) h)).
- the head's bias, GPT-2: folded into the final LayerNorm's bias. logits = W (g * x_hat + beta) + b
  and W (beta + d) = W beta + b for d = pinv(W) b whenever W (C x D, C <= D) has full row rank:
  exact. A Llama-family final norm is an RMSNorm without a bias, and after it nothing but the
  bias-free score remains, so there the run must be trained with --no-head-bias.
- LoRA: merged into the weights (Classifier.load does).
- Llama-family attention biases: LlamaConfig's `attention_bias` gives q, k, v and o a bias; the
  ones the run's model has not (Qwen2 has q/k/v only) are written as zeros.
- BOS: the tokenizer's post-processor adds it when the run's tokenizer does; the run's max
  length is the tokenizer's model_max_length (pass truncation=True); padding on the right,
  because transformers counts positions from the left edge (llmclassify counts real tokens).

One difference is left, and said in the model card: transformers finds the pooled token by the
pad id, llmclassify by the attention mask, so a text whose last token IS the pad token (pad = eos
for GPT-2 and SmolLM2: a text ending in a literal '<|endoftext|>') is pooled one token earlier.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import ModelConfig
from ..errors import UserError
from ..loaders.hf import KEY_MAPS, WEIGHTS

CARD = "README.md"
ARCHITECTURES = {"gpt2": "GPT2ForSequenceClassification", "llama": "LlamaForSequenceClassification"}
PREFIX = {"gpt2": "transformer.", "llama": "model."}


# --- what the class can express -----------------------------------------------------------------
def check_expressible(spec) -> None:
    """One line naming why transformers' *ForSequenceClassification cannot predict as this run
    does, and what would work; nothing when it can."""
    why = _inexpressible(spec)
    if why:
        raise UserError(f"export --format hf: {why}")


def _inexpressible(spec) -> str | None:
    family = spec.model_config.get("family")
    onnx = "use --format onnx"
    if spec.recipe == "probe":
        layers = "+".join(str(layer) for layer, _ in spec.probe)
        return (f"this run is a probe on layer {layers} (recipe probe); *ForSequenceClassification reads the "
                f"last layer's last token: {onnx}, or train with --recipe finetune")
    if spec.recipe == "hybrid":
        return ("this run averages a probe with a TF-IDF model (recipe hybrid), which transformers cannot "
                "run: train with --recipe finetune")
    if spec.multi_label:
        return f"multi-label runs decide with per-label thresholds, which the pipeline does not apply: {onnx}"
    if spec.pooling != "last":
        return (f"the head reads pooling '{spec.pooling}'; *ForSequenceClassification reads the last token: "
                f"train with --pooling last, or {onnx}")
    if spec.template is not None:
        return f"the run applies a prompt template, which AutoTokenizer cannot: {onnx}, or train without --template"
    if spec.truncate != "head":
        return (f"the run keeps the head and tail of long texts (--long-texts {spec.truncate}); AutoTokenizer keeps "
                f"the head: {onnx}")
    if not spec.causal:
        return f"the run was trained without the causal mask; transformers' decoders are causal: {onnx}"
    if spec.pad_to is not None:
        return (f"the run reads visible pad tokens (--padding {spec.padding}), which *ForSequenceClassification "
                f"skips: train with --padding batch, or {onnx}")
    if spec.threshold is not None:
        return (f"the run decides with a tuned threshold ({spec.threshold:g}); the pipeline decides by argmax: "
                f"{onnx}, or train without --tune-threshold")
    if family not in ARCHITECTURES:
        return f"no transformers class for model family '{family}'"
    if family == "llama" and spec.head_bias:
        return ("the head has a bias, which LlamaForSequenceClassification cannot hold (its score has none and "
                f"follows an RMSNorm, which has no bias to fold it into): train with --no-head-bias, or {onnx}")
    return None


def check_requirements() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise UserError("export --format hf needs transformers: pip install 'llmclassify[export]'") from None


# --- our names -> transformers' names (the loaders' key maps, inverted) -----------------------------
def _inverse(transform: str, parts: list):
    """The inverse of loaders.hf.TRANSFORMS[transform]: our tensor(s) -> the HF tensor."""
    import torch

    if transform == "copy":
        return parts[0]
    if transform == "conv1d":  # nn.Linear (out, in) -> GPT-2 Conv1D (in, out)
        return parts[0].t().contiguous()
    if transform == "split3":
        return torch.cat(parts, 0)
    if transform == "conv1d_split3":
        return torch.cat(parts, 0).t().contiguous()
    raise ValueError(f"no inverse for transform '{transform}'")


def hf_state_dict(cfg: ModelConfig, sd: dict, score_weight) -> dict:
    """Our decoder's state dict (docs/architecture.md names) + the score weight -> the tensors of
    transformers' *ForSequenceClassification, every name checked against `hf_config(cfg)`."""
    import torch

    out = {}
    for pattern, (targets, transform) in KEY_MAPS[cfg.family].items():
        if pattern == "lm_head.weight":
            continue  # a sequence classifier has no vocabulary head
        for i in range(cfg.n_layers) if "{}" in pattern else [None]:
            ours = [t.replace("{}", str(i)) for t in targets]
            if all(n in sd for n in ours):
                out[PREFIX[cfg.family] + pattern.replace("{}", str(i))] = _inverse(transform, [sd[n] for n in ours])
    if cfg.family == "llama":  # attention_bias covers q, k, v and o: the missing ones are zero
        for i in range(cfg.n_layers) if (cfg.qkv_bias or cfg.out_bias) else []:
            for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
                name = f"model.layers.{i}.self_attn.{p}"
                if name + ".bias" not in out:
                    out[name + ".bias"] = torch.zeros(out[name + ".weight"].shape[0])
    out["score.weight"] = score_weight
    return out


def hf_config(cfg: ModelConfig, labels: list[str], pad_id: int, bos_id: int | None = None,
              eos_id: int | None = None):
    """The transformers config of a sequence classifier over our ModelConfig `cfg` (no dropout,
    as our decoder has none)."""
    common = dict(pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id, num_labels=len(labels),
                  id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                  problem_type="single_label_classification", architectures=[ARCHITECTURES[cfg.family]])
    if cfg.is_gpt2:
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.emb_dim, n_layer=cfg.n_layers,
            n_head=cfg.n_heads, n_inner=cfg.hidden_dim, layer_norm_epsilon=cfg.norm_eps,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            summary_first_dropout=0.0, tie_word_embeddings=True, **common)
    from transformers import LlamaConfig

    # rope_theta + rope_scaling: read by transformers 4.x, converted to rope_parameters by 5.x
    return LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.emb_dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta, rope_scaling=cfg.rope_scaling, attention_bias=cfg.qkv_bias or cfg.out_bias,
        mlp_bias=cfg.mlp_bias, attention_dropout=0.0, tie_word_embeddings=cfg.tie_embeddings, **common)


def _score(clf) -> tuple:
    """(score weight for transformers, the decoder's state dict) with the run's temperature
    and, for GPT-2, its head bias folded in (see the module docstring)."""
    import torch

    model, t = clf.model, clf.temperature
    sd = {k.removeprefix("decoder."): v.detach().float() for k, v in model.state_dict().items()
          if k.startswith("decoder.")}
    weight = model.head.weight.detach().float()
    if model.head.bias is not None:  # GPT-2 only (check_expressible)
        bias = model.head.bias.detach().double()
        shift = torch.linalg.pinv(weight.double()) @ bias  # (D,): W shift = b
        if float((weight.double() @ shift - bias).abs().max()) > 1e-6 * (1 + float(bias.abs().max())):
            raise UserError("export --format hf: the head's bias cannot be folded into the final norm (its weight "
                            "rows are dependent): train with --no-head-bias, or use --format onnx")
        sd["final_norm.bias"] = (sd["final_norm.bias"].double() + shift).float()
    return weight / t, sd


# --- writing ------------------------------------------------------------------------------------
def write(clf, out: Path) -> None:
    """config.json, model.safetensors, the tokenizer files and the model card into `out`."""
    from safetensors.torch import save_file

    cfg = ModelConfig.from_dict(clf.spec.model_config)
    tok = clf.tokenizer
    score_weight, sd = _score(clf)
    config = hf_config(cfg, clf.labels, tok.pad_id, tok.bos_id, tok.eos_id)
    config.save_pretrained(out)
    tensors = {k: v.contiguous() for k, v in hf_state_dict(cfg, sd, score_weight).items()}
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    write_tokenizer(tok, clf.max_length, out)
    (out / CARD).write_text(model_card(clf, config.architectures[0]), encoding="utf-8")


def write_tokenizer(tok, max_length: int, out: Path) -> None:
    """tokenizer.json (the run's, with a post-processor adding BOS exactly when the run does),
    tokenizer_config.json and special_tokens_map.json, for AutoTokenizer's generic fast class."""
    from tokenizers import Tokenizer, processors

    t = Tokenizer.from_str(tok.tok.to_str())  # a copy: the run's own stays as it is
    if tok.add_bos:
        bos = tok.token(tok.bos_id)
        t.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                         special_tokens=[(bos, tok.bos_id)])
    else:
        t.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
    t.no_padding()
    t.no_truncation()
    t.save(str(out / "tokenizer.json"))
    special = {k: tok.token(i) for k, i in (("bos_token", tok.bos_id), ("eos_token", tok.eos_id),
                                            ("pad_token", tok.pad_id)) if i is not None}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
              "padding_side": "right", "truncation_side": "right", "clean_up_tokenization_spaces": False, **special}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def model_card(clf, architecture: str) -> str:
    """README.md: what the model is, how to use it, the run's metrics with the TF-IDF baseline
    beside them, and how the run maps onto the transformers class."""
    spec, m = clf.spec, clf.metrics or {}
    base = spec.base_model.get("source", "?")
    splits = m.get("splits") or {}
    baseline = ((m.get("baseline") or {}).get("splits")) or {}
    rows = []
    for s in ("train", "val", "test"):
        if s in splits:
            b = baseline.get(s) or {}
            cells = [splits[s].get("accuracy"), splits[s].get("macro_f1"), splits[s].get("balanced_accuracy"),
                     b.get("accuracy"), b.get("macro_f1")]
            rows.append(f"| {s} | {splits[s].get('n', '')} | " + " | ".join(_pct(x) for x in cells) + " |")
    folded = []
    if spec.temperature != 1.0:
        folded.append(f"the calibrated temperature {spec.temperature:.4f} is divided into the score weights")
    if spec.head_bias:
        folded.append("the head's bias is folded into the final LayerNorm's bias (exact)")
    if spec.lora:
        folded.append("the LoRA adapters are merged into the weights")
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags:
- llmclassify
- text-classification
---

# Text classifier: {", ".join(clf.labels)}

`{architecture}` fine-tuned by llmclassify from base model `{base}`
(recipe {spec.recipe}, trainable {spec.trainable}, last-token pooling), exported with
`llmclassify export --format hf`. Plain transformers, no custom code.

```python
from transformers import pipeline
classify = pipeline("text-classification", model="path/to/this/directory")
classify(["first text", "second text"], truncation=True, top_k=None)
```

Texts longer than {clf.max_length} tokens were cut to {clf.max_length} in training and in
llmclassify's predictions: pass `truncation=True` to do the same. Padding is on the right.

## Metrics

The run's metrics on its own split, with a TF-IDF + logistic regression baseline trained on
the same split beside them{" (validation: out of fold)" if baseline else ""}.

| split | texts | accuracy | macro-F1 | balanced accuracy | baseline accuracy | baseline macro-F1 |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows) if rows else "| (no metrics.json in the run) | | | | | | |"}

## How the run maps onto {architecture}

{_sentence(folded)} Probabilities equal
llmclassify's for the same run (checked on export to 1e-4). One difference: transformers finds
the pooled token by the pad id (`{clf.tokenizer.token(clf.tokenizer.pad_id)}`, id {clf.tokenizer.pad_id}),
llmclassify by the attention mask, so a text that itself ends with that token is pooled one
token earlier here.
"""


def _sentence(parts: list[str]) -> str:
    text = "; ".join(parts) or "weights as trained"
    return text[0].upper() + text[1:] + "."


def _pct(x) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else ""


# --- the check ------------------------------------------------------------------------------------
def verify(clf, out: Path) -> None:
    """Reload `out` with AutoModelForSequenceClassification + AutoTokenizer (every tensor used,
    none missing) and compare its probabilities with the run's on sample texts, batched with
    padding as the pipeline does; a difference over 1e-4 is a bug in the mapping."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from . import sample_texts

    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise in `llmclassify export`
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
    missing, unexpected = list(info["missing_keys"]), list(info["unexpected_keys"])
    if missing or unexpected:
        raise RuntimeError(f"transformers export: missing {missing[:3]}, unexpected {unexpected[:3]}")
    tok = AutoTokenizer.from_pretrained(out)
    texts = sample_texts(clf)
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        got = model.eval()(**enc).logits.float().softmax(-1)
    diff = float((got - clf.predict_proba(texts)).abs().max())
    if diff > 1e-4:
        raise RuntimeError(f"transformers export: probabilities differ from the run's by {diff:.2e} (> 1e-4)")
