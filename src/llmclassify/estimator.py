"""`LLMClassifier`: a scikit-learn estimator over the same training and prediction as the CLI.

    from llmclassify import LLMClassifier
    clf = LLMClassifier(model="gpt2", recipe="finetune", epochs=3).fit(texts, labels)
    clf.predict(texts), clf.predict_proba(texts), clf.score(texts, labels), clf.classes_
    clf.save("runs/spam"); LLMClassifier.load("runs/spam")        # a run directory

`fit` writes the texts and labels to a JSONL file and calls `train.train(TrainConfig(...))`, the
function behind `llmclassify train`, into a run directory (a temporary one, removed with the
estimator, unless `output_dir` is given); prediction goes through that run's
`predict.Classifier`, so a saved estimator is a run every command reads, and `load` reads any
run. Every constructor argument is a TrainConfig field with the same name and default (bar
`progress`, off here) or `validation_fraction`, stored as given and checked by TrainConfig
at `fit`: `get_params` / `set_params`, `sklearn.base.clone`, `cross_val_score` and
`GridSearchCV` work.

The split: everything `fit` gets trains, except `validation_fraction` of it (stratified) held
out for what training decides on validation (the recipe search, the best epoch, calibration,
the threshold); no test split: scikit-learn's own splitters hold data out.

scikit-learn is imported by this module only: `import llmclassify` does not load it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from dataclasses import fields
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .errors import UserError
from .train.config import TrainConfig

ESTIMATOR_FILE = "estimator.json"
# The TrainConfig fields a user tunes; each is a constructor argument with TrainConfig's default.
TRAIN_PARAMS = ("model", "recipe", "search_finetune", "probe", "template", "max_length", "window", "long_texts", "pooling", "head_bias", "trainable",
                "epochs", "batch_size", "lr", "weight_decay", "class_weights", "lora_rank", "lora_alpha",
                "calibrate", "tune_threshold", "baseline", "hybrid_ngrams", "trunk_dtype", "seed")
_D = {f.name: f.default for f in fields(TrainConfig)}


class LLMClassifier(ClassifierMixin, BaseEstimator):
    """A pretrained decoder LLM fine-tuned (or probed) as a text classifier. X: a sequence of
    strings; y: one label per text (strings or numbers)."""

    def __init__(self, model=_D["model"], recipe=_D["recipe"], search_finetune=_D["search_finetune"], probe=_D["probe"], template=_D["template"],
                 max_length=_D["max_length"], window=_D["window"], long_texts=_D["long_texts"], pooling=_D["pooling"], head_bias=_D["head_bias"],
                 trainable=_D["trainable"], epochs=_D["epochs"], batch_size=_D["batch_size"], lr=_D["lr"],
                 weight_decay=_D["weight_decay"], class_weights=_D["class_weights"], lora_rank=_D["lora_rank"],
                 lora_alpha=_D["lora_alpha"], calibrate=_D["calibrate"], tune_threshold=_D["tune_threshold"],
                 baseline=_D["baseline"], hybrid_ngrams=_D["hybrid_ngrams"], trunk_dtype=_D["trunk_dtype"], seed=_D["seed"],
                 validation_fraction=0.1, output_dir=None, progress=False):
        self.model = model
        self.recipe = recipe
        self.search_finetune = search_finetune
        self.probe = probe
        self.template = template
        self.max_length = max_length
        self.window = window
        self.long_texts = long_texts
        self.pooling = pooling
        self.head_bias = head_bias
        self.trainable = trainable
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.class_weights = class_weights
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.calibrate = calibrate
        self.tune_threshold = tune_threshold
        self.baseline = baseline
        self.hybrid_ngrams = hybrid_ngrams
        self.trunk_dtype = trunk_dtype
        self.seed = seed
        self.validation_fraction = validation_fraction
        self.output_dir = output_dir
        self.progress = progress

    # --- training -----------------------------------------------------------------------------
    def fit(self, X, y) -> LLMClassifier:
        """Train on texts `X` with labels `y` (see the module docstring for the split)."""
        from .train import train

        texts, labels = _texts(X), list(y)
        if len(texts) != len(labels):
            raise ValueError(f"X has {len(texts)} texts but y has {len(labels)} labels")
        classes = _classes(labels)
        v = float(self.validation_fraction)
        if not 0 < v < 1:
            raise ValueError(f"validation_fraction must be between 0 and 1, got {self.validation_fraction!r}")
        from .checkpoint import atomic_write_json
        from .files import atomic_open

        run_dir = self._new_run_dir()
        with tempfile.TemporaryDirectory(prefix="llmclassify-fit-") as tmp:
            data = Path(tmp) / "fit.jsonl"
            with atomic_open(data, "w") as f:
                for t, lab in zip(texts, labels):
                    f.write(json.dumps({"text": t, "label": _name(lab)}) + "\n")
            cfg = TrainConfig(**{k: getattr(self, k) for k in TRAIN_PARAMS}, data=str(data), data_format="jsonl",
                              split=(1 - v, v, 0.0), output_dir=str(run_dir), overwrite=True,
                              progress=bool(self.progress))
            train(cfg)
        atomic_write_json(run_dir / ESTIMATOR_FILE, {"params": self.get_params(), "classes": classes.tolist()})
        return self._open(run_dir, classes)

    def _new_run_dir(self) -> Path:
        """`output_dir`, or a temporary directory removed when the estimator goes (or refits)."""
        if getattr(self, "_cleanup", None) is not None:
            self._cleanup()
        if self.output_dir is not None:
            self._cleanup = None
            return Path(self.output_dir)
        path = Path(tempfile.mkdtemp(prefix="llmclassify-run-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(path), True)
        return path

    def _open(self, run_dir: Path, classes: np.ndarray) -> LLMClassifier:
        """The fitted state: the run's predictor, its metrics, `classes_` and where each class
        is among the run's labels (the run sorts its label names its own way). A class of `y`
        too small to split, which training left out (data.prepare), stays a class of
        `classes_`, one that is never predicted: its probability column is zero."""
        from .predict import Classifier

        self.run_dir_ = Path(run_dir)
        self.classifier_ = Classifier.load(run_dir)
        self.metrics_ = self.classifier_.metrics
        self.classes_ = classes
        names = [_name(c) for c in classes]
        if not set(self.classifier_.labels) <= set(names):
            raise UserError(f"{run_dir}: its labels ({', '.join(self.classifier_.labels)}) are not the "
                            f"estimator's classes ({', '.join(names)})")
        self._columns = [(i, self.classifier_.labels.index(n)) for i, n in enumerate(names)
                         if n in self.classifier_.labels]
        return self

    # --- prediction -----------------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        """(N, n_classes) probabilities, columns in the order of `classes_`."""
        run = self.classifier_.predict_proba(_texts(X)).numpy()
        out = np.zeros((len(run), len(self.classes_)), dtype=run.dtype)
        for column, label in self._columns:
            out[:, column] = run[:, label]
        return out

    def predict(self, X) -> np.ndarray:
        """The run's decision for each text (its tuned threshold, if any), as a class of `classes_`."""
        by_name = {_name(c): c for c in self.classes_}
        preds = self.classifier_.predict(_texts(X))
        return np.asarray([by_name[p.label] for p in preds], dtype=self.classes_.dtype)

    # --- run directory ----------------------------------------------------------------------------
    def save(self, path, *, overwrite: bool = False) -> Path:
        """Copy the fitted run directory to `path` (written whole or not at all)."""
        from .checkpoint import check_output_dir
        from .files import atomic_dir

        path = Path(path)
        check_output_dir(path, overwrite)
        with atomic_dir(path) as tmp:
            shutil.copytree(self.run_dir_, tmp, dirs_exist_ok=True)
        return path

    @classmethod
    def load(cls, path) -> LLMClassifier:
        """A fitted estimator from a run directory: one `save` wrote (its parameters and classes
        come back) or any `llmclassify train` run (parameters from its training config, classes
        = its label names). A refit trains into a new temporary directory (output_dir None)."""
        from .checkpoint import load_run_config

        path = Path(path)
        cfg = load_run_config(path)
        if (path / ESTIMATOR_FILE).is_file():
            meta = json.loads((path / ESTIMATOR_FILE).read_text(encoding="utf-8"))
            params, classes = meta["params"], np.asarray(meta["classes"])
        else:
            train_cfg = cfg.get("train_config") or {}
            params = {k: train_cfg[k] for k in TRAIN_PARAMS if k in train_cfg}
            classes = np.asarray(cfg["labels"])
        est = cls(**(params | {"output_dir": None}))
        return est._open(path, classes)


def _texts(X) -> list[str]:
    texts = list(X)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"X must hold texts (str); item {bad} is {type(texts[bad]).__name__}")
    return texts


def _classes(labels: list) -> np.ndarray:
    """The sorted distinct labels (scikit-learn's `classes_`); single-label only."""
    if any(isinstance(lab, (list, tuple, set, np.ndarray)) for lab in labels):
        raise ValueError("y must hold one label per text; for multi-label data use llmclassify train --label-sep")
    classes = np.unique(np.asarray(labels))
    names = [_name(c) for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"two labels of y read as the same name: {names}")
    return classes


def _name(label) -> str:
    """A label's name in the run directory (its labels are strings)."""
    return str(label.item() if isinstance(label, np.generic) else label)
