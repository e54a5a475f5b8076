"""The one trunk pass: pooled vectors per layer (for probes) and boundary states (for the
fine-tuned top), both read from a single forward pass over every text.

A text's hidden states after block `l` (layer `l`, 1-based; HF's ``hidden_states[l]``) are put
through the model's final norm, as the last layer's are before the classifier reads them,
then pooled two ways over the REAL tokens (from the attention mask): ``mean`` and ``last``.
Those pooled vectors, for the layers in `layers`, are what probe recipes read: a few KiB per
text whatever its length, stored in float16 (spilled to a memory-mapped file over a budget),
so 100,000 texts cost about 100,000 x layers x 2 x D x 2 bytes (2.2 GB for 10 layers of a
576-wide model). Per-token states are kept only at the fine-tuning `boundary` (the states
entering the first trainable block), in a `TrunkCache`, and only when a recipe asks for them.

The pass stops at the deepest layer anyone reads: a probe on layer 18 of 30 runs 18 blocks.

Long texts: with a `window` of W tokens a text longer than W is cut into consecutive windows
of W tokens, each run as its own sequence (attention cost linear in the text's length, memory
independent of it), and the text's vectors are combined from its windows: `mean` is the mean
over all of its tokens (each window's mean weighted by its token count), `last` is the last
token of its last window. A text of at most W tokens is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .heads import pool
from .inputs import length_batches, pad_batch
from .precision import activation_dtype, calibration_ids, hold_freed_memory, reduced_blocks
from .trunk_cache import TrunkCache, allocate

POOLED = ("mean", "last")
# Padded tokens per batch of the pass. Smaller batches keep a block's activations in cache:
# 1,024 ran 1.14x the tokens per second of 4,096 on SMS texts and 1.08x on 256-token windows
# (bfloat16, 2-core AMD EPYC; 2,048 and 512 in between: benchmarks/results/pass-batch.md).
PASS_TOKENS = 1024


def padded_length(t: int) -> int:
    """A batch of longest text `t` is padded (masked) to this length: eight lengths per octave
    (at most an eighth more tokens; a multiple of 4), so a pass meets a few dozen shapes, not one
    per length, and oneDNN's cache of compiled matmuls (each holding packed weights) stays small:
    one per length grew the default model's pass by about 1 GB over 1,500 long reviews. Four per
    octave (8 at least) padded the book's SMS texts by 11.5%, eight by 5.1%: their pass 1.06x
    faster, memory unchanged on long reviews (benchmarks/results/pass-arith.md, suite-long-21.md)."""
    step = max(4, 1 << max(0, t.bit_length() - 4))
    return -(-t // step) * step


def probe_layers(n_layers: int) -> list[int]:
    """The layers a pass keeps pooled vectors of: about every twelfth of the depth from a
    quarter of the way up, and the last. (Measured on SmolLM2-135M: the best single layers
    sit between 55% and 95% of the depth; the lowest quarter never won.)"""
    step = max(1, round(n_layers / 12))
    start = max(1, round(n_layers / 4))
    layers = set(range(start, n_layers + 1, step)) | {n_layers}
    return sorted(layers)


@dataclass
class PooledFeatures:
    """Pooled vectors of N texts: `data[i, j, p]` is text i, layer `layers[j]`, pooling
    `POOLED[p]`, a (D,) vector."""

    data: torch.Tensor  # (N, L, 2, D) float16
    layers: list[int]
    spill_path: str | None = None

    def __len__(self) -> int:
        return self.data.shape[0]

    def matrix(self, picks: list[tuple[int, str]], rows=None) -> np.ndarray:
        """(N, len(picks) * D) float32: the picked (layer, pooling) vectors side by side."""
        cols = [self.data[:, self.layers.index(layer), POOLED.index(p)] for layer, p in picks]
        x = torch.cat(cols, dim=1) if len(cols) > 1 else cols[0]
        if rows is not None:
            x = x[rows]
        return x.float().numpy()

    def subset(self, rows) -> PooledFeatures:
        return PooledFeatures(self.data[rows], self.layers)

    def close(self) -> None:
        import os

        self.data = torch.empty(0)
        if self.spill_path and os.path.exists(self.spill_path):
            os.unlink(self.spill_path)
            self.spill_path = None


def pooled_layer(decoder, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """States after a block (B, T, D) -> (B, 2, D): final norm, then mean and last pooling."""
    h = decoder.final_norm(x)
    return torch.stack([pool(h, mask, p) for p in POOLED], dim=1)


def split_windows(ids: list[list[int]], window: int | None) -> tuple[list[list[int]], list[int]]:
    """Each text cut into consecutive windows of at most `window` tokens; returns the windows
    and, for each, the index of its text (texts in order, windows in order)."""
    if window is None:
        return ids, list(range(len(ids)))
    pieces, owner = [], []
    for i, x in enumerate(ids):
        for s in range(0, max(len(x), 1), window):
            pieces.append(x[s : s + window])
            owner.append(i)
    return pieces, owner


def combine_windows(pooled: torch.Tensor, counts: torch.Tensor, owner: list[int], n: int) -> torch.Tensor:
    """Per-window vectors (W, ..., 2, D) -> per-text (n, ..., 2, D): the token-weighted mean of
    the windows' means, and the last window's last token."""
    owner_t = torch.tensor(owner, dtype=torch.long)
    if len(owner) == n:  # no text was cut
        return pooled
    out = torch.zeros((n, *pooled.shape[1:]), dtype=torch.float32)
    w = counts.float().view(-1, *([1] * (pooled.dim() - 2)))  # (W, 1, ..., 1)
    out[..., 0, :].index_add_(0, owner_t, pooled[..., 0, :].float() * w)
    total = torch.zeros(n).index_add_(0, owner_t, counts.float())
    out[..., 0, :] /= total.view(-1, *([1] * (pooled.dim() - 2)))
    last = torch.zeros(n, dtype=torch.long).scatter_reduce_(0, owner_t, torch.arange(len(owner)), "amax")
    out[..., 1, :] = pooled[last][..., 1, :].float()
    return out


def pass_depth(layers, boundary: int | None = None) -> int:
    """How many blocks a pass runs: to the deepest layer read, or the boundary kept."""
    return max(list(layers) + ([boundary] if boundary is not None else []), default=0)


@torch.inference_mode()
def trunk_pass(
    decoder,
    ids: list[list[int]],
    pad_id: int,
    *,
    layers: list[int],
    boundary: int | None = None,
    window: int | None = None,
    causal: bool = True,
    dtype: str = "float32",
    cache_dtype: torch.dtype = torch.float32,
    memory_budget: int = 4 << 30,
    spill_dir: str | None = None,
    max_batch: int = 64,
    max_tokens: int = PASS_TOKENS,
    desc: str = "trunk pass",
    progress: bool = True,
    calibration: list[list[int]] | None = None,
    blocks: torch.nn.ModuleList | None = None,
) -> tuple[PooledFeatures, TrunkCache | None]:
    """Run the decoder's blocks once over `ids`, up to the deepest of `layers` and `boundary`.

    Returns the pooled vectors of `layers`, and, when `boundary` is given, the per-token states
    entering block `boundary` (a TrunkCache, real tokens only). `dtype` (float32, bfloat16,
    int8) runs a converted copy of the blocks (precision.reduced_blocks; int8 smoothed on
    `calibration`, token ids, precision.calibration_ids of `ids` when None), or `blocks`, the
    decoder's first blocks converted once by the caller for the passes over several splits;
    pooled vectors are kept in float16, boundary states in `cache_dtype`.
    """
    if window is not None and boundary is not None:
        raise ValueError("per-token boundary states are kept for whole texts only (window None)")
    hold_freed_memory()
    n_texts = len(ids)
    ids, owner = split_windows(ids, window)
    n = len(ids)
    lengths = [len(x) for x in ids]
    d = decoder.cfg.emb_dim
    depth = pass_depth(layers, boundary)
    pooled_data, pooled_spill = allocate(n * len(layers) * 2, d, torch.float16, memory_budget, spill_dir)
    pooled_data = pooled_data.view(n, len(layers), 2, d)
    cache = None
    if boundary is not None:
        offsets = torch.zeros(n + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
        data, spill = allocate(int(offsets[-1]), d, cache_dtype, memory_budget, spill_dir)
        cache = TrunkCache(data, offsets, spill)
    device = next(decoder.parameters()).device
    where = {layer: j for j, layer in enumerate(layers)}
    if blocks is None:
        if dtype == "int8" and calibration is None:
            calibration = calibration_ids(ids)
        blocks = reduced_blocks(decoder, depth, dtype, calibration, causal)
    elif len(blocks) < depth:
        raise ValueError(f"the pass runs {depth} blocks; {len(blocks)} were given")
    bar = tqdm(total=n, desc=desc, unit="window" if n != n_texts else "text", disable=not progress, leave=False)
    # batched by padded length: a batch pads its texts to their own padded length, not the next one
    for b in length_batches([padded_length(t) for t in lengths], max_batch, max_tokens):
        input_ids, mask = pad_batch([ids[i] for i in b], pad_id, side="right")
        extra = padded_length(input_ids.shape[1]) - input_ids.shape[1]
        input_ids = torch.nn.functional.pad(input_ids, (0, extra), value=pad_id).to(device)
        mask = torch.nn.functional.pad(mask, (0, extra), value=0).to(device)
        pos = decoder.positions(mask)
        x = decoder.embed(input_ids, pos).to(activation_dtype(dtype))
        ctx = decoder.context(mask, pos, causal, x.dtype) if depth else None
        for k in range(depth + 1):  # x holds the states entering block k (= after layer k)
            if k == boundary:
                _store_tokens(cache, b, x)
            if k in where:
                pooled_data[b, where[k]] = pooled_layer(decoder, x, mask).to(torch.float16).cpu()
            if k < depth:
                x = blocks[k](x, mask, pos, causal=causal, ctx=ctx)
        bar.update(len(b))
    bar.close()
    if n != n_texts:  # windows -> texts (float16 again: the store's type)
        counts = torch.tensor(lengths, dtype=torch.long)
        combined = combine_windows(pooled_data, counts, owner, n_texts).to(torch.float16)
        if pooled_spill:
            import os

            os.unlink(pooled_spill)
        pooled_data, pooled_spill = allocate(n_texts * len(layers) * 2, d, torch.float16, memory_budget, spill_dir)
        pooled_data = pooled_data.view(n_texts, len(layers), 2, d)
        pooled_data.copy_(combined)
    return PooledFeatures(pooled_data, list(layers), pooled_spill), cache


def _store_tokens(cache: TrunkCache, batch: list[int], x: torch.Tensor) -> None:
    for r, i in enumerate(batch):
        s, e = int(cache.offsets[i]), int(cache.offsets[i + 1])
        cache.data[s:e] = x[r, : e - s].to(cache.data.dtype).cpu()
