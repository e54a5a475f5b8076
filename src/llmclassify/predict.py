"""`Classifier.load(run_dir).predict(texts)`: the one predictor behind the CLI, server and tests.

Loading rebuilds the base model from its recorded identity (preset, GGUF file, HF directory
or Hub id), checks the base weights' checksum, applies the run's trained tensors and the
run's tokenizer. Prediction is bucketed by length and runs under `torch.inference_mode`;
`dtype="bfloat16"` autocasts, `quantize="int8"` swaps Linear layers for dynamic int8 ones.

`Predictor` is what every predictor shares (encoding, decisions, streaming, info): the torch
`Classifier` here and the ONNX export's `export.onnx.OnnxClassifier` implement `_proba` only.
`open_classifier(path)` opens either, the one place the CLI and the server do. torch is
imported only where a torch `Classifier` needs it, so an ONNX directory predicts without it.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import checkpoint
from .config import ModelConfig
from .errors import UserError
from .inputs import apply_padding, encode_texts, length_batches, pad_batch
from .scoring import decide, probabilities, score
from .spec import RunSpec, build_classifier
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One text's prediction. Single-label: `label` is the decision. Multi-label runs: `labels`
    is the decision (every label whose sigmoid probability reaches its threshold; may be
    empty), `label` the most probable label, and the probabilities are independent."""

    label: str
    probabilities: dict[str, float]
    truncated: bool = False
    labels: list[str] | None = None


@dataclass
class StreamReport:
    """What `Classifier.predict_records` saw: rows, and the rows worth a warning (with the line
    of the first of each kind)."""

    rows: int = 0
    truncated: int = 0
    empty: int = 0
    first_truncated: int | None = None
    first_empty: int | None = None


def _build_model(run_dir: Path, cfg: dict, spec: RunSpec, trunk_dtype: str = "auto") -> torch.nn.Module:
    """The run's module: base weights (unless the run saved full weights), LoRA adapters, the
    trained tensors; LoRA merged; a probe's decoder cut after the deepest layer it reads."""
    from .loaders import load_model
    from .model import Decoder

    trained = checkpoint.load_weights(run_dir, cfg)
    model_config = ModelConfig.from_dict(spec.model_config)
    if cfg["weights"].get("full"):  # every tensor is in the run
        decoder = Decoder(model_config)
    else:
        base = spec.base_model
        lm = load_model(base["source"])
        if base.get("sha256") and lm.identity.get("sha256") and base["sha256"] != lm.identity["sha256"]:
            raise UserError(
                f"{run_dir / checkpoint.CONFIG}: base model {base['source']} has changed since training "
                f"(sha256 {lm.identity['sha256'][:12]}..., run expects {base['sha256'][:12]}...)"
            )
        decoder = Decoder.from_state_dict(model_config, lm.state_dict)
    clf = build_classifier(spec, decoder)
    if spec.lora:  # adapters go on after the base weights, before the trained tensors
        from .lora import apply_lora

        apply_lora(clf, **spec.lora)
    unexpected = [k for k in trained if k not in clf.state_dict()]
    if unexpected:
        raise UserError(f"{run_dir / checkpoint.WEIGHTS}: unexpected tensor '{unexpected[0]}'")
    clf.load_state_dict(trained, strict=bool(cfg["weights"].get("full")))
    if spec.lora:
        from .lora import merge_lora

        merge_lora(clf)  # fold adapters into the weights: plain Linear layers predict faster
    if spec.depth is not None:  # early exit: the blocks above the probe's deepest layer never run
        del decoder.blocks[spec.depth:]
    if trunk_dtype != "float32" and spec.trunk_dtype != "float32":
        from .precision import fast_bfloat16, reduced_blocks

        # the arithmetic the classifier learned from, where this machine has it
        if spec.trunk_dtype == "int8" or fast_bfloat16("cpu"):
            # a fine-tuned top: the frozen blocks below it; a probe: every block it runs
            n = spec.frozen_blocks if spec.recipe == "finetune" else len(decoder.blocks)
            reduced_blocks(decoder, n, spec.trunk_dtype, spec.calibration_ids, spec.causal, in_place=True)
            if spec.recipe == "finetune":
                clf.reduced_blocks = spec.frozen_blocks
    return clf


