"""`llmclassify` command line: a table of subcommands over plain functions.

Exit status: 0 success, 1 a failed run (a bug or a crash), 2 bad input (UserError: one line,
no traceback unless --debug).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .data.readers import FORMATS as DATA_FORMATS
from .data.readers import LABELLED_FORMATS
from .errors import Interrupted, UserError

log = logging.getLogger("llmclassify.cli")


def _probability(s: str) -> float:
    try:
        x = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got '{s}'") from None
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {s}")
    return x


def _positive_int(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{s}'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


# --- train ----------------------------------------------------------------------------------
def _flag_type(parse):
    """An argparse type from a parser that raises UserError (argparse shows the message)."""
    def convert(s: str):
        try:
            return parse(s)
        except (UserError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value").lstrip("_")
    return convert


def add_config_flags(p, config_class) -> None:
    """One flag per field of `config_class` that has a help string in its metadata
    (train.config.option): name, type, choices and help come from the field, so a new option
    is one field. Every flag defaults to None = not given (the config's default applies)."""
    import dataclasses

    for f in dataclasses.fields(config_class):
        meta = f.metadata
        if not meta.get("help"):
            continue
        flags = meta["flags"] or ("--" + f.name.replace("_", "-"),)
        kw = {"dest": f.name, "help": meta["help"]}
        if meta["const"] is not None:
            kw.update(action="store_const", const=meta["const"])
        else:
            parse = meta["type"] or (type(f.default) if f.default is not None else str)
            kw["type"] = _flag_type(parse) if meta["type"] else parse
            if meta["choices"]:
                kw["choices"] = list(meta["choices"])
            if f.default is not None and not isinstance(f.default, tuple):
                kw["help"] += f" (default: {f.default})"
            elif isinstance(f.default, tuple):
                kw["help"] += f" (default: {','.join(map(str, f.default))})"
        if meta["metavar"]:
            kw["metavar"] = meta["metavar"]
        p.add_argument(*flags, **kw)


def add_train(sub) -> None:
    from .train.config import TrainConfig

    p = sub.add_parser("train", help="train a classifier (probe search, fine-tuning) and save a run directory",
                       description="Train a pretrained decoder as a text classifier; the TF-IDF baseline is "
                                   "shown beside it.")
    add_config_flags(p, TrainConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--resume", metavar="RUN",
                   help="finish a run stopped by Ctrl-C or SIGTERM, with the settings it was started with")
    p.set_defaults(func=cmd_train)


def cmd_train(a) -> int:
    from . import distributed
    from .train import config_from_args, resume, train

    values = {k: v for k, v in vars(a).items() if k not in ("func", "debug", "quiet", "command", "resume")}
    if a.resume:
        given = sorted(k for k, v in values.items() if v is not None)
        if given:
            raise UserError(f"--resume continues with the run's own settings; drop --{given[0].replace('_', '-')}")
    else:
        values["progress"] = not a.quiet
        cfg = config_from_args(values, a.preset)
    with distributed.session():  # under torchrun: every process trains its share, rank 0 writes
        summary = resume(a.resume, progress=not a.quiet) if a.resume else train(cfg)
        if not distributed.is_main():
            return 0
    test = summary["splits"]["test"]
    if test is None:
        print(f"no test split (--split); score the run on a labelled file with: "
              f"llmclassify evaluate {summary['run_dir']} --data FILE")
    elif "subset_accuracy" in test:  # multi-label
        print(f"test subset accuracy {test['subset_accuracy']:.4f}  micro-F1 {test['micro_f1']:.4f}  "
              f"macro-F1 {test['macro_f1']:.4f}")
    else:
        print(f"test accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  "
              f"balanced accuracy {test['balanced_accuracy']:.4f}  ({summary['recipe']['chosen']})")
    base = (summary.get("baseline") or {}).get("splits", {}).get("test")
    if base:
        print(f"baseline (TF-IDF + logistic regression, same split): test accuracy {base['accuracy']:.4f}  "
              f"macro-F1 {base['macro_f1']:.4f}  balanced accuracy {base['balanced_accuracy']:.4f}")
    difference = (summary.get("baseline") or {}).get("test_difference")
    if difference:
        from .evaluate import format_difference

        print(format_difference(difference, "test"))
    print(f"run saved to {summary['run_dir']}")
    return 0


# --- evaluate -------------------------------------------------------------------------------
def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a saved run on its test split or any labelled file")
    p.add_argument("run", help="run directory, or a directory written by export --format onnx (with --data)")
    p.add_argument("--data", help="labelled file (default: the run's own test split)")
    p.add_argument("--text-column", help=TEXT_COLUMN_HELP)
    p.add_argument("--label-column")
    p.add_argument("--format", dest="data_format", choices=LABELLED_FORMATS)
    p.add_argument("--encoding", default="utf-8", help="text encoding of the file: utf-8 (default), latin-1, cp1252, utf-16, ...")
    p.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")
    p.add_argument("--compare", metavar="RUN_B",
                   help="a second run (or ONNX export) scored on the same texts, beside the first, with the "
                        "difference between them and how sure it is (on the first run's test split, RUN_B must "
                        "share that split)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a) -> int:
    from .evaluate import format_table
    from .predict import evaluate_run

    if a.json_out:
        from .checkpoint import check_output_file

        check_output_file(Path(a.json_out))
    name, metrics = evaluate_run(a.run, data=a.data, text_column=a.text_column, label_column=a.label_column,
                                 fmt=a.data_format, encoding=a.encoding, compare=a.compare)
    base, other = metrics.get("baseline"), metrics.get("comparison")
    columns = {name: metrics, **({f"{name} {Path(a.compare).name}": other["metrics"]} if other else {})}
    print(format_table(columns, baseline={name: base} if base else None))
    from .evaluate import format_difference

    if metrics.get("baseline_difference"):
        print(format_difference(metrics["baseline_difference"], name))
    if other:
        print(format_difference(other["difference"], name, a_name=a.run, b_name=a.compare))
    if a.json_out:
        from .checkpoint import atomic_write_json

        atomic_write_json(Path(a.json_out), metrics)
    return 0


# --- predict --------------------------------------------------------------------------------
PRINTED_CLASSES = 5  # a printed prediction's probabilities; --output's rows hold every class's


TEXT_COLUMN_HELP = "the text column, or columns joined in order: title,body (default: found by name)"


def printed_probabilities(probabilities: dict[str, float]) -> str:
    """'ham=0.0100  spam=0.9900': every class in the run's order; with more than PRINTED_CLASSES,
    the most probable of them, highest first, and how many more `--output` would hold."""
    items, more = list(probabilities.items()), ""
    if len(items) > PRINTED_CLASSES:
        more = f"  (+{len(items) - PRINTED_CLASSES} more classes: --output)"
        items = sorted(items, key=lambda kv: -kv[1])[:PRINTED_CLASSES]
    return "  ".join(f"{k}={v:.4f}" for k, v in items) + more


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify texts with a saved run (or its ONNX export)")
    p.add_argument("run", help="run directory, or a directory written by export --format onnx")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--input", "-i", help="file of texts (.txt one per line, CSV/TSV/JSON/JSONL/Parquet), or - for stdin")
    p.add_argument("--text-column", help=TEXT_COLUMN_HELP)
    p.add_argument("--format", dest="data_format", choices=DATA_FORMATS)
    p.add_argument("--encoding", default="utf-8", help="text encoding of the file: utf-8 (default), latin-1, cp1252, utf-16, ...")
    p.add_argument("--output", "-o", help="write the predictions here, one row per input row with its input "
                                          "line and kept columns: a table with a column per class's probability "
                                          "where the name ends .csv or .tsv, else JSON lines (default: print)")
    p.add_argument("--keep", metavar="COLUMNS",
                   help="input columns to copy beside each prediction: one, or several with commas (id,date), "
                        "or none (default: the id columns, such as id or doc_id, and a folder's file names)")
    p.add_argument("--threshold", type=_probability,
                   help="two classes: probability of the second label needed to pick it")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--quantize", choices=["int8"])
    p.set_defaults(func=cmd_predict)


def cmd_predict(a) -> int:
    from .export.onnx import is_onnx_export

    if is_onnx_export(a.run):  # one process, no torch: onnxruntime's threads use the cores
        return _predict(a)
    from . import distributed

    with distributed.session():  # under torchrun: each process predicts its share, rank 0 writes
        return _predict(a, main=distributed.is_main(), shared=distributed.world_size() > 1)


def _predict(a, main: bool = True, shared: bool = False) -> int:
    from .predict import StreamReport, open_classifier

    if not a.texts and not a.input:
        raise UserError("predict: give texts as arguments or --input FILE")
    if shared and a.input == "-":
        raise UserError("predict: --input - (stdin) cannot be shared between processes; give a file")
    if a.output:
        from .checkpoint import check_output_file

        check_output_file(Path(a.output))
    stats: dict = {}
    if a.input:
        from itertools import chain

        from .data import iter_records

        chunks = iter_records(a.input, text_column=a.text_column, fmt=a.data_format, stats=stats,
                              encoding=a.encoding, keep=a.keep)
        first = next(chunks, [])  # a missing file, or a column not there, fails before the model loads
        records = chain(first, chain.from_iterable(chunks))
    else:
        records = ((line, text, {}) for line, text in enumerate(a.texts, 1))
    clf = open_classifier(a.run, dtype=a.dtype, quantize=a.quantize)
    report = StreamReport()
    preds = clf.predict_records(records, report=report, threshold=a.threshold, batch_size=a.batch_size)
    if not main:
        for _ in preds:  # predict this process's share of every chunk; rank 0 writes
            pass
        return 0
    if a.output:
        from .predict import write_predictions

        n = write_predictions(Path(a.output), preds)
        print(f"wrote {n} predictions to {a.output}")
    else:
        for _line, kept, pr in preds:
            print("".join(f"{v}\t" for v in kept.values()) + f"{pr.label}\t{printed_probabilities(pr.probabilities)}"
                  + ("\t(truncated)" if pr.truncated else ""))
    src = (a.input if a.input != "-" else "<stdin>") if a.input else "arguments"
    if stats.get("blank_lines"):
        log.warning("%s: skipped %d blank line%s (each output row records its input line)", src,
                    stats["blank_lines"], "" if stats["blank_lines"] == 1 else "s")
    if report.empty:
        log.warning("%s: %d of %d texts are empty (first at line %d); each was scored as an empty input",
                    src, report.empty, report.rows, report.first_empty)
    if report.truncated:
        log.warning("%s: %d of %d texts are longer than %d tokens and were truncated (first at line %d; "
                    "marked truncated)", src, report.truncated, report.rows, clf.max_length, report.first_truncated)
    return 0


# --- models, data ---------------------------------------------------------------------------
def add_models(sub) -> None:
    p = sub.add_parser("models", help="list the named model presets and whether they are cached")
    p.set_defaults(func=cmd_models)


def cmd_models(a) -> int:
    from .loaders.presets import list_models

    print(f"{'name':36} {'cached':7} {'kind':6} source")
    for r in list_models():
        name = r.name + (" (default)" if r.default else "")
        print(f"{name:36} {'yes' if r.cached else 'no':7} {r.kind:6} {r.source}")
    return 0


def add_data(sub) -> None:
    p = sub.add_parser("data", help="built-in data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("download", help="download a data set from its public source and verify it")
    d.add_argument("name", choices=["sms-spam"])
    d.add_argument("--dest", default=".", help="directory to write it to (default: .)")
    d.set_defaults(func=cmd_data_download)
    i = dsub.add_parser("info", help="rows and classes of a data set or file")
    i.add_argument("name")
    i.set_defaults(func=cmd_data_info)


def cmd_data_download(a) -> int:
    from .data import download_sms_spam

    path = download_sms_spam(Path(a.dest))
    print(f"wrote {path}")
    return 0


def cmd_data_info(a) -> int:
    from collections import Counter

    from .data import load_dataset

    t = load_dataset(a.name)
    counts = Counter(map(str, t.labels))
    print(f"{a.name}: {len(t.texts)} rows; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


# --- serve ----------------------------------------------------------------------------------
def add_serve(sub) -> None:
    # Limits default to serve.py's constants (None here = not given); importing serve.py would
    # need the optional 'serve' extra just to build this parser.
    p = sub.add_parser("serve", help="serve a run (or its ONNX export) over HTTP (API + web page)")
    p.add_argument("run", help="run directory, or a directory written by export --format onnx")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-texts", type=int, help="texts per request (default 64)")
    p.add_argument("--max-chars", type=int, help="characters per text (default 10000)")
    p.add_argument("--max-body-bytes", type=int, help="request body size (default 2 MiB)")
    p.add_argument("--max-queue", type=int, help="texts waiting for the model before 503 (default 1024)")
    p.add_argument("--batch-max", type=int, help="micro-batch: most texts per model call (default 32)")
    p.add_argument("--batch-wait-ms", type=float, help="micro-batch: longest wait to fill a batch (default 5)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--quantize", choices=["int8"])
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)


def cmd_serve(a) -> int:
    try:
        from .serve import run
    except ImportError as e:
        raise UserError(f"serve needs the 'serve' extra: pip install 'llmclassify[serve]' ({e})") from None
    limits = {k: getattr(a, k) for k in ("max_texts", "max_chars", "max_body_bytes", "max_queue", "batch_max",
                                         "batch_wait_ms") if getattr(a, k) is not None}
    run(a.run, host=a.host, port=a.port, dtype=a.dtype, quantize=a.quantize, log_level=a.log_level, **limits)
    return 0


# --- export ---------------------------------------------------------------------------------
def add_export(sub) -> None:
    from .export import FORMATS

    p = sub.add_parser("export", help="export a run for Hugging Face transformers or ONNX Runtime",
                       description="hf: a directory AutoModelForSequenceClassification / AutoTokenizer / pipeline "
                                   "load with no custom code. onnx: model.onnx (ids + mask -> probabilities) with "
                                   "the tokenizer and settings; predict and serve accept that directory.")
    p.add_argument("run", help="run directory")
    p.add_argument("--format", dest="fmt", choices=FORMATS, required=True)
    p.add_argument("--output", "-o", required=True, help="directory to write (written whole or not at all)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.set_defaults(func=cmd_export)


def cmd_export(a) -> int:
    from .export import export_run

    out = export_run(a.run, a.fmt, Path(a.output), overwrite=a.overwrite)
    print(f"exported {a.run} as {a.fmt} to {out}")
    return 0


# --- experiments ----------------------------------------------------------------------------
def add_experiments(sub) -> None:
    from .experiments import ROWS

    rows = "; ".join(f"{r.name}{'' if r.default else ' (opt-in)'}" for r in ROWS)
    p = sub.add_parser("experiments", help="re-run the rows of the book's fine-tuning experiment table",
                       description=f"Rows: {rows}.")
    p.add_argument("--model", default=None, help="model (default: the default preset)")
    p.add_argument("--data", default="sms-spam")
    p.add_argument("--rows", help="comma-separated row names (default: every row not marked opt-in)")
    p.add_argument("--epochs", type=int, help="override the recipe's 5 epochs (rows that set their own keep them)")
    p.add_argument("--output", "-o", default="runs/experiments")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_experiments)


def cmd_experiments(a) -> int:
    from .experiments import format_table, run_experiments
    from .loaders.presets import DEFAULT_MODEL

    model = a.model or DEFAULT_MODEL
    rows = [r.strip() for r in a.rows.split(",")] if a.rows else None
    results = run_experiments(model, a.data, Path(a.output), rows, epochs=a.epochs, progress=not a.quiet,
                              overwrite=a.overwrite)
    print(format_table(model, a.data, results))
    print(f"table written to {Path(a.output) / 'experiments.md'}")
    return 0


COMMANDS = [add_train, add_evaluate, add_predict, add_export, add_models, add_data, add_serve, add_experiments]


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (and exit 2) like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .loaders.presets import DEFAULT_MODEL

    p = Parser(prog="llmclassify", description="Turn a pretrained decoder LLM into a text classifier.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    sub.choices["train"].set_defaults(model=None)
    sub.choices["train"].description += f" Default model: {DEFAULT_MODEL}; default data: sms-spam."
    return p


class _StderrHandler(logging.Handler):
    """Warnings as `llmclassify: warning: <message>` on whatever sys.stderr is at the time
    (pytest's capsys swaps it between calls)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"llmclassify: {record.levelname.lower()}: {self.format(record)}\n")
        except Exception:
            self.handleError(record)


def setup_logging(debug: bool = False) -> None:
    """Show the package's warnings (skipped rows, truncated texts: always with counts) on
    stderr; --debug adds info and debug messages. Idempotent: main() may run many times."""
    pkg = logging.getLogger("llmclassify")
    handler = next((h for h in pkg.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        pkg.addHandler(handler)
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    if debug:
        pkg.setLevel(logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    setup_logging(debug)
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return a.func(a) or 0
    except UserError as e:
        if debug:
            raise
        print(f"llmclassify: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # training stopped on a signal, its state saved
        print(f"llmclassify: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("llmclassify: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a failed run: one line unless --debug
        if debug:
            raise
        print(f"llmclassify: failed: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
