"""Several processes under PyTorch's launcher (`torchrun`): the process group and its plumbing.

This module owns everything that knows about ranks. `session()` starts the process group
from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) only when
WORLD_SIZE > 1; otherwise every helper here is a no-op or the identity, so a single process
runs exactly the code it always ran. Backend: nccl when CUDA is available, gloo on CPU
($LLMCLASSIFY_DIST_BACKEND overrides). With nccl the helpers move their buffers to this
rank's GPU for the collective and back, so callers pass and get tensors where they keep them.

The contract every caller relies on: each rank calls the same collectives in the same order
with the same inputs where inputs must agree (the shared seed, the same data file), and
`shard(items)` gives each rank a disjoint, strided share that `shard(items, rank=r)`
reproduces on any other rank, so shares can be put back in order without sending indices.
See docs/distributed.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import UserError

T = TypeVar("T")
BACKEND_ENV = "LLMCLASSIFY_DIST_BACKEND"


# --- process group ----------------------------------------------------------------------------
def env_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment variables, when WORLD_SIZE > 1
    and no group exists yet. Returns True when this call created the group."""
    if dist.is_initialized() or env_world_size() <= 1:
        return False
    backend = backend or os.environ.get(BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)  # init_method env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    return True


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(backend: str | None = None) -> Iterator[None]:
    """`with session():` the body runs inside the process group (if torchrun started several
    processes); the group is destroyed on leaving only if this session created it."""
    created = init(backend)
    try:
        yield
    finally:
        if created:
            teardown()


def rank() -> int:
    return _rank()


def _rank() -> int:  # for functions whose `rank` argument hides rank()
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the process that logs and writes files."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --- work sharing ---------------------------------------------------------------------------
def shard(items: Sequence[T], rank: int | None = None, world: int | None = None) -> list[T]:
    """This rank's share of `items`: items[rank::world] (DistributedSampler's strided split,
    without padding). Strided, so a length-sorted list gives every rank texts of every length.
    All of `items` in a single process."""
    r = _rank() if rank is None else rank
    w = world_size() if world is None else world
    return list(items[r::w])


@contextmanager
def local_main_first() -> Iterator[None]:
    """The first process of each machine runs the body first (e.g. a download into the
    machine's cache); the machine's other processes run it after."""
    if world_size() > 1 and local_rank() != 0:
        dist.barrier()
    try:
        yield
    finally:
        if world_size() > 1 and local_rank() == 0:
            dist.barrier()


def on_main(fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)` on rank 0 only (writing the run directory); every rank returns
    its result, or raises: the same UserError, or a RuntimeError naming rank 0's failure."""
    if world_size() == 1:
        return fn(*args, **kwargs)
    result, error, caught = None, None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # told to the other ranks, so that they do not wait forever
            caught = e
            error = (isinstance(e, UserError), str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}")
    result, error = broadcast_object((result, error))
    if caught is not None:
        raise caught
    if error is not None:
        user_error, msg = error
        raise UserError(msg) if user_error else RuntimeError(f"rank 0 failed: {msg}")
    return result


# --- collectives ----------------------------------------------------------------------------
def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over ranks (a new tensor on `t`'s device); `t` itself in one process."""
    if world_size() == 1:
        return t
    buf = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(buf)
    return buf.to(t.device)


def all_reduce_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum the gradients of `params` (the TRAINABLE ones) over ranks, in one flat buffer; call
    it before optimizer.step(). Each rank's loss is already its share of the global batch
    mean, so the sum is the gradient of the global batch. A parameter without a gradient on
    one rank (it had no text this step) counts as zeros there; one without a gradient on every
    rank keeps None, so the optimizer skips it as it would in one process."""
    if world_size() == 1:
        return
    params = list(params)
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    present = torch.tensor([float(p.grad is not None) for p in params], dtype=grads[0].dtype)
    flat = all_reduce_sum(torch.cat([g.reshape(-1) for g in grads] + [present.to(grads[0].device)]))
    seen = flat[-len(params):] > 0
    offset = 0
    for p, ok in zip(params, seen.tolist()):
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p) if ok else None
        offset += n


def broadcast(t: torch.Tensor, src: int) -> torch.Tensor:
    """Rank `src`'s tensor on every rank; other ranks pass a tensor of the same shape and dtype."""
    if world_size() == 1:
        return t
    buf = t.contiguous().to(_comm_device())
    dist.broadcast(buf, src)
    return buf.to(t.device)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s picklable object on every rank (`obj` itself in one process)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """Every rank's picklable object, in rank order ([obj] in one process)."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_tensors(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's tensor, in rank order; the first dimension may differ between ranks (sizes
    are gathered first, each tensor padded to the largest for the collective, then cut)."""
    if world_size() == 1:
        return [t]
    dev = _comm_device()
    sizes = torch.tensor([t.shape[0]], dtype=torch.long, device=dev)
    all_sizes = [torch.empty_like(sizes) for _ in range(world_size())]
    dist.all_gather(all_sizes, sizes)
    n = [int(s) for s in all_sizes]
    padded = torch.zeros((max(n), *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in n]
    dist.all_gather(parts, padded)
    return [p[:k].to(t.device) for p, k in zip(parts, n)]


def gather_rows(values: torch.Tensor, index: Sequence[int], n: int) -> torch.Tensor:
    """Put rows computed on different ranks back in order: on each rank `values[k]` belongs at
    row `index[k]` of the whole; returns the whole (n, ...) on every rank. The ranks' indices
    must cover 0..n-1 exactly once."""
    parts = all_gather_tensors(values)
    indices = all_gather_tensors(torch.as_tensor(list(index), dtype=torch.long))
    if sum(len(i) for i in indices) != n:
        raise ValueError(f"gather_rows: ranks hold {sum(len(i) for i in indices)} rows, expected {n}")
    out = values.new_empty((n, *values.shape[1:]))
    for v, i in zip(parts, indices):
        out[i] = v
    return out


def sharded_map(fn: Callable[[list], list], items: Iterable, chunk: int = 1024) -> Iterator:
    """`fn` over `items`, each rank taking its share of every chunk of `chunk` items; yields
    the results of all ranks in the order of `items` (on every rank). `fn(list) -> list` of
    the same length; every rank must iterate the same `items`."""
    buf: list = []
    for x in items:
        buf.append(x)
        if len(buf) >= chunk:
            yield from _map_chunk(fn, buf)
            buf = []
    if buf:
        yield from _map_chunk(fn, buf)


def _map_chunk(fn: Callable[[list], list], items: list) -> list:
    if world_size() == 1:
        return fn(items)
    positions = range(len(items))
    parts = all_gather_object(fn(shard(items)))
    out: list = [None] * len(items)
    for r, part in enumerate(parts):
        for i, v in zip(shard(positions, rank=r), part):
            out[i] = v
    return out
