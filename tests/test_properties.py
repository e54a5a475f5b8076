"""Property-based tests (hypothesis) for the file readers, the label mapping and the tokenizer.

Random text and bytes never crash them: the readers give rows or a `UserError`, never another
exception; what a writer puts in a CSV / TSV / JSONL file comes back exactly; labels map to ids
and back; the tokenizer encodes and decodes any Unicode text losslessly. Example counts are kept
modest for CI; test_data.py has the small-alphabet fuzzers of the readers.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmclassify.data import LabelMap, iter_records, iter_texts, read_table
from llmclassify.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FORMATS = ["csv", "tsv", "jsonl", "txt", None]

# Any Unicode text, line ends and quotes made likely; `raw_texts` also holds lone surrogates,
# which become bytes that are not UTF-8 when written with "surrogatepass".
_specials = st.sampled_from(list('"\t\r\n,{}\\ \ufeff\x00'))
texts = st.text(st.one_of(st.characters(blacklist_categories=("Cs",)), _specials), max_size=40)
raw_texts = st.text(st.one_of(st.characters(), _specials), max_size=40)
labels = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
    st.integers(-1000, 1000),
)


def _fresh(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    p.unlink(missing_ok=True)
    return p


def _read_everything(p: Path, fmt) -> None:
    """read_table and iter_texts / iter_records on `p`: rows or UserError, nothing else."""
    try:
        t = read_table(p, fmt=fmt)
    except UserError:
        pass
    else:
        assert len(t.texts) == len(t.labels) == len(t.lines) > 0
        assert all(isinstance(x, str) and x.strip() for x in t.texts)
        assert t.lines == sorted(t.lines)
    try:
        for chunk in iter_records(p, fmt=fmt, chunk_size=4):
            assert 0 < len(chunk) <= 4
            assert all(isinstance(line, int) and isinstance(text, str) and isinstance(kept, dict)
                       for line, text, kept in chunk)
    except UserError:
        pass


# ------------------------------------------------------------------------------------------
# Readers never crash


@settings(max_examples=120, **SETTINGS)
@given(content=st.binary(max_size=400), fmt=st.sampled_from(FORMATS))
def test_random_bytes_give_rows_or_a_user_error(tmp_path, content, fmt):
    p = _fresh(tmp_path, "f.dat")
    p.write_bytes(content)
    _read_everything(p, fmt)


@settings(max_examples=120, **SETTINGS)
@given(content=raw_texts, fmt=st.sampled_from(FORMATS), bom=st.booleans(), crlf=st.booleans())
def test_random_unicode_gives_rows_or_a_user_error(tmp_path, content, fmt, bom, crlf):
    p = _fresh(tmp_path, "f.dat")
    if crlf:
        content = content.replace("\n", "\r\n")
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + content.encode("utf-8", "surrogatepass"))
    _read_everything(p, fmt)


@settings(max_examples=80, **SETTINGS)
@given(lines=st.lists(texts, max_size=12), fmt=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_random_lines_under_a_header_never_crash(tmp_path, lines, fmt):
    head = {"csv": "text,label", "tsv": "label\ttext", "jsonl": '{"text": "a", "label": "b"}'}[fmt]
    p = _fresh(tmp_path, f"f.{fmt}")
    p.write_text(head + "\n" + "\n".join(lines) + "\n", encoding="utf-8", newline="")
    _read_everything(p, None)


# ------------------------------------------------------------------------------------------
# What a writer writes comes back exactly

rows = st.lists(st.tuples(texts, labels), min_size=1, max_size=15)


def _expected(pairs):
    """Rows read_table keeps: a text with a non-blank character and a non-empty label."""
    out = []
    for text, label in pairs:
        lab = json.dumps(label) if isinstance(label, int) else label.strip()
        if text.strip() and lab:
            out.append((text, lab))
    return out


def _reads_back(p, pairs) -> bool:
    """read_table(p) gives `pairs`' rows that it keeps (_expected), or, where it keeps none, a
    UserError. Whether rows came back."""
    want = _expected(pairs)
    if not want:
        with pytest.raises(UserError):
            read_table(p)
        return False
    t = read_table(p)
    assert list(zip(t.texts, t.labels)) == want
    return True


@settings(max_examples=100, **SETTINGS)
@given(pairs=rows)
def test_csv_round_trip(tmp_path, pairs):
    p = _fresh(tmp_path, "d.csv")
    buf = io.StringIO()
    w = csv.writer(buf)  # CRLF line ends; fields holding \r or \n are quoted
    w.writerow(["text", "label"])
    w.writerows(pairs)
    p.write_text(buf.getvalue(), encoding="utf-8", newline="")
    if _reads_back(p, pairs):  # the unlabelled reader gives one text per data row, blank rows aside
        got = [x for chunk in iter_texts(p) for x in chunk]
        assert [x for x in got if x.strip()] == [text for text, _ in pairs if text.strip()]


@settings(max_examples=100, **SETTINGS)
@given(pairs=rows)
def test_jsonl_round_trip(tmp_path, pairs):
    p = _fresh(tmp_path, "d.jsonl")
    p.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in pairs), encoding="utf-8")
    if _reads_back(p, pairs):
        assert [x for chunk in iter_texts(p) for x in chunk] == [t for t, _ in pairs]


tsv_texts = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40)
tsv_labels = st.text(st.characters(blacklist_characters="\t\r\n", blacklist_categories=("Cs",)),
                     min_size=1, max_size=12)


@settings(max_examples=100, **SETTINGS)
@given(pairs=st.lists(st.tuples(tsv_texts, tsv_labels), min_size=1, max_size=15))
def test_tsv_round_trip_with_quotes_and_tabs_kept(tmp_path, pairs):
    # Quoting off: quotes are literal and a tab inside the (last) text column survives.
    p = _fresh(tmp_path, "d.tsv")
    p.write_text("label\ttext\n" + "".join(f"{lab}\t{t}\n" for t, lab in pairs), encoding="utf-8", newline="")
    _reads_back(p, pairs)


# ------------------------------------------------------------------------------------------
# Label map


@settings(max_examples=150, deadline=None)
@given(st.lists(labels, min_size=1, max_size=30))
def test_label_map_round_trip_for_strings_and_ints(values):
    names = [json.dumps(v) if isinstance(v, int) else v for v in values]  # as the readers give them
    lm = LabelMap.from_labels(names)
    assert lm.decode(lm.encode(names)) == names
    assert LabelMap.from_json(json.dumps(lm.to_json())) == lm
    assert sorted(set(names)) == sorted(lm.names)
    assert [lm.index(n) for n in lm.names] == list(range(len(lm)))
    if all(isinstance(v, int) for v in values):  # integer labels sort by value: "2" < "10"
        assert [int(n) for n in lm.names] == sorted({int(v) for v in values})


@settings(max_examples=60, **SETTINGS)
@given(st.lists(labels, min_size=1, max_size=20))
def test_labels_through_a_file_map_back_to_the_same_names(tmp_path, values):
    p = _fresh(tmp_path, "d.jsonl")
    p.write_text("".join(json.dumps({"text": f"t{i}", "label": v}) + "\n" for i, v in enumerate(values)))
    want = [json.dumps(v) if isinstance(v, int) else v.strip() for v in values]
    assume(all(want))
    t = read_table(p)
    lm = LabelMap.from_labels(t.labels)
    assert t.labels == want
    assert lm.decode(lm.encode(t.labels)) == want


# ------------------------------------------------------------------------------------------
# Tokenizer


@pytest.fixture(scope="module")
def gpt2():
    from llmclassify.loaders.tokenizer_files import tokenizer_from_gpt2_files

    d = FIXTURES / "gpt2-tokenizer"
    return tokenizer_from_gpt2_files(d / "encoder.json", d / "vocab.bpe")


@settings(max_examples=200, **SETTINGS)
@given(text=st.text(max_size=200))
def test_tokenizer_round_trips_any_unicode(gpt2, text):
    ids = gpt2.encode(text)
    assert all(isinstance(i, int) and 0 <= i < gpt2.vocab_size for i in ids)
    assert gpt2.decode(ids) == text  # byte-level BPE loses nothing
    assert gpt2.encode_batch([text, text]) == [ids, ids]
    assert gpt2.encode_batch([text], max_length=5) == [ids[:5]]


@settings(max_examples=100, **SETTINGS)
@given(batch=st.lists(st.text(max_size=50), max_size=8), bad=st.sampled_from(["\ud800", "x\udfff", None, 3]))
def test_tokenizer_refuses_non_text_with_a_user_error(gpt2, batch, bad):
    with pytest.raises(UserError, match=f"text {len(batch)}:"):
        gpt2.encode_batch([*batch, bad])
    with pytest.raises(UserError):
        gpt2.encode(bad)
