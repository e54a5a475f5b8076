"""The fit loop: `train(TrainConfig) -> metrics`, everything from data file to run directory.

Order of work: read and split the data (data.py), load the base model (loaders/), build the
classifier (heads.py), choose what trains (freeze.py), tokenize once, and — when the trunk
below the first trainable block is frozen — compute that trunk once for every text
(trunk_cache.py). Each epoch then runs only the top blocks, evaluates the FULL validation
split, and keeps the trainable weights of the epoch with the lowest validation loss.

Under `torchrun` (distributed.py) each process computes its share of the trunk cache, takes
its slice of every global batch (batch size x processes) and of every evaluation, and rank 0
alone logs and writes the run directory; see docs/distributed.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoint
from . import distributed as dist
from .errors import Interrupted, UserError
from .evaluate import format_table
from .files import atomic_write_bytes
from .freeze import apply_strategy, count_parameters, trainable_names
from .heads import POOLINGS, SequenceClassifier
from .inputs import apply_padding, check_template, encode_texts, length_batches, pad_batch
from .loaders.presets import DEFAULT_MODEL
from .model import Decoder
from .resume import STATE_FILE, GracefulStop, read_state, restore, save_state
from .scoring import logit_metrics
from .trunk_cache import TrunkCache, allocate

logger = logging.getLogger(__name__)

# Batch tokenization uses the tokenizers library's threads; saying so up front keeps it from
# warning (and turning them off) when torchrun or a DataLoader forks later.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


SPLITS = ("train", "val", "test")
RECIPES = ("auto", "finetune", "probe")


@dataclass
class TrainConfig:
    """Everything a training run needs; the CLI fills it from flags, tests build it directly."""

    model: str = DEFAULT_MODEL
    data: str = "sms-spam"
    # auto: search probes on the trunk's layers, a probe + TF-IDF hybrid and the fine-tuned top
    # by held-out macro-F1 (search.py); finetune: the book's recipe; probe: probes only.
    recipe: str = "auto"
    probe: str | None = None  # one probe instead of the search, e.g. "mean@22" or "mean@16+22,last@30"
    probe_layers: tuple[int, ...] | None = None  # layers the pass keeps (default: features.probe_layers)
    baseline: str = "tfidf"  # tfidf | none: the TF-IDF + logistic regression shown beside the run
    template: str | None = None  # prompt template applied before tokenising, e.g. "Message: {text}\nCategory:"
    # Probes read texts longer than `window` tokens as consecutive windows (features.py): the
    # attention cost stays linear in a text's length. 0: whole texts (up to --max-length).
    window: int = 512
    output_dir: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    data_format: str | None = None
    encoding: str = "utf-8"  # text encoding of the data file: utf-8, latin-1, cp1252, utf-16, ...
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 123
    dedupe: bool = True
    balance: str = "none"  # none | undersample
    split_method: str = "stratified"  # stratified | reference (the book's exact split)
    # Multi-label: a separator that splits the label field ("|" in "sport|politics"); JSONL
    # lists are multi-label without it. Sigmoid + BCE, one threshold per label (validation).
    label_sep: str | None = None
    pooling: str = "last"
    trainable: str = "last-block"
    padding: str = "batch"  # batch | longest-train | fixed:N
    max_length: int | None = None  # tokens; None -> the model's context length
    causal: bool = True
    epochs: int = 5
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.1
    class_weights: str = "auto"  # auto | none
    early_stopping: int = 0  # patience in epochs; 0 = off
    keep_best: bool = True  # keep the epoch with the lowest validation loss (else the last epoch)
    trunk_cache: str = "auto"  # auto | off
    cache_dtype: str = "float32"  # float32 | bfloat16
    cache_memory_gb: float = 4.0
    bucket: bool = True  # length-bucketed training batches
    # LoRA (--trainable lora): adapters on `lora_targets` of every block, or of the top
    # -lora_blocks blocks when it is negative (the trunk below them stays cached).
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lora_blocks: int | None = None
    lr_schedule: str = "constant"  # constant | linear | cosine (after warmup)
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = None
    # After training, on the validation split: temperature scaling (calibrate) and, for two
    # classes, a decision threshold maximising F1 or reaching a target precision.
    calibrate: bool = False
    tune_threshold: str | None = None  # None | f1 | precision
    target_precision: float | None = None
    full_weights: bool = False
    overwrite: bool = False
    progress: bool = True
    preset: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise UserError(f"unknown --recipe '{self.recipe}' (choose from {', '.join(RECIPES)})")
        if self.baseline not in ("tfidf", "none"):
            raise UserError(f"unknown --baseline '{self.baseline}' (choose from tfidf, none)")
        if self.probe is not None and self.recipe == "finetune":
            raise UserError("--probe names a probe; it needs --recipe probe or auto, not finetune")
        check_template(self.template)
        if self.window < 0:
            raise UserError("--window must be 0 (whole texts) or a number of tokens")
        if self.probe_layers is not None:
            self.probe_layers = tuple(int(x) for x in self.probe_layers)
        if self.pooling not in POOLINGS:
            raise UserError(f"unknown --pooling '{self.pooling}' (choose from {', '.join(POOLINGS)})")
        if self.balance not in ("none", "undersample"):
            raise UserError(f"unknown --balance '{self.balance}' (choose from none, undersample)")
        if self.class_weights not in ("auto", "none"):
            raise UserError(f"unknown --class-weights '{self.class_weights}' (choose from auto, none)")
        if self.cache_dtype not in ("float32", "bfloat16"):
            raise UserError(f"unknown --cache-dtype '{self.cache_dtype}' (choose from float32, bfloat16)")
        parse_padding(self.padding)
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise UserError(f"unknown --lr-schedule '{self.lr_schedule}' (choose from constant, linear, cosine)")
        if self.tune_threshold not in (None, "f1", "precision"):
            raise UserError(f"unknown --tune-threshold '{self.tune_threshold}' (choose from f1, precision)")
        if self.tune_threshold == "precision" and self.target_precision is None:
            raise UserError("--tune-threshold precision needs --target-precision")
        self.lora_targets = tuple(self.lora_targets)
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        self.split = tuple(float(x) for x in self.split)

    def to_dict(self) -> dict:
        return asdict(self)


# `--preset reference`: chapter 6 of the book: its split (no dedupe, ham undersampled to 747,
# shuffled and cut 70/10/20 with seed 123), its optimiser, batch, epochs and trainable part,
# its final-epoch model, pooling the last token. "Last token" is our `last` pooling: the last
# REAL token, read from the attention mask, so padding every text to the longest training text
# (as the book does) changes no number and only costs time; we pad per batch. The book's
# literal variant, where the eos pad tokens are visible input and the final pad is pooled, is
# `--padding longest-train` (the experiments table has both rows).
PRESETS = {
    "reference": dict(
        recipe="finetune",
        split_method="reference",
        dedupe=False,
        balance="undersample",
        seed=123,
        padding="batch",
        pooling="last",
        trainable="last-block",
        lr=5e-5,
        weight_decay=0.1,
        batch_size=8,
        epochs=5,
        class_weights="none",
        keep_best=False,  # the book evaluates the model after its last epoch
    ),
}


def with_preset(cfg: TrainConfig, preset: str | None, overrides: set[str] = frozenset()) -> TrainConfig:
    """Apply a named preset to `cfg`; fields named in `overrides` (set by the user) win."""
    if not preset:
        return cfg
    if preset not in PRESETS:
        raise UserError(f"unknown --preset '{preset}' (choose from {', '.join(PRESETS)})")
    values = {k: v for k, v in PRESETS[preset].items() if k not in overrides}
    d = cfg.to_dict() | values | {"preset": preset}
    return TrainConfig(**d)


def parse_padding(padding: str) -> tuple[str, int | None]:
    """'batch' -> ('batch', None); 'longest-train'; 'fixed:N' -> ('fixed', N)."""
    if padding in ("batch", "longest-train"):
        return padding, None
    if padding.startswith("fixed:"):
        try:
            n = int(padding.split(":", 1)[1])
        except ValueError:
            n = 0
        if n >= 1:
            return "fixed", n
    raise UserError(f"unknown --padding '{padding}' (choose from batch, longest-train, fixed:N)")


def train_batches(lengths: list[int], batch_size: int, gen: torch.Generator, bucket: bool) -> list[list[int]]:
    """Shuffled training batches. With `bucket`, texts of similar length share a batch (less
    padding) while the batch order stays random: shuffle, sort within windows of 50
    batches, cut, shuffle the batches."""
    perm = torch.randperm(len(lengths), generator=gen).tolist()
    if not bucket:
        return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    window = batch_size * 50
    batches = []
    for w in range(0, len(perm), window):
        chunk = sorted(perm[w : w + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


def targets(labels: list, n_labels: int, multi: bool) -> torch.Tensor:
    """Class ids (N,) long, or for multi-label (N, L) float multi-hot rows."""
    if multi:
        from .multilabel import multi_hot

        return multi_hot(labels, n_labels)
    return torch.tensor(labels, dtype=torch.long)


class Features:
    """Inputs of one split for the top of the model: cached trunk states, or token ids;
    `labels` are class ids (N,) or multi-hot rows (N, L) for multi-label."""

    def __init__(self, ids: list[list[int]], labels, pad_id: int, cache: TrunkCache | None):
        labels = labels if torch.is_tensor(labels) else torch.tensor(labels, dtype=torch.long)
        self.ids, self.labels, self.pad_id, self.cache = ids, labels, pad_id, cache

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]

    def logits(self, clf: SequenceClassifier, idx: list[int], boundary: int) -> torch.Tensor:
        if self.cache is not None:
            x, mask = self.cache.batch(idx)
        else:
            input_ids, mask = pad_batch([self.ids[i] for i in idx], self.pad_id, side="right")
            # Frozen blocks need no graph; with boundary 0 the embeddings train, so keep it.
            with torch.set_grad_enabled(torch.is_grad_enabled() and boundary == 0):
                x = clf.trunk(input_ids, mask, end=boundary)
        return clf.top(x, mask, start=boundary)


@torch.inference_mode()
def predict_features(clf, feats: Features, boundary: int, batch_size: int = 64) -> torch.Tensor:
    """Logits (N, C) for every text of a split, in order. Under torchrun each rank scores its
    share (strided over length order) and every rank gets all the logits back in order."""
    lengths = feats.lengths()
    mine = dist.shard(sorted(range(len(feats)), key=lengths.__getitem__))  # all texts in one process
    out = torch.empty(len(mine), clf.head.out_features)
    for b in length_batches([lengths[i] for i in mine], batch_size, 8192):
        out[b] = feats.logits(clf, [mine[i] for i in b], boundary).float()
    return dist.gather_rows(out, mine, len(feats))


def build_trunk_cache(clf, ids: list[list[int]], boundary: int, **kw) -> TrunkCache:
    """TrunkCache.build over `ids`. Under torchrun each rank runs the trunk over its share of
    the texts, then every rank's share is broadcast in turn into the whole cache, so each
    rank holds every text's states (it trains on every text over the epochs)."""
    if dist.world_size() == 1:
        return TrunkCache.build(clf, ids, boundary, **kw)
    by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    part = TrunkCache.build(clf, [ids[i] for i in dist.shard(by_length)], boundary, **kw)
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    offsets = torch.zeros(len(ids) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(lengths, 0)
    d, dtype = part.data.shape[1], part.data.dtype
    data, spill_path = allocate(int(offsets[-1]), d, dtype, kw.get("memory_budget", 4 << 30), kw.get("spill_dir"))
    for r in range(dist.world_size()):
        idx = torch.tensor(dist.shard(by_length, rank=r), dtype=torch.long)
        n = lengths[idx]  # rank r's texts in its order, their rows where they belong in the whole:
        rows = torch.repeat_interleave(offsets[idx] - (torch.cumsum(n, 0) - n), n) + torch.arange(int(n.sum()))
        src = part.data if r == dist.rank() else torch.empty(len(rows), d, dtype=dtype)
        data[rows] = dist.broadcast(src, r)
    part.close()
    return TrunkCache(data, offsets, spill_path)


def describe_report(r: dict) -> str:
    """One line on what the data step did: rows, duplicates, conflicts, split sizes."""
    parts = [f"data: {r.get('rows_read', '?')} rows read"]
    if r.get("duplicates_removed"):
        parts.append(f"{r['duplicates_removed']} exact duplicates removed")
    if r.get("conflicting_texts"):
        parts.append(f"{r['conflicting_texts']} texts with conflicting labels dropped "
                     f"({r.get('conflicting_rows_removed', '?')} rows)")
    if r.get("undersampled"):
        parts.append(f"undersampled {r['undersampled']}")
    splits = r.get("splits") or {}
    if splits:
        parts.append("split " + " / ".join(
            f"{k} {sum(v.values()) if isinstance(v, dict) else v}" for k, v in splits.items()))
    return "; ".join(parts)


def batch_loss(logits: torch.Tensor, labels: torch.Tensor, mine: list[int], batch: list[int],
               weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of the global `batch`, from this rank's texts `mine` of it: sum(w_i * l_i)
    over `mine` / sum(w_i) over `batch` (every rank knows every label, so the denominator
    needs no message), so the ranks' losses and gradients add up to the weighted mean over
    the global batch that one process would compute. One process: F.cross_entropy as ever.
    Multi-label (float multi-hot labels): binary cross-entropy, `weight` is its pos_weight,
    the mean over the global batch's (text, label) pairs."""
    if labels.is_floating_point():
        from .multilabel import bce_loss

        if dist.world_size() == 1:
            return bce_loss(logits, labels[mine], weight)
        return bce_loss(logits, labels[mine], weight, reduction="sum") / (len(batch) * labels.shape[1])
    if dist.world_size() == 1:
        return F.cross_entropy(logits, labels[mine], weight=weight)
    denom = weight[labels[batch]].sum() if weight is not None else len(batch)
    return F.cross_entropy(logits, labels[mine], weight=weight, reduction="sum") / denom


def class_weight_tensor(labels: list, n_classes: int, mode: str, multi: bool = False) -> torch.Tensor | None:
    """'auto': n / (C * count_c), so every class carries the same total weight. Multi-label:
    BCE's pos_weight n_negative / n_positive per label, capped at 10 (a rare label would
    otherwise get a weight in the hundreds and swamp the loss)."""
    if mode == "none":
        return None
    if multi:
        from .multilabel import multi_hot, pos_weight_from_targets

        return pos_weight_from_targets(multi_hot(labels, n_classes), max_weight=10.0)
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    w = len(labels) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32)


def _prepare_data(cfg: TrainConfig):
    from . import data

    # The book reads the SMS file with pandas' default quoting (5,572 rows, unbalanced quotes
    # merge lines); its exact rows need the same reading. Everything else reads quote-safe.
    reference = cfg.split_method == "reference"
    table = data.load_dataset(
        cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, fmt=cfg.data_format,
        quoting=True if reference else None, label_sep=cfg.label_sep, encoding=cfg.encoding,
    )
    if reference:
        return data.reference_split(table, seed=cfg.seed)
    return data.prepare(table, split=cfg.split, seed=cfg.seed, dedupe=cfg.dedupe, balance=cfg.balance)


def default_output_dir(cfg: TrainConfig) -> str:
    model = Path(cfg.model).name.replace(".gguf", "")
    data = Path(cfg.data).stem
    return str(Path("runs") / f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}")


def log(msg: str, cfg: TrainConfig) -> None:
    if cfg.progress and dist.is_main():
        tqdm.write(msg)


def train(cfg: TrainConfig, shared_caches: dict | None = None, _resume: tuple[dict, dict] | None = None) -> dict:
    """Train a classifier as `cfg` says, save the run directory, return its metrics. Under
    torchrun (WORLD_SIZE > 1) every process calls this and gets the same summary back.

    `shared_caches` (a dict the caller keeps) lets several runs in one process reuse frozen-
    trunk caches that depend on the same data, model, boundary and padding (experiments.py).
    SIGINT / SIGTERM during the epochs save a resumable state and raise `Interrupted`
    (resume.py); `resume(run_dir)` goes on from it."""
    with dist.session():
        out_dir = Path(dist.broadcast_object(cfg.output_dir or default_output_dir(cfg)))  # rank 0's name
        created = not out_dir.exists()
        if _resume is None:
            dist.on_main(checkpoint.prepare_run_dir, out_dir, overwrite=cfg.overwrite)
        feats: dict = {}
        stop = GracefulStop()
        try:
            with stop.installed():
                return _train(cfg, out_dir, feats, shared_caches, stop, _resume)
        except BaseException:
            # A failed run leaves no empty run directory behind (partial state stays).
            if created and dist.is_main() and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            raise
        finally:  # spill files go, whatever happened; caches shared across runs stay open
            shared = {id(c) for v in (shared_caches or {}).values() for c in v.values()}
            for f in feats.values():
                if f.cache is not None and id(f.cache) not in shared:
                    f.cache.close()


def resume(run_dir: str | Path, progress: bool = True) -> dict:
    """Finish the interrupted run in `run_dir` from its resume state, with the configuration
    it was started with; the result equals an uninterrupted run's (same seed, same batches,
    same optimiser and RNG states)."""
    meta, tensors = read_state(Path(run_dir))
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in meta["config"].items() if k in known}
    values.update(output_dir=str(run_dir), overwrite=False, progress=progress)
    return train(TrainConfig(**values), _resume=(meta, tensors))


