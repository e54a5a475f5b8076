"""Decoder: the one transformer trunk, switched by `ModelConfig`, from token ids to hidden states.

Two families share every line that they can:

- ``gpt2``: LayerNorm, tanh-GELU MLP (``up_proj`` -> ``down_proj``), learned positions.
- ``llama`` (SmolLM2, Llama 3.x, Qwen2, Mistral): RMSNorm computed in float32, SwiGLU MLP,
  rotary positions in Hugging Face's ``rotate_half`` layout (with optional Llama-3 frequency
  scaling), grouped key/value heads, optional q/k/v bias.

Positions come from the attention mask (``cumsum - 1``), and attention uses ONE boolean mask
(causal AND key padding), so a text gets the same hidden states alone or inside a left- or
right-padded batch. The model never reads files: loaders hand it a state dict in our names
(docs/architecture.md) for ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

# --------------------------------------------------------------------------------------------
# Normalisation, rotary positions, masks
# --------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """Llama's RMSNorm: normalise, then scale. In float32 as Hugging Face does; in a reduced
    precision the mean square is taken in float32 (one reduction, no float32 copy of x) and x is
    scaled in its own dtype: the bfloat16 trunk pass ran 1.06x faster than with HF's float32
    copy, its pooled vectors 0.0136 from a float32 pass's against 0.0125 (relative distance;
    benchmarks/results/pass-arith.md)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (F.rms_norm is not faster here: on CPU it decomposes into more passes than this.)
        if x.dtype == torch.float32:
            return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
        inv_rms = torch.rsqrt(norm.square_().div_(x.shape[-1]).add_(self.eps))
        return x * inv_rms.to(x.dtype) * self.weight


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """Rotary inverse frequencies (head_dim // 2,) in float32, Llama-3 scaled if configured.

    Same arithmetic as transformers' `_compute_default_rope_parameters` and
    `_compute_llama3_parameters`, so logits match Hugging Face exactly.
    """
    dim, base = cfg.head_dim, cfg.rope_theta
    # on the CPU even while a module is built on the meta device (Decoder.from_state_dict)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim))
    sc = cfg.rope_scaling
    if not sc or sc.get("rope_type", "llama3") != "llama3":
        return inv_freq
    factor = sc["factor"]
    low, high = sc["low_freq_factor"], sc["high_freq_factor"]
    old_ctx = sc["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths (low frequencies) are slowed down by `factor`, short ones kept, and the
    # band in between interpolated smoothly.
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def attention_mask_bool(
    mask: torch.Tensor, causal: bool = True, query_index: torch.Tensor | None = None
) -> torch.Tensor:
    """The one boolean attention mask for SDPA: True = may attend.

    mask: (B, T) key padding mask (1 = real token). Returns (B, 1, Tq, T) with Tq = T, or
    Tq = 1 when `query_index` (B,) picks one query position per row. Each query may always
    attend to itself, so padded query rows are never fully masked (that would give NaN);
    real rows are unaffected because a real token is never masked from itself anyway.
    """
    B, T = mask.shape
    keys = mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    k_idx = torch.arange(T, device=mask.device)
    if query_index is None:
        q_idx = k_idx[None, :, None]  # (1, T, 1)
    else:
        q_idx = query_index.to(mask.device)[:, None, None]  # (B, 1, 1)
    allowed = keys
    if causal:
        allowed = allowed & (k_idx[None, None, :] <= q_idx)[:, None]  # (B|1, 1, Tq, T)
    allowed = allowed | (k_idx[None, None, :] == q_idx)[:, None]
    return allowed.expand(B, 1, allowed.shape[2], T)


# Attention as two matmuls and a float32 softmax where that beats the CPU's fused kernel:
# in bfloat16 on the CPU, F.scaled_dot_product_attention ran 2.2-3.1x slower than this at 32 to
# 256 tokens (benchmarks/results/attention.md); in float32 and on GPUs the fused kernel is the
# faster one, and past this many tokens the (B, H, T, T) scores it never holds grow too large.
MATMUL_ATTENTION_MAX_TOKENS = 512


def uses_matmul_attention(device: torch.device, dtype: torch.dtype, n_tokens: int) -> bool:
    """Whether attention over `n_tokens` runs as `matmul_attention` (else SDPA's kernel)."""
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.float16) and n_tokens <= MATMUL_ATTENTION_MAX_TOKENS


