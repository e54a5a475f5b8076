"""What a training run is asked to do: `TrainConfig` (the CLI's flags are its fields), the
named presets, and their parsing. No torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import UserError
from ..heads import POOLINGS
from ..inputs import check_template
from ..loaders.presets import DEFAULT_MODEL

SPLITS = ("train", "val", "test")
RECIPES = ("auto", "finetune", "probe")


@dataclass
class TrainConfig:
    """Everything a training run needs; the CLI fills it from flags, tests build it directly."""

    model: str = DEFAULT_MODEL
    data: str = "sms-spam"
    # auto: search probes on the trunk's layers, a probe + TF-IDF hybrid and the fine-tuned top
    # by held-out macro-F1 (search.py); finetune: the book's recipe; probe: probes only.
    recipe: str = "auto"
    probe: str | None = None  # one probe instead of the search, e.g. "mean@22" or "mean@16+22,last@30"
    probe_layers: tuple[int, ...] | None = None  # layers the pass keeps (default: features.probe_layers)
    baseline: str = "tfidf"  # tfidf | none: the TF-IDF + logistic regression shown beside the run
    template: str | None = None  # prompt template applied before tokenising, e.g. "Message: {text}\nCategory:"
    # Probes read texts longer than `window` tokens as consecutive windows (features.py): the
    # attention cost stays linear in a text's length. 0: whole texts (up to --max-length).
    window: int = 512
    output_dir: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    data_format: str | None = None
    encoding: str = "utf-8"  # text encoding of the data file: utf-8, latin-1, cp1252, utf-16, ...
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 123
    dedupe: bool = True
    balance: str = "none"  # none | undersample
    split_method: str = "stratified"  # stratified | reference (the book's exact split)
    # Multi-label: a separator that splits the label field ("|" in "sport|politics"); JSONL
    # lists are multi-label without it. Sigmoid + BCE, one threshold per label (validation).
    label_sep: str | None = None
    pooling: str = "last"
    trainable: str = "last-block"
    padding: str = "batch"  # batch | longest-train | fixed:N
    max_length: int | None = None  # tokens; None -> the model's context length
    causal: bool = True
    epochs: int = 5
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.1
    class_weights: str = "auto"  # auto | none
    early_stopping: int = 0  # patience in epochs; 0 = off
    keep_best: bool = True  # keep the epoch with the lowest validation loss (else the last epoch)
    trunk_cache: str = "auto"  # auto | off
    cache_dtype: str = "float32"  # float32 | bfloat16
    cache_memory_gb: float = 4.0
    bucket: bool = True  # length-bucketed training batches
    # LoRA (--trainable lora): adapters on `lora_targets` of every block, or of the top
    # -lora_blocks blocks when it is negative (the trunk below them stays cached).
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lora_blocks: int | None = None
    lr_schedule: str = "constant"  # constant | linear | cosine (after warmup)
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = None
    # After training, on the validation split: temperature scaling (calibrate) and, for two
    # classes, a decision threshold maximising F1 or reaching a target precision.
    calibrate: bool = False
    tune_threshold: str | None = None  # None | f1 | precision
    target_precision: float | None = None
    full_weights: bool = False
    overwrite: bool = False
    progress: bool = True
    preset: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise UserError(f"unknown --recipe '{self.recipe}' (choose from {', '.join(RECIPES)})")
        if self.baseline not in ("tfidf", "none"):
            raise UserError(f"unknown --baseline '{self.baseline}' (choose from tfidf, none)")
        if self.probe is not None and self.recipe == "finetune":
            raise UserError("--probe names a probe; it needs --recipe probe or auto, not finetune")
        check_template(self.template)
        if self.window < 0:
            raise UserError("--window must be 0 (whole texts) or a number of tokens")
        if self.probe_layers is not None:
            self.probe_layers = tuple(int(x) for x in self.probe_layers)
        if self.pooling not in POOLINGS:
            raise UserError(f"unknown --pooling '{self.pooling}' (choose from {', '.join(POOLINGS)})")
        if self.balance not in ("none", "undersample"):
            raise UserError(f"unknown --balance '{self.balance}' (choose from none, undersample)")
        if self.class_weights not in ("auto", "none"):
            raise UserError(f"unknown --class-weights '{self.class_weights}' (choose from auto, none)")
        if self.cache_dtype not in ("float32", "bfloat16"):
            raise UserError(f"unknown --cache-dtype '{self.cache_dtype}' (choose from float32, bfloat16)")
        parse_padding(self.padding)
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise UserError(f"unknown --lr-schedule '{self.lr_schedule}' (choose from constant, linear, cosine)")
        if self.tune_threshold not in (None, "f1", "precision"):
            raise UserError(f"unknown --tune-threshold '{self.tune_threshold}' (choose from f1, precision)")
        if self.tune_threshold == "precision" and self.target_precision is None:
            raise UserError("--tune-threshold precision needs --target-precision")
        self.lora_targets = tuple(self.lora_targets)
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        self.split = tuple(float(x) for x in self.split)

    def to_dict(self) -> dict:
        return asdict(self)


# `--preset reference`: chapter 6 of the book: its split (no dedupe, ham undersampled to 747,
# shuffled and cut 70/10/20 with seed 123), its optimiser, batch, epochs and trainable part,
# its final-epoch model, pooling the last token. "Last token" is our `last` pooling: the last
# REAL token, read from the attention mask, so padding every text to the longest training text
# (as the book does) changes no number and only costs time; we pad per batch. The book's
# literal variant, where the eos pad tokens are visible input and the final pad is pooled, is
# `--padding longest-train` (the experiments table has both rows).
PRESETS = {
    "reference": dict(
        recipe="finetune",
        split_method="reference",
        dedupe=False,
        balance="undersample",
        seed=123,
        padding="batch",
        pooling="last",
        trainable="last-block",
        lr=5e-5,
        weight_decay=0.1,
        batch_size=8,
        epochs=5,
        class_weights="none",
        keep_best=False,  # the book evaluates the model after its last epoch
    ),
}


def with_preset(cfg: TrainConfig, preset: str | None, overrides: set[str] = frozenset()) -> TrainConfig:
    """Apply a named preset to `cfg`; fields named in `overrides` (set by the user) win."""
    if not preset:
        return cfg
    if preset not in PRESETS:
        raise UserError(f"unknown --preset '{preset}' (choose from {', '.join(PRESETS)})")
    values = {k: v for k, v in PRESETS[preset].items() if k not in overrides}
    d = cfg.to_dict() | values | {"preset": preset}
    return TrainConfig(**d)


def parse_padding(padding: str) -> tuple[str, int | None]:
    """'batch' -> ('batch', None); 'longest-train'; 'fixed:N' -> ('fixed', N)."""
    if padding in ("batch", "longest-train"):
        return padding, None
    if padding.startswith("fixed:"):
        try:
            n = int(padding.split(":", 1)[1])
        except ValueError:
            n = 0
        if n >= 1:
            return "fixed", n
    raise UserError(f"unknown --padding '{padding}' (choose from batch, longest-train, fixed:N)")


def config_from_args(values: dict, preset: str | None) -> TrainConfig:
    """TrainConfig from CLI values (None = not given), the preset filling what was not given."""
    known = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in values.items() if k in known and v is not None}
    cfg = TrainConfig(**given)
    return with_preset(cfg, preset, overrides=set(given))