def split_digest(prep) -> str:
    """sha256 of the texts and labels of every split: a resumed run must see the same data."""
    import hashlib

    h = hashlib.sha256()
    for s in ("train", "val", "test"):
        part = getattr(prep, s)
        h.update(json.dumps([s, list(part.texts), part.labels], default=int).encode())
    return h.hexdigest()


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
    val_logits_held_out: torch.Tensor | None = None


def _train(cfg: TrainConfig, out_dir: Path, feats: dict, shared_caches: dict | None,
           stop: GracefulStop, resume_state: tuple[dict, dict] | None) -> dict:
    """The stages of a run: prepare -> encode -> trunk pass -> baseline -> fit (probe search
    and / or the fine-tuned top) -> post-hoc (temperature, threshold) -> save."""
    run = _prepare(cfg, out_dir)
    recipe = _resolve_recipe(run)
    pooled = _trunk_pass(run, recipe, feats, shared_caches)
    pool_rows, folds = _pool_and_folds(run)
    base = _fit_baseline(run, pool_rows, folds) if cfg.baseline != "none" else None
    probe_cands = _search_probes(run, pooled, pool_rows, folds, base) if pooled else []
    finetuned = None
    if recipe in ("finetune", "auto"):
        finetuned = _fit_top(run, feats, stop, resume_state)
    fitted = _choose(run, recipe, probe_cands, finetuned, pooled, pool_rows, base)
    stop.notice = "finishing the run (final evaluation and save)"  # a signal now changes nothing
    return _report_and_save(run, fitted, base, feats)


