"""Interrupted training (issue 8): a signal during the epochs saves a resumable state at a
step boundary, and `--resume` finishes with the same model and metrics as a run that was never
interrupted. One test kills a real `llmclassify train` process with SIGTERM and resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llmclassify import resume as resume_mod
from llmclassify.cli import main
from llmclassify.errors import Interrupted, UserError
from llmclassify.train import resume, train

from .conftest import tiny_train_config


def _weights(run: Path) -> dict:
    return load_file(str(run / "classifier.safetensors"))


def _assert_same_run(a: Path, b: Path) -> None:
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    for split in ("train", "val", "test"):
        assert ma["splits"][split]["accuracy"] == mb["splits"][split]["accuracy"], split
        assert ma["splits"][split]["loss"] == pytest.approx(mb["splits"][split]["loss"], abs=1e-6), split
    assert ma["best_epoch"] == mb["best_epoch"]
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)
    ha = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb]
    for ra, rb in zip(ha, hb):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], abs=1e-6)
        assert ra["val_loss"] == pytest.approx(rb["val_loss"], abs=1e-6)


def _interrupt_at(monkeypatch, call: int) -> None:
    """Make the fit loop's stop check say "stop" at its `call`-th boundary, as a signal would."""
    calls = {"n": 0}

    def requested(self):
        calls["n"] += 1
        if calls["n"] >= call:
            self.signum = signal.SIGINT
        return self.signum is not None

    monkeypatch.setattr(resume_mod.GracefulStop, "requested", requested)


# A recipe that exercises every piece of state: LoRA dropout draws from the global RNG, the
# cosine schedule with warmup has a step count, gradient accumulation has boundaries, AdamW
# has moments, keep_best keeps an earlier epoch's weights.
RECIPE = dict(trainable="lora", lora_dropout=0.2, lr_schedule="cosine", warmup_ratio=0.2, grad_accum=2,
              batch_size=4, epochs=3, lr=3e-3)


def _count_steps(monkeypatch) -> dict:
    import llmclassify.train.finetune as train_mod

    n = {"steps": 0}
    real = train_mod.batch_loss

    def counted(*a, **kw):
        n["steps"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(train_mod, "batch_loss", counted)
    return n


# 70 training texts, batch 4: 18 batches an epoch, 9 optimizer-step boundaries (accum 2).
@pytest.mark.parametrize("boundary", [3, 10, 14])  # mid epoch 1, start of epoch 2, mid epoch 2
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, tiny_model_dir, small_data, monkeypatch, boundary):
    ref = tmp_path / "ref"
    with monkeypatch.context() as m:
        total = _count_steps(m)
        train(tiny_train_config(tiny_model_dir, small_data, ref, **RECIPE))

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        before = _count_steps(m)
        _interrupt_at(m, boundary)
        with pytest.raises(Interrupted) as e:
            train(tiny_train_config(tiny_model_dir, small_data, run, **RECIPE))
    assert e.value.exit_code == 130 and "--resume" in str(e.value)
    assert before["steps"] == 2 * (boundary - 1)  # it stopped at the boundary it was told
    assert (run / "resume.safetensors").is_file()
    assert not (run / "config.json").exists()  # no half-made run that predict would load
    with monkeypatch.context() as m:
        after = _count_steps(m)
        resume(run, progress=False)
    assert before["steps"] + after["steps"] == total["steps"]  # it went on, it did not start over
    assert not (run / "resume.safetensors").exists()
    _assert_same_run(ref, run)


def test_resume_refuses_complete_run_changed_data_and_extra_flags(tmp_path, tiny_model_dir, small_data,
                                                                  monkeypatch, capsys):
    run = tmp_path / "run"
    data = tmp_path / "data.tsv"
    data.write_bytes(small_data.read_bytes())
    cfg = tiny_train_config(tiny_model_dir, data, run)
    with monkeypatch.context() as m:
        _interrupt_at(m, 4)
        with pytest.raises(Interrupted):
            train(cfg)
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    data.write_text(data.read_text() + "ham\tone more line\n")
    with pytest.raises(UserError, match="data .* has changed"):
        resume(run, progress=False)
    data.write_bytes(small_data.read_bytes())
    (run / "resume.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert main(["train", "--resume", str(run)]) == 2
    assert "not a readable resume state" in capsys.readouterr().err
    done = tmp_path / "done"
    train(tiny_train_config(tiny_model_dir, small_data, done))
    with pytest.raises(UserError, match="complete; nothing to resume"):
        resume(done, progress=False)


def test_signal_outside_the_epochs_aborts_and_leaves_no_directory(tmp_path, tiny_model_dir, small_data, monkeypatch):
    """A signal while the data or model loads stops at once (KeyboardInterrupt, even for
    SIGTERM) and leaves no empty run directory; there is nothing learned to save yet."""
    import llmclassify.train.run as train_mod

    real = train_mod._prepare_data

    def prepare_then_signal(cfg):
        out = real(cfg)
        os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(train_mod, "_prepare_data", prepare_then_signal)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(tiny_model_dir, small_data, run))
    assert not run.exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def _cli(*args, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "llmclassify", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_killed_training_process_resumes_to_the_same_model(tmp_path, tiny_model_dir, small_data, sig):
    """A real `llmclassify train` process gets a real signal once its first epoch is logged;
    it saves its state and exits 128+signal; `train --resume` in a new process finishes it;
    the result equals an uninterrupted run with the same seed. The run is the search with the
    fine-tuned top (probes, then epochs): the resumed process redoes the probe stage."""
    flags = ["--model", tiny_model_dir, "--data", small_data, "--search-finetune", "--epochs", "6",
             "--batch-size", "2", "--lr", "1e-3", "--seed", "7", "--quiet"]
    ref = tmp_path / "ref"
    assert main(["train", *map(str, flags), "--output", str(ref)]) == 0

    run = tmp_path / "run"
    p = _cli("train", *flags, "--output", run)
    log = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 1):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "no epoch finished in 120 s"
        time.sleep(0.02)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err
    assert "continue with: llmclassify train --resume" in err
    assert "Traceback" not in err
    assert (run / "resume.safetensors").is_file() and not (run / "config.json").exists()
    epochs_done = log.read_text().count("\n")
    assert 1 <= epochs_done < 6  # it really stopped part-way

    r = _cli("train", "--resume", run, "--quiet")
    out, err = r.communicate(timeout=300)
    assert r.returncode == 0, err
    assert "test accuracy" in out
    assert not (run / "resume.safetensors").exists()
    _assert_same_run(ref, run)
