"""Data: the first step of the pipeline, everything between a file on disk (or the built-in
`sms-spam` data set) and lists of texts with integer label ids in train / val / test. No torch.

- `readers`: one reader per format (CSV, TSV, headerless label<TAB>text, JSONL, Parquet, plain
  text), used for labelled tables (`read_table`) and for streamed texts (`iter_records`); the
  reading rules are in its docstring. `columns`: the header rule and column resolution.
- `labels`: `LabelMap` and label parsing.
- `split`: `parse_split`, `prepare` (dedupe, conflicts, stratified split, balance),
  `reference_split` (the book's split).
- `builtin`: built-in data sets (`builtin_path`, `load_dataset`) and `download_sms_spam`.
"""

from .builtin import (
    BUILTIN_DATASETS,
    SMS_SPAM_MEMBER,
    SMS_SPAM_SHA256,
    SMS_SPAM_URL,
    builtin_path,
    download_sms_spam,
    load_dataset,
)
from .columns import KNOWN_COLUMN_NAMES, LABEL_COLUMN_NAMES, TEXT_COLUMN_NAMES
from .labels import LabelMap
from .readers import (
    FOLDER,
    FORMATS,
    STDIN,
    Table,
    detect_format,
    folder_files,
    iter_records,
    iter_texts,
    read_table,
)
from .split import Prepared, Split, parse_split, prepare, reference_split

__all__ = [
    "BUILTIN_DATASETS",
    "FOLDER",
    "FORMATS",
    "KNOWN_COLUMN_NAMES",
    "LABEL_COLUMN_NAMES",
    "SMS_SPAM_MEMBER",
    "SMS_SPAM_SHA256",
    "SMS_SPAM_URL",
    "STDIN",
    "TEXT_COLUMN_NAMES",
    "LabelMap",
    "Prepared",
    "Split",
    "Table",
    "builtin_path",
    "detect_format",
    "download_sms_spam",
    "folder_files",
    "iter_records",
    "iter_texts",
    "load_dataset",
    "parse_split",
    "prepare",
    "read_table",
    "reference_split",
]