def _prepare(cfg: TrainConfig, out_dir: Path) -> Run:
    """Read and split the data, load the model, build the classifier, encode every text."""
    from .loaders import load_model

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    prep = _prepare_data(cfg)
    names = list(prep.label_map.names)
    multi = prep.label_map.multi_label
    log(describe_report(prep.report), cfg)
    if multi and cfg.calibrate:
        raise UserError("--calibrate (temperature scaling) is for single-label runs; multi-label runs tune "
                        "one threshold per label on validation instead")
    if multi and cfg.tune_threshold not in (None, "f1"):
        raise UserError("multi-label runs tune one threshold per label for F1; --tune-threshold precision "
                        "is for two-class runs")
    with dist.local_main_first():  # one download per machine
        lm = load_model(cfg.model)
    tok = lm.tokenizer
    if tok is None:
        raise UserError(f"{cfg.model}: no tokenizer found beside the weights")
    decoder = Decoder(lm.config)
    decoder.load_state_dict(lm.state_dict, strict=True)
    del lm.state_dict
    torch.manual_seed(cfg.seed)  # the head's initial weights depend on the seed alone
    clf = SequenceClassifier(decoder, len(names), pooling=cfg.pooling, causal=cfg.causal)
    if cfg.extra.get("random_init"):
        clf.decoder.apply(_reinit)
    if cfg.trainable == "lora":
        from .lora import apply_lora

        boundary = apply_lora(clf, rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                              targets=cfg.lora_targets, blocks=cfg.lora_blocks)
    else:
        boundary = apply_strategy(clf, cfg.trainable)
    n_train, n_total = count_parameters(clf)
    log(f"model {cfg.model}: {lm.config.n_layers} blocks, {n_total:,} parameters; {tok.describe()}", cfg)

    max_len = min(cfg.max_length or lm.config.context_length, lm.config.context_length)
    enc = {s: encode_texts(tok, getattr(prep, s).texts, max_len, cfg.template) for s in SPLITS}
    truncated = {s: sum(t) for s, (_, t) in enc.items()}
    if any(truncated.values()) and dist.is_main():  # a warning: shown even with --quiet
        logger.warning("truncated to %d tokens: %s", max_len, ", ".join(f"{s} {n}" for s, n in truncated.items()))
    mode, fixed = parse_padding(cfg.padding)
    pad_to = {"batch": None, "fixed": fixed, "longest-train": max(len(x) for x in enc["train"][0])}[mode]
    ids = {s: apply_padding(v, pad_to, tok.pad_id) for s, (v, _) in enc.items()}
    return Run(cfg, out_dir, cfg.progress and dist.is_main(), t_start, prep, names, multi, lm, tok, clf,
               boundary, max_len, pad_to, ids, truncated)


