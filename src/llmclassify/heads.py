"""Pooling from the attention mask, and the classifier = decoder + pooling + Linear head.

Pooling always reads the attention mask, never the pad id: GPT-2 and SmolLM2 pad with their
eos token, so a pad-id test would mistake a real eos for padding. `last` pools the last real
token whichever side the batch was padded on.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import Decoder

POOLINGS = ("last", "first", "mean")


def pool_index(mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Index (B,) of the token that `last` / `first` pooling reads, from a (B, T) 0/1 mask."""
    t = mask.shape[1]
    if pooling == "last":
        # position of the last 1: T-1 minus the first 1 of the reversed mask
        return (t - 1) - mask.flip(-1).argmax(-1)
    if pooling == "first":
        return mask.argmax(-1)
    raise ValueError(f"pooling '{pooling}' has no single index")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, D) hidden states -> (B, D) by `pooling` over real tokens only."""
    if pooling == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    idx = pool_index(mask, pooling)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


class SequenceClassifier(nn.Module):
    """A pretrained decoder whose vocabulary head is replaced by Linear(emb_dim, num_classes)
    (`bias=False`: no bias, as transformers' *ForSequenceClassification `score`)."""

    def __init__(self, decoder: Decoder, num_classes: int, pooling: str = "last", causal: bool = True,
                 bias: bool = True):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}' (choose from {', '.join(POOLINGS)})")
        self.decoder = decoder
        self.pooling = pooling
        self.causal = causal
        self.head = nn.Linear(decoder.cfg.emb_dim, num_classes, bias=bias)

    @property
    def n_layers(self) -> int:
        return len(self.decoder.blocks)

    # Blocks [0, reduced_blocks) run in their own (reduced) precision and the rest in float32: a
    # run whose top was trained on a bfloat16 / int8 trunk cache predicts in the same arithmetic.
    reduced_blocks: int = 0

    def trunk(self, input_ids: torch.Tensor, mask: torch.Tensor, end: int) -> torch.Tensor:
        """Hidden states entering block `end` (B, T, D): the part a frozen-trunk cache stores."""
        pos = Decoder.positions(mask)
        x = self.decoder.embed(input_ids, pos)
        if end:
            x = self.decoder.to_block_dtype(x, 0)
        return self.decoder.run_blocks(x, mask, pos, start=0, end=end, causal=self.causal)

    def top(self, x: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Blocks [start, n) + final norm + pooling + head on boundary states x -> logits (B, C).

        With single-token pooling the last block computes its query, attention output and MLP
        at the pooled position only (keys and values still come from every position): the
        same logits as the full block at a fraction of its cost.
        """
        pos = Decoder.positions(mask)
        n = self.n_layers
        single = self.pooling != "mean"
        last_full = n - 1 if single else n
        if start < last_full:
            x = self.decoder.run_blocks(x, mask, pos, start=start, end=last_full, causal=self.causal)
        if single and start < n:
            idx = pool_index(mask, self.pooling)
            x = self.decoder.blocks[n - 1](x, mask, pos, causal=self.causal, query_index=idx)  # (B, 1, D)
            pooled = self.decoder.final_norm(x[:, 0])
        else:
            pooled = pool(self.decoder.final_norm(x), mask, self.pooling)
        return self.head(pooled)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        k = self.reduced_blocks
        x = self.trunk(input_ids, attention_mask, end=k)
        if k:  # into the arithmetic of what runs next
            x = self.decoder.to_block_dtype(x, k)
        return self.top(x, attention_mask, start=k)
