"""Bytes -> lines -> rows, for every reader: file checks, strict decoding in any encoding
(line numbers for bad bytes), and the CSV / TSV / JSON-lines row splitters. No torch here."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError, UserError
from .columns import KNOWN_COLUMN_NAMES

STDIN = "-"  # a path of "-" reads standard input (one text per line unless a format is given)


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


GZIP_MAGIC = b"\x1f\x8b"
# Files that are no text table, by their first bytes: a one-line error says what they are.
BINARY_MAGIC = {b"PK\x03\x04": "a ZIP archive (an Excel .xlsx workbook is one): save the sheet as CSV, "
                                 "or unzip it",
                b"\xd0\xcf\x11\xe0": "an Excel .xls workbook: save the sheet as CSV"}


@contextlib.contextmanager
def open_bytes(path):
    """The file's bytes, decompressed when it is gzip (`data.csv.gz`): a damaged gzip stream is
    a one-line error. A file that is no text table by its first bytes (BINARY_MAGIC) is a
    one-line error saying what it is."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        for magic, what in BINARY_MAGIC.items():
            if head.startswith(magic):
                raise DataError(f"is {what}", file=path)
        if not head.startswith(GZIP_MAGIC):
            yield fh
            return
        import gzip
        import zlib

        with gzip.GzipFile(fileobj=fh, mode="rb") as unpacked:
            try:
                yield unpacked
            except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
                raise DataError(f"is a damaged gzip file ({e})", file=path) from None


def _codec(encoding: str) -> codecs.CodecInfo:
    """The codec of an encoding name, or a one-line error for a name Python does not know."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise UserError(
            f"unknown text encoding '{encoding}' for --encoding (e.g. utf-8, latin-1, cp1252, utf-16)"
        )
    return info


def _lf_is_byte(codec: codecs.CodecInfo) -> bool:
    """Whether a line end is the single byte 0x0a (UTF-8, Latin-1, cp1252: split bytes on it,
    decode each line); not for UTF-16/32, which are decoded as a stream."""
    return codec.encode("\n")[0] == b"\n"


def _decoded_lines(path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(line number, line with its line end) for each line, decoded strictly.

    Lines are split on LF only, so a CR inside a text survives and CRLF is stripped later.
    Decoding per line keeps memory flat and gives the line number of a bad byte. `path` "-"
    reads standard input (as bytes, so the same rules apply).
    """
    codec = _codec(encoding)
    _check_file(path)
    stdin = os.fspath(path) == STDIN
    name = "<stdin>" if stdin else path
    with contextlib.nullcontext(sys.stdin.buffer) if stdin else open_bytes(path) as fh:
        if _lf_is_byte(codec):
            yield from _byte_lines(fh, codec, encoding, name)
        else:
            yield from _stream_lines(fh, codec, encoding, name)


def _byte_lines(fh, codec, encoding: str, name) -> Iterator[tuple[int, str]]:
    utf8 = codec.name in ("utf-8", "utf-8-sig")
    for i, raw in enumerate(fh, 1):
        if i == 1 and utf8:
            if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise DataError(
                    "is UTF-16; save it as UTF-8 or pass --encoding utf-16", file=name, line=1
                )
            if raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
        try:
            line = raw.decode("utf-8" if utf8 else codec.name)
        except UnicodeDecodeError as e:
            where = f"byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line"
            if utf8:
                msg = (f"not valid UTF-8 ({where}); save the file as UTF-8 or pass its encoding, "
                       "e.g. --encoding latin-1 (or cp1252)")
            else:
                msg = f"not valid {encoding} ({where}); is --encoding {encoding} right?"
            raise DataError(msg, file=name, line=i) from None
        yield i, line


def _stream_lines(fh, codec, encoding: str, name) -> Iterator[tuple[int, str]]:
    # newline="\n": lines end at LF only and keep their line end, as in `_byte_lines`.
    text = io.TextIOWrapper(fh, encoding=codec.name, errors="strict", newline="\n")
    i = 0  # the last line read whole; the text is decoded in blocks, so a bad byte is near
    try:
        for line in text:
            i += 1
            yield i, line
    except UnicodeDecodeError as e:
        raise DataError(
            f"not valid {encoding} ({e.reason}) at or after this line; is --encoding "
            f"{encoding} right?",
            file=name,
            line=i + 1,
        ) from None
    finally:
        text.detach()  # leave `fh` (perhaps standard input) to its owner