def _resolve_recipe(run: Run) -> str:
    """`auto` searches probes and the fine-tuned top; where probes cannot apply it is
    `finetune` (said in one line)."""
    cfg = run.cfg
    if cfg.recipe == "finetune":
        return "finetune"
    why = None
    if run.multi:
        why = "multi-label runs fine-tune (probes are single-label)"
    elif dist.world_size() > 1:
        why = "under torchrun the fine-tuned top is trained (probes run in one process)"
    elif run.pad_to is not None:
        why = f"--padding {cfg.padding} makes pad tokens input, which probes do not read"
    elif cfg.extra.get("random_init"):
        why = "random weights: nothing to probe"
    longest = max(len(x) for v in run.ids.values() for x in v)
    if not why and cfg.recipe == "auto" and cfg.window and longest > cfg.window:
        log(f"recipe: probes only: texts up to {longest} tokens are read in windows of {cfg.window}; "
            "fine-tuning would keep every token's states (--recipe finetune does)", cfg)
        return "probe"
    if why:
        if cfg.recipe == "probe":
            raise UserError(f"--recipe probe: {why}")
        log(f"recipe: fine-tuning ({why})", cfg)
        return "finetune"
    return cfg.recipe


def _trunk_pass(run: Run, recipe: str, feats: dict, shared_caches: dict | None) -> dict | None:
    """The one pass over every text: pooled vectors per layer (probe candidates) and, when the
    top is fine-tuned, the states entering its first trainable block (the trunk cache)."""
    cfg, clf = run.cfg, run.clf
    use_cache = recipe != "probe" and cfg.trunk_cache == "auto" and run.boundary > 0
    labels = {s: targets(getattr(run.prep, s).labels, len(run.names), run.multi) for s in SPLITS}
    t0 = time.perf_counter()
    pooled = None
    if recipe == "finetune":
        caches = _finetune_caches(run, use_cache, shared_caches)
    else:
        from .features import probe_layers, trunk_pass

        layers = [int(x) for x in cfg.probe_layers] if cfg.probe_layers else probe_layers(clf.n_layers)
        if cfg.probe:
            from .probes import parse_probe

            layers = sorted({layer for layer, _ in parse_probe(cfg.probe, clf.n_layers)})
        pooled, caches = {}, {}
        for s in SPLITS:
            pooled[s], caches[s] = trunk_pass(
                clf.decoder, run.ids[s], run.tok.pad_id, layers=layers,
                boundary=run.boundary if use_cache else None, window=None if use_cache else cfg.window or None,
                causal=cfg.causal,
                cache_dtype=getattr(torch, cfg.cache_dtype), memory_budget=int(cfg.cache_memory_gb * (1 << 30)),
                spill_dir=str(run.out_dir), desc=f"trunk pass ({s})", progress=run.progress)
    for s in SPLITS:
        feats[s] = Features(run.ids[s], labels[s], run.tok.pad_id, caches[s])
    run.seconds["trunk_pass"] = time.perf_counter() - t0
    what = []
    if pooled:
        what.append(f"pooled vectors of layers {','.join(map(str, pooled['train'].layers))}")
    if use_cache:
        mb = sum(f.cache.nbytes for f in feats.values()) / 2**20
        what.append(f"states entering block {run.boundary} ({mb:.0f} MiB)")
    if what:
        log(f"trunk pass: {' and '.join(what)} for every text in {run.seconds['trunk_pass']:.1f} s", cfg)
    return pooled


