"""Readers: one per format, each yielding records `(line, text, label, kept values)`, used both
for labelled reading (`read_table`, training and evaluation) and for text-only reading
(`iter_texts` / `iter_records`, prediction input, which carries some columns beside each text:
the kept ones). No torch here.

Reading rules:

- Format from `fmt` or the extension: `.csv` CSV, `.tsv`/`.tab` TSV, `.jsonl`/`.ndjson` JSON
  lines, `.json` a JSON array of objects (or JSON lines, as `datasets` writes them, or one
  object in any table orientation of pandas' `to_json`: columns, index, split, table),
  `.parquet` Parquet (needs pyarrow), `.txt` one text per line (unlabelled, for
  `iter_texts` only). Any other extension: sniffed from
  the first non-blank line (`{` -> JSONL, `[{` -> JSON, a tab -> TSV, a comma -> CSV,
  otherwise plain text). A gzip file (`data.csv.gz`) is read decompressed,
  its format that of the name without `.gz`; a ZIP archive (an `.xlsx` workbook) or an `.xls`
  workbook is a one-line error saying so (`rows.open_bytes`). A directory is a folder of texts,
  one per file, labelled by the subfolder that holds them (`_folder_records`).
- CSV uses the csv module with standard double-quote rules; its delimiter is a comma, or a
  semicolon where the first lines say so (`_csv_delimiter`: spreadsheets in locales whose
  decimal mark is a comma write those). TSV is split on tabs with quoting OFF, because real
  TSV files (SMSSpamCollection among them) hold unbalanced `"` in their texts; a quoting
  reader silently merges lines (5,572 rows instead of 5,574); but a TSV whose quotes all
  follow CSV rules (what pandas writes: texts holding tabs or line ends in double quotes) is
  read by them (`_tsv_quoted`). `quoting=True` (or False) decides instead: True is how
  `pandas.read_csv(sep="\\t")` reads, and the book.
- CSV: a quoted field still open at the end of the file (an unbalanced `"`) is an error naming
  the line it opened on, not one giant text holding the rest of the file.
- `iter_texts` / `iter_records` (prediction input) also read `-`: standard input, as bytes.
- Encoding: `encoding="utf-8"` by default, with or without a BOM; CRLF or LF line ends (lines
  end at LF only, so a lone CR inside a text survives). Bytes that do not decode raise a
  `DataError` naming the file and line (no silent replacement characters); the UTF-8 message
  suggests `--encoding`. Any Python codec name works (`latin-1`, `cp1252`, `utf-16`, ...); an
  unknown name is a one-line `UserError`.
- Header rule for CSV/TSV: the first row is a header when `text_column` or `label_column` is
  given, or when one of its fields is a well-known column name (`KNOWN_COLUMN_NAMES`: text,
  sentence, message, tweet, question, label, class, category, intent, ...; case-insensitive),
  or a one-word name holding one as a word (review_text, label_id: columns.name_words).
  Otherwise the file is headerless and must have one column (texts, unlabelled) or two; of two
  columns the label column is the one with fewer distinct values (ties: the one with shorter
  values, then the first), so both `label<TAB>text` (SMSSpamCollection) and `text,label` work.
  Where that column holds no label (on three rows or more no value recurs and most are
  phrases: columns._holds_no_labels), the file is more likely one column of texts each cut in
  two by the delimiter it holds: an error, not half of every text.
  A two-column file's first row is its header after all when its label is no other row's while
  every other label recurs ('phrase,feeling' over rows of joy and sadness; logged; text-only
  reading judges on its sample of rows, so `predict` reads such a file as `train` does). A first
  row read as data that holds a near miss of a known name ('txt', 'lable') logs a warning.
- Columns default to the first well-known name present, else to the one column whose one-word
  name holds it (review_text, comment_text, label_id); a name that is not there is an error
  suggesting the closest one: `data.csv: no column 'lable'; did you mean 'label'? (columns: ...)`.
  A title column (`TITLE_COLUMN_NAMES`: title, headline, subject) beside the text column found
  so is read with it, above it (`title\ndescription`); `text_column="a,b"` names several
  columns, read in that order (columns._text_columns).
- Text-only reading keeps the id columns (columns.ID_COLUMN_WORDS: id, doc_id, ...) of a file
  with a header, or the columns `keep` names ('none': none), and a folder's file names, so that
  each prediction can name its input row beyond its line (columns._kept_columns).
- Rows with an empty or whitespace-only text, or no label, are skipped and counted
  (`Table.skipped`, one logged warning); if every row is skipped that is an error. Blank lines
  are ignored. Labels are stripped of surrounding spaces; texts are kept exactly as written.
- Multi-label: `label_sep="|"` splits each label field into a sorted list of names; a JSON list
  as a label does the same.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import DataError, UserError
from .columns import (
    KEEP_NONE,
    TEXT_JOIN,
    _header_by_labels,
    _headerless_columns,
    _holds_no_labels,
    _is_header,
    _kept_columns,
    _resolve_columns,
    _resolve_text_column,
    _warn_near_miss,
)
from .labels import _label_value, case_variants, list_literals
from .rows import (
    STDIN,
    _cells,
    _check_file,
    _codec,
    _count_blank,
    _csv_rows,
    _decoded_lines,
    _json_rows,
    _jsonl_rows,
    _lf_is_byte,
    _strip_eol,
    _tsv_rows,
    open_bytes,
)

log = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "txt")
LABELLED_FORMATS = tuple(f for f in FORMATS if f != "txt")  # what --data may be
FOLDER = "folder"  # a directory: one text per file, labelled by the folder it is in (_folder_records)
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".txt": "txt",
}


@dataclass
class Table:
    """Labelled texts as read from one file, in file order.

    `labels[i]` is a string, or a sorted list of strings when `multi_label`. `lines[i]` is the
    1-based line (record start) of row i in `source`, or the row number for Parquet and folders.
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


