"""`train(TrainConfig) -> metrics`: a run as stages, from a data file to a run directory.

prepare (data, model, tokens) -> trunk pass (features.py: pooled layer vectors and / or the
frozen-trunk cache, one pass) -> baseline -> probe search and / or fine-tuning -> choose ->
post-hoc (temperature, threshold) -> report and save (checkpoint.py, spec.py).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path

import torch

from .. import checkpoint
from .. import distributed as dist
from ..errors import UserError
from ..evaluate import format_table
from ..freeze import apply_strategy, count_parameters
from ..heads import SequenceClassifier
from ..inputs import TEMPLATE_AUTO, apply_padding, encode_texts, label_question
from ..model import Decoder
from ..resume import STATE_FILE, GracefulStop, read_state
from ..scoring import decide, logit_metrics, probabilities
from ..search import TIE
from .config import SPLITS, TrainConfig, parse_padding
from .finetune import Features, finetune_caches, fit_top, targets
from .select import (
    baseline_metrics,
    choose_recipe,
    fit_baseline,
    pool_and_folds,
    score_probes,
)
from .state import Fitted, Run, log, peak_rss_mib

logger = logging.getLogger(__name__)

# Batch tokenization uses the tokenizers library's threads; saying so up front keeps it from
# warning (and turning them off) when torchrun or a DataLoader forks later.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


@contextmanager
def one_blas_thread():
    """numpy and scipy's BLAS (OpenBLAS) on one thread while a run lasts. What it gets here is
    small: the probes' logistic regressions (L-BFGS over a few hundred to a few thousand
    weights; the baseline's sparse products are scipy's own) and the ridge screen, where
    handing each step's products to a second thread costs more than it saves: on the 2-core
    EPYC the book split's probe search took 21.4 s with OpenBLAS's two threads and 2.9 s with
    one, the same choice (benchmarks/results/blas-threads.md). The other cores fit other folds,
    in processes (cores.map_forked). torch's arithmetic (MKL, oneDNN) is not affected. A
    library loaded inside the limit keeps its own threads, so scipy's OpenBLAS (a second
    library beside numpy's, what the solvers call) is loaded first: imported lazily by the
    baseline, it ran every CLI run's fits on two threads, and the search's loose-tolerance fits
    then differed from the benchmarks' (reuters-r8's question CV 0.9205 against 0.9214)."""
    import sklearn.linear_model  # noqa: F401  (loads scipy's BLAS before the limit)
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def describe_report(r: dict) -> str:
    """One line on what the data step did: rows, duplicates, conflicts, split sizes."""
    parts = [f"data: {r.get('rows_read', '?')} rows read"
             + (f" (text: {r['text_column']})" if " + " in (r.get("text_column") or "") else "")]
    if r.get("duplicates_removed"):
        parts.append(f"{r['duplicates_removed']} exact duplicates removed")
    if r.get("sampled"):
        parts.append(f"a stratified sample of {r['sampled']['to']} of {r['sampled']['from']} texts (--max-texts)")
    if r.get("conflicting_texts"):
        parts.append(f"{r['conflicting_texts']} texts with conflicting labels dropped "
                     f"({r.get('conflicting_rows_removed', '?')} rows)")
    if r.get("classes_left_out"):
        n = len(r["classes_left_out"])
        parts.append(f"{n} class{'' if n == 1 else 'es'} with too few texts left out "
                     f"({sum(r['classes_left_out'].values())} texts)")
    if r.get("undersampled"):
        parts.append(f"undersampled {r['undersampled']}")
    splits = r.get("splits") or {}
    if splits:
        parts.append("split " + " / ".join(
            f"{k} {sum(v.values()) if isinstance(v, dict) else v}" for k, v in splits.items()))
    if r.get("test_source"):
        removed = [f"{r[k]} {what}" for k, what in (("test_duplicates_removed", "exact duplicates"),
                                                     ("test_conflicting_rows_removed", "rows with conflicting labels"))
                   if r.get(k)]
        parts.append(f"test: {r['test_source']} ({r['test_rows_read']} rows read"
                     + (f", {' and '.join(removed)} removed" if removed else "") + ")")
    if r.get("test_texts_removed_from_training"):
        parts.append(f"{r['test_texts_removed_from_training']} texts of the test file removed from training")
    return "; ".join(parts)


def _prepare_data(cfg: TrainConfig):
    from .. import data

    # The book reads the SMS file with pandas' default quoting (5,572 rows, unbalanced quotes
    # merge lines); its exact rows need the same reading. Everything else reads quote-safe.
    reference = cfg.split_method == "reference"

    def read(path):
        return data.load_dataset(path, text_column=cfg.text_column, label_column=cfg.label_column,
                                 fmt=cfg.data_format, quoting=True if reference else None, label_sep=cfg.label_sep,
                                 encoding=cfg.encoding)

    if reference and cfg.test_data:
        raise UserError("--preset reference is the book's split, test texts included; it takes no --test-data")
    table = read(cfg.data)
    if reference:
        return data.reference_split(table, seed=cfg.seed)
    return data.prepare(table, split=cfg.split, seed=cfg.seed, dedupe=cfg.dedupe, balance=cfg.balance,
                        test_table=read(cfg.test_data) if cfg.test_data else None, max_texts=cfg.max_texts)


def default_output_dir(cfg: TrainConfig) -> str:
    model = Path(cfg.model).name.replace(".gguf", "")
    data = Path(cfg.data).stem
    return str(Path("runs") / f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}")


def train(cfg: TrainConfig, shared_caches: dict | None = None, _resume: tuple[dict, dict] | None = None) -> dict:
    """Train a classifier as `cfg` says, save the run directory, return its metrics. Under
    torchrun (WORLD_SIZE > 1) every process calls this and gets the same summary back.

    `shared_caches` (a dict the caller keeps) lets several runs in one process reuse frozen-
    trunk caches that depend on the same data, model, boundary and padding (experiments.py).
    SIGINT / SIGTERM during the epochs save a resumable state and raise `Interrupted`
    (resume.py); `resume(run_dir)` goes on from it."""
    with dist.session(), one_blas_thread():
        out_dir = Path(dist.broadcast_object(cfg.output_dir or default_output_dir(cfg)))  # rank 0's name
        created = not out_dir.exists()
        if _resume is None:
            dist.on_main(checkpoint.prepare_run_dir, out_dir, overwrite=cfg.overwrite)
        feats: dict = {}
        stop = GracefulStop()
        try:
            with stop.installed():
                return _train(cfg, out_dir, feats, shared_caches, stop, _resume)
        except BaseException:
            # A failed run leaves no empty run directory behind (partial state stays).
            if created and dist.is_main() and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            raise
        finally:  # spill files go, whatever happened; caches shared across runs stay open
            shared = {id(c) for v in (shared_caches or {}).values() for c in v.values()}
            for f in feats.values():
                if f.cache is not None and id(f.cache) not in shared:
                    f.cache.close()


def resume(run_dir: str | Path, progress: bool = True) -> dict:
    """Finish the interrupted run in `run_dir` from its resume state, with the configuration
    it was started with; the result equals an uninterrupted run's (same seed, same batches,
    same optimiser and RNG states)."""
    meta, tensors = read_state(Path(run_dir))
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in meta["config"].items() if k in known}
    values.update(output_dir=str(run_dir), overwrite=False, progress=progress)
    return train(TrainConfig(**values), _resume=(meta, tensors))


def _train(cfg: TrainConfig, out_dir: Path, feats: dict, shared_caches: dict | None,
           stop: GracefulStop, resume_state: tuple[dict, dict] | None) -> dict:
    """The stages of a run: prepare -> encode -> trunk pass -> baseline -> fit (probe search,
    with --template auto a second pass and search with the question; and / or the fine-tuned
    top) -> post-hoc (temperature, threshold) -> save."""
    run = _prepare(cfg, out_dir)
    run.peak_mib["prepare"] = peak_rss_mib()
    recipe = _resolve_recipe(run)
    pooled = _trunk_pass(run, recipe, feats, shared_caches)
    run.peak_mib["trunk_pass"] = peak_rss_mib()
    pool_rows, folds = pool_and_folds(run)
    base = fit_baseline(run, pool_rows, folds) if cfg.baseline != "none" else None
    run.peak_mib["baseline"] = peak_rss_mib()
    probe_cands = score_probes(run, pooled, pool_rows, folds, base) if pooled else []
    if cfg.template == TEMPLATE_AUTO:
        pooled, probe_cands = _template_axis(run, pooled, probe_cands, pool_rows, folds, base)
    run.peak_mib["probe_search"] = peak_rss_mib()
    finetuned = None
    if recipe in ("finetune", "auto"):
        finetuned = fit_top(run, feats, stop, resume_state)
        run.peak_mib["fit"] = peak_rss_mib()
    fitted = choose_recipe(run, recipe, probe_cands, finetuned, pooled, pool_rows, base)
    stop.notice = "finishing the run (final evaluation and save)"  # a signal now changes nothing
    return _report_and_save(run, fitted, base, feats)


def _prepare(cfg: TrainConfig, out_dir: Path) -> Run:
    """Read and split the data, load the model, build the classifier, encode every text."""
    from ..loaders import load_model

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    prep = _prepare_data(cfg)
    names = list(prep.label_map.names)
    multi = prep.label_map.multi_label
    log(describe_report(prep.report), cfg)
    _check_validation_needs(cfg, prep)
    if multi and cfg.calibrate:
        raise UserError("--calibrate (temperature scaling) is for single-label runs; multi-label runs tune "
                        "one threshold per label on validation instead")
    if multi and cfg.tune_threshold not in ("auto", "none", "f1"):
        raise UserError(f"multi-label runs tune one threshold per label for F1; --tune-threshold "
                        f"{cfg.tune_threshold} is for two-class runs")
    if not multi and cfg.tune_threshold not in ("auto", "none") and len(names) != 2:
        raise UserError(f"--tune-threshold {cfg.tune_threshold} needs two classes; the data has {len(names)}")
    with dist.local_main_first():  # one download per machine
        lm = load_model(cfg.model)
    tok = lm.tokenizer
    if tok is None:
        raise UserError(f"{cfg.model}: no tokenizer found beside the weights")
    decoder = Decoder.from_state_dict(lm.config, lm.state_dict)
    del lm.state_dict
    torch.manual_seed(cfg.seed)  # the head's initial weights depend on the seed alone
    clf = SequenceClassifier(decoder, len(names), pooling=cfg.pooling, causal=cfg.causal, bias=cfg.head_bias)
    if cfg.extra.get("random_init"):
        clf.decoder.apply(_reinit)
    if cfg.trainable == "lora":
        from ..lora import apply_lora

        boundary = apply_lora(clf, rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                              targets=cfg.lora_targets, blocks=cfg.lora_blocks)
    else:
        boundary = apply_strategy(clf, cfg.trainable)
    n_train, n_total = count_parameters(clf)
    log(f"model {cfg.model}: {lm.config.n_layers} blocks, {n_total:,} parameters; {tok.describe()}", cfg)

    max_len, keep = cfg.token_budget(lm.config.context_length)
    template = None if cfg.template == TEMPLATE_AUTO else cfg.template  # auto: the question is the probe stage's
    enc = {s: encode_texts(tok, getattr(prep, s).texts, max_len, template, keep) for s in SPLITS}
    truncated = {s: sum(t) for s, (_, t) in enc.items()}
    if any(truncated.values()) and dist.is_main():  # a warning: shown even with --quiet
        logger.warning("truncated to %d tokens%s: %s", max_len, " (head and tail)" if keep == "head-tail" else "",
                       ", ".join(f"{s} {n}" for s, n in truncated.items()))
    mode, fixed = parse_padding(cfg.padding)
    pad_to = {"batch": None, "fixed": fixed, "longest-train": max(len(x) for x in enc["train"][0])}[mode]
    ids = {s: apply_padding(v, pad_to, tok.pad_id) for s, (v, _) in enc.items()}
    # Texts over the window, per split: read in windows (probe recipes) or cut to it (head, head-tail).
    cut_at_window = cfg.long_texts != "windows" and max_len == cfg.window
    long_texts = {s: (truncated[s] if cut_at_window else sum(len(x) > cfg.window for x in ids[s])) if cfg.window
                  else 0 for s in SPLITS}
    return Run(cfg, out_dir, cfg.progress and dist.is_main(), t_start, prep, names, multi, lm, tok, clf,
               boundary, max_len, pad_to, ids, truncated, truncate=keep, long_texts=long_texts, template=template)


def _check_validation_needs(cfg: TrainConfig, prep) -> None:
    """What reads the validation split fails before the model loads when the split has none
    (`--split 0.9,0,0.1`): the search scores out of fold, the fine-tuned top keeps its last epoch."""
    if prep.val.texts:
        return
    needs = [("--calibrate", cfg.calibrate), ("--early-stopping", cfg.early_stopping),
             (f"--tune-threshold {cfg.tune_threshold} with --recipe finetune",
              cfg.recipe == "finetune" and cfg.tune_threshold not in ("auto", "none"))]
    for flag, asked in needs:
        if asked:
            split = ",".join(f"{f:g}" for f in cfg.split)
            raise UserError(f"{flag} is tuned on validation texts and --split {split} leaves none; "
                            "give validation a fraction, e.g. --split 0.7,0.1,0.2")


def _resolve_recipe(run: Run) -> str:
    """What runs: `probe` (the probe stage; under `auto` with its hybrid), `finetune` (the top
    alone) or `auto` (both, with --search-finetune). Where probes cannot apply it is
    `finetune`; where the fine-tuned top cannot (no validation split, long texts) `probe`
    (said in one line)."""
    cfg = run.cfg
    if cfg.recipe == "finetune":
        return "finetune"
    why = None
    if run.multi:
        why = "multi-label runs fine-tune (probes are single-label)"
    elif dist.world_size() > 1:
        why = "under torchrun the fine-tuned top is trained (probes run in one process)"
    elif run.pad_to is not None:
        why = f"--padding {cfg.padding} makes pad tokens input, which probes do not read"
    elif cfg.extra.get("random_init"):
        why = "random weights: nothing to probe"
    if not why and cfg.recipe == "auto" and not cfg.search_finetune:
        return "probe"
    if not why and cfg.recipe == "auto" and not run.prep.val.texts:
        log("recipe: probes only: the fine-tuned top is compared on validation texts and the split has none "
            "(--split)", cfg)
        return "probe"
    n_long = sum(run.long_texts.values())
    if not why and cfg.recipe == "auto" and n_long:
        how = {"windows": "read in windows, features averaged over them",
               "head": "cut to their first tokens", "head-tail": "cut to their head and tail"}[cfg.long_texts]
        log(f"recipe: probes only: {n_long} texts are longer than {cfg.window} tokens and are {how} "
            "(--long-texts); fine-tuning would keep every token's states (--recipe finetune does)", cfg)
        return "probe"
    if why:
        if cfg.recipe == "probe":
            raise UserError(f"--recipe probe: {why}")
        log(f"recipe: fine-tuning ({why})", cfg)
        return "finetune"
    return cfg.recipe


def _trunk_pass(run: Run, recipe: str, feats: dict, shared_caches: dict | None) -> dict | None:
    """The one pass over every text: pooled vectors per layer (probe candidates) and, when the
    top is fine-tuned, the states entering its first trainable block (the trunk cache)."""
    cfg, clf = run.cfg, run.clf
    use_cache = recipe != "probe" and cfg.trunk_cache == "auto" and run.boundary > 0
    labels = {s: targets(getattr(run.prep, s).labels, len(run.names), run.multi) for s in SPLITS}
    t0 = time.perf_counter()
    pooled = None
    if recipe == "finetune":
        caches = finetune_caches(run, use_cache, shared_caches)
    else:
        from ..features import pass_depth, probe_layers

        layers = [int(x) for x in cfg.probe_layers] if cfg.probe_layers else probe_layers(clf.n_layers)
        if cfg.probe:
            from ..probes import parse_probe

            layers = sorted({layer for layer, _ in parse_probe(cfg.probe, clf.n_layers)})
        from ..precision import calibration_ids, choose_trunk_dtype, reduced_blocks

        run.trunk_dtype = choose_trunk_dtype(next(clf.parameters()).device, cfg.trunk_dtype)
        run.frozen_dtype = run.trunk_dtype if use_cache else "float32"
        if run.trunk_dtype == "int8":  # int8 smoothing's texts: recorded for prediction
            run.calibration_ids = calibration_ids(run.ids["train"])
        boundary = run.boundary if use_cache else None
        # converted once for every split; a probe-only run never needs the float32 blocks again
        # (no fine-tuned top, no full weights saved): they are converted in place, their memory goes
        blocks = reduced_blocks(clf.decoder, pass_depth(layers, boundary), run.trunk_dtype, run.calibration_ids,
                                cfg.causal, in_place=recipe == "probe" and not cfg.full_weights)
        if cfg.template == TEMPLATE_AUTO:  # the question's pass runs on the same blocks
            run.pass_blocks = blocks
        pooled, caches = _pooled_pass(run, run.ids, layers, blocks, boundary)
    for s in SPLITS:
        feats[s] = Features(run.ids[s], labels[s], run.tok.pad_id, caches[s])
    run.seconds["trunk_pass"] = time.perf_counter() - t0
    what = []
    if pooled:
        what.append(f"pooled vectors of layers {','.join(map(str, pooled['train'].layers))}")
    if use_cache:
        mb = sum(f.cache.nbytes for f in feats.values()) / 2**20
        what.append(f"states entering block {run.boundary} ({mb:.0f} MiB)")
    if what:
        log(f"trunk pass ({run.trunk_dtype}): {' and '.join(what)} for every text in "
            f"{run.seconds['trunk_pass']:.1f} s", cfg)
    return pooled


# --template auto keeps the question where its best candidate's CV macro-F1 leads by more than
# this: the search's tie (a second pass's features are the costlier choice)
QUESTION_LEAD = TIE


def _pooled_pass(run: Run, ids: dict, layers: list[int], blocks, boundary: int | None, what: str = "trunk pass"
                 ) -> tuple[dict, dict]:
    """Pooled vectors of `layers` for every split's `ids` (features.trunk_pass on `blocks`), and
    the states entering block `boundary` where the top is fine-tuned (else None per split)."""
    from ..features import trunk_pass

    cfg = run.cfg
    pooled, caches = {}, {}
    for s in SPLITS:
        pooled[s], caches[s] = trunk_pass(
            run.clf.decoder, ids[s], run.tok.pad_id, layers=layers,
            boundary=boundary, window=None if boundary else cfg.window or None,
            dtype=run.trunk_dtype,
            causal=cfg.causal,
            cache_dtype=getattr(torch, cfg.cache_dtype), memory_budget=int(cfg.cache_memory_gb * (1 << 30)),
            spill_dir=str(run.out_dir), desc=f"{what} ({s})", progress=run.progress, blocks=blocks)
    return pooled, caches


def _template_axis(run: Run, pooled: dict, found: list, y_pool, folds, base) -> tuple[dict, list]:
    """`--template auto`: a second pass with the question naming the labels (inputs.label_question)
    and its probe stage; its features and candidates replace the first pass's where its best
    candidate leads theirs by more than QUESTION_LEAD out of fold (benchmarks/results/templates.md).
    A text over the window is read in windows as always, the question in its last one."""
    from ..search import choose

    cfg = run.cfg
    if not pooled:
        log("template: the text as it is (--template auto is tried by the probe search; this run fine-tunes)", cfg)
        return pooled, found
    blocks, layers = run.pass_blocks, pooled["train"].layers
    run.pass_blocks = None
    question = label_question(run.names)
    t0 = time.perf_counter()
    enc = {s: encode_texts(run.tok, getattr(run.prep, s).texts, run.max_len, question, run.truncate) for s in SPLITS}
    ids = {s: v for s, (v, _) in enc.items()}
    asked, _ = _pooled_pass(run, ids, layers, blocks, None, what="trunk pass, with the question")
    run.seconds["template_pass"] = time.perf_counter() - t0
    asked_found = score_probes(run, asked, y_pool, folds, base)
    plain_best, asked_best = choose(found, "cv_macro_f1"), choose(asked_found, "cv_macro_f1")
    keep = asked_best.cv_macro_f1 > plain_best.cv_macro_f1 + QUESTION_LEAD
    run.template_search = {"question": question, "cv_macro_f1": {"none": plain_best.cv_macro_f1,
                                                                  "question": asked_best.cv_macro_f1},
                           "chosen": "question" if keep else "none"}
    log(f"template: {'the question' if keep else 'the text as it is'} (best CV macro-F1 without "
        f"{plain_best.cv_macro_f1:.4f}, with the question {asked_best.cv_macro_f1:.4f}: {question!r})", cfg)
    if not keep:
        for s in SPLITS:
            asked[s].close()
        return pooled, found
    run.probe_inputs = (question, ids, {s: sum(t) for s, (_, t) in enc.items()})
    for s in SPLITS:
        pooled[s].close()
    return asked, asked_found


def chosen_inputs(run: Run, fitted: Fitted) -> tuple[str | None, dict, dict]:
    """The template, token ids and truncation counts of what the chosen classifier reads: a
    probe's, with the question `--template auto` kept, or the texts as first encoded."""
    if run.probe_inputs and fitted.spec_fields["recipe"] != "finetune":
        return run.probe_inputs
    return run.template, run.ids, run.truncated