def _finetune_caches(run: Run, use_cache: bool, shared_caches: dict | None) -> dict:
    """The trunk cache alone (fine-tuning only), shared between runs of one process that
    agree on everything it depends on (experiments.py), and built by every rank under torchrun."""
    cfg = run.cfg
    if not use_cache:
        return dict.fromkeys(SPLITS)
    cache_key = (cfg.model, cfg.data, cfg.text_column, cfg.label_column, cfg.label_sep, cfg.split_method, cfg.split,
                 cfg.seed, cfg.dedupe, cfg.balance, run.boundary, run.pad_to, run.max_len, cfg.causal,
                 cfg.cache_dtype, cfg.template, bool(cfg.extra.get("random_init")))
    reuse = (shared_caches or {}).get(cache_key)
    caches = {}
    for s in SPLITS:
        caches[s] = reuse[s] if reuse else build_trunk_cache(
            run.clf, run.ids[s], run.boundary, pad_id=run.tok.pad_id, dtype=getattr(torch, cfg.cache_dtype),
            memory_budget=int(cfg.cache_memory_gb * (1 << 30)),
            spill_dir=str(run.out_dir) if dist.is_main() else None,  # out_dir is rank 0's
            desc=f"frozen trunk ({s})", progress=run.progress,
        )
    if shared_caches is not None:
        shared_caches[cache_key] = caches
    return caches


def _pool_and_folds(run: Run):
    """Train + validation rows as one pool, and its cross-validation folds (search.py)."""
    from .probes import stratified_folds
    from .search import FOLDS

    if run.multi:
        return None, None
    y = np.asarray(run.prep.train.labels + run.prep.val.labels)
    return y, stratified_folds(y, FOLDS, run.cfg.seed)


