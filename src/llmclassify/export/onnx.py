"""`llmclassify export RUN --format onnx`, and `OnnxClassifier`, which predicts from the result.

The directory::

    model.onnx, model.onnx.data   input_ids, attention_mask (int64, batch x length, both dynamic)
                                  -> probabilities (float32, batch x labels): the run's module
                                  (fine-tuned or probe, LoRA merged, float32) and its scoring
                                  (softmax(logits / temperature), or sigmoid for multi-label)
    tokenizer.json, tokenizer_meta.json   the run's tokenizer (tokenizer.Tokenizer)
    classifier.json               labels and settings (below) and the run's spec
    metrics.json                  the run's metrics

classifier.json says what a caller in any language needs: `labels`, `multi_label`, `template`
(put each text into it before tokenizing), `max_length` and `truncate` (keep the first N ids, or
for head-tail the first N // 4 and the last N - N // 4: inputs.cut_tokens), `add_bos`,
`pad_id` and `padding_side` (right; pooling reads the mask, so the pad id only fills space),
`pad_to` (visible padding: every text cut or padded to N, the pads marked real in the mask),
`threshold` (applied to the probabilities; `temperature` is already inside the graph).

Exported with PyTorch's own exporter (torch.onnx.export, dynamo), checked with onnx.checker,
then run with onnxruntime against the torch module on sample texts. `OnnxClassifier` is a
`predict.Predictor`: the same encoding, decisions and streaming as the torch `Classifier`,
with onnxruntime and numpy underneath (no torch import).

Not exported: hybrid runs (the TF-IDF baseline is not a graph) and probes that read long texts
as windows (the graph reads each text whole): one line says so and what would work.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..inputs import length_batches
from ..predict import Prediction, Predictor, read_metrics
from ..tokenizer import Tokenizer, pad_arrays

MODEL = "model.onnx"
SETTINGS = "classifier.json"
FORMAT = "llmclassify-onnx"
FORMAT_VERSION = 1
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "probabilities"


# --- what the graph can express ----------------------------------------------------------------
def check_expressible(spec) -> None:
    if spec.recipe == "hybrid":
        raise UserError("export --format onnx: this run averages a probe with a TF-IDF model (recipe "
                        "hybrid), which is not a graph: train with --recipe probe or --recipe finetune")
    if spec.window:
        raise UserError(f"export --format onnx: this probe reads texts longer than {spec.window} tokens as "
                        "windows, which the graph does not: train with --window 0 (whole texts) or "
                        "--recipe finetune")


def check_requirements() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx's exporter)
    except ImportError as e:
        raise UserError(f"export --format onnx needs onnx, onnxruntime and onnxscript ({e}): "
                        "pip install 'llmclassify[export]'") from None


# --- writing -----------------------------------------------------------------------------------
def write(clf, out: Path) -> None:
    """model.onnx (checked with onnx.checker), the tokenizer, classifier.json, metrics.json."""
    from ..checkpoint import atomic_write_json

    _export_graph(clf, out / MODEL)
    clf.tokenizer.save(out)
    atomic_write_json(out / SETTINGS, settings(clf))
    if clf.metrics is not None:
        atomic_write_json(out / "metrics.json", clf.metrics)


def settings(clf) -> dict:
    """classifier.json: what a caller needs to prepare inputs and decide (module docstring),
    and the run's spec, which `OnnxClassifier` reads."""
    sp, tok = clf.spec, clf.tokenizer
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": MODEL, "inputs": list(INPUTS),
            "output": OUTPUT, "labels": clf.labels, "multi_label": sp.multi_label, "template": sp.template,
            "max_length": sp.max_length, "truncate": sp.truncate, "add_bos": tok.add_bos, "bos_id": tok.bos_id, "pad_id": tok.pad_id,
            "padding_side": "right", "pad_to": sp.pad_to, "threshold": sp.threshold,
            "temperature": sp.temperature, "temperature_in_graph": True, "run": sp.to_dict()}