def _post_hoc(run: Run, fitted: Fitted, feats: dict) -> tuple[float, object, dict | None, dict | None]:
    """Temperature (--calibrate) and decision thresholds, from held-out logits: the fine-tuned
    model's of validation, or a refitted probe's out-of-fold ones."""
    cfg, names = run.cfg, run.names
    held_out = fitted.held_out_logits or {}
    val_logits = held_out.get("val", fitted.logits["val"])
    val_y = feats["val"].labels
    temperature, threshold, calibration, threshold_report = 1.0, None, None, None
    if cfg.calibrate:
        from ..calibrate import calibration_report

        calibration = calibration_report(val_logits, val_y.numpy(), fitted.logits["test"], feats["test"].labels.numpy())
        temperature = float(calibration["temperature"])
        log(f"temperature {temperature:.3f} (validation ECE {calibration['val']['ece_before']:.4f} -> "
            f"{calibration['val']['ece_after']:.4f})", cfg)
    objective = _threshold_objective(run, fitted)
    if run.multi and len(val_y):  # one threshold per label, each maximising its F1 on validation
        from ..calibrate import per_label_thresholds

        thr, report = per_label_thresholds(torch.sigmoid(val_logits).numpy(), val_y.numpy())
        threshold = [float(t) for t in thr]
        threshold_report = dict(zip(names, report))
        log("per-label thresholds (tuned on validation for F1): "
            + ", ".join(f"{n} {t:.3f}" for n, t in zip(names, threshold)), cfg)
    elif objective:
        from ..calibrate import tune_threshold

        # the most held-out predictions there are: a probe's out-of-fold ones over train + validation
        splits = ("train", "val") if "train" in held_out else ("val",)
        logits = torch.cat([held_out.get(s, fitted.logits[s]) for s in splits])
        y = torch.cat([feats[s].labels for s in splits]).numpy()
        p_pos = torch.softmax(logits / temperature, -1)[:, 1].numpy()
        threshold, threshold_report = tune_threshold(p_pos, y, objective=objective,
                                                     target_precision=cfg.target_precision)
        threshold = float(threshold)
        where = ("out-of-fold predictions of train + validation" if len(splits) == 2 else "validation")
        threshold_report["tuned_on"] = f"{where} ({len(y)} texts)"
        log(f"decision threshold for '{names[1]}': {threshold:.4f} ({objective}, tuned on {where})", cfg)
    return temperature, threshold, calibration, threshold_report