def _fit_baseline(run: Run, y_pool, folds):
    """TF-IDF + logistic regression: C by the search's folds, refitted on train + validation
    (single-label); multi-label runs fit one-vs-rest on train with C 10. Never sees the test split."""
    from . import baseline
    from .scoring import score

    t0 = time.perf_counter()
    if run.multi:
        return None
    texts = list(run.prep.train.texts) + list(run.prep.val.texts)
    best = None
    for C in baseline.C_GRID:
        oof = baseline.out_of_fold(texts, y_pool, len(run.names), folds, C)
        f1 = score(oof, y_pool, run.names)["macro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, C, oof)
    f1, C, oof = best
    model = baseline.fit(texts, y_pool, len(run.names), C)
    run.seconds["baseline"] = time.perf_counter() - t0
    log(f"baseline ({baseline.NAME}): CV macro-F1 {f1:.4f} (C {C}, {run.seconds['baseline']:.1f} s)", run.cfg)
    return {"model": model, "oof": oof, "cv_macro_f1": float(f1), "C": C}


def _search_probes(run: Run, pooled: dict, y_pool, folds, base) -> list:
    """Probe candidates (and the hybrid) scored out of fold over train + validation."""
    from .features import PooledFeatures
    from .probes import candidate_probes, parse_probe
    from .search import hybrid_candidates, search_probes

    t0 = time.perf_counter()
    cfg = run.cfg
    pool = PooledFeatures(torch.cat([pooled["train"].data, pooled["val"].data]), pooled["train"].layers)
    val_rows = np.arange(len(run.prep.train.labels), len(y_pool))
    cands = [parse_probe(cfg.probe, run.clf.n_layers)] if cfg.probe else candidate_probes(pool.layers)
    log(f"probe search: {len(cands)} candidates, {len(folds)}-fold cross-validation over train + validation", cfg)
    found = search_probes(pool, y_pool, run.names, folds, val_rows, cands, log=lambda m: log(m, cfg))
    if base is not None and cfg.recipe == "auto":
        from .search import choose

        hybrid = hybrid_candidates(choose(found, "cv_macro_f1"), base["oof"], y_pool, run.names, val_rows)
        log(f"  {hybrid.name:<44} CV macro-F1 {hybrid.cv_macro_f1:.4f}  val {hybrid.val_macro_f1:.4f}", cfg)
        found.append(hybrid)
    run.seconds["probe_search"] = time.perf_counter() - t0
    return found


def _choose(run: Run, recipe: str, probe_cands: list, finetuned: Fitted | None, pooled, y_pool, base) -> Fitted:
    """The search's choice (search.py), refitted on train + validation when it is a probe."""
    from .search import Candidate, choose

    if recipe == "finetune":
        return finetuned
    best = choose(probe_cands, "cv_macro_f1")
    llm_only = choose([c for c in probe_cands if c.kind == "probe"], "cv_macro_f1")
    pick = best
    cands = list(probe_cands)
    if finetuned is not None:
        val_y = run.prep.val.labels
        from .scoring import logit_metrics

        f1 = logit_metrics(finetuned.logits["val"], torch.as_tensor(val_y), run.names)["macro_f1"]
        ft = Candidate(f"finetune {run.cfg.trainable}, {run.cfg.pooling} token", "finetune", None, float(f1),
                       cost=(2,))
        cands.append(ft)
        pick = choose([best, ft], "val_macro_f1")
        log(f"  {ft.name:<40} val macro-F1 {f1:.4f} (epoch {finetuned.best_epoch} of {run.cfg.epochs})", run.cfg)
    log(f"recipe: {pick.name} (best LLM-only probe: {llm_only.name}, CV macro-F1 {llm_only.cv_macro_f1:.4f})",
        run.cfg)
    report = [c.report() for c in cands]
    if pick.kind == "finetune":
        finetuned.candidates, finetuned.chosen = report, pick.name
        return finetuned
    return _refit_probe(run, pick, pooled, y_pool, base, report)


def _refit_probe(run: Run, pick, pooled: dict, y_pool, base, report: list) -> Fitted:
    """The chosen probe fitted on train + validation, as a ProbeClassifier over the decoder."""
    from .probes import ProbeClassifier, fit_probe

    x_pool = np.concatenate([pooled[s].matrix(list(pick.picks)) for s in ("train", "val")])
    probe = fit_probe(x_pool, y_pool, len(run.names), pick.C, balanced=pick.balanced)
    clf = ProbeClassifier(run.clf.decoder, pick.picks, len(run.names), causal=run.cfg.causal)
    clf.load_probe(probe)
    logits = {s: torch.from_numpy(probe.logits(pooled[s].matrix(list(pick.picks)))).float() for s in SPLITS}
    if pick.kind == "hybrid":  # log of the averaged probabilities: softmax gives them back
        from .probes import softmax

        for s in SPLITS:
            p_base = base["model"].proba(getattr(run.prep, s).texts)
            mix = pick.hybrid_weight * softmax(logits[s].numpy()) + (1 - pick.hybrid_weight) * p_base
            logits[s] = torch.from_numpy(np.log(np.clip(mix, 1e-12, None))).float()
    longest = max(len(x) for v in run.ids.values() for x in v)
    window = run.cfg.window if run.cfg.window and longest > run.cfg.window else None
    spec = {"recipe": pick.kind, "probe": [list(x) for x in pick.picks], "hybrid_weight": pick.hybrid_weight,
            "window": window}
    oof_val = pick.oof[len(run.prep.train.labels):]
    return Fitted(spec, clf, logits, ["mean", "scale", "head.weight", "head.bias"], candidates=report,
                  chosen=pick.name, val_logits_held_out=torch.from_numpy(np.log(np.clip(oof_val, 1e-12, None))).float())


def _fit_top(run: Run, feats: dict, stop: GracefulStop, resume_state) -> Fitted:
    """Train the top (last block(s) + final norm + head, LoRA adapters, or all) for the
    configured epochs, keeping the epoch with the lowest validation loss (or the last);
    SIGINT / SIGTERM at a step boundary save a resumable state (resume.py)."""
    cfg, prep, names, multi, clf, boundary, out_dir = (run.cfg, run.prep, run.names, run.multi, run.clf,
                                                       run.boundary, run.out_dir)
    progress = run.progress
    n_train, _ = count_parameters(clf)
    log(f"fine-tuning {cfg.trainable}: {n_train:,} trainable parameters, {cfg.epochs} epochs", cfg)
    weight = class_weight_tensor(prep.train.labels, len(names), cfg.class_weights, multi)
    params = [p for p in clf.parameters() if p.requires_grad]
    # AdamW over every trainable tensor, as the reference does (weight decay included).
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = None
    if cfg.lr_schedule != "constant" or cfg.warmup_ratio:
        from .optim import build_scheduler

        n_batches = math.ceil(len(feats["train"]) / (cfg.batch_size * dist.world_size()))
        total_steps = cfg.epochs * math.ceil(n_batches / cfg.grad_accum)
        sched = build_scheduler(opt, total_steps, warmup_ratio=cfg.warmup_ratio, kind=cfg.lr_schedule)
    # Every rank draws the same global batches from the shared seed (global batch = batch
    # size x processes) and trains on its slice; gradients are summed before each step.
    gen = torch.Generator().manual_seed(cfg.seed)
    global_batch = cfg.batch_size * dist.world_size()
    history, best, best_loss, bad_epochs, best_epoch = [], {}, math.inf, 0, 0
    log_path = out_dir / "metrics.jsonl"
    digest = split_digest(prep)
    start_epoch, start_step = 1, 0
    if resume_state is not None:
        meta, tensors = resume_state
        if meta["base_model"].get("sha256") != run.lm.identity.get("sha256"):
            raise UserError(f"{out_dir / STATE_FILE}: the base model {cfg.model} has changed since the run "
                            "was interrupted; resuming would not give the same model")
        if meta["data_sha256"] != digest:
            raise UserError(f"{out_dir / STATE_FILE}: the data {cfg.data} has changed since the run was "
                            "interrupted; resuming would not give the same model")
        if meta["world_size"] != dist.world_size():
            raise UserError(f"{out_dir / STATE_FILE}: saved by {meta['world_size']} process(es); resume it with "
                            f"the same number (this is {dist.world_size()})")
        best = restore(meta, tensors, clf=clf, opt=opt, sched=sched)
        history, best_loss = meta["history"], meta["best_loss"]
        bad_epochs, best_epoch = meta["bad_epochs"], meta["best_epoch"]
        start_epoch, start_step = meta["epoch"], meta["step"]
        gen.set_state(tensors["rng.epoch_gen"])  # this epoch's batch order is drawn again
        torch.set_rng_state(tensors["rng.torch"])  # dropout continues where it stopped
        log(f"resuming {out_dir} at epoch {start_epoch}, step {start_step}", cfg)
    if dist.is_main():  # the log holds the finished epochs (none on a fresh start)
        atomic_write_bytes(log_path, "".join(json.dumps(r) + "\n" for r in history).encode())
    stop.armed = True  # from here a signal saves a resumable state (resume.py)
    t_fit = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs + 1):
        clf.train()
        epoch_gen_state = gen.get_state()
        batches = train_batches(feats["train"].lengths(), global_batch, gen, cfg.bucket)
        skip = start_step if epoch == start_epoch else 0
        t_ep, seen, run_loss, run_n = time.perf_counter(), 0, 0.0, 0
        if skip:
            seen, run_loss, run_n = meta["seen"], meta["run_loss"], meta["run_n"]
        bar = tqdm(batches[skip:], desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not progress,
                   initial=skip, total=len(batches))
        opt.zero_grad(set_to_none=True)
        for step, b in enumerate(bar, skip + 1):
            if (step - 1) % cfg.grad_accum == 0 and stop.requested():  # an optimizer-step boundary
                bar.close()
                state = {
                    "config": cfg.to_dict(), "epoch": epoch, "step": step - 1, "history": history,
                    "best_loss": best_loss, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                    "seen": seen, "run_loss": run_loss, "run_n": run_n, "base_model": run.lm.identity,
                    "data_sha256": digest, "world_size": dist.world_size(),
                }
                dist.on_main(save_state, out_dir / STATE_FILE, meta=state, opt=opt, sched=sched, best=best,
                             params={n: p for n, p in clf.named_parameters() if p.requires_grad},
                             epoch_gen_state=epoch_gen_state)
                raise Interrupted(f"interrupted at epoch {epoch}/{cfg.epochs}, step {step - 1}/{len(batches)}; "
                                  f"state saved to {out_dir / STATE_FILE}; continue with: "
                                  f"llmclassify train --resume {out_dir}", stop.signum)
            mine = dist.shard(b)  # this rank's slice of the global batch (all of it in one process)
            loss = torch.zeros(())
            if mine:  # a last, short batch may leave a rank nothing
                logits = feats["train"].logits(clf, mine, boundary)
                loss = batch_loss(logits, feats["train"].labels, mine, b, weight)
                (loss / cfg.grad_accum).backward()
            if step % cfg.grad_accum == 0 or step == len(batches):
                dist.all_reduce_grads(params)
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                if sched is not None:
                    sched.step()
                opt.zero_grad(set_to_none=True)
            loss = dist.all_reduce_sum(loss.detach())  # the global batch's loss
            seen += len(b)
            run_loss += loss.item() * len(b)
            run_n += len(b)
            bar.set_postfix(loss=f"{run_loss / run_n:.4f}", ex_s=f"{seen / (time.perf_counter() - t_ep):.0f}")
        bar.close()
        clf.eval()
        val = logit_metrics(predict_features(clf, feats["val"], boundary), feats["val"].labels, names, weight=weight)
        rec = {
            "epoch": epoch, "train_loss": run_loss / max(run_n, 1), "val_loss": val["loss"],
            "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
            "seconds": time.perf_counter() - t_ep,
        }
        history.append(rec)
        if dist.is_main():
            checkpoint.append_jsonl(log_path, rec)
        log(f"epoch {epoch}: train loss {rec['train_loss']:.4f}  val loss {val['loss']:.4f}  "
            f"val acc {val['accuracy']:.4f}  ({rec['seconds']:.1f} s)", cfg)
        if val["loss"] < best_loss:
            best_loss, bad_epochs = val["loss"], 0
            best = {n: p.detach().clone() for n, p in clf.named_parameters() if p.requires_grad}
            best_epoch = epoch
        else:
            bad_epochs += 1
            if cfg.early_stopping and bad_epochs >= cfg.early_stopping:
                log(f"early stopping: validation loss has not improved for {bad_epochs} epochs", cfg)
                break
    t_fit = time.perf_counter() - t_fit
    stop.notice = "finishing the run (final evaluation and save)"  # a signal now changes nothing
    if cfg.keep_best:
        with torch.no_grad():
            for n, p in clf.named_parameters():
                if n in best:
                    p.copy_(best[n])
    else:
        best_epoch = len(history)


    clf.eval()
    logits = {s: predict_features(clf, feats[s], boundary) for s in SPLITS}
    spec = {"recipe": "finetune"}
    if cfg.trainable == "lora":
        from .lora import lora_config

        spec["lora"] = lora_config(clf)
    run.seconds["fit"] = t_fit
    return Fitted(spec, clf, logits, trainable_names(clf), history=history, best_epoch=best_epoch,
                  chosen=f"finetune {cfg.trainable}, {cfg.pooling} token")


