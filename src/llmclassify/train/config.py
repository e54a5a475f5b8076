"""What a training run is asked to do: `TrainConfig` (the CLI's flags are its fields), the
named presets, and their parsing. No torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..data.readers import LABELLED_FORMATS
from ..errors import UserError
from ..inputs import TEMPLATE_AUTO, TRUNCATE, check_template
from ..loaders.presets import DEFAULT_MODEL
from ..spec import POOLINGS

SPLITS = ("train", "val", "test")
RECIPES = ("auto", "finetune", "probe")


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


def option(default, help: str | None = None, *, flags: tuple[str, ...] = (), choices=None, type=None,
           const=None, metavar: str | None = None):
    """A TrainConfig field and its command-line flag in one place: `help` (None: no flag),
    the flag names (default --field-name), `choices`, the `type` that parses the string (default:
    the default value's type), or `const` for a flag that takes no value."""
    meta = {"help": help, "flags": flags, "choices": choices, "type": type, "const": const, "metavar": metavar}
    return field(default=default, metadata=meta)


def _comma_tuple(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _int_tuple(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _comma_tuple(s))
    except ValueError:
        raise UserError(f"expected comma-separated layer numbers, got '{s}'") from None


def _split_arg(s: str) -> tuple[float, float, float]:
    from ..data import parse_split

    return parse_split(s)


@dataclass
class TrainConfig:
    """Everything a training run needs: the CLI's `train` flags are these fields (cli.py reads
    each field's help, flag and type from its metadata); tests build it directly."""

    model: str = option(DEFAULT_MODEL, "preset name, HF model directory, Hub id or GGUF file")
    data: str = option("sms-spam", "built-in data set (sms-spam), a CSV / TSV / JSON / JSONL / Parquet file "
                             "(gzipped or not), or a folder of class folders, one text per file")
    test_data: str | None = option(None, "a labelled file that is the test split as it is (same columns as "
                                   "--data); --data then gives train and validation, in the ratio of --split's "
                                   "first two fractions", metavar="FILE")
    recipe: str = option("auto", "auto: search probes on the trunk's layers (the answer: an ensemble of the top "
                         "three) and a probe + TF-IDF hybrid by out-of-fold macro-F1 (search.py); finetune: the "
                         "book's recipe; probe: probes only", choices=RECIPES)
    # Off by default: why, with the measurement, is step 4 of search.py's protocol.
    search_finetune: bool = option(False, "--recipe auto also fine-tunes the top (the book's recipe) and compares "
                                   "it with the search's answer on the validation texts", const=True)
    probe: str | None = option(None, "one probe instead of the search: POOLING@LAYER[+LAYER..][,POOLING@..], "
                               "e.g. mean@22 or mean@16+22,last@30 (concatenated); mix:mean@8+16+24,last@30 "
                               "for a learned softmax mix of those vectors")
    probe_layers: tuple[int, ...] | None = option(None, "layers the trunk pass keeps for probes, e.g. 10,16,22,30 "
                                                  "(default: about every twelfth from a quarter up)", type=_int_tuple)
    baseline: str = option("tfidf", "TF-IDF + logistic regression on the same split, shown beside the run",
                           choices=("tfidf", "none"))
    hybrid_ngrams: str = option("words", "the n-grams of the TF-IDF model the search's hybrid averages in: words "
                                "(1-2 grams: the baseline itself), words+chars (also character 2-5 grams, "
                                "fitted beside the baseline: measured better on topics, Dutch and hedges, worse "
                                "on intents and long spam; docs/measurements.md)",
                                choices=("words", "words+chars"))
    template: str | None = option(None, "prompt template applied before tokenising, e.g. "
                                  "'Message: {text}\\nCategory:'; auto: the probe search also tries a question "
                                  "naming the labels after the text, kept where cross-validation prefers it (one more "
                                  "trunk pass)")
    window: int = option(256, "texts longer than this many tokens are read as --long-texts says; 0: whole texts")
    long_texts: str = option("windows", "texts over --window tokens: windows (consecutive windows, features "
                             "averaged over them: every token read, cost linear in length), head (the first "
                             "--window tokens), head-tail (the first quarter and last three quarters of them)",
                             choices=("windows", *TRUNCATE))
    output_dir: str | None = option(None, "run directory (default: runs/<model>-<data>-<time>)",
                                    flags=("--output", "-o"))
    text_column: str | None = option(None, "the text column, or columns joined in order: title,body (default: "
                                           "found by name, with a title column above it)")
    label_column: str | None = option(None, "the label column (default: found by name)")
    data_format: str | None = option(None, "file format (default: from the extension)", flags=("--format",),
                                     choices=LABELLED_FORMATS)
    encoding: str = option("utf-8", "text encoding of the file: utf-8, latin-1, cp1252, utf-16, ...")
    split: tuple[float, float, float] = option((0.7, 0.1, 0.2), "train,validation,test fractions",
                                               type=_split_arg)
    seed: int = option(123, "seed of the split, the head's initial weights and the batch order")
    dedupe: bool = option(True, "keep exact duplicate texts (they leak test texts into training)",
                          flags=("--no-dedupe",), const=False)
    balance: str = option("none", "undersample: undersample the training split only", choices=("none", "undersample"))
    max_texts: int | None = option(None, "split a stratified sample of this many texts of --data (after duplicates are "
                                   "removed; every class keeps its share): a first run on a large data set in minutes", type=int,
                                   metavar="N")
    split_method: str = option("stratified")  # stratified | reference (the book's exact split; --preset reference)
    label_sep: str | None = option(None, "multi-label: the separator between a text's labels, e.g. '|' "
                                   "(JSONL label lists need none)")
    pooling: str = option("last", "fine-tuning: the token(s) the head reads", choices=POOLINGS)
    head_bias: bool = option(True, "fine-tuning: a head without bias, as transformers' *ForSequenceClassification "
                             "has (a Llama-family run needs it for export --format hf)", flags=("--no-head-bias",),
                             const=False)
    trainable: str = option("last-block", "fine-tuning: head | last-block | last-N-blocks | all | lora")
    padding: str = option("batch", "batch (masked) | longest-train | fixed:N (visible pad tokens)")
    max_length: int | None = option(None, "truncate texts to this many tokens (default: the model's context)",
                                    type=int)
    causal: bool = option(True, "every real token sees every real token", flags=("--no-causal-mask",), const=False)
    epochs: int = option(5, "fine-tuning epochs")
    batch_size: int = option(8, "fine-tuning batch size (per process under torchrun)")
    grad_accum: int = option(1, "batches per optimizer step")
    lr: float = option(5e-5, "AdamW learning rate")
    weight_decay: float = option(0.1, "AdamW weight decay")
    class_weights: str = option("auto", "fine-tuning loss weighted by class (auto) or not", choices=("auto", "none"))
    early_stopping: int = option(0, "stop after this many epochs without a better validation loss (0: off)",
                                 metavar="PATIENCE")
    keep_best: bool = option(True, "keep the last epoch's weights, not the epoch with the lowest validation loss",
                             flags=("--keep-last",), const=False)
    trunk_cache: str = option("auto", "compute the frozen trunk once", choices=("auto", "off"))
    trunk_dtype: str = option("auto", "arithmetic of the one trunk pass: auto = bfloat16 where the CPU has "
                              "AVX512-BF16 / AMX or on a GPU (about 3x faster there, cosine 0.9999 to float32), "
                              "else int8 where it has int8 dot products (AVX512-VNNI, AVX-VNNI, AMX-INT8), else "
                              "float32; int8: weights per channel, activations per token, after SmoothQuant's "
                              "smoothing, CPU only (precision.py)",
                              choices=("auto", "float32", "bfloat16", "int8"))
    cache_dtype: str = option("float32", "precision of the cached trunk states", choices=("float32", "bfloat16"))
    cache_memory_gb: float = option(4.0, "spill the trunk cache to disk above this")
    bucket: bool = option(True)  # length-bucketed training batches
    # LoRA (--trainable lora): adapters on `lora_targets` of every block, or of the top
    # -lora_blocks blocks when it is negative (the trunk below them stays cached).
    lora_rank: int = option(8, "LoRA rank (with --trainable lora)")
    lora_alpha: float = option(16.0, "LoRA alpha")
    lora_dropout: float = option(0.0, "LoRA dropout")
    lora_targets: tuple[str, ...] = option(("q_proj", "v_proj"), "comma-separated: q_proj,k_proj,v_proj,o_proj,"
                                           "gate_proj,up_proj,down_proj", type=_comma_tuple)
    lora_blocks: int | None = option(None, "-N: adapters on the top N blocks only (the trunk below stays cached)",
                                     type=int)
    lr_schedule: str = option("constant", "learning rate after warmup", choices=("constant", "linear", "cosine"))
    warmup_ratio: float = option(0.0, "fraction of steps for linear warmup")
    max_grad_norm: float | None = option(None, "clip gradients to this norm", type=float)
    # After training, on held-out predictions: temperature scaling (calibrate, validation) and,
    # for two classes, a decision threshold (train/run.py, _post_hoc).
    calibrate: bool = option(False, "fit a temperature on validation (ECE before/after is reported)", const=True)
    tune_threshold: str = option(
        "auto", "two classes: the decision threshold predict and serve apply, tuned on held-out predictions: "
        "f1 (the second class's F1), macro-f1, precision (the lowest reaching --target-precision), none (argmax); "
        "auto: macro-f1 where the classes are unbalanced and the recipe is a probe or hybrid (out-of-fold "
        "predictions of every train + validation text), none elsewhere",
        choices=("auto", "none", "f1", "macro-f1", "precision"))
    target_precision: float | None = option(None, "with --tune-threshold precision", type=float)
    full_weights: bool = option(False, "save every weight, not only trained ones", const=True)
    overwrite: bool = option(False, "replace a non-empty output directory", const=True)
    progress: bool = option(True)  # progress bars and log lines (the CLI's --quiet turns them off)
    preset: str | None = option(None, "reference: the book's chapter-6 recipe exactly", choices=tuple(PRESETS))
    extra: dict = field(default_factory=dict)  # experiments only (random_init)

    def __post_init__(self) -> None:
        if self.tune_threshold is None:  # configurations saved before `auto` and `none`
            self.tune_threshold = "none"
        for f in fields(self):  # a field with choices (its flag's) holds one of them, or None where allowed
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value not in choices and not (value is None and f.default is None):
                flag = (f.metadata.get("flags") or (f"--{f.name.replace('_', '-')}",))[0]
                raise UserError(f"unknown {flag} '{value}' (choose from {', '.join(choices)})")
        if self.probe is not None and self.recipe == "finetune":
            raise UserError("--probe names a probe; it needs --recipe probe or auto, not finetune")
        check_template(self.template)
        if self.template == TEMPLATE_AUTO and self.recipe == "finetune":
            raise UserError("--template auto is tried by the probe search: it needs --recipe auto or probe")
        if self.search_finetune and self.recipe != "auto":
            raise UserError(f"--search-finetune adds the fine-tuned top to --recipe auto's search; --recipe "
                            f"{self.recipe} {'is that top alone' if self.recipe == 'finetune' else 'has no search'}")
        if self.hybrid_ngrams != "words" and (self.recipe != "auto" or self.baseline == "none"):
            raise UserError(f"--hybrid-ngrams {self.hybrid_ngrams} is the n-gram side of the search's hybrid: "
                            "it needs --recipe auto and the baseline")
        if self.window < 0:
            raise UserError("--window must be 0 (whole texts) or a number of tokens")
        if self.probe_layers is not None:
            self.probe_layers = tuple(int(x) for x in self.probe_layers)
        parse_padding(self.padding)
        if self.tune_threshold == "precision" and self.target_precision is None:
            raise UserError("--tune-threshold precision needs --target-precision")
        self.lora_targets = tuple(self.lora_targets)
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        self.split = tuple(float(x) for x in self.split)

    def token_budget(self, context_length: int) -> tuple[int, str]:
        """How many tokens of a text the model reads, and which ones (inputs.cut_tokens): the
        model's context or --max-length, from the head; with --long-texts head / head-tail,
        --window tokens kept that way."""
        budget = min(self.max_length or context_length, context_length)
        if self.long_texts != "windows" and self.window:
            return min(budget, self.window), self.long_texts
        return budget, "head"

    def to_dict(self) -> dict:
        return asdict(self)


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
