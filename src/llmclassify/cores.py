"""The search's independent fits spread over the machine's cores, in forked processes.

The probe search and the baseline's cross-validation are many small fits (L-BFGS steps over a
few thousand weights, a ridge solve per candidate), each a chain of products too small to
split across threads: numpy's BLAS runs them on one thread (train/run.one_blas_thread), and
the second core sat idle through that stage. Python threads did not fill it: each fit's
Python between products holds the GIL, and fitting two folds at a time on threads inside a
real `train` run was slower than one (docs/measurements.md). Processes have a GIL each.

`map_forked(fn, items)` runs fn over the items in processes forked from this one: they see
every array the caller built before the call (the features, copy on write) without copying
it, and send back only each item's result. The same code on the same bits: the results equal
a loop's bit for bit. Where forking is not the platform's way (Windows; macOS, whose system
libraries are not safe to use after a fork) or not allowed (inside a daemonic worker process,
such as one of map_forked's own), and with one core, the items run in a loop here.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

import torch

_task = None  # the function map_forked's workers run: set before they fork, so they inherit it


def _start_worker():
    """A worker's torch on one thread: the cores are the workers' (OpenMP's thread team is not
    the forked process's to use, and a worker's own map_forked runs its loop). The run's
    signal handlers (resume.py keeps a SIGTERM or Ctrl-C for the next checkpoint) are the
    parent's: a worker ends on SIGTERM and leaves Ctrl-C to the parent. With the handler
    inherited, a worker of multiprocessing.Pool kept waiting for work through the SIGTERM
    that ends it, and the run hung."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(item):
    return _task(item)


def workers(n_items: int) -> int:
    """Processes map_forked uses for n_items: the run's cores (torch's intra-op threads, which
    OMP_NUM_THREADS and torchrun set), at most one per item; 1 where it cannot fork."""
    can_fork = (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
                and not multiprocessing.current_process().daemon)
    return max(1, min(n_items, torch.get_num_threads())) if can_fork else 1


def map_forked(fn, items: list) -> list:
    """[fn(item) for item in items], the items shared among `workers` forked processes, in
    order; an item's exception is raised here, and a worker that dies (the kernel's OOM
    killer) raises BrokenProcessPool rather than leaving the run waiting. fn's results travel
    back pickled: keep them small (a fold's held rows, not all of them)."""
    global _task
    items = list(items)
    n = workers(len(items))
    if n <= 1:
        return [fn(item) for item in items]
    _task = fn
    try:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_start_worker) as pool:
            return list(pool.map(_run, items))
    finally:
        _task = None