def _post_hoc(run: Run, fitted: Fitted, feats: dict) -> tuple[float, object, dict | None, dict | None]:
    """Temperature (--calibrate) and decision thresholds, from held-out validation logits:
    the fine-tuned model's, or a refitted probe's out-of-fold ones."""
    cfg, names = run.cfg, run.names
    val_logits = fitted.val_logits_held_out if fitted.val_logits_held_out is not None else fitted.logits["val"]
    val_y = feats["val"].labels
    temperature, threshold, calibration, threshold_report = 1.0, None, None, None
    if cfg.calibrate:
        from .calibrate import calibration_report

        calibration = calibration_report(val_logits, val_y.numpy(), fitted.logits["test"], feats["test"].labels.numpy())
        temperature = float(calibration["temperature"])
        log(f"temperature {temperature:.3f} (validation ECE {calibration['val']['ece_before']:.4f} -> "
            f"{calibration['val']['ece_after']:.4f})", cfg)
    if run.multi and len(val_y):  # one threshold per label, each maximising its F1 on validation
        from .calibrate import per_label_thresholds

        thr, report = per_label_thresholds(torch.sigmoid(val_logits).numpy(), val_y.numpy())
        threshold = [float(t) for t in thr]
        threshold_report = dict(zip(names, report))
        log("per-label thresholds (tuned on validation for F1): "
            + ", ".join(f"{n} {t:.3f}" for n, t in zip(names, threshold)), cfg)
    elif cfg.tune_threshold:
        if len(names) != 2:
            raise UserError(f"--tune-threshold needs two classes; the data has {len(names)}")
        from .calibrate import tune_threshold

        p_val = torch.softmax(val_logits / temperature, -1)[:, 1].numpy()
        threshold, threshold_report = tune_threshold(p_val, val_y.numpy(), objective=cfg.tune_threshold,
                                                     target_precision=cfg.target_precision)
        threshold = float(threshold)
        log(f"decision threshold for '{names[1]}': {threshold:.4f} (tuned on validation, {cfg.tune_threshold})", cfg)
    return temperature, threshold, calibration, threshold_report


