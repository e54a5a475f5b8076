"""`Classifier.load(run_dir).predict(texts)`: the one predictor behind the CLI, server and tests.

Loading rebuilds the base model from its recorded identity (preset, GGUF file, HF directory
or Hub id), checks the base weights' checksum, applies the run's trained tensors and the
run's tokenizer. Prediction is bucketed by length and runs under `torch.inference_mode`;
`dtype="bfloat16"` autocasts, `quantize="int8"` swaps Linear layers for dynamic int8 ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint
from .config import ModelConfig
from .errors import UserError
from .heads import SequenceClassifier
from .model import Decoder
from .tokenizer import Tokenizer, pad_batch
from .train import apply_padding, encode_texts
from .trunk_cache import length_batches


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    truncated: bool = False


class Classifier:
    """A trained run, ready to classify text."""

    def __init__(self, model: SequenceClassifier, tokenizer: Tokenizer, config: dict, metrics: dict | None,
                 run_dir: Path | None = None, dtype: str = "float32", quantize: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.metrics = metrics
        self.run_dir = run_dir
        self.labels: list[str] = list(config["labels"])
        self.max_length: int = int(config["max_length"])
        self.pad_to: int | None = config.get("pad_to")
        self.temperature: float = float(config.get("temperature") or 1.0)  # from calibration on validation
        self.dtype = dtype
        self.quantize = quantize

    @classmethod
    def load(cls, run_dir, *, device: str = "cpu", dtype: str = "float32", quantize: str | None = None) -> Classifier:
        from .loaders import load_model

        run_dir = Path(run_dir)
        cfg = checkpoint.load_run_config(run_dir)
        trained = checkpoint.load_weights(run_dir, cfg)
        mcfg = ModelConfig.from_dict(cfg["model_config"])
        decoder = Decoder(mcfg)
        clf = SequenceClassifier(decoder, len(cfg["labels"]), pooling=cfg.get("pooling", "last"),
                                 causal=cfg.get("causal", True))
        if cfg["weights"].get("full"):
            if cfg.get("lora"):
                from .lora import apply_lora

                apply_lora(clf, **cfg["lora"])
            clf.load_state_dict(trained, strict=True)
        else:
            base = cfg["base_model"]
            lm = load_model(base["source"])
            if base.get("sha256") and lm.identity.get("sha256") and base["sha256"] != lm.identity["sha256"]:
                raise UserError(
                    f"{run_dir / checkpoint.CONFIG}: base model {base['source']} has changed since training "
                    f"(sha256 {lm.identity['sha256'][:12]}..., run expects {base['sha256'][:12]}...)"
                )
            decoder.load_state_dict(lm.state_dict, strict=True)
            if cfg.get("lora"):  # adapters go on after the base weights, before the trained tensors
                from .lora import apply_lora

                apply_lora(clf, **cfg["lora"])
            missing = [k for k in trained if k not in clf.state_dict()]
            if missing:
                raise UserError(f"{run_dir / checkpoint.WEIGHTS}: unexpected tensor '{missing[0]}'")
            clf.load_state_dict(trained, strict=False)
        tok = Tokenizer.load(run_dir)
        metrics = None
        if (run_dir / "metrics.json").exists():
            import json

            metrics = json.loads((run_dir / "metrics.json").read_text())
        if dtype not in ("float32", "bfloat16"):
            raise UserError(f"unknown dtype '{dtype}' (choose from float32, bfloat16)")
        if quantize not in (None, "int8"):
            raise UserError(f"unknown --quantize '{quantize}' (choose from int8)")
        if cfg.get("lora"):
            from .lora import merge_lora

            merge_lora(clf)  # fold adapters into the weights: plain Linear layers predict faster
        if quantize == "int8":
            clf = torch.ao.quantization.quantize_dynamic(clf, {torch.nn.Linear}, dtype=torch.qint8)
        clf.to(device)
        return cls(clf, tok, cfg, metrics, run_dir, dtype=dtype, quantize=quantize)

    # --- prediction -------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        ids, truncated = encode_texts(self.tokenizer, texts, self.max_length)
        return apply_padding(ids, self.pad_to, self.tokenizer.pad_id), truncated

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """(N, C) class probabilities, in the order of `texts`."""
        ids, _ = self.encode(texts)
        return self._proba(ids, batch_size)

    def _proba(self, ids: list[list[int]], batch_size: int) -> torch.Tensor:
        out = torch.empty(len(ids), len(self.labels))
        device = next(self.model.parameters(), torch.empty(0)).device
        for b in length_batches([len(x) for x in ids], batch_size, 8192):
            input_ids, mask = pad_batch([ids[i] for i in b], self.tokenizer.pad_id, side="right")
            with torch.autocast("cpu" if device.type == "cpu" else device.type, dtype=torch.bfloat16,
                                enabled=self.dtype == "bfloat16"):
                logits = self.model(input_ids.to(device), mask.to(device))
            out[b] = torch.softmax(logits.float() / self.temperature, -1).cpu()
        return out

    def predict(self, texts: Sequence[str], *, threshold: float | None = None, batch_size: int = 32) -> list[Prediction]:
        """Label and per-label probabilities for each text. `threshold` (two classes only):
        the second label wins when its probability is at least `threshold`."""
        if threshold is None:
            threshold = self.config.get("threshold")
        if threshold is not None and len(self.labels) != 2:
            raise UserError(f"a threshold needs exactly two labels; this run has {len(self.labels)}")
        texts = list(texts)
        if not texts:
            return []
        ids, truncated = self.encode(texts)
        with torch.inference_mode():
            probs = self._proba(ids, batch_size)
        if threshold is not None:
            pred = (probs[:, 1] >= threshold).long()
        else:
            pred = probs.argmax(-1)
        return [
            Prediction(self.labels[int(k)], {lab: float(p) for lab, p in zip(self.labels, row.tolist())}, t)
            for k, row, t in zip(pred.tolist(), probs, truncated)
        ]

    def predict_stream(self, texts: Iterable[str], *, chunk: int = 1024, **kw) -> Iterator[Prediction]:
        """Predict an iterable of any length, holding `chunk` texts at a time."""
        buf: list[str] = []
        for t in texts:
            buf.append(t)
            if len(buf) >= chunk:
                yield from self.predict(buf, **kw)
                buf = []
        if buf:
            yield from self.predict(buf, **kw)

    def info(self) -> dict:
        c = self.config
        return {
            "labels": self.labels,
            "base_model": c["base_model"],
            "metrics": (self.metrics or {}).get("splits"),
            "pooling": c.get("pooling"),
            "max_length": self.max_length,
            "truncation": bool(c.get("truncation")),
            "threshold": c.get("threshold"),
            "trainable": c.get("trainable"),
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }


def write_predictions(path: Path, preds: Iterable[Prediction]) -> int:
    """Stream predictions to `path` as JSONL via a temporary file renamed at the end."""
    import json
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    n = 0
    try:
        with os.fdopen(fd, "w") as f:
            for p in preds:
                f.write(json.dumps({"label": p.label, "probabilities": p.probabilities, "truncated": p.truncated}) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def evaluate_run(run_dir, *, data: str | None = None, text_column=None, label_column=None, fmt=None,
                 batch_size: int = 32) -> tuple[str, dict]:
    """Metrics of a saved run on a labelled file, or on its own test split (from split.json)."""
    import json

    from .data import LabelMap, load_dataset
    from .evaluate import compute_metrics

    clf = Classifier.load(run_dir)
    if data is None:
        split_path = Path(run_dir) / "split.json"
        if not split_path.exists():
            raise UserError(f"{split_path}: missing; pass --data FILE to evaluate on a labelled file")
        split = json.loads(split_path.read_text())
        texts, labels, name = split["test"]["texts"], split["test"]["labels"], "test"
    else:
        table = load_dataset(data, text_column=text_column, label_column=label_column, fmt=fmt)
        texts, labels, name = table.texts, [str(x) for x in table.labels], Path(data).name
        unknown = sorted(set(labels) - set(clf.labels))
        if unknown:
            raise UserError(f"{data}: label '{unknown[0]}' was not among the run's labels ({', '.join(clf.labels)})")
    lm = LabelMap(clf.labels)
    y = [lm.index(x) if isinstance(x, str) else int(x) for x in labels]
    probs = clf.predict_proba(texts, batch_size=batch_size).numpy()
    import numpy as np

    return name, compute_metrics(np.asarray(y), probs.argmax(-1), probs, clf.labels)
