"""Interrupted training: stop cleanly on SIGINT / SIGTERM, save a resumable state, go on.

While the fit loop runs, the first SIGINT (Ctrl-C) or SIGTERM only sets a flag; the loop sees
it at the next optimizer-step boundary, writes `RUN/resume.safetensors` and stops with
`Interrupted` (the CLI exits 130 or 143 and prints the command that continues). A second
signal aborts at once. Outside the fit loop (reading data, building the trunk cache, the
final evaluation) a signal stops the run as usual, because nothing learned would be lost.

The state file is ONE safetensors file, written to a temporary name and renamed, so it is
either complete or absent. Tensors: the trainable weights now (`param.*`), the weights of the
best epoch so far (`best.*`), AdamW's moments and step counts (`opt.<i>.<key>`), torch's
global RNG (dropout) and the batch-order generator as it stood when the current epoch drew
its batches (`rng.*`). Its metadata holds the JSON rest: the whole TrainConfig, epoch and
step, history, best-epoch bookkeeping, the running loss of the epoch, the optimiser's
param_groups, the scheduler state, and checksums of the base model and of the data split, so
a resume against a changed model or data file is refused instead of silently diverging.
No pickle anywhere: JSON and safetensors only.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from . import distributed as dist
from .errors import UserError
from .files import atomic_write_bytes

STATE_FILE = "resume.safetensors"
STATE_VERSION = 1
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Signal handling around a training run. `armed` (the fit loop) turns the first SIGINT or
    SIGTERM into a request; unarmed, or on a second signal, it raises KeyboardInterrupt (for
    SIGTERM too, so `finally` blocks still clean up). Handlers are only installed from the
    main thread (Python's rule); elsewhere it never requests a stop."""

    def __init__(self) -> None:
        self.armed = False
        self.notice = "stopping at the next step and saving a resumable state"
        self.signum: int | None = None
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.armed and self.signum is None:
            self.signum = signum
            if dist.is_main():
                sys.stderr.write(
                    f"\nllmclassify: {signal.Signals(signum).name}: {self.notice} "
                    "(signal again to abort)\n"
                )
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[GracefulStop]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for s in SIGNALS:
            self._old[s] = signal.signal(s, self._handler)
        try:
            yield self
        finally:
            for s, h in self._old.items():
                signal.signal(s, h)
            self._old.clear()

    def requested(self) -> bool:
        """True on every rank when any rank got a signal (one small all-reduce per step under
        torchrun, so all ranks stop at the same step)."""
        if dist.world_size() == 1:
            return self.signum is not None
        flag = torch.tensor([0.0 if self.signum is None else float(self.signum)])
        total = dist.all_reduce_sum(flag)
        if total.item() and self.signum is None:
            self.signum = signal.SIGTERM  # another rank's signal; the exit status says "terminated"
        return bool(total.item())


# --- the state file -------------------------------------------------------------------------
def save_state(
    path: Path,
    *,
    meta: dict,
    params: dict,
    best: dict,
    opt: torch.optim.Optimizer,
    sched,
    epoch_gen_state: torch.Tensor,
) -> None:
    from safetensors.torch import save

    opt_sd = opt.state_dict()
    tensors = {f"param.{n}": p for n, p in params.items()}
    tensors |= {f"best.{n}": p for n, p in best.items()}
    opt_scalars = {}
    for i, st in opt_sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v
            else:
                opt_scalars[f"{i}.{k}"] = v
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.epoch_gen"] = epoch_gen_state
    meta = dict(
        meta,
        version=STATE_VERSION,
        opt_param_groups=opt_sd["param_groups"],
        opt_scalars=opt_scalars,
        sched=sched.state_dict() if sched is not None else None,
    )
    data = save(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
        metadata={"state": json.dumps(meta)},
    )
    atomic_write_bytes(path, data)


def read_state(run_dir: Path) -> tuple[dict, dict]:
    """(meta, tensors) of RUN/resume.safetensors, with one-line errors for what can go wrong."""
    from safetensors import SafetensorError, safe_open

    run_dir = Path(run_dir)
    path = run_dir / STATE_FILE
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    if not path.is_file():
        if (run_dir / "config.json").is_file():
            raise UserError(f"{run_dir}: the run is complete; nothing to resume")
        raise UserError(
            f"{path}: no resumable state (was the run interrupted with Ctrl-C or SIGTERM?)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise UserError(f"{path}: not a readable resume state ({e})") from None
    if meta.get("version") != STATE_VERSION:
        raise UserError(
            f"{path}: resume state version {meta.get('version')} (this llmclassify reads {STATE_VERSION})"
        )
    return meta, tensors


def restore(
    meta: dict, tensors: dict, *, clf: torch.nn.Module, opt: torch.optim.Optimizer, sched
) -> dict:
    """Put the saved weights, optimiser and scheduler state back; return the best-epoch weights."""
    named = dict(clf.named_parameters())
    with torch.no_grad():
        for k, v in tensors.items():
            if k.startswith("param."):
                name = k[len("param.") :]
                if name not in named or named[name].shape != v.shape:
                    raise UserError(f"{STATE_FILE}: tensor '{name}' does not fit this model")
                named[name].copy_(v)
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, key = k.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    for k, v in meta["opt_scalars"].items():
        i, key = k.split(".", 1)
        state.setdefault(int(i), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": meta["opt_param_groups"]})
    if sched is not None and meta.get("sched") is not None:
        sched.load_state_dict(meta["sched"])
    return {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