# --------------------------------------------------------------------------------------------
# Formats and decoding


def detect_format(path: str | os.PathLike, fmt: str | None = None, encoding: str = "utf-8") -> str:
    """The format of `path`: `fmt` if given, else by extension, else sniffed (see module doc)."""
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        f = {"ndjson": "jsonl", "tab": "tsv", "text": "txt"}.get(f, f)
        if f not in FORMATS:
            raise UserError(f"unknown data format '{fmt}' (choose from {', '.join(FORMATS)})")
        return f
    if os.fspath(path) == STDIN:
        return "txt"  # standard input cannot be sniffed without consuming it
    if Path(path).is_dir():
        return FOLDER
    ext = Path(path).suffix.lower()
    if ext == ".gz":  # data.csv.gz: the format of what it holds (open_bytes decompresses)
        ext = Path(path).with_suffix("").suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    _check_file(path)
    if _lf_is_byte(_codec(encoding)):  # ASCII-compatible: sniff the raw bytes, decode nothing
        with open_bytes(path) as fh:
            lines = (raw.lstrip(codecs.BOM_UTF8).strip().decode("latin-1") for raw in fh)
            return _sniff(lines)
    return _sniff(line.strip() for _, line in _decoded_lines(path, encoding))


def _sniff(lines: Iterator[str]) -> str:
    for line in lines:
        if not line:
            continue
        if line.startswith("{"):
            return "jsonl"
        if line == "[" or line.startswith("[{"):  # an array of objects, not "[URGENT] call now"
            return "json"
        if "\t" in line:
            return "tsv"
        if "," in line:
            return "csv"
        return "txt"
    return "txt"


def _text_value(v, path, line, column) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    raise DataError(
        f"a text must be a string, found {type(v).__name__}", file=path, line=line, field=column
    )


# --------------------------------------------------------------------------------------------
# Records: one reader per format, labelled or text-only


@dataclass
class ReadOptions:
    """How to read: which columns, labelled or text-only, and the format's knobs."""

    text_column: str | None = None
    label_column: str | None = None
    labelled: bool = True  # False: texts only (prediction input), no label column needed
    quoting: bool | None = None  # TSV only: CSV quote rules on (the book's reading)
    encoding: str = "utf-8"
    # Headerless two-column text-only files: rows used to pick the text column (None: all).
    sample_size: int | None = None
    stats: dict | None = None  # counts skipped blank lines as `blank_lines`
    keep: str | None = None  # text-only: the columns carried beside each text (columns._kept_columns)


@dataclass
class Records:
    """What a reader found: the columns, which hold the texts (and labels) and which are kept,
    and the rows as `(line, raw text, raw label or None, the kept columns' values)`, lazily, in
    file order."""

    columns: list[str]
    text_column: str
    label_column: str | None
    header: bool
    rows: Iterator[tuple[int, object, object, tuple]]
    kept: tuple[str, ...] = ()