def attention_bias(allowed: torch.Tensor) -> torch.Tensor:
    """The boolean mask (B, 1, T, T) as `matmul_attention` adds it: 0 / -inf, float32,
    (B, 1, 1, T, T) to broadcast over K/V heads and the query heads that share each."""
    return torch.zeros(allowed.shape, device=allowed.device).masked_fill_(~allowed, float("-inf"))[:, :, None]


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """SDPA's output from two matmuls: q (B, H, T, hd); k, v (B, Hkv, T, hd), query head h
    reading K/V head h // (H // Hkv) as with enable_gqa; bias from `attention_bias`. The scores
    and softmax are float32, the matmuls in q's dtype."""
    B, H, T, hd = q.shape
    n_kv = k.shape[1]
    group = H // n_kv
    scores = torch.matmul(q.reshape(B, n_kv, group * T, hd), k.transpose(-1, -2)).view(B, n_kv, group, T, T)
    p = torch.softmax(scores.float().mul_(hd**-0.5).add_(bias), dim=-1).to(q.dtype)
    return torch.matmul(p.view(B, n_kv, group * T, T), v).view(B, H, T, hd)


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention with grouped K/V heads and (llama) rotary positions."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.rotary = not cfg.is_gpt2
        d, q, kv = cfg.emb_dim, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        self.q_proj = nn.Linear(d, q, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(d, kv, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(d, kv, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(q, d, bias=cfg.out_bias)
        # Not a buffer: `.to(bfloat16)` would round the frequencies. Kept float32, moved to
        # the input's device on use.
        self._inv_freq = rope_inv_freq(cfg) if self.rotary else None

    def rope_cos_sin(self, pos: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos (B, 1, T, hd) and half-dim sin (B, 1, T, hd/2) for positions pos (B, T);
        angles in float32 like HF."""
        inv = self._inv_freq.to(pos.device)
        freqs = pos.float()[..., None] * inv  # (B, T, hd/2)
        cos = torch.cat((freqs, freqs), dim=-1)[:, None].cos()  # (B, 1, T, hd)
        return cos.to(dtype), freqs[:, None].sin().to(dtype)

    def fuse_projections(self) -> None:
        """q, k and v as one Linear, `qkv_proj` (their weights stacked; the three go): one matmul
        over the input instead of three. For blocks that only run forward, converted for the
        trunk pass (precision.reduce_in_place); the state dict's names change."""
        self.qkv_proj = stacked_linear((self.q_proj, self.k_proj, self.v_proj))
        del self.q_proj, self.k_proj, self.v_proj

    def _project(self, x: torch.Tensor, xq: torch.Tensor, rows: torch.Tensor, query_index: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q of `xq`, k and v of `x`, each (B, T, heads * hd)."""
        if not hasattr(self, "qkv_proj"):
            return self.q_proj(xq), self.k_proj(x), self.v_proj(x)
        kv = self.n_kv_heads * self.head_dim
        q, k, v = self.qkv_proj(x).split([self.n_heads * self.head_dim, kv, kv], dim=-1)
        if query_index is not None:  # q at every position, then the queried one's (fused blocks are not the top's)
            q = q[rows, query_index][:, None]
        return q, k, v

    @staticmethod
    def _rope(x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x * cos + rotate_half(x) * sin, written on the two halves in place: no concatenated
        copy of x (this ran 2.5x faster on the CPU, equal to 1e-6)."""
        cos, sin = cos_sin
        h = x.shape[-1] // 2
        out = x * cos
        out[..., :h].addcmul_(x[..., h:], sin, value=-1.0)  # first half: - x2 * sin
        out[..., h:].addcmul_(x[..., :h], sin)  # second half: + x1 * sin
        return out

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        causal: bool = True,
        query_index: torch.Tensor | None = None,
        ctx: dict | None = None,
    ) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D), or (B, 1, D) at `query_index` (B,) when given.

        `ctx` (from `Decoder.context`) carries the attention mask and rotary cos/sin shared by
        every block of one forward pass, so they are built once rather than once per block.
        """
        B, T, _ = x.shape
        hd = self.head_dim
        rows = torch.arange(B, device=x.device)
        if query_index is None:
            xq, qpos = x, pos
        else:
            xq = x[rows, query_index][:, None]  # (B, 1, D)
            qpos = pos[rows, query_index][:, None]  # (B, 1)
        q, k, v = self._project(x, xq, rows, query_index)
        Tq = q.shape[1]
        q = q.reshape(B, Tq, self.n_heads, hd).transpose(1, 2)  # (B, H, Tq, hd)
        k = k.reshape(B, T, self.n_kv_heads, hd).transpose(1, 2)  # (B, Hkv, T, hd)
        v = v.reshape(B, T, self.n_kv_heads, hd).transpose(1, 2)  # (B, Hkv, T, hd)
        shared = ctx is not None and query_index is None
        if self.rotary:
            k_cs = ctx["cos_sin"] if ctx is not None else self.rope_cos_sin(pos, x.dtype)
            q_cs = k_cs if query_index is None else self.rope_cos_sin(qpos, x.dtype)
            q, k = self._rope(q, q_cs), self._rope(k, k_cs)
        if shared and "bias" in ctx and uses_matmul_attention(q.device, q.dtype, T):
            out = matmul_attention(q, k, v, ctx["bias"])  # (B, H, T, hd)
        else:
            attn_mask = ctx["mask"] if shared else attention_mask_bool(mask, causal, query_index)  # (B, 1, Tq, T)
            # Query head h uses K/V head h // groups (Hugging Face's repeat_kv layout); SDPA's
            # enable_gqa does that without copying K and V (checked exact against repeat_interleave).
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, enable_gqa=self.n_kv_heads != self.n_heads
            )  # (B, H, Tq, hd)
        out = out.transpose(1, 2).reshape(B, Tq, self.n_heads * hd)  # (B, Tq, H*hd)
        return self.o_proj(out)


class MLP(nn.Module):
    """gpt2: down(gelu_tanh(up(x))); llama: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gated = not cfg.is_gpt2
        if self.gated:
            self.gate_proj = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.hidden_dim, cfg.emb_dim, bias=cfg.mlp_bias)

    def fuse_projections(self) -> None:
        """llama: gate and up as one Linear, `gate_up_proj` (as Attention.fuse_projections)."""
        if self.gated:
            self.gate_up_proj = stacked_linear((self.gate_proj, self.up_proj))
            del self.gate_proj, self.up_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.gated:
            return self.down_proj(F.gelu(self.up_proj(x), approximate="tanh"))
        if hasattr(self, "gate_up_proj"):
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


def stacked_linear(parts: tuple[nn.Linear, ...]) -> nn.Linear:
    """One Linear computing `parts` (Linears reading the same input) side by side: weights (and
    biases) stacked, in their dtype and device. On the bfloat16 trunk pass of the default model,
    q/k/v and gate/up stacked ran the pass 1.07x faster alone and 1.05x inside whole train runs
    (medians; the same test figures: benchmarks/results/pass-fused.md)."""
    first = parts[0]
    out = nn.Linear(first.in_features, sum(p.out_features for p in parts), bias=first.bias is not None,
                    device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(torch.cat([p.weight for p in parts]))
        if first.bias is not None:
            out.bias.copy_(torch.cat([p.bias for p in parts]))
    return out.requires_grad_(first.weight.requires_grad)


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.is_gpt2:
        return nn.LayerNorm(cfg.emb_dim, eps=cfg.norm_eps)
    return RMSNorm(cfg.emb_dim, eps=cfg.norm_eps)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(.))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1 = make_norm(cfg)
        self.attn = Attention(cfg)
        self.norm2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        causal: bool = True,
        query_index: torch.Tensor | None = None,
        ctx: dict | None = None,
    ) -> torch.Tensor:
        """x (B, T, D), mask (B, T), pos (B, T) -> (B, T, D).

        With `query_index` (B,) long: keys and values still come from every position, but the
        query, residual and MLP are computed only at that one position per row -> (B, 1, D).
        Equal to the full output gathered at those positions, for less work.
        """
        h = self.norm1(x)
        if query_index is not None:
            rows = torch.arange(x.shape[0], device=x.device)
            x = x[rows, query_index][:, None]  # (B, 1, D): the residual stream we keep
        x = x + self.attn(h, mask, pos, causal=causal, query_index=query_index, ctx=ctx)
        return x + self.mlp(self.norm2(x))

    def fuse_projections(self) -> None:
        """The projections that read one input as one matmul each (Attention's, MLP's)."""
        self.attn.fuse_projections()
        self.mlp.fuse_projections()


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------


class Decoder(nn.Module):
    """Token ids + attention mask -> hidden states (B, T, D) with the final norm applied.

    Parameter names are the state-dict contract in docs/architecture.md.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        if cfg.is_gpt2:
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = make_norm(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)

    @classmethod
    def from_state_dict(cls, cfg: ModelConfig, state_dict: dict) -> Decoder:
        """A decoder that holds `state_dict`'s tensors (float32) themselves: built on the meta
        device and assigned, so the weights exist once, not twice, and no random init is spent
        on them (the default model: peak while loading 1,277 -> 543 MiB).

        The blocks' tensors stay as loaded (a memory map of the weights cache, for the default
        model); the rest (embeddings, final norm) is copied, so that once a probe-only run has
        converted its blocks to bfloat16 nothing holds the map and its pages are released."""
        with torch.device("meta"):
            dec = cls(cfg)
        weights = {k: v.to(torch.float32, copy=not k.startswith("blocks.")) if v.is_floating_point() else v
                   for k, v in state_dict.items()}
        dec.load_state_dict(weights, strict=True, assign=True)
        return dec

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # GPT-2 style init: only matters for random models (tests); real weights are loaded.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @staticmethod
    def positions(mask: torch.Tensor) -> torch.Tensor:
        """(B, T) mask -> (B, T) long positions: cumsum - 1, clamped at 0.

        Left padding then does not shift the real tokens' positions.
        """
        return (mask.long().cumsum(-1) - 1).clamp(min=0)

    def embed(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """ids (B, T), pos (B, T) -> (B, T, D): token (+ learned position for gpt2) embeddings."""
        x = self.tok_emb(ids)
        if self.cfg.is_gpt2:
            x = x + self.pos_emb(pos)
        return x

    def to_block_dtype(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """`x` in the arithmetic of block k (k = number of blocks: the final norm). Blocks may
        run reduced (bfloat16 / int8 below a float32 top, precision.py): states crossing from
        one to the next are cast here, the one place that decides it."""
        nxt = self.blocks[k].norm1 if k < len(self.blocks) else self.final_norm
        return x.to(nxt.weight.dtype)

    def run_blocks(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        start: int = 0,
        end: int | None = None,
        causal: bool = True,
    ) -> torch.Tensor:
        """Run blocks [start, end) on x (B, T, D); no final norm."""
        blocks = self.blocks[start:end]
        if len(blocks) == 0:
            return x
        ctx = self.context(mask, pos, causal, x.dtype)
        for block in blocks:
            x = block(x, mask, pos, causal=causal, ctx=ctx)
        return x

    def context(self, mask: torch.Tensor, pos: torch.Tensor, causal: bool, dtype: torch.dtype) -> dict:
        """What every block of one pass shares: the boolean attention mask (and its additive form
        where blocks in `dtype` attend by `matmul_attention`) and rotary cos/sin."""
        ctx = {"mask": attention_mask_bool(mask, causal)}
        if uses_matmul_attention(mask.device, dtype, mask.shape[1]):
            ctx["bias"] = attention_bias(ctx["mask"])
        if not self.cfg.is_gpt2:
            ctx["cos_sin"] = self.blocks[0].attn.rope_cos_sin(pos, dtype)
        return ctx

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, D) -> vocabulary logits (B, T, V); tied to tok_emb unless lm_head."""
        if hasattr(self, "lm_head"):
            return self.lm_head(h)
        return F.linear(h, self.tok_emb.weight)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        causal: bool = True,
    ) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) or None (all real) -> (B, T, D)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pos = self.positions(attention_mask)
        x = self.embed(input_ids, pos)
        x = self.run_blocks(x, attention_mask, pos, causal=causal)
        return self.final_norm(x)