def _strip_eol(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


def _count_blank(stats: dict | None) -> None:
    if stats is not None:
        stats["blank_lines"] = stats.get("blank_lines", 0) + 1


# --------------------------------------------------------------------------------------------
# Rows: lines -> fields


def _tsv_rows(path, encoding, stats: dict | None = None) -> Iterator[tuple[int, list[str]]]:
    """TSV with quoting off: every line is one row, fields split on tabs, quotes literal."""
    for i, line in _decoded_lines(path, encoding):
        line = _strip_eol(line)
        if line.strip():
            yield i, line.split("\t")
        else:
            _count_blank(stats)


def _csv_rows(path, delimiter: str, encoding, stats: dict | None = None) -> Iterator[tuple[int, list[str]]]:
    """CSV rules (quoted fields may span lines); yields the line each record starts on.

    A quoted field still open at the end of the file is an unbalanced double quote: the csv
    module would hand back the rest of the file as one field (silently eating every row after
    it), so that is an error naming the line the quote opened on.
    """
    current = [0]
    eof = [False]

    def lines():
        for i, line in _decoded_lines(path, encoding):
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
        else:
            _count_blank(stats)


def _jsonl_rows(path, encoding, stats: dict | None = None) -> Iterator[tuple[int, dict]]:
    for i, line in _decoded_lines(path, encoding):
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


def _json_rows(path, encoding, stats: dict | None = None) -> Iterator[tuple[int, dict]]:
    """A `.json` file: an array of objects (`json.dump` of records, pandas'
    `to_json(orient="records")`), each with the line it starts on; or, when it does not start
    with `[`, one object per line (what `datasets`' `to_json` writes), as `_jsonl_rows`, or
    one object of columns (pandas' default `to_json()`: `_columns_or_lines`)."""
    first = next((line for _, line in _decoded_lines(path, encoding) if line.strip()), "")
    if not first.lstrip().startswith("["):
        yield from _columns_or_lines(_jsonl_rows(path, encoding, stats), path)
        return
    text = "".join(line for _, line in _decoded_lines(path, encoding))
    pos = _skip_space(text, 0)
    counted = [0, 1]  # a position and its line: positions only grow, so lines are counted once

    def line_at(p: int) -> int:
        counted[1] += text.count("\n", counted[0], p)
        counted[0] = p
        return counted[1]

    decoder = json.JSONDecoder()
    pos = _skip_space(text, pos + 1)
    while text[pos:pos + 1] != "]":  # `[]`: no rows
        try:
            obj, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError) as e:
            raise DataError(f"not valid JSON: {e}", file=path, line=line_at(pos)) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected an array of JSON objects, found {type(obj).__name__}",
                            file=path, line=line_at(pos))
        yield line_at(pos), obj
        pos = _skip_space(text, end)
        if text[pos:pos + 1] == "]":
            break
        if text[pos:pos + 1] != ",":
            raise DataError("expected ',' or ']' after an object of the array", file=path, line=line_at(pos))
        pos = _skip_space(text, pos + 1)
    rest = _skip_space(text, pos + 1)
    if rest < len(text):
        raise DataError("more text after the JSON array", file=path, line=line_at(rest))


def _columns_or_lines(rows: Iterator[tuple[int, dict]], path) -> Iterator[tuple[int, dict]]:
    """JSON lines as they are; or, when the file is one object that is a table as pandas'
    `to_json` writes one (`_pandas_table`), its rows, each row's "line" its number."""
    first = next(rows, None)
    second = next(rows, None) if first is not None else None
    table = _pandas_table(first[1]) if first is not None and second is None else None
    if table is None:
        yield from (r for r in (first, second) if r is not None)
        yield from rows
        return
    yield from enumerate(table, 1)


def _pandas_table(obj: dict) -> list[dict] | None:
    """The rows of one JSON object in an orientation of pandas' `to_json`, or None: `columns`
    (the default: {"text": {"0": ..., "1": ...}, "label": {...}}; or a dict of lists), `index`
    ({"0": {"text": ..., "label": ...}, ...}), `split` ({"columns": [...], "index": [...],
    "data": [[...], ...]}) and `table` ({"schema": {...}, "data": [{...}, ...]}, the index a
    column beside the others)."""
    data = obj.get("data")
    if isinstance(data, list) and set(obj) in ({"schema", "data"}, {"columns", "data"}, {"columns", "index", "data"}):
        if "schema" in obj and all(isinstance(r, dict) for r in data):
            return data
        if isinstance(obj.get("columns"), list) and all(isinstance(r, list) for r in data):
            return [dict(zip(map(str, obj["columns"]), r)) for r in data]
    if not obj or not all(isinstance(v, (dict, list)) for v in obj.values()):
        return None
    as_dicts = {k: v if isinstance(v, dict) else dict(enumerate(v)) for k, v in obj.items()}
    if all(isinstance(v, dict) for v in obj.values()) and _keyed_by_row(as_dicts):  # lists are columns
        return list(as_dicts.values())
    index = list(dict.fromkeys(i for v in as_dicts.values() for i in v))  # pandas' index, in order
    return [{k: v.get(i) for k, v in as_dicts.items()} for i in index]


def _keyed_by_row(obj: dict[str, dict]) -> bool:
    """Whether an object of objects is pandas' `index` orientation (rows of columns), not its
    `columns` one (columns of rows): by where the well-known column names are, else by which
    side is longer (a table has more rows than columns)."""
    inner = {str(k) for v in obj.values() for k in v}

    def named(keys) -> bool:
        return any(str(k).strip().lower() in KNOWN_COLUMN_NAMES for k in keys)

    if named(obj) != named(inner):
        return named(inner)
    return len(obj) > len(inner)


def _skip_space(text: str, pos: int) -> int:
    """The first position from `pos` that is not JSON whitespace (len(text) at the end)."""
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


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