def read_metrics(directory: Path) -> dict | None:
    """metrics.json of a run (or an export, which copies it), or None when absent."""
    path = Path(directory) / "metrics.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def read_split(run_dir) -> dict | None:
    """split.json of a run: the texts, label ids and source lines of train / val / test, and the
    label names; None when absent (an export, or a run saved without it)."""
    path = Path(run_dir) / "split.json"
    if not path.exists():
        return None
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
        for name in ("train", "val", "test"):
            if len(split[name]["texts"]) != len(split[name]["labels"]):
                raise ValueError(f"{name}: {len(split[name]['texts'])} texts, {len(split[name]['labels'])} labels")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a valid split file ({type(e).__name__}: {e})") from None
    return split


class Predictor:
    """What every predictor of a run shares: its spec, tokenizer and metrics; encoding; the
    decision from probabilities; streaming; info. Subclasses implement `_proba` and name their
    `runtime`."""

    runtime: str
    baseline = None  # baseline.Baseline where the TF-IDF model is saved beside the predictor (a run's)

    def __init__(self, tokenizer: Tokenizer, config: dict, metrics: dict | None, source: Path | None = None):
        self.tokenizer = tokenizer
        self.config = config
        self.spec = RunSpec.from_dict(config)
        self.metrics = metrics
        self.run_dir = source
        self.labels: list[str] = list(self.spec.labels)
        self.max_length: int = int(self.spec.max_length)
        self.pad_to: int | None = self.spec.pad_to
        self.temperature: float = self.spec.temperature  # from calibration on validation
        self.multi_label: bool = self.spec.multi_label

    def _proba(self, ids: list[list[int]], batch_size: int, texts: Sequence[str]) -> np.ndarray:
        """(N, C) float32 probabilities of encoded texts (`texts`: their raw strings)."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        ids, truncated = encode_texts(self.tokenizer, texts, self.max_length, self.spec.template, self.spec.truncate)
        return apply_padding(ids, self.pad_to, self.tokenizer.pad_id), truncated

    def predict(self, texts: Sequence[str], *, threshold: float | None = None, batch_size: int = 32) -> list[Prediction]:
        """Label and per-label probabilities for each text. `threshold` (two classes only):
        the second label wins when its probability is at least `threshold` (default: the
        run's tuned threshold, if any). Multi-label: `threshold` applies to every label
        (default: the run's per-label thresholds)."""
        decision = self.decision_threshold(threshold)
        texts = list(texts)
        if not texts:
            return []
        ids, truncated = self.encode(texts)
        probs = self._proba(ids, batch_size, texts)
        chosen = decide(probs, multi_label=self.multi_label, threshold=decision)
        out = []
        for row, c, t in zip(probs, chosen, truncated):
            p = {lab: float(v) for lab, v in zip(self.labels, row.tolist())}
            if self.multi_label:
                out.append(Prediction(self.labels[int(row.argmax())], p, t,
                                      labels=[lab for lab, on in zip(self.labels, c.tolist()) if on]))
            else:
                out.append(Prediction(self.labels[int(c)], p, t))
        return out

    def decision_threshold(self, threshold: float | None = None) -> float | list[float] | None:
        """The threshold `scoring.decide` applies: `threshold` if given, else the run's own.
        Single-label: a number (two classes only) or None (argmax). Multi-label: one per label."""
        if threshold is not None and not (isinstance(threshold, (int, float)) and threshold == threshold):
            raise UserError(f"threshold must be a number, got {threshold!r}")
        if self.multi_label:
            return self.thresholds(threshold)
        if threshold is None:
            threshold = self.spec.threshold
        if threshold is not None and len(self.labels) != 2:
            raise UserError(f"a threshold needs exactly two labels; this run has {len(self.labels)}")
        return threshold

    def thresholds(self, threshold: float | None = None) -> list[float]:
        """Multi-label: each label's threshold (`threshold` for all of them, else the run's
        per-label thresholds tuned on validation, else 0.5)."""
        if threshold is not None:
            return [float(threshold)] * len(self.labels)
        saved = self.spec.threshold
        return [float(t) for t in saved] if isinstance(saved, list) else [0.5] * len(self.labels)

    def predict_stream(self, texts: Iterable[str], *, chunk: int = 1024, **kw) -> Iterator[Prediction]:
        """Predict an iterable of any length, holding `chunk` texts at a time. Under torchrun
        (`llmclassify predict --input`) every process reads the same texts, predicts its share
        of each chunk and yields all predictions in order (distributed.sharded_map)."""
        from . import distributed

        yield from distributed.sharded_map(lambda buf: self.predict(buf, **kw), texts, chunk)

    def predict_records(self, records: Iterable[tuple[int, str, dict]], *, report: StreamReport | None = None,
                        chunk: int = 1024, **kw) -> Iterator[tuple[int, dict, Prediction]]:
        """`predict_stream` over `(line, text, kept columns)` records (as `data.iter_records`
        gives them), yielding `(line, kept columns, prediction)` in order and counting truncated
        and empty texts into `report`. An empty text is scored as the pad token alone; the count
        lets the caller say so."""
        report = report if report is not None else StreamReport()
        waiting: deque[tuple[int, dict]] = deque()  # at most `chunk` records wait for their prediction

        def texts():
            for line, text, kept in records:
                if not text.strip():
                    report.empty += 1
                    report.first_empty = report.first_empty or line
                waiting.append((line, kept))
                yield text

        for pred in self.predict_stream(texts(), chunk=chunk, **kw):
            line, kept = waiting.popleft()
            report.rows += 1
            if pred.truncated:
                report.truncated += 1
                report.first_truncated = report.first_truncated or line
            yield line, kept, pred

    def info(self) -> dict:
        sp = self.spec
        return {
            "labels": self.labels,
            "base_model": sp.base_model,
            "metrics": (self.metrics or {}).get("splits"),
            "pooling": sp.pooling,
            "max_length": self.max_length,
            "truncation": sp.truncation,
            "threshold": sp.threshold,
            "multi_label": self.multi_label,
            "trainable": sp.trainable,
            "recipe": sp.recipe,
            "probe": sp.probe,
            "baseline": (self.metrics or {}).get("baseline"),
            "runtime": self.runtime,
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }


class Classifier(Predictor):
    """A trained run, ready to classify text (PyTorch)."""

    runtime = "torch"

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, config: dict, metrics: dict | None,
                 run_dir: Path | None = None, dtype: str = "float32", quantize: str | None = None,
                 baseline=None, hybrid_ngrams=None):
        super().__init__(tokenizer, config, metrics, run_dir)
        self.model = model.eval()
        self.dtype = dtype
        self.quantize = quantize
        self.baseline = baseline  # baseline.Baseline: scored beside the run
        # what a hybrid run averages in: its words + characters partner where it has one, else the baseline
        self.hybrid_ngrams = hybrid_ngrams or baseline

    @classmethod
    def load(cls, run_dir, *, device: str = "cpu", dtype: str = "float32", quantize: str | None = None,
             trunk_dtype: str = "auto") -> Classifier:
        """Rebuild the run's classifier from its spec: the base model (checksum checked), the
        trained tensors, the tokenizer. A probe keeps only the blocks it reads (early exit),
        and runs them in the arithmetic its features were computed in (bfloat16 where this
        machine has it fast, int8; `trunk_dtype="float32"` forces float32: exporters do)."""

        from .baseline import PARTNER_STEM, Baseline

        run_dir = Path(run_dir)
        if dtype not in ("float32", "bfloat16"):
            raise UserError(f"unknown dtype '{dtype}' (choose from float32, bfloat16)")
        if quantize not in (None, "int8"):
            raise UserError(f"unknown --quantize '{quantize}' (choose from int8)")
        from .precision import hold_freed_memory

        hold_freed_memory()
        cfg = checkpoint.load_run_config(run_dir)
        spec = RunSpec.from_dict(cfg)
        if spec.trunk_dtype == "int8" and not str(device).startswith("cpu"):
            trunk_dtype = "float32"  # int8 blocks are a CPU arithmetic; elsewhere the float32 function
        clf = _build_model(run_dir, cfg, spec, trunk_dtype)
        tok = Tokenizer.load(run_dir)
        metrics = read_metrics(run_dir)
        if quantize == "int8":
            from .precision import quantize_int8

            clf = quantize_int8(clf)
        clf.to(device)
        return cls(clf, tok, cfg, metrics, run_dir, dtype=dtype, quantize=quantize, baseline=Baseline.load(run_dir),
                   hybrid_ngrams=Baseline.load(run_dir, PARTNER_STEM))

    # --- prediction -------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """(N, C) class probabilities, in the order of `texts`."""
        import torch

        ids, _ = self.encode(texts)
        return torch.from_numpy(self._proba(ids, batch_size, texts))

    def _proba(self, ids: list[list[int]], batch_size: int, texts: Sequence[str]) -> np.ndarray:
        """(N, C) probabilities of encoded texts; a hybrid run averages in its n-gram partner's,
        which reads the `texts` themselves."""
        out = self._model_proba(ids, batch_size).numpy()
        if self.spec.recipe == "hybrid":
            w = self.spec.hybrid_weight
            out = (w * out + (1 - w) * self.hybrid_ngrams.proba(texts)).astype(np.float32)
        return out

    def _model_proba(self, ids: list[list[int]], batch_size: int) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            if self.spec.window and max(map(len, ids), default=0) > self.spec.window:  # long texts: windows
                logits = self.model.logits_windowed(ids, self.tokenizer.pad_id, self.spec.window, batch_size)
                return probabilities(logits.cpu(), multi_label=self.multi_label, temperature=self.temperature)
            out = torch.empty(len(ids), len(self.labels))
            device = next(self.model.parameters(), torch.empty(0)).device
            for b in length_batches([len(x) for x in ids], batch_size, 8192):
                input_ids, mask = pad_batch([ids[i] for i in b], self.tokenizer.pad_id, side="right")
                with torch.autocast("cpu" if device.type == "cpu" else device.type, dtype=torch.bfloat16,
                                    enabled=self.dtype == "bfloat16"):
                    logits = self.model(input_ids.to(device), mask.to(device))
                out[b] = probabilities(logits.cpu(), multi_label=self.multi_label, temperature=self.temperature)
            return out


def open_classifier(path, *, dtype: str = "float32", quantize: str | None = None) -> Predictor:
    """A run directory (`Classifier`) or an ONNX export (`export.onnx.OnnxClassifier`, no torch),
    ready to predict: the one place the CLI and the server open what they are given."""
    from .export.onnx import OnnxClassifier, is_onnx_export

    if is_onnx_export(path):
        if dtype != "float32" or quantize:
            raise UserError(f"{path}: an ONNX export runs as it was exported (float32); --dtype and "
                            "--quantize apply to run directories")
        return OnnxClassifier.load(path)
    return Classifier.load(path, dtype=dtype, quantize=quantize)


# `--output`'s format, by the file's suffix: a table for a spreadsheet or pandas, else JSON lines.
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
PROBABILITY_COLUMN = "p_{}"  # a table's column of one class's probability
LABELS_JOIN = "|"  # a table's cell of a multi-label decision: the labels joined


def prediction_rows(preds: Iterable[Prediction | tuple[int, dict, Prediction]]) -> Iterator[dict]:
    """What `--output` writes of each prediction: `label`, `probabilities`, `truncated` (and the
    decision `labels` of a multi-label run). Items may be `(line, kept columns, prediction)`
    (from `predict_records`); then each row also records the input line it belongs to and the
    input columns kept beside it (after the line; KEPT_CLASH_PREFIX)."""
    for item in preds:
        line, kept, p = item if isinstance(item, tuple) else (None, {}, item)
        row = {"label": p.label, "probabilities": p.probabilities, "truncated": p.truncated}
        if p.labels is not None:  # multi-label: the decision
            row["labels"] = p.labels
        if line is not None:
            own = {"line", *row, *(PROBABILITY_COLUMN.format(c) for c in p.probabilities)}
            row = {"line": line, **{KEPT_CLASH_PREFIX + k if k in own else k: v for k, v in kept.items()}, **row}
        yield row


# A kept input column named as a field of the prediction row (or of its table: p_spam) gets this
# prefix: a labelled file's true label kept as `input_label` beside the predicted `label`.
KEPT_CLASH_PREFIX = "input_"


def table_row(row: dict) -> dict:
    """A prediction row (prediction_rows) flat, for a CSV / TSV: one PROBABILITY_COLUMN per
    class in the run's order, the multi-label decision LABELS_JOIN-ed."""
    flat = {k: v for k, v in row.items() if k not in ("probabilities", "truncated")}
    if "labels" in flat:
        flat["labels"] = LABELS_JOIN.join(flat["labels"])
    flat.update({PROBABILITY_COLUMN.format(k): f"{v:.6f}" for k, v in row["probabilities"].items()})
    flat["truncated"] = row["truncated"]
    return flat


def write_predictions(path: Path, preds: Iterable[Prediction | tuple[int, dict, Prediction]]) -> int:
    """Stream predictions to `path` via a temporary file renamed at the end, so an interrupted
    run leaves no partial file: a CSV / TSV table where the name ends so (TABLE_DELIMITERS;
    table_row), else JSON lines (prediction_rows). The number of rows written."""
    import csv

    from .files import atomic_open

    path = Path(path)
    checkpoint.check_output_file(path)
    delimiter = TABLE_DELIMITERS.get(path.suffix.lower())
    n = 0
    with atomic_open(path, "w") as f:
        table = None
        for row in prediction_rows(preds):
            if delimiter is None:
                f.write(json.dumps(row) + "\n")
            else:
                row = table_row(row)
                if table is None:
                    table = csv.DictWriter(f, fieldnames=list(row), delimiter=delimiter, lineterminator="\n")
                    table.writeheader()
                table.writerow(row)
            n += 1
    return n


def evaluate_run(run_dir, *, data: str | None = None, text_column=None, label_column=None, fmt=None,
                 batch_size: int = 32, encoding: str = "utf-8", compare=None) -> tuple[str, dict]:
    """Metrics of a saved run (or an ONNX export: open_classifier) on a labelled file, or on a
    run's own test split (from split.json).

    Warns (logging) when texts were truncated, a run label is absent from the data, or texts of
    a labelled file are among the run's own training texts; the metrics record `truncated` (how
    many texts were cut to the run's max length). `compare`: a second run scored on the same
    texts (compare_runs), in `comparison`."""
    from .data import LabelMap, load_dataset

    clf = open_classifier(run_dir)
    other = open_classifier(compare) if compare is not None else None
    if data is None:
        split, split_path = read_split(run_dir), Path(run_dir) / "split.json"
        if split is None:
            raise UserError(f"{split_path}: missing (an export keeps no split); pass --data FILE to evaluate on a "
                            "labelled file")
        texts, labels, name = split["test"]["texts"], split["test"]["labels"], "test"
        if not texts:
            raise UserError(f"{run_dir}: the run was trained without a test split; pass --data FILE to evaluate "
                            "on a labelled file")
    else:
        label_sep = (clf.config.get("train_config") or {}).get("label_sep")
        table = load_dataset(data, text_column=text_column, label_column=label_column, fmt=fmt,
                             label_sep=label_sep if clf.multi_label else None, encoding=encoding)
        texts, labels, name = table.texts, table.labels, Path(data).name
        if not clf.multi_label:
            labels = [str(x) for x in labels]
        seen = {n for lab in labels for n in (lab if isinstance(lab, list) else [lab])}
        unknown = sorted(seen - set(clf.labels))
        left_out = ((clf.metrics or {}).get("data") or {}).get("classes_left_out") or {}
        if unknown and unknown[0] in left_out:
            raise UserError(f"{data}: label '{unknown[0]}' had {left_out[unknown[0]]} training text"
                            f"{'' if left_out[unknown[0]] == 1 else 's'}, too few to split, and the run left it out")
        if unknown:
            raise UserError(f"{data}: label '{unknown[0]}' was not among the run's labels ({', '.join(clf.labels)})")
    lm = LabelMap(clf.labels)

    def ids_of(x):
        if isinstance(x, list):  # multi-label: names (a data file) or ids (split.json)
            return [lm.index(v) if isinstance(v, str) else int(v) for v in x]
        return lm.index(x) if isinstance(x, str) else int(x)

    y = [ids_of(x) for x in labels]
    where = data if data is not None else split_path
    present = {i for x in y for i in (x if isinstance(x, list) else [x])}
    absent = [n for i, n in enumerate(clf.labels) if i not in present]
    if absent:
        log.warning("%s: %d of the run's %d labels never occur (%s); their recall and F1 are 0 "
                    "and ROC-AUC may be undefined", where, len(absent), len(clf.labels), ", ".join(absent))
    if not texts:
        raise UserError(f"{where}: no texts to evaluate")
    if other is not None:  # before either run scores a text
        check_comparable(clf, run_dir, other, compare, test_texts=texts if data is None else None)
    ids, truncated = clf.encode(texts)
    probs = clf._proba(ids, batch_size, texts)
    if clf.multi_label:
        from .multilabel import multi_hot

        y = multi_hot(y, len(clf.labels)).numpy()
    metrics = score(probs, y, clf.labels, multi_label=clf.multi_label, threshold=clf.decision_threshold())
    pred = None if clf.multi_label else decide(probs, threshold=clf.decision_threshold())  # what the run decides
    if clf.baseline is not None and pred is not None:  # the baseline on the same texts, and how far apart
        from .evaluate import paired_difference

        p_base = clf.baseline.proba(texts)
        metrics["baseline"] = score(p_base, y, clf.labels)
        metrics["baseline_difference"] = paired_difference(y, pred, decide(p_base), len(clf.labels))
    metrics["truncated"] = int(sum(truncated))
    if metrics["truncated"]:
        log.warning("%s: %d of %d texts are longer than %d tokens and were truncated", where,
                    metrics["truncated"], len(texts), clf.max_length)
    if data is not None:
        warn_seen_in_training(run_dir, texts, where)
    if other is not None:
        if data is not None:
            warn_seen_in_training(compare, texts, where)
        metrics["comparison"] = compare_runs(clf, other, compare, texts, y, pred, batch_size)
    return name, metrics


def warn_seen_in_training(run_dir, texts: Sequence[str], where) -> int:
    """How many of `texts` are among the run's train + validation texts (split.json), logged
    as a warning when any: the figures on those are not held out."""
    split = read_split(run_dir) or {}
    seen = {t for part in ("train", "val") for t in (split.get(part) or {}).get("texts", [])}
    n = sum(t in seen for t in texts)
    if n:
        log.warning("%s: %d of its %d texts are among %s's training or validation texts; its figures on "
                    "them are not held out", where, n, len(texts), run_dir)
    return n


def check_comparable(clf: Predictor, run_dir, other: Predictor, other_dir, test_texts: Sequence[str] | None
                     ) -> None:
    """Two runs compare (compare_runs) when both are single-label runs of the same classes (in
    the same order: runs sort their label names) and, on the first run's own test split
    (`test_texts`), the second was trained on the same split: else the first one's test texts
    may be the second one's training texts. A labelled file both are scored on compares runs
    split differently."""
    if clf.multi_label or other.multi_label:
        raise UserError(f"{other_dir}: runs are compared on single-label runs; score multi-label runs with "
                        "evaluate each")
    if other.labels != clf.labels:
        raise UserError(f"{other_dir}: its labels ({', '.join(other.labels)}) are not {run_dir}'s "
                        f"({', '.join(clf.labels)}); runs are compared on the same classes")
    if test_texts is None:
        return
    split = read_split(other_dir)
    if split is None or split["test"]["texts"] != list(test_texts):
        what = "has no split.json (an export keeps none)" if split is None else f"its test split is not {run_dir}'s"
        raise UserError(f"{other_dir}: {what}; pass --data FILE, texts neither run was trained on, to compare them")


def compare_runs(clf: Predictor, other: Predictor, other_dir, texts: Sequence[str], y, pred: np.ndarray,
                 batch_size: int) -> dict:
    """A second run (check_comparable) on the texts `clf` was scored on (true label ids `y`, its
    decisions `pred`): its metrics (decided by its own threshold), and the paired difference
    `clf` minus it (evaluate.paired_difference)."""
    from .evaluate import paired_difference

    ids, truncated = other.encode(texts)
    p_other = other._proba(ids, batch_size, texts)
    metrics = score(p_other, y, other.labels, threshold=other.decision_threshold())
    metrics["truncated"] = int(sum(truncated))
    difference = paired_difference(y, pred, decide(p_other, threshold=other.decision_threshold()), len(clf.labels))
    return {"run": str(other_dir), "metrics": metrics, "difference": difference}
