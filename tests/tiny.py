"""Shared test helpers: tiny random Hugging Face models and tokenizers saved as model dirs.

Every builder is seeded and takes well under a second on a CPU: 2 layers, 32 dims, a
257-token vocabulary (256 bytes + one special token). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY = dict(layers=2, dim=32, heads=4, kv_heads=2, ffn=64, ctx=64)


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def tiny_gpt2_hf(tmp_path: Path, vocab: int = 257, seed: int = 0, tokenizer: bool = False,
                 **save_kw):
    """A tiny random GPT2LMHeadModel saved (safetensors) under tmp_path/'gpt2'; (dir, model).

    save_kw goes to `save_pretrained` (e.g. max_shard_size="20KB" for a sharded checkpoint).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    _seeded(seed)
    cfg = GPT2Config(
        vocab_size=vocab, n_embd=TINY["dim"], n_layer=TINY["layers"], n_head=TINY["heads"],
        n_positions=TINY["ctx"], bos_token_id=vocab - 1, eos_token_id=vocab - 1,
    )
    model = GPT2LMHeadModel(cfg).eval()
    _randomize_norms(model)
    out = Path(tmp_path) / "gpt2"
    model.save_pretrained(out, safe_serialization=True, **save_kw)
    if tokenizer:
        write_byte_tokenizer(out, vocab)
    return out, model


def tiny_llama_hf(tmp_path: Path, qwen: bool = False, gqa: bool = True, vocab: int = 257,
                  seed: int = 0, rope_scaling: dict | None = None, tie: bool = False,
                  rope_theta: float = 10000.0, head_dim: int | None = None,
                  tokenizer: bool = False, **save_kw):
    """A tiny random LlamaForCausalLM (or Qwen2ForCausalLM with q/k/v bias when `qwen`).

    gqa: 4 query heads over 2 K/V heads (else 4/4). rope_scaling: e.g. Llama-3's dict.
    head_dim: per-head width other than dim // heads (as in some Qwen/Gemma configs).
    Saved under tmp_path/'llama' (or 'qwen2'); returns (dir, model).
    """
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    _seeded(seed)
    kw = dict(
        vocab_size=vocab, hidden_size=TINY["dim"], intermediate_size=TINY["ffn"],
        num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"],
        num_key_value_heads=TINY["kv_heads"] if gqa else TINY["heads"],
        max_position_embeddings=TINY["ctx"], rms_norm_eps=1e-6, rope_theta=rope_theta,
        tie_word_embeddings=tie, bos_token_id=vocab - 1, eos_token_id=vocab - 1,
    )
    if rope_scaling is not None:
        kw["rope_scaling"] = rope_scaling
    if head_dim is not None:
        kw["head_dim"] = head_dim
    if qwen:
        model = Qwen2ForCausalLM(Qwen2Config(**kw)).eval()
        # Random init zeroes biases; make them nonzero so the parity test sees them.
        with torch.no_grad():
            for layer in model.model.layers:
                for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    p.bias.normal_(std=0.1)
    else:
        model = LlamaForCausalLM(LlamaConfig(**kw)).eval()
    _randomize_norms(model)
    out = Path(tmp_path) / ("qwen2" if qwen else "llama")
    model.save_pretrained(out, safe_serialization=True, **save_kw)
    if tokenizer:
        write_byte_tokenizer(out, vocab)
    return out, model


def _randomize_norms(model) -> None:
    """Norm weights init to 1 and biases to 0; perturb them so a mapping mistake shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)


def write_byte_tokenizer(out: Path, vocab: int = 257) -> Path:
    """Write a byte-level BPE tokenizer.json (256 byte tokens, no merges, + '<|endoftext|>').

    With vocab=257 the special token is id 256, matching the tiny models' eos/bos id.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    assert len(alphabet) == 256
    byte_vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    assert tok.get_vocab_size() <= vocab
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        '{"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}\n'
    )
    return out / "tokenizer.json"


def padded_batch(seqs: list[list[int]], pad_id: int = 0, side: str = "right"):
    """(input_ids, attention_mask) LongTensors, padded to the longest on `side`."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(T - len(s), T)
        ids[i, sl] = torch.tensor(s)
        mask[i, sl] = 1
    return ids, mask
