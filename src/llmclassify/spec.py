"""What a trained classifier IS: the run spec, written once to `config.json` by training and
read by `predict`, `evaluate`, `serve`, resume and export.

Every choice that changes a prediction lives here, typed and checked once in
`__post_init__`; nothing downstream re-derives it. `build_classifier(spec, decoder)` turns a
spec and a decoder into the module that maps (input_ids, attention_mask) to logits:

- ``finetune``: the book's recipe: decoder + pooling (last / first / mean) + Linear head,
  the top blocks (or LoRA adapters) trained.
- ``probe``: the frozen decoder run up to the deepest layer the probe reads, pooled vectors of
  the picked layers, standardised, Linear head (probes.py).
- ``hybrid``: a probe whose probabilities are averaged with an n-gram model's, with weight
  `hybrid_weight` on the probe: the baseline saved in the run, or (`--hybrid-ngrams
  words+chars`) TF-IDF over words and characters saved as hybrid_ngrams.json / .safetensors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from .errors import UserError
from .inputs import TRUNCATE

RECIPES = ("finetune", "probe", "hybrid")
Recipe = Literal["finetune", "probe", "hybrid"]
POOLINGS = ("last", "first", "mean")


@dataclass
class RunSpec:
    base_model: dict
    model_config: dict
    labels: list[str]
    recipe: Recipe = "finetune"
    multi_label: bool = False
    pooling: str = "last"  # finetune: which token(s) the head reads
    head_bias: bool = True  # finetune: the Linear head has a bias (HF's `score` has none)
    probe: list[tuple[int, str]] | None = None  # probe / hybrid: the (layer, pooling) vectors read
    hybrid_weight: float | None = None  # hybrid: the probe's share of the averaged probabilities
    window: int | None = None  # probe / hybrid: texts longer than this are read in windows (features.py)
    causal: bool = True
    max_length: int = 1024
    truncation: bool = False
    truncate: str = "head"  # which tokens of a text over max_length are kept (inputs.cut_tokens)
    padding: str = "batch"
    pad_to: int | None = None
    template: str | None = None
    trainable: str = "last-block"
    lora: dict | None = None
    threshold: float | list[float] | None = None
    temperature: float = 1.0
    dtype: str = "float32"
    # The arithmetic the classifier learned from (precision.py), repeated at prediction where the
    # machine has it: a probe's features (every block it runs); a fine-tuned top's trunk cache
    # (blocks [0, frozen_blocks), computed by the shared pass of --recipe auto).
    trunk_dtype: str = "float32"
    frozen_blocks: int = 0
    # int8 trunk: the token ids of the few train texts its SmoothQuant factors were measured on
    # (precision.calibration_ids); prediction measures them again on the same ids.
    calibration_ids: list[list[int]] | None = None
    train_config: dict = field(default_factory=dict)
    # Written by checkpoint.save_run beside the spec (weights file + checksum, pad id, ...).
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise UserError(f"config.json: recipe '{self.recipe}' is not one of {', '.join(RECIPES)}")
        if self.pooling not in POOLINGS:
            raise UserError(f"config.json: pooling '{self.pooling}' is not one of {', '.join(POOLINGS)}")
        if self.truncate not in TRUNCATE:
            raise UserError(f"config.json: truncate '{self.truncate}' is not one of {', '.join(TRUNCATE)}")
        if self.recipe in ("probe", "hybrid"):
            if not self.probe:
                raise UserError(f"config.json: a {self.recipe} run must name its probe's layers")
            self.probe = [(int(layer), str(p)) for layer, p in self.probe]
        if self.recipe == "hybrid" and not (self.hybrid_weight is not None and 0 <= self.hybrid_weight <= 1):
            raise UserError("config.json: a hybrid run needs hybrid_weight between 0 and 1")
        if not self.labels:
            raise UserError("config.json: field 'labels' is empty")
        self.temperature = float(self.temperature or 1.0)

    @property
    def depth(self) -> int | None:
        """Blocks the decoder runs at prediction time (None: all of them)."""
        return max(layer for layer, _ in self.probe) if self.probe else None

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        return d | extra

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        """From config.json; unknown keys go to `extra` (older runs lack the newer fields)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in d.items() if k in known and v is not None}
        return cls(**values, extra={k: v for k, v in d.items() if k not in known})


def build_classifier(spec: RunSpec, decoder):
    """The module predicting for `spec`: (input_ids, attention_mask) -> logits (B, C)."""
    n = len(spec.labels)
    if spec.recipe == "finetune":
        from .heads import SequenceClassifier

        return SequenceClassifier(decoder, n, pooling=spec.pooling, causal=spec.causal, bias=spec.head_bias)
    from .probes import ProbeClassifier

    return ProbeClassifier(decoder, spec.probe, n, causal=spec.causal)
