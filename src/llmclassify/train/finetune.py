"""Fine-tuning the top: the book's recipe. The trainable part (last block(s) + final norm +
head, LoRA adapters, or every weight) trains on cached trunk states, each epoch scored on
the FULL validation split; the epoch with the lowest validation loss is kept (or the last).

Under `torchrun` (distributed.py) each process computes its share of the trunk cache, takes
its slice of every global batch (batch size x processes) and of every evaluation, and rank 0
alone logs and writes the run directory; see docs/distributed.md.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import checkpoint
from .. import distributed as dist
from ..errors import Interrupted, UserError
from ..files import atomic_write_bytes
from ..freeze import count_parameters, trainable_names
from ..heads import SequenceClassifier
from ..inputs import length_batches, pad_batch
from ..optim import build_optimizer, build_scheduler
from ..resume import STATE_FILE, GracefulStop, restore, save_state
from ..scoring import logit_metrics
from ..trunk_cache import TrunkCache, allocate
from .config import SPLITS, TrainConfig
from .state import Fitted, Run, log


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
        from ..multilabel import multi_hot

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


def batch_loss(logits: torch.Tensor, labels: torch.Tensor, mine: list[int], batch: list[int],
               weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of the global `batch`, from this rank's texts `mine` of it: sum(w_i * l_i)
    over `mine` / sum(w_i) over `batch` (every rank knows every label, so the denominator
    needs no message), so the ranks' losses and gradients add up to the weighted mean over
    the global batch that one process would compute. One process: F.cross_entropy as ever.
    Multi-label (float multi-hot labels): binary cross-entropy, `weight` is its pos_weight,
    the mean over the global batch's (text, label) pairs."""
    if labels.is_floating_point():
        from ..multilabel import bce_loss

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
        from ..multilabel import multi_hot, pos_weight_from_targets

        return pos_weight_from_targets(multi_hot(labels, n_classes), max_weight=10.0)
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    w = len(labels) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32)


def finetune_caches(run: Run, use_cache: bool, shared_caches: dict | None) -> dict:
    """The trunk cache alone (fine-tuning only), shared between runs of one process that
    agree on everything it depends on (experiments.py), and built by every rank under torchrun."""
    cfg = run.cfg
    if not use_cache:
        return dict.fromkeys(SPLITS)
    cache_key = (cfg.model, cfg.data, cfg.text_column, cfg.label_column, cfg.label_sep, cfg.split_method, cfg.split,
                 cfg.seed, cfg.dedupe, cfg.balance, run.boundary, run.pad_to, run.max_len, cfg.causal,
                 cfg.cache_dtype, run.template, bool(cfg.extra.get("random_init")))
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


def optimizer(cfg: TrainConfig, params: list, n_train: int):
    """The optimizer (optim.build_optimizer) and the learning-rate schedule (None for a
    constant rate without warmup)."""
    opt = build_optimizer(params, cfg.lr, cfg.weight_decay)
    if cfg.lr_schedule == "constant" and not cfg.warmup_ratio:
        return opt, None

    n_batches = math.ceil(n_train / (cfg.batch_size * dist.world_size()))
    total_steps = cfg.epochs * math.ceil(n_batches / cfg.grad_accum)
    return opt, build_scheduler(opt, total_steps, warmup_ratio=cfg.warmup_ratio, kind=cfg.lr_schedule)


def check_resumable(meta: dict, run: Run, digest: str) -> None:
    """A resume state belongs to this run only if the base model, the data and the number of
    processes are those it was saved with."""
    where, cfg = run.out_dir / STATE_FILE, run.cfg
    if meta["base_model"].get("sha256") != run.lm.identity.get("sha256"):
        raise UserError(f"{where}: the base model {cfg.model} has changed since the run "
                        "was interrupted; resuming would not give the same model")
    if meta["data_sha256"] != digest:
        raise UserError(f"{where}: the data {cfg.data} has changed since the run was "
                        "interrupted; resuming would not give the same model")
    if meta["world_size"] != dist.world_size():
        raise UserError(f"{where}: saved by {meta['world_size']} process(es); resume it with "
                        f"the same number (this is {dist.world_size()})")


