"""Which parameters train: a small registry of named strategies.

Each strategy freezes the whole classifier, unfreezes its part, and returns the *boundary*:
the index of the first block that trains. Blocks below the boundary are a frozen trunk whose
output never changes, which is what lets train.py cache it (trunk_cache.py).

- ``head``: the new Linear head only (boundary = n_layers; final norm frozen too).
- ``last-block``: the last transformer block + final norm + head (the reference default).
- ``last-N-blocks`` (e.g. ``last-2-blocks``): the top N blocks + final norm + head.
- ``all``: every parameter (boundary 0: nothing to cache).
"""

from __future__ import annotations

import re

from torch import nn

from .errors import UserError

_LAST_N = re.compile(r"^last-(\d+)-blocks?$")


def boundary_for(strategy: str, n_layers: int) -> int:
    """First trainable block index for `strategy` (n_layers when no block trains)."""
    if strategy == "head":
        return n_layers
    if strategy == "all":
        return 0
    if strategy == "last-block":
        return n_layers - 1
    m = _LAST_N.match(strategy)
    if m:
        k = int(m.group(1))
        if not 1 <= k <= n_layers:
            raise UserError(f"--trainable {strategy}: the model has {n_layers} blocks")
        return n_layers - k
    raise UserError(f"unknown --trainable '{strategy}' (choose from head, last-block, last-N-blocks, all)")


def apply_strategy(clf: nn.Module, strategy: str) -> int:
    """Set requires_grad on `clf` (a SequenceClassifier) for `strategy`; return the boundary."""
    n = len(clf.decoder.blocks)
    boundary = boundary_for(strategy, n)
    for p in clf.parameters():
        p.requires_grad_(False)
    for p in clf.head.parameters():
        p.requires_grad_(True)
    if strategy != "head":
        for p in clf.decoder.final_norm.parameters():
            p.requires_grad_(True)
        for block in clf.decoder.blocks[boundary:]:
            for p in block.parameters():
                p.requires_grad_(True)
    if strategy == "all":
        for p in clf.parameters():
            p.requires_grad_(True)
    return boundary


def trainable_names(clf: nn.Module) -> list[str]:
    return [n for n, p in clf.named_parameters() if p.requires_grad]


def count_parameters(clf: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in clf.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
