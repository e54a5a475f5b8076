"""Data: read labelled text files, map labels to ids, deduplicate, split, balance.

This module owns the first step of the pipeline: everything between a file on disk (or the
built-in `sms-spam` data set) and lists of texts with integer label ids in train / val / test.
No torch here.

Reading rules (`read_table`):

- Format from `fmt` or the extension: `.csv` CSV, `.tsv`/`.tab` TSV, `.jsonl`/`.ndjson` JSON
  lines, `.parquet` Parquet (needs pyarrow), `.txt` one text per line (unlabelled, for
  `iter_texts` only). Any other extension: sniffed from the first non-blank line (`{` -> JSONL,
  a tab -> TSV, a comma -> CSV, otherwise plain text).
- CSV uses the csv module with standard double-quote rules. TSV is split on tabs with quoting
  OFF, because real TSV files (SMSSpamCollection among them) hold unbalanced `"` in their texts;
  a quoting reader silently merges lines (5,572 rows instead of 5,574). `quoting=True` turns
  CSV quote rules on for TSV too; that is how `pandas.read_csv(sep="\\t")` reads, and the book.
- CSV: a quoted field still open at the end of the file (an unbalanced `"`) is an error naming
  the line it opened on, not one giant text holding the rest of the file.
- `iter_texts` / `iter_records` (prediction input) also read `-`: standard input, as bytes.
- Encoding: UTF-8 only, with or without a BOM; CRLF or LF line ends. Bytes that are not UTF-8
  raise a `DataError` naming the file and line (no silent replacement characters).
- Header rule for CSV/TSV: the first row is a header when `text_column` or `label_column` is
  given, or when one of its fields is a well-known column name (`KNOWN_COLUMN_NAMES`: text,
  sentence, message, content, label, class, category, target, ...; case-insensitive). Otherwise
  the file is headerless and must have one column (texts, unlabelled) or two; of two columns the
  label column is the one with fewer distinct values (ties: the one with shorter values, then
  the first), so both `label<TAB>text` (SMSSpamCollection) and `text,label` work. A first
  row read as data that holds a near miss of a known name ('txt', 'lable') logs a warning.
- Columns default to the first well-known name present; a name that is not there is an error
  suggesting the closest one: `data.csv: no column 'lable'; did you mean 'label'? (columns: ...)`.
- Rows with an empty or whitespace-only text, or no label, are skipped and counted
  (`Table.skipped`, one logged warning); if every row is skipped that is an error. Blank lines
  are ignored. Labels are stripped of surrounding spaces; texts are kept exactly as written.
- Multi-label: `label_sep="|"` splits each label field into a sorted list of names; a JSON list
  as a label does the same.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import DataError, UserError

log = logging.getLogger(__name__)

TEXT_COLUMN_NAMES = ("text", "sentence", "message", "content", "review", "body", "document", "sms")
LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "intent")
KNOWN_COLUMN_NAMES = frozenset(TEXT_COLUMN_NAMES + LABEL_COLUMN_NAMES)

STDIN = "-"  # a path of "-" reads standard input (one text per line unless a format is given)

FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".txt": "txt",
}

# Built-in data sets: name -> (file in llmclassify/datasets, format).
BUILTIN_DATASETS = {"sms-spam": ("sms_spam_collection.tsv", "tsv")}

SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SMS_SPAM_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"
SMS_SPAM_MEMBER = "SMSSpamCollection"


# --------------------------------------------------------------------------------------------
# Tables


@dataclass
class Table:
    """Labelled texts as read from one file, in file order.

    `labels[i]` is a string, or a sorted list of strings when `multi_label`. `lines[i]` is the
    1-based line (record start) of row i in `source`, or the row number for Parquet.
    """

    texts: list[str]
    labels: list
    lines: list[int]
    source: str
    text_column: str
    label_column: str
    columns: list[str] = field(default_factory=list)
    header: bool = True
    multi_label: bool = False
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> dict[str, int]:
        """Rows per label name (each name of a multi-label row counts once)."""
        counts: Counter = Counter()
        for lab in self.labels:
            counts.update(lab if isinstance(lab, list) else [lab])
        return dict(counts)


def detect_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format of `path`: `fmt` if given, else by extension, else sniffed (see module doc)."""
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        f = {"ndjson": "jsonl", "tab": "tsv", "text": "txt"}.get(f, f)
        if f not in FORMATS:
            raise UserError(f"unknown data format '{fmt}' (choose from {', '.join(FORMATS)})")
        return f
    if os.fspath(path) == STDIN:
        return "txt"  # standard input cannot be sniffed without consuming it
    ext = Path(path).suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    _check_file(path)
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.lstrip(codecs.BOM_UTF8).strip()
            if not line:
                continue
            if line.startswith(b"{"):
                return "jsonl"
            if b"\t" in line:
                return "tsv"
            if b"," in line:
                return "csv"
            return "txt"
    return "txt"


def _check_file(path) -> None:
    if os.fspath(path) == STDIN:
        return
    p = Path(path)
    if not p.exists():
        raise DataError("no such file", file=path)
    if p.is_dir():
        raise DataError("is a directory, not a data file", file=path)
    if not os.access(p, os.R_OK):
        raise DataError("cannot read the file (permission denied)", file=path)