@dataclass
class Progress:
    """Where fine-tuning stands: what a resumable state saves and restores (resume.py)."""

    history: list = field(default_factory=list)  # one record per finished epoch
    best: dict = field(default_factory=dict)  # trainable tensors of the best epoch so far
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best validation loss (early stopping)
    epoch: int = 1  # the epoch to start (or resume) in
    step: int = 0  # the steps of that epoch already done
    seen: int = 0  # texts and summed loss of the current epoch so far (the progress bar's loss)
    run_loss: float = 0.0
    run_n: int = 0

    def meta(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "best"}


def fit_top(run: Run, feats: dict, stop: GracefulStop, resume_state) -> Fitted:
    """Train the top (last block(s) + final norm + head, LoRA adapters, or all) for the
    configured epochs, keeping the epoch with the lowest validation loss (or the last);
    SIGINT / SIGTERM at a step boundary save a resumable state (resume.py)."""
    cfg, clf = run.cfg, run.clf
    log(f"fine-tuning {cfg.trainable}: {count_parameters(clf)[0]:,} trainable parameters, {cfg.epochs} epochs", cfg)
    weight = class_weight_tensor(run.prep.train.labels, len(run.names), cfg.class_weights, run.multi)
    params = [p for p in clf.parameters() if p.requires_grad]
    opt, sched = optimizer(cfg, params, len(feats["train"]))
    # Every rank draws the same global batches from the shared seed (global batch = batch
    # size x processes) and trains on its slice; gradients are summed before each step.
    gen = torch.Generator().manual_seed(cfg.seed)
    digest = split_digest(run.prep)
    prog = _start_or_resume(run, digest, opt, sched, gen, resume_state)
    log_path = run.out_dir / "metrics.jsonl"
    if dist.is_main():  # the log holds the finished epochs (none on a fresh start)
        atomic_write_bytes(log_path, "".join(json.dumps(r) + "\n" for r in prog.history).encode())
    stop.armed = True  # from here a signal saves a resumable state (resume.py)
    t_fit = time.perf_counter()
    for epoch in range(prog.epoch, cfg.epochs + 1):
        t_ep = time.perf_counter()
        _train_epoch(run, feats["train"], prog, epoch, (opt, sched, params), gen, weight, stop, digest)
        if _end_epoch(run, feats["val"], prog, epoch, weight, t_ep, log_path):
            break  # early stopping
    run.seconds["fit"] = time.perf_counter() - t_fit
    stop.notice = "finishing the run (final evaluation and save)"  # a signal now changes nothing
    if cfg.keep_best and prog.best:
        with torch.no_grad():
            for n, p in clf.named_parameters():
                if n in prog.best:
                    p.copy_(prog.best[n])
    else:
        prog.best_epoch = len(prog.history)
    clf.eval()
    logits = {s: predict_features(clf, feats[s], run.boundary) for s in SPLITS}
    spec = {"recipe": "finetune"}
    if cfg.trainable == "lora":
        from ..lora import lora_config

        spec["lora"] = lora_config(clf)
    return Fitted(spec, clf, logits, trainable_names(clf), history=prog.history, best_epoch=prog.best_epoch,
                  chosen=f"finetune {cfg.trainable}, {cfg.pooling} token")


def _start_or_resume(run: Run, digest: str, opt, sched, gen: torch.Generator, resume_state) -> Progress:
    """A fresh Progress, or the saved one with the weights, optimizer and random state restored."""
    if resume_state is None:
        return Progress()
    meta, tensors = resume_state
    check_resumable(meta, run, digest)
    best = restore(meta, tensors, clf=run.clf, opt=opt, sched=sched)
    prog = Progress(best=best, **{k: meta[k] for k in Progress().meta()})
    gen.set_state(tensors["rng.epoch_gen"])  # this epoch's batch order is drawn again
    torch.set_rng_state(tensors["rng.torch"])  # dropout continues where it stopped
    log(f"resuming {run.out_dir} at epoch {prog.epoch}, step {prog.step}", run.cfg)
    return prog