def _baseline_metrics(run: Run, base) -> dict | None:
    """The baseline scored on every split with the same scoring path as the run."""
    from . import baseline
    from .scoring import score

    if base is None:
        return None
    splits = {s: score(base["model"].proba(getattr(run.prep, s).texts), np.asarray(getattr(run.prep, s).labels),
                       run.names) for s in ("train", "test")}
    # refitted on train + validation: its validation figures are the out-of-fold ones
    splits["val"] = score(base["oof"][len(run.prep.train.labels):], np.asarray(run.prep.val.labels), run.names)
    return {"name": baseline.NAME, "C": base["C"], "cv_macro_f1": base["cv_macro_f1"], "refit_on": "train+val",
            "seconds": run.seconds.get("baseline"), "splits": splits}


def _report_and_save(run: Run, fitted: Fitted, base, feats: dict) -> dict:
    """Metrics of every split (one scoring path), the baseline beside them, the run directory."""
    from .spec import RunSpec

    cfg, names = run.cfg, run.names
    temperature, threshold, calibration, threshold_report = _post_hoc(run, fitted, feats)
    # A probe refitted on train + validation reports its validation metrics out of fold (held out).
    held_out = {"val": fitted.val_logits_held_out} if fitted.val_logits_held_out is not None else {}
    metrics = {s: logit_metrics(held_out.get(s, fitted.logits[s]), feats[s].labels, names, temperature=temperature,
                                threshold=threshold) for s in SPLITS}
    if held_out:
        metrics["val"]["held_out"] = "out-of-fold (the model was refitted on train + validation)"
    n_train, n_total = count_parameters(fitted.clf)
    run.seconds["total"] = time.perf_counter() - run.t_start
    summary = {
        "splits": metrics,
        "baseline": _baseline_metrics(run, base),
        "recipe": {"requested": cfg.recipe, "chosen": fitted.chosen, "candidates": fitted.candidates,
                   "refit_on": "train+val" if fitted.spec_fields["recipe"] != "finetune" else "train"},
        "best_epoch": fitted.best_epoch,
        "epochs_run": len(fitted.history),
        "seconds": dict(run.seconds),
        "data": run.prep.report,
        "truncated": run.truncated,
        "max_length": run.max_len,
        "calibration": calibration,
        "threshold": threshold_report,
        "trainable_parameters": n_train,
        "total_parameters": n_total,
    }
    spec = RunSpec(
        base_model=run.lm.identity, model_config=run.lm.config.to_dict(), labels=names, multi_label=run.multi,
        pooling=cfg.pooling, causal=cfg.causal, padding=cfg.padding, pad_to=run.pad_to, max_length=run.max_len,
        truncation=cfg.max_length is not None, template=cfg.template, trainable=cfg.trainable,
        threshold=threshold, temperature=temperature, train_config=cfg.to_dict(),
        **{k: v for k, v in fitted.spec_fields.items() if k in ("recipe", "probe", "hybrid_weight", "lora", "window")},
    )
    if dist.world_size() > 1:  # batch_size above is per process
        spec.extra["distributed"] = {"world_size": dist.world_size(),
                                     "global_batch_size": cfg.batch_size * dist.world_size()}
    summary = dist.broadcast_object(summary)  # rank 0's timings, so every rank returns the same
    dist.on_main(
        checkpoint.save_run, run.out_dir, fitted.clf, run_config=spec.to_dict(), tokenizer=run.tok,
        metrics=summary, history=fitted.history,
        split={s: asdict(getattr(run.prep, s)) for s in SPLITS} | {"labels": names},
        full_weights=cfg.full_weights, trainable=fitted.trainable,
        baseline=base["model"] if base else None,
    )
    if dist.is_main():
        (run.out_dir / STATE_FILE).unlink(missing_ok=True)  # the run is complete
    summary["run_dir"] = str(run.out_dir)
    base_splits = (summary["baseline"] or {}).get("splits") or {}
    log(format_table(metrics, baseline={s: base_splits.get(s) for s in ("val", "test")}), cfg)
    if summary["baseline"] and metrics["val"]["macro_f1"] < summary["baseline"]["splits"]["val"]["macro_f1"]:
        log("note: this run does not beat the TF-IDF baseline on validation macro-F1", cfg)
    log(f"saved {run.out_dir}  ({run.seconds['total']:.0f} s)", cfg)
    return summary


def _reinit(m: torch.nn.Module) -> None:
    """The reference's 'random weights' row: same architecture, fresh initialisation."""
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            torch.nn.init.zeros_(m.bias)
    elif isinstance(m, torch.nn.Embedding):
        torch.nn.init.normal_(m.weight, std=0.02)


def config_from_args(values: dict, preset: str | None) -> TrainConfig:
    """TrainConfig from CLI values (None = not given), the preset filling what was not given."""
    known = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in values.items() if k in known and v is not None}
    cfg = TrainConfig(**given)
    return with_preset(cfg, preset, overrides=set(given))