def open_records(path: str, fmt: str, opt: ReadOptions) -> Records:
    """The reader of `fmt` on `path`. An empty file is an error when labelled, else no rows."""
    if fmt == "txt":
        return _txt_records(path, opt)
    if fmt in ("json", "jsonl"):
        return _json_records(path, fmt, opt)
    if fmt == "parquet":
        return _parquet_records(path, opt)
    if fmt == FOLDER:
        return _folder_records(path, opt)
    return _delimited_records(path, fmt, opt)


def _pick_columns(path, columns: list[str], opt: ReadOptions) -> tuple[tuple[str, ...], str | None]:
    """(text columns, label column or None when text-only): columns._resolve_columns."""
    if opt.labelled:
        return _resolve_columns(path, columns, opt.text_column, opt.label_column)
    return _resolve_text_column(path, columns, opt.text_column), None


def _pick_kept(path, columns: list[str], text_cols: tuple[str, ...], opt: ReadOptions) -> tuple[str, ...]:
    """The columns text-only reading carries beside each text (columns._kept_columns); none when
    labelled."""
    return _kept_columns(path, columns, opt.keep, text_cols) if not opt.labelled else ()


def _no_columns_to_keep(path, opt: ReadOptions) -> None:
    """A file without a header has no named columns: `keep` naming some is an error."""
    if not opt.labelled and opt.keep is not None and opt.keep.strip().lower() != KEEP_NONE:
        raise DataError(f"has no header row, so no column '{opt.keep}' to keep; name the columns in a "
                        "header row", file=path)


def _joined(values: list, path, line: int, text_cols: tuple[str, ...]):
    """A row's text from its text columns' values: the value itself from one column (checked
    by _text_value later), else the non-blank ones joined by TEXT_JOIN (a title above its body)."""
    if len(text_cols) == 1:
        return values[0]
    parts = [_text_value(v, path, line, c) for v, c in zip(values, text_cols)]
    return TEXT_JOIN.join(p for p in parts if p.strip())


def _text_name(text_cols: tuple[str, ...]) -> str:
    """How messages name the text column(s): 'text', 'title + description'."""
    return " + ".join(text_cols)


def _no_rows(path, opt: ReadOptions, header: bool) -> Records:
    if opt.labelled:
        raise DataError("is empty", file=path)
    return Records([], "", None, header, iter(()))


def _txt_records(path, opt: ReadOptions) -> Records:
    """Plain text: one text per line, blank lines skipped (and counted)."""

    _no_columns_to_keep(path, opt)

    def rows():
        for i, line in _decoded_lines(path, opt.encoding):
            if line.strip():
                yield i, _strip_eol(line), None, ()
            else:
                _count_blank(opt.stats)

    return Records(["text"], "text", None, False, rows())


def _json_records(path, fmt: str, opt: ReadOptions) -> Records:
    """JSON lines, or (`fmt` json) what `rows._json_rows` reads: the columns are the keys of the
    first object."""
    rows_iter = (_json_rows if fmt == "json" else _jsonl_rows)(path, opt.encoding, opt.stats)
    first = next(rows_iter, None)
    if first is None:
        return _no_rows(path, opt, True)
    columns = [str(k) for k in first[1]]
    text_cols, label_col = _pick_columns(path, columns, opt)
    kept = _pick_kept(path, columns, text_cols, opt)

    def rows():
        for line, obj in itertools.chain([first], rows_iter):
            yield (line, _joined([obj.get(c) for c in text_cols], path, line, text_cols),
                   obj.get(label_col) if label_col is not None else None, tuple(obj.get(c) for c in kept))

    return Records(columns, _text_name(text_cols), label_col, True, rows(), kept)


HF_DATASET_FILES = ("dataset_dict.json", "state.json", "dataset_info.json")  # what save_to_disk writes
FILE_COLUMN = "file"  # a folder's column of file names, kept beside each text by text-only reading