def _export_graph(clf, path: Path) -> None:
    import logging
    import warnings

    import onnx
    import torch

    from ..scoring import probabilities

    class Probabilities(torch.nn.Module):
        """The run's module and its scoring: (input_ids, attention_mask) -> probabilities."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return probabilities(self.model(input_ids, attention_mask), multi_label=clf.multi_label,
                                 temperature=clf.temperature)

    ids, mask = _sample_batch(clf)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about torchvision's operators, unused here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Probabilities(clf.model).eval(), (torch.from_numpy(ids), torch.from_numpy(mask)),
                              str(path), input_names=list(INPUTS), output_names=[OUTPUT],
                              dynamic_shapes={n: {0: batch, 1: length} for n in INPUTS},
                              dynamo=True, external_data=True, optimize=True, verbose=False)
    finally:
        exporter_log.setLevel(level)
    onnx.checker.check_model(str(path), full_check=True)


def _sample_batch(clf) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch of encoded sample texts of different lengths (the exporter traces it)."""
    from . import sample_texts

    ids, _ = clf.encode(sample_texts(clf, 4))
    return pad_arrays(ids, clf.tokenizer.pad_id, side="right")


def verify(clf, out: Path) -> None:
    """The exported graph, run by onnxruntime through `OnnxClassifier`, against the torch
    module on sample texts, batched with padding and one by one: over 1e-4 is a bug."""
    from . import sample_texts

    texts = sample_texts(clf)
    want = clf.predict_proba(texts).numpy()
    onnx_clf = OnnxClassifier.load(out)
    for got in (onnx_clf.predict_proba(texts), np.concatenate([onnx_clf.predict_proba([t]) for t in texts])):
        diff = float(np.abs(got - want).max())
        if diff > 1e-4:
            raise RuntimeError(f"ONNX export: onnxruntime's probabilities differ from the run's by {diff:.2e}")


# --- reading -----------------------------------------------------------------------------------
def is_onnx_export(path) -> bool:
    return (Path(path) / SETTINGS).is_file()


class OnnxClassifier(Predictor):
    """An ONNX export, ready to classify text: the same interface as `predict.Classifier`."""

    runtime = "onnxruntime"

    def __init__(self, session, tokenizer: Tokenizer, config: dict, metrics: dict | None, source: Path):
        super().__init__(tokenizer, config, metrics, source)
        self.session = session

    @classmethod
    def load(cls, directory) -> OnnxClassifier:
        """Open an export: classifier.json (format checked), the tokenizer, an onnxruntime
        session on model.onnx (CPU)."""
        import onnxruntime

        directory = Path(directory)
        where = directory / SETTINGS
        try:
            meta = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{where}: not readable JSON ({type(e).__name__}: {e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("run"), dict):
            raise UserError(f"{where}: not an llmclassify ONNX export (format '{FORMAT}')")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise UserError(f"{where}: format version {meta['format_version']} is newer than this llmclassify "
                            f"reads ({FORMAT_VERSION}); upgrade llmclassify")
        model = directory / meta.get("model", MODEL)
        try:
            session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own error types
            raise UserError(f"{model}: cannot load the ONNX model ({' '.join(str(e).split())[:200]})") from None
        return cls(session, Tokenizer.load(directory), meta["run"], read_metrics(directory), directory)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(N, C) probabilities, in the order of `texts`."""
        ids, _ = self.encode(texts)
        return self._proba(ids, batch_size, texts)

    def _proba(self, ids: list[list[int]], batch_size: int, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        for b in length_batches([len(x) for x in ids], batch_size, 8192):
            input_ids, mask = pad_arrays([ids[i] for i in b], self.tokenizer.pad_id, side="right")
            out[b] = self.session.run([OUTPUT], {"input_ids": input_ids, "attention_mask": mask})[0]
        return out

    def predict_stream(self, texts: Iterable[str], *, chunk: int = 1024, **kw) -> Iterator[Prediction]:
        """Predict an iterable of any length, holding `chunk` texts at a time (one process:
        onnxruntime's threads use the cores)."""
        texts = iter(texts)
        while buf := list(islice(texts, chunk)):
            yield from self.predict(buf, **kw)
