"""One self-contained run directory, written so that no file is ever half-written.

Layout::

    config.json            base model identity + checksum, model config, labels, pooling,
                           padding, max length, pad id, trainable part, weights checksum
    classifier.safetensors the trained tensors (only what training changed, unless --full-weights)
    tokenizer.json, tokenizer_meta.json
    metrics.json           train / val / test metrics, timings, data report
    metrics.jsonl          one line per epoch
    baseline.json, baseline.safetensors   the TF-IDF + logistic regression baseline (baseline.py)
    hybrid_ngrams.json, .safetensors      a hybrid's words + characters partner (--hybrid-ngrams, baseline.py)
    curves.png             loss and accuracy per epoch
    split.json             which source rows went to which split

Every file goes to a temporary name in the same directory and is renamed into place;
config.json is written last, so a directory without it is an unfinished run. Only JSON and
safetensors are ever read back (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .errors import UserError
from .files import atomic_open, atomic_write_bytes

CONFIG = "config.json"
WEIGHTS = "classifier.safetensors"
FORMAT_VERSION = 1


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line; a crash leaves at most a last line that readers skip."""
    with open(path, "a") as f:
        f.write(json.dumps(record, default=_json_default) + "\n")


def check_output_file(path: Path) -> None:
    """Fail early, with a one-line UserError, when `path` cannot be written as a file: its
    folder is missing or it is a directory. Checked before slow work (loading a model)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name for the output")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write in {parent} (permission denied)")


def check_output_dir(path: Path, overwrite: bool = False) -> None:
    """Fail early, with a one-line UserError, when `path` cannot become a new output directory
    (files.atomic_dir writes it): its folder is missing, or it exists, is not an empty
    directory and `overwrite` is off. Checked before slow work (loading a model)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write in {parent} (permission denied)")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise UserError(f"{path}: output directory exists and is not empty (use --overwrite to replace it)")


def prepare_run_dir(path: Path, overwrite: bool = False) -> None:
    """Create `path`; refuse a non-empty one unless `overwrite` (then empty it)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise UserError(f"{path}: output directory exists and is not empty (use --overwrite to replace it)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def save_weights(path: Path, tensors: dict) -> str:
    """Write tensors as safetensors atomically; return the file's sha256."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def save_run(
    out_dir: Path,
    clf,
    *,
    run_config: dict,
    tokenizer,
    metrics: dict,
    history: list[dict],
    split: dict | None,
    full_weights: bool,
    trainable: list[str],
    baseline=None,
    hybrid_ngrams=None,
) -> None:
    out_dir = Path(out_dir)
    state = clf.state_dict()
    names = list(state) if full_weights else trainable
    sha = save_weights(out_dir / WEIGHTS, {n: state[n] for n in names})
    tokenizer.save(out_dir)  # each file through atomic_open
    if baseline is not None:  # baseline.Baseline: TF-IDF vocabulary + linear weights
        baseline.save(out_dir)
    if hybrid_ngrams is not None:  # the n-gram model a hybrid run averages in
        from .baseline import PARTNER_STEM

        hybrid_ngrams.save(out_dir, PARTNER_STEM)
    atomic_write_json(out_dir / "metrics.json", metrics)
    if split is not None:
        atomic_write_json(out_dir / "split.json", split)
    write_curves(out_dir / "curves.png", history)
    config = dict(run_config)
    config.update(
        format_version=FORMAT_VERSION,
        weights={"file": WEIGHTS, "sha256": sha, "full": full_weights, "tensors": len(names)},
        pad_id=tokenizer.pad_id,
        tokenizer={"file": "tokenizer.json", "pad_source": tokenizer.pad_source},
    )
    atomic_write_json(out_dir / CONFIG, config)


def load_run_config(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    if not path.exists():
        raise UserError(f"{path}: missing (not a run directory, or the run did not finish)")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a JSON object")
    for key in ("base_model", "model_config", "labels", "weights", "max_length"):
        if key not in cfg:
            raise UserError(f"{path}: field '{key}' is missing")
    return cfg


def load_weights(run_dir: Path, cfg: dict) -> dict:
    """The run's trained tensors, after checking the file's checksum against config.json."""
    from safetensors.torch import load

    w = cfg.get("weights")
    where = Path(run_dir) / CONFIG
    if not isinstance(w, dict) or not isinstance(w.get("file"), str) or not isinstance(w.get("sha256"), str):
        raise UserError(f"{where}: field 'weights' must name the weights file and its sha256")
    # Only a safetensors file inside the run directory is ever read (never pickle).
    if Path(w["file"]).name != w["file"] or not w["file"].endswith(".safetensors"):
        raise UserError(f"{where}: weights file '{w['file']}' is not a .safetensors file in the run directory")
    path = Path(run_dir) / w["file"]
    if not path.exists():
        raise UserError(f"{path}: weights file is missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != cfg["weights"]["sha256"]:
        raise UserError(f"{path}: checksum does not match config.json (file truncated or altered)")
    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error types
        raise UserError(f"{path}: not a valid safetensors file ({e})") from None


def write_curves(path: Path, history: list[dict]) -> None:
    """Loss and validation accuracy per epoch as a PNG (matplotlib, headless)."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    validated = all("val_loss" in h for h in history)  # a run without a validation split has no val_*
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    if validated:
        a.plot(ep, [h["val_loss"] for h in history], "o-", label="validation")
        b.plot(ep, [h["val_accuracy"] for h in history], "o-", color="C1", label="validation")
        b.legend()
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    b.set_xlabel("epoch")
    b.set_ylabel("validation accuracy")
    fig.tight_layout()
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