def _folder_records(path, opt: ReadOptions) -> Records:
    """A directory, read as scikit-learn's `load_files` and Keras' `text_dataset_from_directory`
    read one: each file a text (its trailing line ends dropped), labelled by the name of the
    folder under `path` that holds it (`path/spam/0001.txt` -> spam). Text-only reading takes
    every file below `path`, and keeps each one's name (under `path`) as the column FILE_COLUMN.
    Names starting with '.' are skipped; files in name order; a row's "line" is its number. A file
    that does not decode is an error naming it."""
    root = Path(path)
    if any((root / name).is_file() for name in HF_DATASET_FILES):
        raise DataError("is a Hugging Face datasets folder (save_to_disk), not a folder of texts: write "
                        "each split with Dataset.to_parquet('train.parquet') (it keeps the label names) "
                        "and pass that file", file=path)
    if opt.labelled:
        classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DataError("is a folder without class folders: put each label's texts, one per "
                            "file, in a folder named after the label (spam/0001.txt, ham/0002.txt)", file=path)
        files = [(f, d.name) for d in classes for f in folder_files(d)]
    else:
        files = [(f, None) for f in folder_files(root)]
        if not files:
            raise DataError("is a folder without files: each file below it is one text", file=path)

    columns = ["text", "label"] if opt.labelled else [FILE_COLUMN, "text"]
    kept = _pick_kept(path, columns, ("text",), replace(opt, keep=FILE_COLUMN if opt.keep is None else opt.keep))

    def rows():
        for n, (f, label) in enumerate(files, 1):
            text = "".join(line for _, line in _decoded_lines(f, opt.encoding)).rstrip("\r\n")
            values = {FILE_COLUMN: str(f.relative_to(root)), "text": text}
            yield n, text, label, tuple(values[c] for c in kept)

    return Records(columns, "text", "label" if opt.labelled else None, False, rows(), kept)



def folder_files(folder) -> list[Path]:
    """The files below `folder` at any depth, in name order, none under a name starting with
    '.': the texts of a folder read text-only, row n the n-th of them."""
    folder = Path(folder)
    return sorted(f for f in folder.rglob("*")
                  if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts))


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


def _parquet_records(path, opt: ReadOptions) -> Records:
    """Parquet: read in record batches, only the needed columns; `line` is the row number.
    Integer labels of a column that a Hugging Face `datasets` file declares a ClassLabel (the
    Hub's Parquet files) are read as its names (`class_label_names`)."""
    pq = _import_pyarrow_parquet(path)
    _check_file(path)
    try:
        pf = pq.ParquetFile(path)
        columns = list(pf.schema_arrow.names)
    except Exception as e:  # pyarrow raises its own exception types
        raise DataError(f"cannot read Parquet: {e}", file=path) from None
    text_cols, label_col = _pick_columns(path, columns, opt)
    kept = _pick_kept(path, columns, text_cols, opt)
    wanted = list(dict.fromkeys(list(text_cols) + ([] if label_col is None else [label_col]) + list(kept)))
    names = None if label_col is None else class_label_names(pf.schema_arrow.metadata, label_col, path)

    def rows():
        n = 0
        for batch in pf.iter_batches(columns=wanted):
            column = {name: batch.column(name).to_pylist() for name in wanted}
            for i in range(batch.num_rows):
                n += 1
                label = column[label_col][i] if label_col is not None else None
                yield (n, _joined([column[c][i] for c in text_cols], path, n, text_cols),
                       label if names is None else names(label, n), tuple(column[c][i] for c in kept))

    return Records(columns, _text_name(text_cols), label_col, True, rows(), kept)


HF_METADATA_KEY = b"huggingface"  # where `datasets` keeps a table's features in its Arrow schema


def class_label_names(metadata: dict | None, column: str, path=None):
    """For a label column that `datasets` declared a ClassLabel (or a list of them: multi-label)
    in an Arrow schema's `metadata`, a function (value, line) -> its name(s): HF's -1 (no label,
    as test splits without labels hold) is None, an integer outside the names a DataError. None
    where the file declares no names for `column`."""
    try:
        feature = json.loads((metadata or {})[HF_METADATA_KEY])["info"]["features"][column]
    except (KeyError, TypeError, ValueError):
        return None
    if isinstance(feature, dict) and feature.get("_type") in ("Sequence", "List", "LargeList"):
        feature = feature.get("feature")
    if not isinstance(feature, dict) or feature.get("_type") != "ClassLabel" or not feature.get("names"):
        return None
    names = [str(n) for n in feature["names"]]

    def name(value, line: int):
        if isinstance(value, list):
            return [n for n in (name(v, line) for v in value) if n is not None]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None if value in (-1, None) else value
        if value >= len(names):
            raise DataError(f"label {value} is past the {len(names)} names the file declares for it",
                            file=path, line=line, field=column)
        return names[value]

    return name