def _decoded_lines(path) -> Iterator[tuple[int, str]]:
    """(line number, line with its line end) for each line, decoded as strict UTF-8.

    Lines are split on LF only, so a CR inside a text survives and CRLF is stripped later.
    Decoding per line keeps memory flat and gives the line number of a bad byte. `path` "-"
    reads standard input (as bytes, so the same rules apply).
    """
    _check_file(path)
    stdin = os.fspath(path) == STDIN
    with contextlib.nullcontext(sys.stdin.buffer) if stdin else open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            if i == 1:
                if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise DataError("is UTF-16; save it as UTF-8", file="<stdin>" if stdin else path, line=1)
                if raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the "
                    "line); save the file as UTF-8",
                    file="<stdin>" if stdin else path,
                    line=i,
                ) from None
            yield i, line


def _strip_eol(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


def _tsv_rows(path, stats: dict | None = None) -> Iterator[tuple[int, list[str]]]:
    """TSV with quoting off: every line is one row, fields split on tabs, quotes literal."""
    for i, line in _decoded_lines(path):
        line = _strip_eol(line)
        if line.strip():
            yield i, line.split("\t")
        elif stats is not None:
            stats["blank_lines"] = stats.get("blank_lines", 0) + 1


def _csv_rows(path, delimiter: str, stats: dict | None = None) -> Iterator[tuple[int, list[str]]]:
    """CSV rules (quoted fields may span lines); yields the line each record starts on.

    A quoted field still open at the end of the file is an unbalanced double quote: the csv
    module would hand back the rest of the file as one field (silently eating every row after
    it), so that is an error naming the line the quote opened on.
    """
    current = [0]
    eof = [False]

    def lines():
        for i, line in _decoded_lines(path):
            current[0] = i
            yield line
        eof[0] = True

    reader = csv.reader(lines(), delimiter=delimiter)
    while True:
        start = current[0] + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            hint = ""
            if "field larger than field limit" in str(e):
                hint = " (an unbalanced double quote? TSV files are read with quoting off)"
            raise DataError(f"cannot parse the row: {e}{hint}", file=path, line=start) from None
        # The reader only asks for a line past the end while inside a quoted field.
        if eof[0]:
            raise DataError(
                "unbalanced double quote: the quoted field opened on this line never closes, "
                f"so lines {start}-{current[0]} would be read as one text (double a quote "
                'inside a quoted text: "")',
                file=path,
                line=start,
            )
        if any(f.strip() for f in row):
            yield start, row
        elif stats is not None:
            stats["blank_lines"] = stats.get("blank_lines", 0) + 1


def _jsonl_rows(path, stats: dict | None = None) -> Iterator[tuple[int, dict]]:
    for i, line in _decoded_lines(path):
        if not line.strip():
            _count_blank(stats)
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise DataError(f"not valid JSON: {e}", file=path, line=i) from None
        if not isinstance(obj, dict):
            raise DataError(
                f"expected a JSON object per line, found {type(obj).__name__}", file=path, line=i
            )
        yield i, obj


def _delimited_rows(path, fmt: str, quoting: bool | None, stats: dict | None = None):
    if fmt == "csv":
        return _csv_rows(path, ",", stats)
    return _csv_rows(path, "\t", stats) if quoting else _tsv_rows(path, stats)


def _close(name: str, choices: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hits[0]] if hits else None


def _resolve_columns(path, columns, text_column, label_column) -> tuple[str, str]:
    """The text and label column names of a file with a header, or a DataError that names
    the missing one and suggests the closest column."""
    text_col = _find_column(path, columns, text_column, TEXT_COLUMN_NAMES, "text", "--text-column")
    label_col = _find_column(path, columns, label_column, LABEL_COLUMN_NAMES, "label", "--label-column")
    if text_col is None:
        raise _missing_column_error(path, columns, TEXT_COLUMN_NAMES, "text", "--text-column", taken=label_col)
    if label_col is None:
        raise _missing_column_error(path, columns, LABEL_COLUMN_NAMES, "label", "--label-column", taken=text_col)
    return text_col, label_col


def _find_column(
    path, columns: list[str], wanted: str | None, defaults: Sequence[str], kind: str, flag: str
) -> str | None:
    """Resolve a column name: exact, then case-insensitive; None when not given and not found."""
    listing = f"(columns: {', '.join(columns)})"
    if wanted is not None:
        if wanted in columns:
            return wanted
        for c in columns:
            if c.lower() == wanted.lower():
                return c
        guess = _close(wanted, columns)
        did = f"; did you mean '{guess}'?" if guess else ""
        raise DataError(f"no column '{wanted}'{did} {listing}", file=path)
    for name in defaults:
        for c in columns:
            if c.strip().lower() == name:
                return c
    return None


def _missing_column_error(path, columns, defaults, kind, flag, taken=None) -> DataError:
    """No column with a well-known name: suggest the column closest to one (not `taken`, the
    column already chosen for the other role), e.g. 'lable' for a label column."""
    guess, best = None, 0.0
    for c in columns:
        if c == taken:
            continue
        for name in defaults:
            score = difflib.SequenceMatcher(None, c.strip().lower(), name).ratio()
            if score >= 0.6 and score > best:
                guess, best = c, score
    did = f"; did you mean '{guess}'?" if guess else ""
    return DataError(
        f"no {kind} column found (looked for {', '.join(defaults)}){did}; pass {flag} "
        f"(columns: {', '.join(columns)})",
        file=path,
    )


def _label_value(value, label_sep: str | None, path, line: int, column: str):
    """A cell -> label string, sorted list (multi-label), or None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, list):
        names = []
        for v in value:
            names.append(_label_scalar(v, path, line, column))
        names = sorted({n for n in names if n})
        return names or None
    s = _label_scalar(value, path, line, column)
    if label_sep is not None:
        parts = sorted({p.strip() for p in s.split(label_sep) if p.strip()})
        return parts or None
    return s or None


def _label_scalar(v, path, line, column) -> str:
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, (bool, int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return json.dumps(v)  # 1 -> "1", true -> "true": integer labels stay as their string
    if v is None:
        return ""
    raise DataError(
        f"a label must be a string, number or list, found {type(v).__name__}",
        file=path,
        line=line,
        field=column,
    )


def _text_value(v, path, line, column) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    raise DataError(
        f"a text must be a string, found {type(v).__name__}", file=path, line=line, field=column
    )


def _headerless_columns(rows: Sequence[list[str]]) -> tuple[int, int]:
    """(text index, label index) for a headerless two-column file: see the module docstring."""
    distinct = [len({r[j].strip() for r in rows if len(r) > j}) for j in (0, 1)]
    mean_len = [
        sum(len(r[j]) for r in rows if len(r) > j) / max(1, sum(len(r) > j for r in rows))
        for j in (0, 1)
    ]
    if distinct[0] != distinct[1]:
        label = 0 if distinct[0] < distinct[1] else 1
    elif mean_len[0] != mean_len[1]:
        label = 0 if mean_len[0] < mean_len[1] else 1
    else:
        label = 0
    return 1 - label, label


def _is_header(first_row: list[str], text_column, label_column, path=None, line=1) -> bool:
    if text_column is not None or label_column is not None:
        return True
    if any(f.strip().lower() in KNOWN_COLUMN_NAMES for f in first_row):
        return True
    # Read as data; but a misspelled header ('txt', 'lable') would silently become a row.
    for f in first_row:
        name = f.strip().lower()
        if 0 < len(name) <= 20:
            hit = difflib.get_close_matches(name, KNOWN_COLUMN_NAMES, n=1, cutoff=0.75)
            if hit:
                log.warning(
                    "%s: line %d ('%s') is read as data, not a header: '%s' is not a known "
                    "column name (did you mean '%s'?); name the column with --text-column "
                    "or --label-column to use the line as a header",
                    path, line, ",".join(first_row)[:60], f.strip(), hit[0],
                )
                break
    return False


def _cells(path, fmt, row: list[str], ncols: int, text_idx: int, line: int, allow_join: bool):
    """Pad or fold a delimited row to `ncols` fields."""
    if len(row) > ncols:
        extra = row[ncols:]
        if allow_join and text_idx == ncols - 1:
            # Quoting off: a tab inside the last (text) column splits it; put it back.
            row = row[: ncols - 1] + ["\t".join(row[ncols - 1 :])]
        elif any(f.strip() for f in extra):
            if any("\n" in f for f in row):  # a quoted field ran on over line ends
                hint = " (an unbalanced double quote? this record runs over several lines)"
            elif fmt == "csv":
                hint = " (a comma inside a text needs double quotes)"
            else:
                hint = ""
            raise DataError(
                f"expected {ncols} fields, found {len(row)}{hint}",
                file=path,
                line=line,
            )
        else:
            row = row[:ncols]
    elif len(row) < ncols:
        row = row + [""] * (ncols - len(row))
    return row


def read_table(
    path: str | os.PathLike,
    text_column: str | None = None,
    label_column: str | None = None,
    fmt: str | None = None,
    label_sep: str | None = None,
    quoting: bool | None = None,
) -> Table:
    """Read a labelled CSV / TSV / JSONL / Parquet file into a `Table` (rules: module docstring).

    `quoting` only affects TSV (default off; True reads it the way pandas does). Raises
    `DataError` (a `UserError`) with a one-line message naming the file, line and field.
    """
    path = os.fspath(path)
    fmt = detect_format(path, fmt)
    if fmt == "txt":
        raise DataError(
            "plain text has one text per line and no labels; for training use CSV, TSV or "
            "JSONL with a text and a label column",
            file=path,
        )
    if fmt == "parquet":
        columns, text_col, label_col, records, header = _parquet_records(
            path, text_column, label_column
        )
    elif fmt == "jsonl":
        columns, text_col, label_col, records, header = _jsonl_records(
            path, text_column, label_column
        )
    else:
        columns, text_col, label_col, records, header = _delimited_records(
            path, fmt, text_column, label_column, quoting
        )

    texts: list[str] = []
    labels: list = []
    lines: list[int] = []
    skipped = {"empty_text": 0, "missing_label": 0}
    first_skip = None
    multi = label_sep is not None
    n_rows = 0
    for line, text, label in records:
        n_rows += 1
        text = _text_value(text, path, line, text_col)
        label = _label_value(label, label_sep, path, line, label_col)
        if not text.strip():
            skipped["empty_text"] += 1
            first_skip = first_skip or line
            continue
        if label is None:
            skipped["missing_label"] += 1
            first_skip = first_skip or line
            continue
        multi = multi or isinstance(label, list)
        texts.append(text)
        labels.append(label)
        lines.append(line)

    if n_rows == 0:
        raise DataError("has a header row but no data rows" if header else "is empty", file=path)
    if not texts:
        raise DataError(
            f"no usable rows: {skipped['empty_text']} with an empty text, "
            f"{skipped['missing_label']} with no label in column '{label_col}'",
            file=path,
        )
    if multi:
        labels = [lab if isinstance(lab, list) else [lab] for lab in labels]
    if first_skip is not None:
        parts = []
        if skipped["empty_text"]:
            parts.append(f"{skipped['empty_text']} with an empty text")
        if skipped["missing_label"]:
            parts.append(f"{skipped['missing_label']} with no label")
        n_skipped = skipped["empty_text"] + skipped["missing_label"]
        log.warning(
            "%s: skipped %d row%s: %s (first at line %d)",
            path,
            n_skipped,
            "" if n_skipped == 1 else "s",
            ", ".join(parts),
            first_skip,
        )
    return Table(
        texts=texts,
        labels=labels,
        lines=lines,
        source=path,
        text_column=text_col,
        label_column=label_col,
        columns=columns,
        header=header,
        multi_label=multi,
        skipped=skipped,
    )


def _delimited_records(path, fmt, text_column, label_column, quoting):
    rows_iter = _delimited_rows(path, fmt, quoting)
    first = next(rows_iter, None)
    if first is None:
        raise DataError("is empty", file=path)
    line0, row0 = first
    allow_join = fmt == "tsv" and not quoting
    if _is_header(row0, text_column, label_column, path, line0):
        columns = [c.strip() for c in row0]
        text_col, label_col = _resolve_columns(path, columns, text_column, label_column)
        if text_col == label_col:
            raise DataError(f"text and label columns are the same column '{text_col}'", file=path)
        ti, li = columns.index(text_col), columns.index(label_col)
        ncols = len(columns)

        def records():
            for line, row in rows_iter:
                row = _cells(path, fmt, row, ncols, ti, line, allow_join)
                yield line, row[ti], row[li]

        return columns, text_col, label_col, records(), True

    # Headerless: read every row (needed to pick the label column by distinct values).
    rows = [first, *rows_iter]
    ncols = len(row0)
    if ncols == 1:
        raise DataError(
            "has one column and no header, so no labels; add a header row naming a text and a "
            "label column",
            file=path,
        )
    if ncols > 2:
        raise DataError(
            f"has {ncols} columns and no header row; add a header naming the text and label "
            f"columns (e.g. {', '.join(['text', 'label'] + ['x'] * (ncols - 2))})",
            file=path,
            line=line0,
        )
    ti, li = _headerless_columns([r for _, r in rows])
    columns = ["column1", "column2"]

    def records_headerless():
        for line, row in rows:
            row = _cells(path, fmt, row, 2, ti, line, allow_join)
            yield line, row[ti], row[li]

    return columns, columns[ti], columns[li], records_headerless(), False


def _jsonl_records(path, text_column, label_column):
    rows_iter = _jsonl_rows(path)
    first = next(rows_iter, None)
    if first is None:
        raise DataError("is empty", file=path)
    columns = [str(k) for k in first[1]]
    text_col, label_col = _resolve_columns(path, columns, text_column, label_column)

    def records():
        for line, obj in _chain(first, rows_iter):
            yield line, obj.get(text_col), obj.get(label_col)

    return columns, text_col, label_col, records(), True


def _chain(first, rest):
    yield first
    yield from rest


def _import_pyarrow_parquet(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "reading Parquet needs pyarrow: pip install pyarrow (or convert the file to CSV, "
            "TSV or JSONL)",
            file=path,
        ) from None
    return pq


def _parquet_records(path, text_column, label_column):
    pq = _import_pyarrow_parquet(path)
    _check_file(path)
    try:
        pf = pq.ParquetFile(path)
        columns = list(pf.schema_arrow.names)
    except Exception as e:  # pyarrow raises its own exception types
        raise DataError(f"cannot read Parquet: {e}", file=path) from None
    text_col, label_col = _resolve_columns(path, columns, text_column, label_column)

    def records():
        n = 0
        for batch in pf.iter_batches(columns=[text_col, label_col]):
            t = batch.column(0).to_pylist()
            lab = batch.column(1).to_pylist()
            for a, b in zip(t, lab):
                n += 1
                yield n, a, b

    return columns, text_col, label_col, records(), True


# --------------------------------------------------------------------------------------------
# Streaming texts for prediction


def iter_texts(
    path: str | os.PathLike,
    text_column: str | None = None,
    fmt: str | None = None,
    chunk_size: int = 1024,
    quoting: bool | None = None,
) -> Iterator[list[str]]:
    """Stream the texts of a (possibly unlabelled, possibly huge) file in lists of `chunk_size`.

    Memory stays flat: lines are decoded one at a time. `.txt` is one text per line. CSV/TSV
    follow `read_table`'s header rule; a headerless file with one column is all texts, with two
    columns the text column is picked on the first `chunk_size` rows. Every data row yields
    exactly one text, an empty one as "" (so outputs line up with input rows); blank lines are
    not rows and are skipped (`iter_records` gives each text's line). `path` "-" reads stdin.
    """
    for chunk in iter_records(path, text_column, fmt, chunk_size, quoting):
        yield [text for _, text in chunk]


def iter_records(
    path: str | os.PathLike,
    text_column: str | None = None,
    fmt: str | None = None,
    chunk_size: int = 1024,
    quoting: bool | None = None,
    stats: dict | None = None,
) -> Iterator[list[tuple[int, str]]]:
    """`iter_texts` with the line (record start; row number for Parquet) of each text:
    lists of `(line, text)`. `stats`, if given, counts skipped blank lines as `blank_lines`."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    path = os.fspath(path)
    fmt = detect_format(path, fmt)
    if fmt == "parquet" and path == STDIN:
        raise UserError("Parquet cannot be read from standard input; pass the file's path")
    if fmt == "txt":
        source = _iter_txt_records(path, stats)
    elif fmt == "jsonl":
        source = _iter_jsonl_texts(path, text_column, stats)
    elif fmt == "parquet":
        source = _iter_parquet_texts(path, text_column)
    else:
        source = _iter_delimited_texts(path, fmt, text_column, chunk_size, quoting, stats)
    chunk: list[tuple[int, str]] = []
    for record in source:
        chunk.append(record)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _count_blank(stats: dict | None) -> None:
    if stats is not None:
        stats["blank_lines"] = stats.get("blank_lines", 0) + 1


def _iter_txt_records(path, stats):
    for i, line in _decoded_lines(path):
        if line.strip():
            yield i, _strip_eol(line)
        else:
            _count_blank(stats)


def _iter_jsonl_texts(path, text_column, stats=None):
    col = None
    for line, obj in _jsonl_rows(path, stats):
        if col is None:
            columns = [str(k) for k in obj]
            col = _find_column(
                path, columns, text_column, TEXT_COLUMN_NAMES, "text", "--text-column"
            )
            if col is None:
                raise _missing_column_error(
                    path, columns, TEXT_COLUMN_NAMES, "text", "--text-column"
                )
        yield line, _text_value(obj.get(col), path, line, col)


def _iter_parquet_texts(path, text_column):
    pq = _import_pyarrow_parquet(path)
    _check_file(path)
    try:
        pf = pq.ParquetFile(path)
        columns = list(pf.schema_arrow.names)
    except Exception as e:
        raise DataError(f"cannot read Parquet: {e}", file=path) from None
    col = _find_column(path, columns, text_column, TEXT_COLUMN_NAMES, "text", "--text-column")
    if col is None:
        raise _missing_column_error(path, columns, TEXT_COLUMN_NAMES, "text", "--text-column")
    n = 0
    for batch in pf.iter_batches(columns=[col]):
        for v in batch.column(0).to_pylist():
            n += 1
            yield n, _text_value(v, path, n, col)


def _iter_delimited_texts(path, fmt, text_column, sample_size, quoting, stats=None):
    rows_iter = _delimited_rows(path, fmt, quoting, stats)
    first = next(rows_iter, None)
    if first is None:
        return
    allow_join = fmt == "tsv" and not quoting
    line0, row0 = first
    if _is_header(row0, text_column, None, path, line0):
        columns = [c.strip() for c in row0]
        col = _find_column(path, columns, text_column, TEXT_COLUMN_NAMES, "text", "--text-column")
        if col is None:
            raise _missing_column_error(path, columns, TEXT_COLUMN_NAMES, "text", "--text-column")
        ti, ncols, rest = columns.index(col), len(columns), rows_iter
    else:
        ncols = len(row0)
        if ncols > 2:
            raise DataError(
                f"has {ncols} columns and no header row; add a header naming the text column",
                file=path,
                line=line0,
            )
        sample = [first]
        for item in rows_iter:
            sample.append(item)
            if len(sample) >= sample_size:
                break
        ti = 0 if ncols == 1 else _headerless_columns([r for _, r in sample])[0]
        rest = _chain_many(sample, rows_iter)
    for line, row in rest:
        if ncols == 1 and fmt == "tsv" and not quoting:
            yield line, "\t".join(row)
            continue
        yield line, _cells(path, fmt, row, ncols, ti, line, allow_join)[ti]


def _chain_many(items, rest):
    yield from items
    yield from rest


# --------------------------------------------------------------------------------------------
# Built-in data sets and download


def builtin_path(name: str) -> Path:
    """Path of the packaged file of built-in data set `name` (e.g. `sms-spam`)."""
    if name not in BUILTIN_DATASETS:
        raise UserError(
            f"unknown built-in data set '{name}' (built-in: {', '.join(BUILTIN_DATASETS)})"
        )
    filename, _ = BUILTIN_DATASETS[name]
    return Path(str(resources.files("llmclassify").joinpath("datasets", filename)))


def load_dataset(name_or_path: str | os.PathLike, **kw) -> Table:
    """`read_table` on a file, or on a built-in data set by name (`sms-spam`).

    `sms-spam` is SMSSpamCollection v.1 (CC BY 4.0, see llmclassify/datasets/ATTRIBUTION.md):
    5,574 rows, 4,827 ham, 747 spam. Pass `quoting=True` to read it exactly as the book's
    `pandas.read_csv(sep="\\t")` does (5,572 rows), which `reference_split` needs to reproduce
    the book's rows.
    """
    key = os.fspath(name_or_path)
    if key in BUILTIN_DATASETS:
        kw.setdefault("fmt", BUILTIN_DATASETS[key][1])
        return read_table(builtin_path(key), **kw)
    if not Path(key).exists():
        guess = _close(key, list(BUILTIN_DATASETS))
        did = f"; did you mean the built-in data set '{guess}'?" if guess else ""
        raise DataError(
            f"no such file{did} (built-in data sets: {', '.join(BUILTIN_DATASETS)})", file=key
        )
    return read_table(key, **kw)


def download_sms_spam(
    dest: str | os.PathLike, url: str = SMS_SPAM_URL, timeout: float = 60.0
) -> Path:
    """Download SMSSpamCollection from UCI, check its sha256, write it to `dest` atomically.

    `dest` is a file path, or a directory to hold `SMSSpamCollection`. Not needed for normal
    use: the same file ships in the package as the `sms-spam` data set. Any failure (no
    network, bad zip, checksum mismatch) raises a one-line `UserError`.
    """
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / SMS_SPAM_MEMBER
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            payload = resp.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"cannot download {url}: {reason}; no download is needed, the packaged copy "
            "(data set 'sms-spam') is used by default"
        ) from None
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            names = [n for n in zf.namelist() if Path(n).name == SMS_SPAM_MEMBER]
            if not names:
                raise UserError(f"{url}: the zip holds no {SMS_SPAM_MEMBER}")
            data = zf.read(names[0])
    except zipfile.BadZipFile as e:
        raise UserError(f"{url}: not a valid zip file ({e})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SMS_SPAM_SHA256:
        raise UserError(
            f"{url}: {SMS_SPAM_MEMBER} has sha256 {digest}, expected {SMS_SPAM_SHA256}; "
            "the download is corrupt or the file changed upstream"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


# --------------------------------------------------------------------------------------------
# Label map

_INT_RE = re.compile(r"[+-]?\d+\Z")


def _label_sort_key(names: Iterable[str]):
    names = list(names)
    if names and all(_INT_RE.match(n) for n in names):
        return lambda n: (int(n), n)
    return lambda n: n


class LabelMap:
    """Label names <-> indices. Order is the given list; `from_labels` sorts (numerically when
    every name is an integer, so "2" < "10"). Serialised as a plain JSON list of names."""

    def __init__(self, names: Sequence[str], multi_label: bool = False):
        names = list(names)
        if not names:
            raise UserError("a label map needs at least one label")
        for n in names:
            if not isinstance(n, str) or not n:
                raise UserError(f"label names must be non-empty strings, found {n!r}")
        dup = [n for n, c in Counter(names).items() if c > 1]
        if dup:
            raise UserError(f"duplicate label name '{dup[0]}' in the label map")
        self.names: list[str] = names
        self.multi_label = multi_label
        self._index = {n: i for i, n in enumerate(names)}

    @classmethod
    def from_labels(cls, labels: Iterable) -> LabelMap:
        """Sorted distinct names of `labels` (strings, or lists of strings for multi-label)."""
        seen: set[str] = set()
        multi = False
        for lab in labels:
            if isinstance(lab, list):
                multi = True
                seen.update(lab)
            else:
                seen.add(lab)
        return cls(sorted(seen, key=_label_sort_key(seen)), multi_label=multi)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, LabelMap)
            and self.names == other.names
            and self.multi_label == other.multi_label
        )

    def __repr__(self) -> str:
        return f"LabelMap({self.names!r}{', multi_label=True' if self.multi_label else ''})"

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise DataError(f"unknown label '{name}' (known: {', '.join(self.names)})") from None

    def name(self, index: int) -> str:
        return self.names[index]

    def encode(self, labels: Iterable) -> list:
        """Names -> ids; a list of names (multi-label) -> a sorted list of ids."""
        return [
            sorted(self.index(n) for n in lab) if isinstance(lab, list) else self.index(lab)
            for lab in labels
        ]

    def decode(self, ids: Iterable) -> list:
        return [
            [self.names[i] for i in x] if isinstance(x, (list, tuple)) else self.names[int(x)]
            for x in ids
        ]

    def to_json(self) -> list[str]:
        return list(self.names)

    @classmethod
    def from_json(cls, data, multi_label: bool = False) -> LabelMap:
        """From `to_json()`'s list, or a JSON string of it."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as e:
                raise UserError(f"label map is not valid JSON: {e}") from None
        if not isinstance(data, list):
            raise UserError("a label map must be a JSON list of label names")
        return cls(data, multi_label=multi_label)


# --------------------------------------------------------------------------------------------
# Splitting


@dataclass
class Split:
    """One split: texts, label ids (int, or sorted list of ints when multi-label), source lines."""

    texts: list[str]
    labels: list
    lines: list[int]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Prepared:
    train: Split
    val: Split
    test: Split
    label_map: LabelMap
    report: dict


def parse_split(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """`"0.7,0.1,0.2"` (or `"70,10,20"`) -> (train, val, test) fractions.

    Three non-negative numbers summing to 1 (or 100); train must be > 0; val or test may be 0.
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.replace("/", ",").split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise UserError(
                f"--split '{spec}': expected three numbers such as 0.7,0.1,0.2"
            ) from None
    else:
        values = [float(v) for v in spec]
    if len(values) != 3:
        raise UserError(
            f"--split {spec!r}: expected three numbers (train,val,test), got {len(values)}"
        )
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise UserError(f"--split {spec!r}: fractions must be non-negative numbers")
    total = sum(values)
    if abs(total - 100) < 1e-6:
        values = [v / 100 for v in values]
    elif abs(total - 1) > 1e-6:
        raise UserError(f"--split {spec!r}: fractions sum to {total:g}, not 1")
    if values[0] <= 0:
        raise UserError(f"--split {spec!r}: the train fraction must be > 0")
    return values[0], values[1], values[2]


def _allocate(n: int, fracs: Sequence[float]) -> list[int]:
    """Split n items by fractions (largest remainder), giving every non-zero split one if it can."""
    exact = [n * f for f in fracs]
    counts = [math.floor(round(e, 9)) for e in exact]
    order = sorted(range(len(fracs)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i, f in enumerate(fracs):
        if f > 0 and counts[i] == 0:
            donor = max(range(len(fracs)), key=lambda j: counts[j])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _label_key(lab):
    return tuple(lab) if isinstance(lab, list) else lab


def prepare(
    table: Table,
    split: Sequence[float] | str = (0.7, 0.1, 0.2),
    seed: int = 123,
    dedupe: bool = True,
    balance: str = "none",
    min_per_class: int | None = None,
) -> Prepared:
    """Clean and split a table: conflicts, duplicates, label map, stratified split, balancing.

    - Conflicting texts (the same text under different labels) are dropped entirely when
      `dedupe` is on: there is no way to know which label is right, and keeping both copies
      would put one text in two splits with opposite targets. They are counted either way.
    - Exact duplicates (same text, same label) keep their first occurrence when `dedupe` is on;
      without it a duplicate can land in train and test at once and inflate test accuracy.
    - The split is stratified: each class (each label combination for multi-label) is shuffled
      with `numpy.random.default_rng(seed)` and cut by the fractions (largest remainder), so the
      result depends only on the table's rows, their order and the seed.
    - `balance="undersample"` undersamples every class of the TRAIN split to its smallest class;
      val and test keep the natural distribution.
    - A class with fewer than `min_per_class` rows (default: one per non-empty split) is an
      error naming the class; so is a table with one class.

    `report` holds rows_read, skipped, conflicting_texts, conflicting_rows_removed,
    duplicates_removed, rows_used, class_counts, splits (per-class counts per split), balance
    and undersampled ({"before": ..., "after": ...} of train, or None).
    """
    fracs = parse_split(split) if isinstance(split, str) else parse_split(list(split))
    if balance not in ("none", "undersample"):
        raise UserError(f"unknown balance '{balance}' (choose none or undersample)")
    multi = table.multi_label

    # Conflicts and duplicates.
    labels_of: dict[str, set] = defaultdict(set)
    for text, lab in zip(table.texts, table.labels):
        labels_of[text].add(_label_key(lab))
    conflicting = {t for t, labs in labels_of.items() if len(labs) > 1}
    keep: list[int] = []
    seen: set[str] = set()
    duplicates = conflict_rows = 0
    for i, text in enumerate(table.texts):
        if dedupe and text in conflicting:
            conflict_rows += 1
            continue
        if dedupe and text in seen:
            duplicates += 1
            continue
        seen.add(text)
        keep.append(i)
    if not keep:
        raise DataError("no rows left after removing conflicting texts", file=table.source)

    kept_labels = [table.labels[i] for i in keep]
    label_map = LabelMap.from_labels(kept_labels)
    class_counts = Counter()
    for lab in kept_labels:
        class_counts.update(lab if isinstance(lab, list) else [lab])
    if len(label_map) < 2:
        raise DataError(
            f"only one class ('{label_map.names[0]}') in label column '{table.label_column}'"
            + (" after removing duplicates and conflicts" if dedupe else "")
            + "; a classifier needs at least two",
            file=table.source,
        )
    nonzero = sum(f > 0 for f in fracs)
    need = nonzero if min_per_class is None else int(min_per_class)
    for name in label_map.names:
        if class_counts[name] < need:
            raise DataError(
                f"class '{name}' has only {class_counts[name]} example"
                f"{'s' if class_counts[name] != 1 else ''}"
                + (" after deduplication" if dedupe else "")
                + f"; need at least {need} per class"
                + (
                    f" for a {'/'.join(f'{f:g}' for f in fracs)} split (one per split)"
                    if min_per_class is None
                    else ""
                )
                + "; add examples, remove the class or change --split",
                file=table.source,
            )

    ids = label_map.encode(kept_labels)
    rng = np.random.default_rng(seed)

    # Strata: the class, or for multi-label the label combination (rare ones pooled).
    strata: dict = defaultdict(list)
    for pos, y in enumerate(ids):
        strata[tuple(y) if multi else y].append(pos)
    if multi:
        pooled = [p for k in list(strata) if len(strata[k]) < nonzero for p in strata.pop(k)]
        if pooled:
            strata[("rare",)] = sorted(pooled)
    parts: list[list[int]] = [[], [], []]
    for key in sorted(strata, key=str):
        members = np.asarray(strata[key])
        members = members[rng.permutation(len(members))]
        counts = _allocate(len(members), fracs)
        start = 0
        for s, c in enumerate(counts):
            parts[s].extend(members[start : start + c].tolist())
            start += c
    parts = [[p[i] for i in rng.permutation(len(p))] if p else [] for p in parts]

    undersampled = None
    if balance == "undersample":
        if multi:
            raise UserError("balance=undersample is not supported for multi-label data")
        by_class: dict[int, list[int]] = defaultdict(list)
        for p in parts[0]:
            by_class[ids[p]].append(p)
        target = min(len(v) for v in by_class.values())
        new_train: list[int] = []
        for y in sorted(by_class):
            members = by_class[y]
            if len(members) > target:
                pick = np.sort(rng.choice(len(members), size=target, replace=False))
                members = [members[i] for i in pick]
            new_train.extend(members)
        undersampled = {
            "before": {label_map.name(y): len(v) for y, v in sorted(by_class.items())},
            "after": {label_map.name(y): target for y in sorted(by_class)},
        }
        parts[0] = [new_train[i] for i in rng.permutation(len(new_train))]

    def make(positions):
        return Split(
            texts=[table.texts[keep[p]] for p in positions],
            labels=[ids[p] for p in positions],
            lines=[table.lines[keep[p]] for p in positions],
        )

    splits = [make(p) for p in parts]
    report = {
        "source": table.source,
        "rows_read": len(table),
        "skipped": dict(table.skipped),
        "dedupe": dedupe,
        "conflicting_texts": len(conflicting),
        "conflicting_rows_removed": conflict_rows,
        "duplicates_removed": duplicates,
        "rows_used": len(keep),
        "class_counts": {n: class_counts[n] for n in label_map.names},
        "split": list(fracs),
        "seed": seed,
        "splits": {
            name: _split_counts(sp, label_map) for name, sp in zip(("train", "val", "test"), splits)
        },
        "balance": balance,
        "undersampled": undersampled,
    }
    return Prepared(*splits, label_map=label_map, report=report)


def _split_counts(sp: Split, label_map: LabelMap) -> dict[str, int]:
    counts = Counter()
    for y in sp.labels:
        counts.update(y if isinstance(y, list) else [y])
    return {n: counts[i] for i, n in enumerate(label_map.names)}


def reference_split(
    table: Table, seed: int = 123, train_frac: float = 0.7, val_frac: float = 0.1
) -> Prepared:
    """The book's chapter 6 split, row for row, without pandas.

    The book (pandas): undersample the larger class to the smaller one's count with
    `df[df.Label == "ham"].sample(n_spam, random_state=123)`, concat [ham subset, spam],
    shuffle with `df.sample(frac=1, random_state=123)`, then cut 70/10/20 by position
    (`train_end = int(n * 0.7)`, `val_end = train_end + int(n * 0.1)`). No deduplication.

    pandas' `sample` is `RandomState(seed).choice(n, size=k, replace=False)`, which is
    `RandomState(seed).permutation(n)[:k]`; a fresh RandomState per call, as pandas makes one
    from the integer each time. The book reads SMSSpamCollection with quoting on (5,572 rows);
    for its exact rows use `load_dataset("sms-spam", quoting=True)`. Two classes only.
    """
    if table.multi_label:
        raise UserError("reference_split is for single-label data")
    label_map = LabelMap.from_labels(table.labels)
    if len(label_map) != 2:
        raise DataError(
            f"reference_split needs exactly two classes, found {len(label_map)}",
            file=table.source,
        )
    positions = {n: [i for i, lab in enumerate(table.labels) if lab == n] for n in label_map}
    small, large = sorted(label_map.names, key=lambda n: (len(positions[n]), n))
    if len(positions[small]) == len(positions[large]):  # tie: sample the first class
        large, small = label_map.names[0], label_map.names[1]
    n_small = len(positions[small])
    large_pos = np.asarray(positions[large])
    subset = large_pos[np.random.RandomState(seed).permutation(len(large_pos))[:n_small]]
    balanced = np.concatenate([subset, np.asarray(positions[small], dtype=subset.dtype)])
    shuffled = balanced[np.random.RandomState(seed).permutation(len(balanced))]
    n = len(shuffled)
    train_end = int(n * train_frac)
    val_end = train_end + int(n * val_frac)
    ids = label_map.encode(table.labels)

    def make(pos):
        pos = pos.tolist()
        return Split(
            texts=[table.texts[p] for p in pos],
            labels=[ids[p] for p in pos],
            lines=[table.lines[p] for p in pos],
        )

    splits = [
        make(shuffled[:train_end]),
        make(shuffled[train_end:val_end]),
        make(shuffled[val_end:]),
    ]
    report = {
        "source": table.source,
        "rows_read": len(table),
        "reference": "book chapter 6",
        "seed": seed,
        "class_counts": {k: len(v) for k, v in positions.items()},
        "undersampled": {"class": large, "before": len(large_pos), "after": n_small},
        "splits": {
            name: _split_counts(sp, label_map) for name, sp in zip(("train", "val", "test"), splits)
        },
    }
    return Prepared(*splits, label_map=label_map, report=report)