def _train_epoch(run: Run, train: Features, prog: Progress, epoch: int, optim, gen: torch.Generator,
                 weight, stop: GracefulStop, digest: str) -> None:
    """One pass over the training batches (from `prog.step` when resuming into this epoch)."""
    cfg, clf = run.cfg, run.clf
    opt, sched, params = optim
    clf.train()
    epoch_gen_state = gen.get_state()
    batches = train_batches(train.lengths(), cfg.batch_size * dist.world_size(), gen, cfg.bucket)
    skip = prog.step if epoch == prog.epoch else 0
    if not skip:
        prog.seen, prog.run_loss, prog.run_n = 0, 0.0, 0
    t_ep = time.perf_counter()
    bar = tqdm(batches[skip:], desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not run.progress,
               initial=skip, total=len(batches))
    opt.zero_grad(set_to_none=True)
    for step, b in enumerate(bar, skip + 1):
        if (step - 1) % cfg.grad_accum == 0 and stop.requested():  # an optimizer-step boundary
            bar.close()
            _save_and_stop(run, prog, epoch, step - 1, len(batches), opt, sched, epoch_gen_state, digest, stop)
        mine = dist.shard(b)  # this rank's slice of the global batch (all of it in one process)
        loss = torch.zeros(())
        if mine:  # a last, short batch may leave a rank nothing
            loss = batch_loss(train.logits(clf, mine, run.boundary), train.labels, mine, b, weight)
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
        prog.seen += len(b)
        prog.run_loss += loss.item() * len(b)
        prog.run_n += len(b)
        # shown at the bar's next refresh (throttled by tqdm), not one line a batch in a log file
        bar.set_postfix(loss=f"{prog.run_loss / prog.run_n:.4f}",
                        ex_s=f"{prog.seen / (time.perf_counter() - t_ep):.0f}", refresh=False)
    bar.close()


def _save_and_stop(run: Run, prog: Progress, epoch: int, step: int, n_steps: int, opt, sched,
                   epoch_gen_state, digest: str, stop: GracefulStop) -> None:
    """Save a resumable state at this step boundary and stop with the command that resumes."""
    meta = {**prog.meta(), "epoch": epoch, "step": step, "config": run.cfg.to_dict(),
            "base_model": run.lm.identity, "data_sha256": digest, "world_size": dist.world_size()}
    dist.on_main(save_state, run.out_dir / STATE_FILE, meta=meta, opt=opt, sched=sched, best=prog.best,
                 params={n: p for n, p in run.clf.named_parameters() if p.requires_grad},
                 epoch_gen_state=epoch_gen_state)
    raise Interrupted(f"interrupted at epoch {epoch}/{run.cfg.epochs}, step {step}/{n_steps}; "
                      f"state saved to {run.out_dir / STATE_FILE}; continue with: "
                      f"llmclassify train --resume {run.out_dir}", stop.signum)


def _end_epoch(run: Run, val: Features, prog: Progress, epoch: int, weight, t_ep: float, log_path) -> bool:
    """Score the full validation split, log the epoch, keep the best weights; True to stop early."""
    cfg, clf = run.cfg, run.clf
    clf.eval()
    m = logit_metrics(predict_features(clf, val, run.boundary), val.labels, run.names, weight=weight)
    seconds = time.perf_counter() - t_ep  # training and validation
    rec = {"epoch": epoch, "train_loss": prog.run_loss / max(prog.run_n, 1), "seconds": seconds}
    if m is not None:
        rec |= {"val_loss": m["loss"], "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"]}
    prog.history.append(rec)
    if dist.is_main():
        checkpoint.append_jsonl(log_path, rec)
    scored = f"  val loss {m['loss']:.4f}  val acc {m['accuracy']:.4f}" if m is not None else ""
    log(f"epoch {epoch}: train loss {rec['train_loss']:.4f}{scored}  ({seconds:.1f} s)", cfg)
    if m is None:  # no validation split: nothing to keep the best by, the last epoch stays (fit_top)
        return False
    if m["loss"] < prog.best_loss:
        prog.best_loss, prog.bad_epochs, prog.best_epoch = m["loss"], 0, epoch
        prog.best = {n: p.detach().clone() for n, p in clf.named_parameters() if p.requires_grad}
        return False
    prog.bad_epochs += 1
    if cfg.early_stopping and prog.bad_epochs >= cfg.early_stopping:
        log(f"early stopping: validation loss has not improved for {prog.bad_epochs} epochs", cfg)
        return True
    return False


def split_digest(prep) -> str:
    """sha256 of the texts and labels of every split: a resumed run must see the same data."""
    import hashlib

    h = hashlib.sha256()
    for s in ("train", "val", "test"):
        part = getattr(prep, s)
        h.update(json.dumps([s, list(part.texts), part.labels], default=int).encode())
    return h.hexdigest()