def _delimited_rows(path, fmt: str, opt: ReadOptions):
    if fmt == "csv":
        return _csv_rows(path, _csv_delimiter(path, opt), opt.encoding, opt.stats)
    if opt.quoting:
        return _csv_rows(path, "\t", opt.encoding, opt.stats)
    return _tsv_rows(path, opt.encoding, opt.stats)


def _tsv_quoted(path, encoding: str) -> bool:
    """Whether a TSV file is quoted by CSV rules, as pandas' `to_csv(sep="\\t")` writes one (a
    text holding a tab, a line end or a `"` in double quotes, inner quotes doubled): only where
    some field opens with `"` and the whole file then parses under the strict rules (every
    quoted field closed, nothing after its closing quote but a tab or the line's end) into
    records of one width, no quoted line end followed by a line that is a row of its own (as
    many tabs as a row has). Raw TSV with quotes in its texts fails that (SMSSpamCollection: a
    message opens a quote it never closes, and the rows after it would become its text) and
    keeps quoting off; standard input is not read twice (off)."""
    if os.fspath(path) == STDIN:
        return False
    if not any(line.startswith('"') or '\t"' in line for _, line in _decoded_lines(path, encoding)):
        return False
    width = None
    try:
        for record in csv.reader((line for _, line in _decoded_lines(path, encoding)), delimiter="\t", strict=True):
            if not record:  # a blank line
                continue
            width = width or len(record)
            if len(record) != width or any(piece.count("\t") >= width - 1 for field in record
                                           for piece in field.split("\n")[1:]):
                return False
    except csv.Error:
        return False
    return True


DELIMITER_SAMPLE = 20  # first lines of a CSV file that decide its delimiter


def _csv_delimiter(path, opt: ReadOptions) -> str:
    """A comma, or a semicolon where the file's first lines say so: the CSV that spreadsheets
    write in locales whose decimal mark is a comma. By the header (a well-known or the named
    column) when one of the two splits gives one and the other does not; otherwise a semicolon
    only when the first DELIMITER_SAMPLE lines split on it into the same number (two or more)
    of fields and split on commas do not: texts hold commas, seldom a semicolon in each. Where
    both split evenly, a comma (a header removes the doubt)."""
    if os.fspath(path) == STDIN:
        return ","  # standard input cannot be read twice
    lines = list(itertools.islice((x for _, x in _decoded_lines(path, opt.encoding) if x.strip()), DELIMITER_SAMPLE))
    if not lines:
        return ","
    named = {c for c in (opt.text_column, opt.label_column) if c is not None}

    def split(delimiter: str) -> list[list[str]]:
        try:
            return list(csv.reader(lines, delimiter=delimiter))
        except csv.Error:
            return []

    def is_header(rows: list[list[str]]) -> bool:
        row = rows[0] if rows else []
        return any(f.strip() in named for f in row) if named else _is_header(row, None, None)

    def even(rows: list[list[str]]) -> bool:  # a quoted field open at the sample's end aside
        widths = {len(r) for r in rows[:-1] or rows}
        return len(widths) == 1 and widths.pop() > 1

    by_comma, by_semicolon = split(","), split(";")
    if is_header(by_comma) != is_header(by_semicolon):
        return ";" if is_header(by_semicolon) else ","
    return ";" if even(by_semicolon) and not even(by_comma) else ","


def _delimited_records(path, fmt: str, opt: ReadOptions) -> Records:
    """CSV / TSV: with a header row (see the header rule), or headerless."""
    if fmt == "tsv" and opt.quoting is None:
        opt = replace(opt, quoting=_tsv_quoted(path, opt.encoding))
    rows_iter = _delimited_rows(path, fmt, opt)
    first = next(rows_iter, None)
    if first is None:
        return _no_rows(path, opt, False)
    line0, row0 = first
    if _is_header(row0, opt.text_column, opt.label_column):
        return _header_records(path, fmt, opt, row0, rows_iter)
    return _headerless_records(path, fmt, opt, first, rows_iter)


