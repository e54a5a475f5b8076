"""Frozen-trunk cache: the hidden states entering the first trainable block, computed once.

When only the top blocks (+ final norm + head) train and the frozen blocks have no dropout,
their output for a text never changes, so recomputing it every epoch (as the reference loop
does) is wasted work. We run the frozen trunk once over every text, keep the states of the
*real* tokens only (no padding is stored), concatenated in one (total_tokens, D) tensor, and
training and evaluation then run only the top. Over a memory budget the tensor lives in a
memory-mapped file instead of RAM.
"""

from __future__ import annotations

import os
import tempfile

import torch
from tqdm.auto import tqdm

from .inputs import length_batches, pad_batch


def allocate(total: int, d: int, dtype: torch.dtype, memory_budget: int, spill_dir: str | None):
    """A (total, d) tensor in RAM, or memory-mapped from a temporary file when it would exceed
    `memory_budget` bytes; returns (tensor, spill file path or None)."""
    if total * d * torch.empty((), dtype=dtype).element_size() <= memory_budget:
        return torch.empty(total, d, dtype=dtype), None
    fd, spill_path = tempfile.mkstemp(prefix="trunk-cache-", suffix=".bin", dir=spill_dir)
    os.close(fd)
    # shared=True maps the file; pages go to disk, not to the process's memory
    return torch.from_file(spill_path, shared=True, size=total * d, dtype=dtype).view(total, d), spill_path


class TrunkCache:
    """Boundary hidden states of N texts: rows offsets[i]:offsets[i+1] of `data` are text i."""

    def __init__(self, data: torch.Tensor, offsets: torch.Tensor, spill_path: str | None = None):
        self.data = data  # (total_tokens, D)
        self.offsets = offsets  # (N + 1,) long
        self.spill_path = spill_path

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def lengths(self) -> list[int]:
        return (self.offsets[1:] - self.offsets[:-1]).tolist()

    def batch(self, idx: list[int], dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (B, T, D) states and their (B, T) mask for texts `idx`."""
        starts = self.offsets[idx].tolist()
        ends = self.offsets[[i + 1 for i in idx]].tolist()
        t = max(e - s for s, e in zip(starts, ends))
        x = torch.zeros(len(idx), t, self.data.shape[1], dtype=dtype)
        mask = torch.zeros(len(idx), t, dtype=torch.long)
        for r, (s, e) in enumerate(zip(starts, ends)):
            x[r, : e - s] = self.data[s:e]
            mask[r, : e - s] = 1
        return x, mask

    @classmethod
    @torch.inference_mode()
    def build(
        cls,
        clf,
        ids: list[list[int]],
        boundary: int,
        *,
        pad_id: int,
        dtype: torch.dtype = torch.float32,
        memory_budget: int = 4 << 30,
        spill_dir: str | None = None,
        max_batch: int = 64,
        max_tokens: int = 4096,
        desc: str = "trunk cache",
        progress: bool = True,
    ) -> TrunkCache:
        """Run blocks [0, boundary) of `clf` over `ids` once and keep the real-token states."""
        lengths = [len(x) for x in ids]
        offsets = torch.zeros(len(ids) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
        data, spill_path = allocate(int(offsets[-1]), clf.decoder.cfg.emb_dim, dtype, memory_budget, spill_dir)
        batches = length_batches(lengths, max_batch, max_tokens)
        bar = tqdm(total=len(ids), desc=desc, unit="text", disable=not progress, leave=False)
        for b in batches:
            input_ids, mask = pad_batch([ids[i] for i in b], pad_id, side="right")
            x = clf.trunk(input_ids, mask, end=boundary)  # (B, T, D)
            for r, i in enumerate(b):
                s, e = int(offsets[i]), int(offsets[i + 1])
                data[s:e] = x[r, : e - s].to(dtype)
            bar.update(len(b))
        bar.close()
        return cls(data, offsets, spill_path)

    def close(self) -> None:
        """Drop the data and delete the spill file, if any."""
        self.data = torch.empty(0, 0)
        if self.spill_path and os.path.exists(self.spill_path):
            os.unlink(self.spill_path)
            self.spill_path = None
