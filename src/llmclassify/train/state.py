"""What the stages of one run share (`Run`) and what fitting hands on (`Fitted`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import distributed as dist
from .config import TrainConfig


@dataclass
class Run:
    """What the stages of one run share: the data, the model and the encoded texts."""

    cfg: TrainConfig
    out_dir: Path
    progress: bool
    t_start: float
    prep: object
    names: list[str]
    multi: bool
    lm: object  # loaders.LoadedModel (its state dict dropped once loaded)
    tok: object
    clf: torch.nn.Module
    boundary: int
    max_len: int
    pad_to: int | None
    ids: dict
    truncated: dict
    seconds: dict = field(default_factory=dict)
    peak_mib: dict = field(default_factory=dict)  # stage -> the process's peak resident memory after it
    trunk_dtype: str = "float32"  # the arithmetic of the trunk pass (precision.py)
    frozen_dtype: str = "float32"  # fine-tuning: the arithmetic of the frozen blocks its trunk cache came from
    calibration_ids: list | None = None  # int8 trunk: the token ids its smoothing was measured on (precision.py)
    truncate: str = "head"  # which tokens of a text over max_len are kept (inputs.cut_tokens)
    long_texts: dict = field(default_factory=dict)  # per split: texts over --window tokens
    template: str | None = None  # the template `ids` were encoded with (--template auto: none)
    pass_blocks: object = None  # --template auto: the trunk pass's converted blocks, for the question's pass
    # --template auto, where the question is kept: its (template, ids, truncated) for the probe stage
    probe_inputs: tuple | None = None
    template_search: dict | None = None  # --template auto: each template's best CV macro-F1 and the choice


@dataclass
class Fitted:
    """The chosen classifier, its logits on every split and what the search saw."""

    spec_fields: dict
    clf: torch.nn.Module
    logits: dict
    trainable: list[str]
    history: list = field(default_factory=list)
    best_epoch: int = 0
    candidates: list = field(default_factory=list)
    chosen: str = ""
    # a probe refitted on train + validation: its out-of-fold logits of those texts, per split
    # (what its validation metrics, temperature and threshold are read from)
    held_out_logits: dict | None = None


def log(msg: str, cfg: TrainConfig) -> None:
    if cfg.progress and dist.is_main():
        tqdm.write(msg)


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