def _header_records(path, fmt, opt: ReadOptions, row0: list[str], rows_iter) -> Records:
    columns = [c.strip() for c in row0]
    text_cols, label_col = _pick_columns(path, columns, opt)
    kept = _pick_kept(path, columns, text_cols, opt)
    tis, kis, ncols = [columns.index(c) for c in text_cols], [columns.index(c) for c in kept], len(columns)
    li = columns.index(label_col) if label_col is not None else None
    allow_join = fmt == "tsv" and not opt.quoting

    def rows():
        for line, row in rows_iter:
            row = _cells(path, fmt, row, ncols, tis[-1], line, allow_join)
            yield (line, _joined([row[i] for i in tis], path, line, text_cols), (row[li] if li is not None else None),
                   tuple(row[i] for i in kis))

    return Records(columns, _text_name(text_cols), label_col, True, rows(), kept)


def _headerless_records(path, fmt, opt: ReadOptions, first, rows_iter) -> Records:
    """Headerless: one column of texts, or two (`label<TAB>text`, `text,label`): the label
    column is picked on the rows (all of them when labelled, a sample when text-only)."""
    line0, row0 = first
    ncols = len(row0)
    if ncols == 1 and opt.labelled:
        raise DataError(
            "has one column and no header, so no labels; add a header row naming a text and a "
            "label column",
            file=path,
        )
    if ncols > 2:
        names = ", ".join(["text", "label"] + ["x"] * min(ncols - 2, 2)) + (", ..." if ncols > 4 else "")
        what = (f"the text and label columns (e.g. {names})" if opt.labelled else "the text column")
        raise DataError(
            f"has {ncols} columns and no header row; add a header naming {what}",
            file=path,
            line=line0,
        )
    n_more = None if opt.sample_size is None else max(0, opt.sample_size - 1)
    sample = [first, *itertools.islice(rows_iter, n_more)]
    sample_rows = [r for _, r in sample]
    ti, li = (0, None) if ncols == 1 else _headerless_columns(sample_rows)
    if li is not None and _holds_no_labels(sample_rows, li):
        delimiter = "a tab" if fmt == "tsv" else f"'{_csv_delimiter(path, opt)}'"
        raise DataError(
            f"has two columns and no header, and neither holds labels (no value of column {li + 1} "
            f"recurs, and most are phrases: '{row0[li].strip()[:40]}'); if each line is one text, "
            f"quote the texts that hold {delimiter} or save them one per line as .txt; else add a header "
            "naming the columns",
            file=path,
            line=line0,
        )
    if li is not None and _header_by_labels(sample_rows, li):
        log.warning("%s: line %d ('%s') is read as the header: '%s' is no other row's label; name the "
                    "columns with --text-column and --label-column to say so", path, line0,
                    ",".join(row0)[:60], row0[li].strip())
        named = replace(opt, text_column=row0[ti].strip(), label_column=row0[li].strip() if opt.labelled else None)
        return _header_records(path, fmt, named, row0, itertools.chain(sample[1:], rows_iter))
    _warn_near_miss(row0, path, line0)
    _no_columns_to_keep(path, opt)
    if not opt.labelled:
        li = None
    columns = ["column1", "column2"][:ncols]
    allow_join = fmt == "tsv" and not opt.quoting

    def rows():
        for line, row in itertools.chain(sample, rows_iter):
            row = _cells(path, fmt, row, ncols, ti, line, allow_join)
            yield line, row[ti], (row[li] if li is not None else None), ()

    label_col = columns[li] if li is not None else None
    return Records(columns, columns[ti], label_col, False, rows())


# --------------------------------------------------------------------------------------------
# Labelled tables and streamed texts


def read_table(
    path: str | os.PathLike,
    text_column: str | None = None,
    label_column: str | None = None,
    fmt: str | None = None,
    label_sep: str | None = None,
    quoting: bool | None = None,
    encoding: str = "utf-8",
) -> Table:
    """Read a labelled CSV / TSV / JSON / JSONL / Parquet file into a `Table` (rules: module docstring).

    `quoting` only affects TSV (default: by the file, `_tsv_quoted`; True reads it the way
    pandas does, False splits on every tab). Raises
    `DataError` (a `UserError`) with a one-line message naming the file, line and field.
    """
    path = os.fspath(path)
    fmt = detect_format(path, fmt, encoding)
    if fmt == "txt":
        raise DataError(
            "plain text has one text per line and no labels; for training use CSV, TSV or "
            "JSONL with a text and a label column",
            file=path,
        )
    opt = ReadOptions(text_column, label_column, labelled=True, quoting=quoting, encoding=encoding)
    return _table(path, open_records(path, fmt, opt), label_sep)


