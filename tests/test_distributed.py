"""Several processes (torchrun, gloo on CPU): the helpers of distributed.py in two real processes,
and a 2-process training run that must equal a 1-process run with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from llmclassify import distributed as dist
from llmclassify.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cwd, nproc: int = 2, timeout: int = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", *args]
    env = os.environ | {"OMP_NUM_THREADS": "1", "LLMCLASSIFY_DIST_BACKEND": "gloo"}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


# --- the helpers, in one process: identities ----------------------------------------------------
def test_helpers_are_identities_in_one_process():
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    assert dist.shard([3, 1, 2]) == [3, 1, 2]
    assert dist.shard(list(range(7)), rank=1, world=3) == [1, 4]
    vals = torch.tensor([[30.0], [10.0], [20.0]])
    assert dist.gather_rows(vals, [2, 0, 1], 3).flatten().tolist() == [10.0, 20.0, 30.0]
    assert list(dist.sharded_map(lambda xs: [x * 2 for x in xs], range(5), chunk=2)) == [0, 2, 4, 6, 8]
    assert dist.on_main(lambda x: x + 1, 1) == 2
    with dist.session():  # no WORLD_SIZE: no process group
        assert not torch.distributed.is_initialized()


# --- the helpers, in two real processes ---------------------------------------------------------
def _worker(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", LLMCLASSIFY_DIST_BACKEND="gloo")
    with dist.session():
        assert (dist.rank(), dist.world_size()) == (rank, 2)
        # ordered gather: 7 rows scattered in a shuffled order, uneven shares (4 and 3)
        order = [5, 2, 6, 0, 3, 1, 4]
        mine = dist.shard(order)
        rows = torch.tensor([[float(i), 10.0 * i] for i in mine])
        whole = dist.gather_rows(rows, mine, 7)
        assert whole.tolist() == [[float(i), 10.0 * i] for i in range(7)]
        # variable first dimension, an empty share, bfloat16
        t = torch.full((3 * rank, 2), float(rank + 1), dtype=torch.bfloat16)
        parts = dist.all_gather_tensors(t)
        assert [p.shape[0] for p in parts] == [0, 3] and parts[1].dtype == torch.bfloat16
        assert parts[1].float().eq(2.0).all()
        assert dist.all_gather_object({"rank": rank}) == [{"rank": 0}, {"rank": 1}]
        assert dist.broadcast(torch.tensor([rank + 5.0]), src=1).item() == 6.0
        assert dist.broadcast(torch.empty(0, 3), src=0).shape == (0, 3)  # a rank with no texts
        assert dist.gather_rows(torch.ones(0, 2) if rank else torch.ones(1, 2), [] if rank else [0], 1).shape == (1, 2)
        # streamed map: results of both ranks come back in the input's order, on both ranks
        assert list(dist.sharded_map(lambda xs: [x * x for x in xs], range(11), chunk=4)) == [
            x * x for x in range(11)]
        # gradients: summed; a rank without a gradient counts as zeros; none anywhere stays None
        a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
        a.grad = torch.tensor([1.0, 2.0]) * (rank + 1)
        b.grad = torch.tensor([5.0, 7.0]) if rank == 0 else None
        dist.all_reduce_grads([a, b, c])
        assert a.grad.tolist() == [3.0, 6.0] and b.grad.tolist() == [5.0, 7.0] and c.grad is None
        assert dist.all_reduce_sum(torch.tensor(rank + 1.0)).item() == 3.0
        # rank 0's UserError reaches every rank (no rank waits forever)

        def refuse():
            raise UserError("out: exists")

        with pytest.raises(UserError, match="out: exists"):
            dist.on_main(refuse)
        assert dist.on_main(lambda: "from rank 0" if dist.is_main() else "wrong") == "from rank 0"
    assert not torch.distributed.is_initialized()


def test_helpers_in_two_processes():
    torch.multiprocessing.spawn(_worker, args=(free_port(),), nprocs=2, join=True)


# --- training and prediction under torchrun -----------------------------------------------------
def test_torchrun_training_equals_one_process_with_the_global_batch(tiny_run, tiny_model_dir, small_data,
                                                                    tmp_path):
    """2 processes x batch 4 == 1 process x batch 8 (tiny_run: seed 7, 2 epochs, lr 1e-3, class
    weights auto), with the trunk cache computed in shares and evaluation sharded."""
    from safetensors.torch import load_file

    run = tmp_path / "dist"
    r = torchrun(["-m", "llmclassify", "train", "--model", str(tiny_model_dir), "--data", str(small_data),
                  "-o", str(run), "--epochs", "2", "--batch-size", "4", "--lr", "1e-3", "--seed", "7",
                  "--recipe", "finetune", "--quiet"], cwd=tmp_path)
    assert r.stdout.count("run saved to") == 1  # rank 0 alone reports

    assert {p.name for p in run.iterdir()} == {p.name for p in tiny_run.iterdir()}
    one, two = load_file(tiny_run / "classifier.safetensors"), load_file(run / "classifier.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        # A key bias has an exactly zero gradient (a constant added to every key score leaves
        # the softmax unchanged), so AdamW turns rounding noise into steps of up to lr each.
        tol = dict(atol=1e-3 * 20, rtol=0) if name.endswith("k_proj.bias") else {}
        torch.testing.assert_close(two[name], one[name], **tol, msg=name)

    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (tiny_run, run))
    for s in ("train", "val", "test"):
        assert m2["splits"][s]["confusion_matrix"] == m1["splits"][s]["confusion_matrix"]
        assert m2["splits"][s]["loss"] == pytest.approx(m1["splits"][s]["loss"], abs=1e-5)
    h1, h2 = ([json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (tiny_run, run))
    assert [h["epoch"] for h in h2] == [h["epoch"] for h in h1] == [1, 2]
    for a, b in zip(h1, h2):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-5)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["distributed"] == {"world_size": 2, "global_batch_size": 8}
    assert "distributed" not in json.loads((tiny_run / "config.json").read_text())


def test_torchrun_predict_shards_and_keeps_the_order(tiny_run, tmp_path):
    from llmclassify.predict import Classifier

    split = json.loads((tiny_run / "split.json").read_text())
    texts = [f"{t} {i}" for i, t in enumerate((split["test"]["texts"] + split["train"]["texts"]) * 20)][:1100]
    inp = tmp_path / "in.txt"
    inp.write_text("".join(t.replace("\n", " ") + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    r = torchrun(["-m", "llmclassify", "predict", str(tiny_run), "--input", str(inp), "--output", str(out)],
                 cwd=tmp_path)
    assert r.stdout.count("wrote 1100 predictions") == 1
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    want = Classifier.load(tiny_run).predict([t.replace("\n", " ") for t in texts])
    assert [x["label"] for x in rows] == [p.label for p in want]
    got = torch.tensor([list(x["probabilities"].values()) for x in rows])
    torch.testing.assert_close(got, torch.tensor([list(p.probabilities.values()) for p in want]))
