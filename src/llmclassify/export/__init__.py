"""Take a trained run elsewhere: `export_run(run, fmt, output)`.

- ``hf`` (hf.py): a directory plain Hugging Face transformers loads with
  `AutoModelForSequenceClassification` / `AutoTokenizer` / `pipeline`, no custom code.
- ``onnx`` (onnx.py): model.onnx (ids + mask -> probabilities) with the run's tokenizer and
  settings; its `OnnxClassifier` predicts from it with onnxruntime and numpy, without torch.

Every format runs the same stages: check from the run's spec alone that the format can express
the run (else one line naming the reason and what would work, before any model loads), check the
output directory, load the run in float32, write the directory whole or not at all
(files.atomic_dir: the directory is the unit that appears at once, so the files inside are
written plainly, some by transformers and torch.onnx), and reload what was written to compare
its probabilities with the run's.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from ..errors import UserError

FORMATS = ("hf", "onnx")


def export_run(run_dir, fmt: str, output, *, overwrite: bool = False) -> Path:
    """Export the run in `run_dir` as `fmt` (one of FORMATS) into the directory `output`."""
    from .. import checkpoint
    from ..files import atomic_dir
    from ..predict import Classifier
    from ..spec import RunSpec

    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    exporter = import_module(f".{fmt}", __name__)
    output = Path(output)
    spec = RunSpec.from_dict(checkpoint.load_run_config(run_dir))
    exporter.check_expressible(spec)
    exporter.check_requirements()
    checkpoint.check_output_dir(output, overwrite)
    clf = Classifier.load(run_dir, trunk_dtype="float32")  # the graph / weights in float32
    with atomic_dir(output) as tmp:
        exporter.write(clf, tmp)
        exporter.verify(clf, tmp)
        for f in tmp.iterdir():  # an export is for sharing: readable by all (atomic_open's are owner-only)
            f.chmod(0o644)
    return output


def sample_texts(clf, n: int = 16) -> list[str]:
    """Texts to check an export on: the run's first `n` test texts (split.json) and a few fixed
    ones, one long enough to be cut at the run's max length when that is short."""
    import json

    split = Path(clf.run_dir or ".") / "split.json"
    texts: list[str] = []
    if split.is_file():
        try:
            texts = list(json.loads(split.read_text(encoding="utf-8"))["test"]["texts"][:n])
        except (ValueError, KeyError, TypeError):
            texts = []
    texts = [t for t in texts if t.strip()]  # transformers' tokenizer gives an empty text no token
    return texts + ["Hello, how are you?", "WINNER!! Claim your free prize now", "ok",
                    " ".join(["a longer text"] * 40)]