def _threshold_objective(run: Run, fitted: Fitted) -> str | None:
    """--tune-threshold with `auto` resolved: None for argmax, else tune_threshold's objective.

    auto: macro-F1 (what the search chose by) for two classes that are not nearly balanced
    (search.NEAR_BALANCED), where the chosen recipe has out-of-fold predictions of every train
    + validation text (a probe or hybrid) to tune on. A regularised logistic regression's
    probabilities lean to the larger class, so the smaller class's F1 gains from a lower
    threshold: on the default split of sms-spam (13% spam) the out-of-fold threshold moved
    test macro-F1 from 0.980 to 0.985 and spam F1 from 0.966 to 0.974. With balanced classes
    there is no lean to correct, and a threshold tuned to noise cost rt-polarity 1.4 points
    (benchmarks/results/threshold.md)."""
    import numpy as np

    from ..search import unbalanced

    asked = run.cfg.tune_threshold
    if asked != "auto":
        return None if asked == "none" else asked  # (two classes: checked in _prepare)
    if run.multi or len(run.names) != 2 or "train" not in (fitted.held_out_logits or {}):
        return None
    return "macro-f1" if unbalanced(np.asarray(run.prep.train.labels + run.prep.val.labels)) else None


def _report_and_save(run: Run, fitted: Fitted, base, feats: dict) -> dict:
    """Metrics of every split (one scoring path), the baseline beside them, the run directory."""
    from ..precision import cpu_features
    from ..spec import RunSpec

    cfg, names = run.cfg, run.names
    temperature, threshold, calibration, threshold_report = _post_hoc(run, fitted, feats)
    # A probe refitted on train + validation reports its validation metrics out of fold (held out).
    held_out = {"val": fitted.held_out_logits["val"]} if fitted.held_out_logits else {}
    metrics = {s: logit_metrics(held_out.get(s, fitted.logits[s]), feats[s].labels, names, temperature=temperature,
                                threshold=threshold) for s in SPLITS}
    if held_out and metrics["val"] is not None:
        metrics["val"]["held_out"] = "out-of-fold (the model was refitted on train + validation)"
    test_pred = None if run.multi else decide(probabilities(fitted.logits["test"], temperature=temperature),
                                              threshold=threshold)  # beside the baseline's, text by text
    n_train, n_total = count_parameters(fitted.clf)
    template, _, truncated = chosen_inputs(run, fitted)
    run.seconds["total"] = time.perf_counter() - run.t_start
    summary = {
        "splits": metrics,
        "baseline": baseline_metrics(run, base, test_pred),
        "recipe": {"requested": cfg.recipe, "chosen": fitted.chosen, "candidates": fitted.candidates,
                   "refit_on": "train+val" if fitted.spec_fields["recipe"] != "finetune" else "train"},
        "best_epoch": fitted.best_epoch,
        "epochs_run": len(fitted.history),
        "seconds": dict(run.seconds),
        "peak_rss_mib": dict(run.peak_mib),  # the process's peak so far, after each stage
        "data": run.prep.report,
        "truncated": truncated,
        "template_search": run.template_search,
        "long_texts": {"policy": cfg.long_texts, "window": cfg.window, "texts": run.long_texts} if cfg.window else None,
        "max_length": run.max_len,
        "calibration": calibration,
        "threshold": threshold_report,
        "trunk_dtype": run.trunk_dtype,
        "machine": cpu_features(),
        "trainable_parameters": n_train,
        "total_parameters": n_total,
    }
    spec = RunSpec(
        base_model=run.lm.identity, model_config=run.lm.config.to_dict(), labels=names, multi_label=run.multi,
        pooling=cfg.pooling, causal=cfg.causal, padding=cfg.padding, pad_to=run.pad_to, max_length=run.max_len,
        truncation=cfg.max_length is not None or (cfg.long_texts != "windows" and bool(cfg.window)),
        truncate=run.truncate, template=template, trainable=cfg.trainable,
        threshold=threshold, temperature=temperature, train_config=cfg.to_dict(),
        trunk_dtype=run.trunk_dtype if fitted.spec_fields["recipe"] != "finetune" else run.frozen_dtype,
        frozen_blocks=run.boundary if fitted.spec_fields["recipe"] == "finetune" else 0,
        calibration_ids=run.calibration_ids,
        head_bias=cfg.head_bias or fitted.spec_fields["recipe"] != "finetune",  # a probe's head has one
        **{k: v for k, v in fitted.spec_fields.items() if k in ("recipe", "probe", "hybrid_weight", "lora", "window")},
    )
    if dist.world_size() > 1:  # batch_size above is per process
        spec.extra["distributed"] = {"world_size": dist.world_size(),
                                     "global_batch_size": cfg.batch_size * dist.world_size()}
    summary = dist.broadcast_object(summary)  # rank 0's timings, so every rank returns the same
    dist.on_main(
        checkpoint.save_run, run.out_dir, fitted.clf, run_config=spec.to_dict(), tokenizer=run.tok,
        metrics=summary, history=fitted.history,
        split={s: asdict(getattr(run.prep, s)) for s in SPLITS} | {"labels": names},
        full_weights=cfg.full_weights, trainable=fitted.trainable,
        baseline=base["model"] if base else None,
        hybrid_ngrams=base["partner"]["model"] if fitted.spec_fields["recipe"] == "hybrid" and "partner" in base
        else None,
    )
    if dist.is_main():
        (run.out_dir / STATE_FILE).unlink(missing_ok=True)  # the run is complete
    summary["run_dir"] = str(run.out_dir)
    base_splits = (summary["baseline"] or {}).get("splits") or {}
    log(format_table(metrics, baseline={s: base_splits.get(s) for s in ("val", "test")}), cfg)
    note = baseline_note((metrics["val"] or {}).get("macro_f1"), summary["baseline"], fitted)
    if note:
        log(note, cfg)
    log(f"saved {run.out_dir}  ({run.seconds['total']:.0f} s)", cfg)
    return summary


def baseline_note(val_macro_f1: float | None, base: dict | None, fitted: Fitted) -> str | None:
    """One line when the run does not beat the baseline on validation macro-F1. Where the
    choice was made out of fold over train + validation, that comparison (over many more texts
    than validation's) is in the line too. None without validation texts."""
    if not base or val_macro_f1 is None or val_macro_f1 >= base["splits"]["val"]["macro_f1"]:
        return None
    line = (f"note: on validation this run's macro-F1 ({val_macro_f1:.4f}) is below the TF-IDF baseline's "
            f"({base['splits']['val']['macro_f1']:.4f})")
    chosen = next((c for c in fitted.candidates if c["name"] == fitted.chosen), {})
    if chosen.get("cv_macro_f1") is not None and base.get("cv_macro_f1") is not None:
        line += (f"; out of fold over train + validation, what the search chose by: {chosen['cv_macro_f1']:.4f} "
                 f"against {base['cv_macro_f1']:.4f}")
    return line

def _reinit(m: torch.nn.Module) -> None:
    """The reference's 'random weights' row: same architecture, fresh initialisation."""
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            torch.nn.init.zeros_(m.bias)
    elif isinstance(m, torch.nn.Embedding):
        torch.nn.init.normal_(m.weight, std=0.02)
