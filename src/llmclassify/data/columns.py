"""Which column holds the texts and which the labels: the header rule, well-known column names,
the headerless two-column guess, and errors that suggest the closest column name.

Shared by every reader in `readers.py` (labelled and text-only alike); the rules are listed in
that module's docstring.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections import Counter
from collections.abc import Sequence

from ..errors import DataError

log = logging.getLogger(__name__)

# In order of preference. Names that also serve as label values (spam, yes, y) are left out: the
# header rule would take a headerless file's first row for a header.
TEXT_COLUMN_NAMES = ("text", "sentence", "message", "content", "review", "body", "document", "sms", "tweet",
                     "comment", "utterance", "question", "query", "description", "abstract", "headline",
                     "title", "email", "post")
LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "intent", "emotion",
                      "topic", "polarity", "stance", "genre", "rating", "stars")
KNOWN_COLUMN_NAMES = frozenset(TEXT_COLUMN_NAMES + LABEL_COLUMN_NAMES)
# A column of one of these names beside the text column found by name is read with it, above it:
# a news item's title over its description (AG News), an e-mail's subject over its body, a
# review's title over its text (Amazon, Yelp), an article's title over its content (DBpedia).
TITLE_COLUMN_NAMES = ("title", "headline", "subject")
TEXT_JOIN = "\n"  # between the fields of a text read from several columns
# Columns that name a row rather than say anything of it: text-only reading (`predict`) carries
# them to each row's prediction (an input's id beside its label, as a submission file needs),
# unless `keep` names other columns, or KEEP_NONE.
ID_COLUMN_WORDS = frozenset({"id", "uid", "guid", "uuid"})
KEEP_NONE = "none"


def _close(name: str, choices: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hits[0]] if hits else None


def _resolve_columns(path, columns, text_column, label_column) -> tuple[tuple[str, ...], str]:
    """The text columns (_text_columns) and the label column of a file with a header, or a
    DataError that names the missing one and suggests the closest column."""
    label_col = _find_column(path, columns, label_column, LABEL_COLUMN_NAMES, "label", "--label-column")
    text_cols = _text_columns(path, columns, text_column, label_col)
    if label_col is None:
        raise _missing_column_error(path, columns, LABEL_COLUMN_NAMES, "label", "--label-column", taken=text_cols[-1])
    if label_col in text_cols:
        raise DataError(f"text and label columns are the same column '{label_col}'", file=path)
    return text_cols, label_col


def _resolve_text_column(path, columns, text_column) -> tuple[str, ...]:
    """The text columns of a file with a header (text-only reading: no label column needed)."""
    return _text_columns(path, columns, text_column, None)


def _text_columns(path, columns, wanted: str | None, label_col: str | None) -> tuple[str, ...]:
    """The columns a text is read from, joined by TEXT_JOIN when several: `wanted` (a column, or
    columns named with commas: 'title,description'), else the first of TEXT_COLUMN_NAMES with a
    column of TITLE_COLUMN_NAMES (not the label column) above it. A DataError where none is found."""
    if wanted is not None and "," in wanted and wanted not in columns:
        return tuple(_find_column(path, columns, w.strip(), (), "text", "--text-column") for w in wanted.split(","))
    col = _find_column(path, columns, wanted, TEXT_COLUMN_NAMES, "text", "--text-column")
    if col is None:
        raise _missing_column_error(path, columns, TEXT_COLUMN_NAMES, "text", "--text-column", taken=label_col)
    if wanted is not None or col.strip().lower() in TITLE_COLUMN_NAMES:
        return (col,)
    title = _find_column(path, [c for c in columns if c not in (col, label_col)], None, TITLE_COLUMN_NAMES, "", "",
                         by_word=False)
    return (col,) if title is None else (title, col)


def _kept_columns(path, columns, keep: str | None, text_cols: Sequence[str]) -> tuple[str, ...]:
    """The input columns carried beside each text: `keep` names them (a column, or several with
    commas: 'id,date'; KEEP_NONE: none), found as `_find_column` finds a column; not given, the id
    columns: those whose one-word name holds a word of ID_COLUMN_WORDS (id, doc_id, Tweet-ID),
    the text columns aside."""
    if keep is None:
        return tuple(c for c in columns if c not in text_cols and name_words(c) & ID_COLUMN_WORDS)
    if keep.strip().lower() == KEEP_NONE:
        return ()
    wanted = [keep] if keep in columns else [k.strip() for k in keep.split(",") if k.strip()]
    return tuple(dict.fromkeys(_find_column(path, columns, k, (), "", "--keep") for k in wanted))


IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}\Z")  # a column name written as one word: review_text


def name_words(name: str) -> set[str]:
    """The words of a column name written as one identifier ('review_text' -> review, text;
    'Label-Id' -> label, id); none for a name with spaces, which a text is more likely to be."""
    name = name.strip()
    return set(re.split(r"[^a-z0-9]+", name.lower())) - {""} if IDENTIFIER.match(name) else set()


def _find_column(
    path, columns: list[str], wanted: str | None, defaults: Sequence[str], kind: str, flag: str, by_word: bool = True
) -> str | None:
    """Resolve a column name: exact, then case-insensitive; not given, the first of `defaults`
    that is a column's name, else (`by_word`) one that is a word of exactly one column's name
    (review_text, label_id, tweet_text); None when none is."""
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
    for name in defaults if by_word else ():
        hits = [c for c in columns if name in name_words(c)]
        if len(hits) == 1:
            return hits[0]
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


def _headerless_columns(rows: Sequence[list[str]]) -> tuple[int, int]:
    """(text index, label index) for a headerless two-column file: the label column is the one
    with fewer distinct values (ties: shorter values, then the first)."""
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


def _holds_no_labels(rows: Sequence[list[str]], label: int) -> bool:
    """Whether the `label` column that _headerless_columns picked holds phrases, not labels: on
    three rows or more no value recurs and most hold a space inside. Then both columns are text,
    and the likelier file is one column of texts, each cut in two by the delimiter it holds
    ('Call me later, I am busy'): reading on would keep half of every text."""
    values = [r[label].strip() for r in rows if len(r) > label]
    return (len(values) >= 3 and len(set(values)) == len(values)
            and 2 * sum(any(c.isspace() for c in v) for v in values) > len(values))


def _is_header(first_row: list[str], text_column, label_column) -> bool:
    """Whether a CSV / TSV file's first row is its header by the names: a column was named, or
    a field is a well-known column name."""
    if text_column is not None or label_column is not None:
        return True
    return any(f.strip().lower() in KNOWN_COLUMN_NAMES or KNOWN_COLUMN_NAMES & name_words(f) for f in first_row)


def _header_by_labels(rows: Sequence[list[str]], label: int) -> bool:
    """Whether the first of `rows` (a two-column file without a known header) is a header after
    all: its `label` field is no other row's, while every other row's recurs ('phrase,feeling'
    over rows of joy and sadness). A class of one example could not be split anyway."""
    counts = Counter(r[label].strip() for r in rows[1:] if len(r) > label)
    return len(counts) > 0 and rows[0][label].strip() not in counts and min(counts.values()) >= 2


def _warn_near_miss(first_row: list[str], path, line: int) -> None:
    """A first row read as data that holds a near miss of a known name ('txt', 'lable') would
    silently become a row: say so."""
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
                return