def _table(path: str, records: Records, label_sep: str | None) -> Table:
    """Records -> Table: skip (and count) rows without a text or a label, parse labels."""
    texts: list[str] = []
    labels: list = []
    lines: list[int] = []
    skipped = {"empty_text": 0, "missing_label": 0}
    first_skip = None
    multi = label_sep is not None
    n_rows = 0
    text_col, label_col = records.text_column, records.label_column
    for line, text, label, _ in records.rows:
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

    if multi:
        labels = [lab if isinstance(lab, list) else [lab] for lab in labels]
    elif (lists := list_literals(labels)) is not None:  # pandas' CSV of a column of lists: multi-label
        lists = [_label_value(v, None, path, line, label_col) for v, line in zip(lists, lines)]
        keep = [i for i, lab in enumerate(lists) if lab is not None]  # '[]': no label, as a JSON []
        if len(keep) < len(lists):
            skipped["missing_label"] += len(lists) - len(keep)
            first_empty = next(lines[i] for i, lab in enumerate(lists) if lab is None)
            first_skip = first_empty if first_skip is None else min(first_skip, first_empty)
        texts, labels, lines, multi = [texts[i] for i in keep], [lists[i] for i in keep], [lines[i] for i in keep], True

    if n_rows == 0:
        raise DataError("has a header row but no data rows" if records.header else "is empty", file=path)
    if not texts:
        raise DataError(
            f"no usable rows: {skipped['empty_text']} with an empty text, "
            f"{skipped['missing_label']} with no label in column '{label_col}'",
            file=path,
        )
    if first_skip is not None:
        _warn_skipped(path, skipped, first_skip)
    for group in case_variants(labels, lines):
        log.warning("%s: labels %s differ only in case or spacing and are %d classes; if they are one, write "
                    "them one way", path, " and ".join(f"'{n}' ({c} row{'' if c == 1 else 's'}, first at line {first})"
                                                       for n, c, first in group), len(group))
    return Table(texts=texts, labels=labels, lines=lines, source=path, text_column=text_col,
                 label_column=label_col, columns=records.columns, header=records.header,
                 multi_label=multi, skipped=skipped)


def _warn_skipped(path: str, skipped: dict[str, int], first_skip: int) -> None:
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


def iter_texts(
    path: str | os.PathLike,
    text_column: str | None = None,
    fmt: str | None = None,
    chunk_size: int = 1024,
    quoting: bool | None = None,
    encoding: str = "utf-8",
) -> Iterator[list[str]]:
    """Stream the texts of a (possibly unlabelled, possibly huge) file in lists of `chunk_size`.

    Memory stays flat: lines are decoded one at a time. `.txt` is one text per line. CSV/TSV
    follow `read_table`'s header rule; a headerless file with one column is all texts, with two
    columns the text column is picked on the first `chunk_size` rows. Every data row yields
    exactly one text, an empty one as "" (so outputs line up with input rows); blank lines are
    not rows and are skipped (`iter_records` gives each text's line). `path` "-" reads stdin.
    """
    for chunk in iter_records(path, text_column, fmt, chunk_size, quoting, encoding=encoding):
        yield [text for _, text, _ in chunk]


def iter_records(
    path: str | os.PathLike,
    text_column: str | None = None,
    fmt: str | None = None,
    chunk_size: int = 1024,
    quoting: bool | None = None,
    stats: dict | None = None,
    encoding: str = "utf-8",
    keep: str | None = None,
) -> Iterator[list[tuple[int, str, dict]]]:
    """`iter_texts` with the line (record start; row number for Parquet and folders) of each
    text and the columns kept beside it (by name: the id columns, a folder's file names, or the
    columns `keep` names; see columns._kept_columns): lists of `(line, text, kept)`. `stats`, if
    given, counts skipped blank lines as `blank_lines`."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    path = os.fspath(path)
    fmt = detect_format(path, fmt, encoding)
    if fmt == "parquet" and path == STDIN:
        raise UserError("Parquet cannot be read from standard input; pass the file's path")
    opt = ReadOptions(text_column, None, labelled=False, quoting=quoting, encoding=encoding,
                      sample_size=chunk_size, stats=stats, keep=keep)
    records = open_records(path, fmt, opt)
    chunk: list[tuple[int, str, dict]] = []
    for line, text, _, kept in records.rows:
        chunk.append((line, _text_value(text, path, line, records.text_column), dict(zip(records.kept, kept))))
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
