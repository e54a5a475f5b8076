"""Tests for llmclassify.data: reading, label map, dedupe, splits, the book's reference split."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmclassify import data
from llmclassify.data import (
    LabelMap,
    Table,
    builtin_path,
    download_sms_spam,
    iter_texts,
    load_dataset,
    parse_split,
    prepare,
    read_table,
    reference_split,
)
from llmclassify.errors import DataError, UserError

FIXTURES = Path(__file__).parent / "fixtures"
SMS_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"


def write(tmp_path, name, content, mode="w"):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8", newline="")
    return p


@pytest.fixture(scope="module")
def sms():
    return load_dataset("sms-spam")


# ------------------------------------------------------------------------------------------
# The packaged SMS data set


def test_packaged_sms_file_is_the_original():
    p = builtin_path("sms-spam")
    assert hashlib.sha256(p.read_bytes()).hexdigest() == SMS_SHA256
    assert (p.parent / "ATTRIBUTION.md").read_text(encoding="utf-8").count("CC BY 4.0")


def test_sms_reader_gives_all_5574_rows(sms):
    assert len(sms) == 5574
    assert sms.label_counts() == {"ham": 4827, "spam": 747}
    assert sms.header is False
    assert sms.texts[0].startswith("Go until jurong point")
    assert sms.labels[:3] == ["ham", "ham", "spam"]
    assert sms.lines[:3] == [1, 2, 3] and sms.lines[-1] == 5574


def test_sms_with_quoting_reads_like_pandas():
    t = load_dataset("sms-spam", quoting=True)
    assert len(t) == 5572
    assert t.label_counts() == {"ham": 4825, "spam": 747}


def test_sms_dedupe_figures(sms):
    p = prepare(sms)
    r = p.report
    assert r["rows_read"] == 5574
    assert r["duplicates_removed"] == 403
    assert r["conflicting_texts"] == 0
    assert r["rows_used"] == 5171
    assert r["class_counts"] == {"ham": 4518, "spam": 653}
    total = Counter()
    for name in ("train", "val", "test"):
        total.update(r["splits"][name])
    assert dict(total) == r["class_counts"]
    # No text in two splits.
    tr, va, te = set(p.train.texts), set(p.val.texts), set(p.test.texts)
    assert not (tr & va or tr & te or va & te)


def test_reference_split_matches_pandas_fixture():
    fx = json.loads((FIXTURES / "reference_split_sms.json").read_text(encoding="utf-8"))
    for key, quoting in (("book_quoting", True), ("no_quoting", False)):
        table = load_dataset("sms-spam", quoting=quoting)
        assert len(table) == fx[key]["rows"]
        ref = reference_split(table, seed=123)
        position = {line: i for i, line in enumerate(table.lines)}
        for name, sp in (("train", ref.train), ("val", ref.val), ("test", ref.test)):
            want = fx[key]["splits"][name]
            assert [position[line] for line in sp.lines] == want["index"], (key, name)
            assert sp.texts[:3] == want["first_texts"]
            assert ref.report["splits"][name] == dict(sorted(want["label_counts"].items()))
        assert (len(ref.train), len(ref.val), len(ref.test)) == (1045, 149, 300)
        assert ref.label_map.names == ["ham", "spam"]  # the book's {"ham": 0, "spam": 1}


def test_reference_split_needs_two_classes(tmp_path):
    p = write(tmp_path, "d.csv", "text,label\na,x\nb,y\nc,z\n")
    with pytest.raises(DataError, match="exactly two classes"):
        reference_split(read_table(p))


# ------------------------------------------------------------------------------------------
# Formats, headers, columns


def test_csv_with_header_and_quotes(tmp_path):
    p = write(tmp_path, "d.csv", 'id,text,label\n1,"hello, world",pos\n2,"say ""hi""\nthere",neg\n')
    t = read_table(p)
    assert t.texts == ["hello, world", 'say "hi"\nthere']
    assert t.labels == ["pos", "neg"]
    assert t.lines == [2, 3]
    assert (t.text_column, t.label_column, t.header) == ("text", "label", True)


def test_csv_headerless_text_label(tmp_path):
    p = write(tmp_path, "d.csv", "a long text one,x\nanother long text,y\nthird long text,x\n")
    t = read_table(p)
    assert t.header is False
    assert t.texts[0] == "a long text one" and t.labels == ["x", "y", "x"]



def test_a_semicolon_csv_reads_like_its_comma_twin(tmp_path):
    """A spreadsheet's CSV in a locale whose decimal mark is a comma: fields split on ';',
    texts full of commas. With a header, without one, and with a named column."""
    rows = [("Hello, world; how are you", "greeting"), ("Win £100, call now, 18+ only", "spam"),
            ("See you at 5", "greeting"), ("Free entry, txt WIN", "spam")]
    comma = read_table(write(tmp_path, "c.csv", "text,label\n" + "".join(f'"{t}",{c}\n' for t, c in rows)))
    semi = read_table(write(tmp_path, "s.csv", "text;label\n" + "".join(f'"{t}";{c}\n' for t, c in rows)))
    assert (semi.texts, semi.labels, semi.header) == (comma.texts, comma.labels, True)
    bare = read_table(write(tmp_path, "b.csv", "".join(f"{t.replace(';', '')};{c}\n" for t, c in rows)))
    assert (bare.texts, bare.labels, bare.header) == ([t.replace(";", "") for t, _ in rows], comma.labels, False)
    named = write(tmp_path, "n.csv", "id;body;tag\n" + "".join(f"{i};{t.replace(';', '')};{c}\n"
                                                              for i, (t, c) in enumerate(rows)))
    assert read_table(named, text_column="body", label_column="tag").labels == comma.labels
    assert [t for chunk in iter_texts(named, text_column="body") for t in chunk][0] == "Hello, world how are you"


def test_a_comma_csv_whose_texts_hold_semicolons_stays_a_comma_csv(tmp_path):
    # A semicolon in every text of the first lines, commas between the fields: the header
    # decides, and without one the commas split every line evenly.
    texts = ["a; b", "c; d", "e; f"]
    p = write(tmp_path, "h.csv", "text,label\n" + "".join(f"{t},x\n" for t in texts))
    assert read_table(p).texts == texts
    p = write(tmp_path, "n.csv", "".join(f"{t},{lab}\n" for t, lab in zip(texts, "xyx")))
    assert read_table(p).texts == texts

@pytest.mark.parametrize("sep", [",", "\t"])
def test_a_first_row_whose_label_no_other_row_has_is_the_header(tmp_path, sep, caplog):
    rows = ["phrase" + sep + "feeling", "i love it" + sep + "joy", "so sad" + sep + "sadness",
            "great day" + sep + "joy", "awful" + sep + "sadness"]
    p = write(tmp_path, "d.csv" if sep == "," else "d.tsv", "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        t = read_table(p)
    assert (t.header, t.text_column, t.label_column) == (True, "phrase", "feeling")
    assert t.texts == ["i love it", "so sad", "great day", "awful"] and t.lines == [2, 3, 4, 5]
    assert "line 1 ('phrase,feeling') is read as the header: 'feeling' is no other row's label" in caplog.text
    assert [x for chunk in iter_texts(p) for x in chunk] == t.texts  # prediction input reads it alike
    # a first row whose label recurs is data; so is one that is unique among unique labels (ids)
    p = write(tmp_path, "recurs.csv", "a text,joy\nb text,joy\nc text,sad\nd text,sad\n")
    assert read_table(p).header is False and len(read_table(p)) == 4
    p = write(tmp_path, "ids.csv", "a text,1\nb text,2\nc text,3\n")
    assert read_table(p).header is False and len(read_table(p)) == 3
    # names of well-known columns beyond text / label: tweet, emotion, question, topic, ...
    t = read_table(write(tmp_path, "tw.csv", "tweet,emotion\ni love it,joy\nso sad,sadness\n"))
    assert (t.header, t.text_column, t.label_column) == (True, "tweet", "emotion")


def test_tsv_headerless_label_text_with_quotes_and_tabs(tmp_path):
    p = write(tmp_path, "d.tsv", 'ham\t"unbalanced quote\nspam\tsecond\twith tab\nham\tthird"\n')
    t = read_table(p)
    assert t.texts == ['"unbalanced quote', "second\twith tab", 'third"']
    assert t.labels == ["ham", "spam", "ham"]


def test_a_tsv_quoted_by_csv_rules_is_read_by_them(tmp_path):
    """What pandas' to_csv(sep="\\t") writes: a text holding a line end, a tab or a quote in
    double quotes, inner quotes doubled. Read by CSV rules where every quote follows them;
    raw TSV (quotes unbalanced, or a quote that would swallow rows) keeps quoting off."""
    p = write(tmp_path, "pd.tsv", 'text\tlabel\n"first line\nsecond line"\ta\nplain one\tb\n'
                                  '"has ""quotes"" inside"\ta\n"tab\there"\tb\n\n')
    t = read_table(p)
    assert t.texts == ["first line\nsecond line", "plain one", 'has "quotes" inside', "tab\there"]
    assert t.labels == ["a", "b", "a", "b"] and t.lines == [2, 4, 5, 6]
    assert [x for chunk in data.iter_records(p) for _, x, _ in chunk] == t.texts  # predict reads it so too
    with pytest.raises(DataError, match="line 6: expected 2 fields, found 3"):  # quoting off, as asked
        read_table(p, quoting=False)
    # a quote that closes after a run of rows is raw text, not a quoted field
    raw = write(tmp_path, "raw.tsv", 'text\tlabel\n"she said\ta\nok\tb\nthen left"\ta\n')
    assert read_table(raw).texts == ['"she said', "ok", 'then left"']
    raw = write(tmp_path, "raw2.tsv", 'text\tlabel\n"quoted" and more\ta\nok\tb\n')  # text after a closing quote
    assert read_table(raw).texts == ['"quoted" and more', "ok"]


def test_tsv_with_header_and_named_columns(tmp_path):
    p = write(tmp_path, "d.tsv", "Sentence\tCategory\nfoo bar\tA\nbaz\tB\n")
    t = read_table(p)
    assert (t.text_column, t.label_column) == ("Sentence", "Category")
    p2 = write(tmp_path, "e.tsv", "body_x\ty_lab\nfoo bar\tA\nbaz\tB\n")
    t2 = read_table(p2, text_column="body_x", label_column="y_lab")
    assert t2.texts == ["foo bar", "baz"] and t2.labels == ["A", "B"]


def test_jsonl(tmp_path):
    lines = [
        {"message": "hi there", "target": 1},
        {"message": "spam!", "target": 0},
        {"message": "", "target": 1},
        {"message": "no label"},
        {"message": "ten", "target": 10},
    ]
    p = write(tmp_path, "d.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    t = read_table(p)
    assert t.texts == ["hi there", "spam!", "ten"]
    assert t.labels == ["1", "0", "10"]
    assert t.skipped == {"empty_text": 1, "missing_label": 1}
    assert LabelMap.from_labels(t.labels).names == ["0", "1", "10"]


def test_jsonl_errors(tmp_path):
    p = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"d\.jsonl, line 2: expected a JSON object"):
        read_table(p)
    p = write(tmp_path, "e.jsonl", '{"text": "a", "label": "x"}\n{"text": \n')
    with pytest.raises(DataError, match=r"e\.jsonl, line 2: not valid JSON"):
        read_table(p)
    p = write(tmp_path, "f.jsonl", '{"text": 5, "label": "x"}\n')
    with pytest.raises(DataError, match=r"line 1, field 'text': a text must be a string"):
        read_table(p)


def test_a_json_array_of_records_reads_like_its_jsonl_twin(tmp_path):
    """`.json`: what `json.dump(records)` and pandas' `to_json(orient="records")` write, each
    row's line the one its object opens on; JSON lines in a `.json` file (`datasets`'
    `to_json`) read as JSON lines."""
    records = [{"text": "hi, there", "label": "ham"}, {"text": "WIN [now]", "label": "spam", "id": 3},
               {"text": "a\nb", "label": "ham"}]
    jsonl = read_table(write(tmp_path, "d.jsonl", "".join(json.dumps(r) + "\n" for r in records)))
    pretty = read_table(write(tmp_path, "p.json", json.dumps(records, indent=2)))
    assert (pretty.texts, pretty.labels) == (jsonl.texts, jsonl.labels)
    assert pretty.lines == [2, 6, 11]
    assert read_table(write(tmp_path, "c.json", json.dumps(records))).lines == [1, 1, 1]
    assert read_table(write(tmp_path, "l.json", "".join(json.dumps(r) + "\n" for r in records))).lines == [1, 2, 3]
    assert data.detect_format(write(tmp_path, "noext", json.dumps(records))) == "json"
    assert data.detect_format(write(tmp_path, "pretty", json.dumps(records, indent=1))) == "json"
    assert data.detect_format(write(tmp_path, "note", "[URGENT] call now\n")) == "txt"
    # pandas' to_json() orientations as pandas 3.1 writes them: columns (the default; or a dict of
    # lists), index, split, table
    columns = {k: {str(i): r[k] for i, r in enumerate(records)} for k in ("text", "label")}
    split = {"columns": ["text", "label"], "index": [0, 1, 2], "data": [[r["text"], r["label"]] for r in records]}
    table = {"schema": {"fields": [{"name": "index", "type": "integer"}, {"name": "text", "type": "string"},
                                   {"name": "label", "type": "string"}], "primaryKey": ["index"]},
             "data": [{"index": i, "text": r["text"], "label": r["label"]} for i, r in enumerate(records)]}
    by_row = {str(i): {"text": r["text"], "label": r["label"]} for i, r in enumerate(records)}
    unnamed = {str(i): {"words": r["text"], "tag": r["label"]} for i, r in enumerate(records)}  # more rows than columns
    for name, obj in [("pd.json", columns), ("lists.json", {k: list(v.values()) for k, v in columns.items()}),
                      ("split.json", split), ("table.json", table), ("index.json", by_row)]:
        t = read_table(write(tmp_path, name, json.dumps(obj)))
        assert (t.texts, t.labels, t.lines) == (jsonl.texts, jsonl.labels, [1, 2, 3])
    t = read_table(write(tmp_path, "unnamed.json", json.dumps(unnamed)), text_column="words", label_column="tag")
    assert (t.texts, t.labels) == (jsonl.texts, jsonl.labels)
    one_row = {"words": ["hi there"], "tag": ["x"], "id": [1]}  # lists are always columns, however few rows
    assert list(iter_texts(write(tmp_path, "one.json", json.dumps(one_row)), text_column="words")) == [["hi there"]]
    arr = write(tmp_path, "t.json", json.dumps([{"sentence": "a"}, {"sentence": "b"}]))
    assert list(iter_texts(arr)) == [["a", "b"]]
    for bad, match in [('[{"text": "a", "label": "x"},\n 7]', r"b\.json, line 2: expected an array of JSON objects"),
                       ('[{"text": "a", "label": "x"}\n{"text": "b"}]', r"line 2: expected ',' or '\]'"),
                       ('[{"text": "a", "label": "x"},\n', r"line 2: not valid JSON"),
                       ('[{"text": "a", "label": "x"}]\n[]', r"line 2: more text after the JSON array"),
                       ("[]", r"empty")]:
        with pytest.raises(DataError, match=match):
            read_table(write(tmp_path, "b.json", bad))


def test_gzip_files_read_decompressed_and_workbooks_are_named(tmp_path):
    import gzip

    content = "text,label\nhello there,a\nworld,b\n"
    plain = read_table(write(tmp_path, "d.csv", content))
    packed = read_table(write(tmp_path, "d.csv.gz", gzip.compress(content.encode())))
    assert (packed.texts, packed.labels, packed.lines) == (plain.texts, plain.labels, plain.lines)
    assert data.detect_format(write(tmp_path, "d.jsonl.gz", gzip.compress(b"{}"))) == "jsonl"
    assert list(iter_texts(write(tmp_path, "t.txt.gz", gzip.compress(b"one\ntwo\n")))) == [["one", "two"]]
    with pytest.raises(DataError, match=r"cut\.csv\.gz: is a damaged gzip file"):
        read_table(write(tmp_path, "cut.csv.gz", gzip.compress(content.encode())[:-9]))
    for name, head, what in [("book.xlsx", b"PK\x03\x04\x14\x00", "ZIP archive"),
                             ("book.csv", b"PK\x03\x04\x14\x00", "ZIP archive"),
                             ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1", r"Excel \.xls workbook")]:
        with pytest.raises(DataError, match=rf"{name}: is an? {what}"):
            read_table(write(tmp_path, name, head + bytes(64)))


def test_a_folder_of_class_folders_is_a_labelled_table(tmp_path):
    """scikit-learn's load_files layout: root/LABEL/FILE, one text per file; files at the top
    and names starting with '.' are not rows; a file that does not decode is named."""
    root = tmp_path / "corpus"
    for rel, text in [("pos/b.txt", "fine film\n"), ("pos/a.txt", "great, loved it\r\n"),
                      ("neg/sub/c.txt", "dull\nand long\n"), ("neg/.hidden.txt", "x"),
                      (".git/HEAD", "ref"), ("README", "about the corpus")]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(text.encode())
    t = read_table(root)
    assert (t.texts, t.labels, t.lines) == (["dull\nand long", "great, loved it", "fine film"],
                                            ["neg", "pos", "pos"], [1, 2, 3])
    assert [x for chunk in iter_texts(root / "pos") for x in chunk] == ["great, loved it", "fine film"]
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="is a folder without files"):
        list(iter_texts(tmp_path / "none"))
    (root / "neg" / "bad.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match=r"bad\.txt, line 1: not valid UTF-8"):
        read_table(root)
    assert read_table(root, encoding="latin-1").texts[0] == "café"
    (root / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')  # datasets' save_to_disk
    with pytest.raises(DataError, match=r"corpus: is a Hugging Face datasets folder .* Dataset.to_parquet"):
        read_table(root)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("a text")
    with pytest.raises(DataError, match="flat: is a folder without class folders"):
        read_table(tmp_path / "flat")


def test_bom_and_crlf(tmp_path):
    p = write(tmp_path, "d.csv", b"\xef\xbb\xbftext,label\r\nhello,a\r\nworld,b\r\n")
    t = read_table(p)
    assert t.columns == ["text", "label"]
    assert t.texts == ["hello", "world"] and t.labels == ["a", "b"]
    p = write(tmp_path, "d.tsv", b"\xef\xbb\xbfham\thello there\r\nspam\tworld\r\n")
    t = read_table(p)
    assert t.texts == ["hello there", "world"] and t.labels == ["ham", "spam"]


def test_column_suggestion(tmp_path):
    p = write(tmp_path, "data.csv", "text,label\nhello,a\n")
    with pytest.raises(DataError) as e:
        read_table(p, label_column="lable")
    assert str(e.value) == f"{p}: no column 'lable'; did you mean 'label'? (columns: text, label)"
    p = write(tmp_path, "x.csv", "tekst,labl\nhello,a\n")
    with pytest.raises(
        DataError, match=r"no text column found .*did you mean 'tekst'.*--text-column"
    ):
        read_table(p, label_column="labl")


def test_case_insensitive_column_and_same_column(tmp_path):
    p = write(tmp_path, "d.csv", "Text,Label\nhello,a\n")
    assert read_table(p, text_column="text").text_column == "Text"
    with pytest.raises(DataError, match="same column"):
        read_table(p, text_column="Text", label_column="Text")


def test_non_utf8_names_file_and_line(tmp_path):
    p = write(tmp_path, "d.csv", b"text,label\nhello,a\ncaf\xe9,b\n")
    with pytest.raises(DataError) as e:
        read_table(p)
    assert str(e.value).startswith(f"{p}, line 3: not valid UTF-8 (byte 0xe9")
    p = write(tmp_path, "u.csv", "text,label\nhi,a\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        read_table(p)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, content):
    p = write(tmp_path, "d.csv", content)
    with pytest.raises(DataError, match=r"d\.csv: is empty"):
        read_table(p)


def test_header_only(tmp_path):
    p = write(tmp_path, "d.csv", "text,label\n")
    with pytest.raises(DataError, match="header row but no data rows"):
        read_table(p)


def test_skips_empty_texts_and_missing_labels(tmp_path, caplog):
    p = write(tmp_path, "d.csv", "text,label\nhello,a\n   ,b\nworld,\nfine,b\nshort\n")
    with caplog.at_level(logging.WARNING, logger="llmclassify.data"):
        t = read_table(p)
    assert t.texts == ["hello", "fine"]
    assert t.skipped == {"empty_text": 1, "missing_label": 2}
    assert "skipped 3 rows: 1 with an empty text, 2 with no label (first at line 3)" in caplog.text
    p = write(tmp_path, "e.csv", "text,label\n ,a\nworld,\n")
    with pytest.raises(DataError, match="no usable rows: 1 with an empty text, 1 with no label"):
        read_table(p)


def test_labels_typed_two_ways_are_warned_of_and_integral_numbers_are_integers(tmp_path, caplog):
    p = write(tmp_path, "d.csv", "text,label\na,spam\nb,ham\nc,Spam\nd,spam\ne,not  ham\nf,Not ham\ng,ham\n")
    with caplog.at_level(logging.WARNING, logger="llmclassify.data"):
        t = read_table(p)
    assert t.labels == ["spam", "ham", "Spam", "spam", "not  ham", "Not ham", "ham"]  # kept as written
    assert ("d.csv: labels 'spam' (2 rows, first at line 2) and 'Spam' (1 row, first at line 4) differ only in "
            "case or spacing and are 2 classes; if they are one, write them one way") in caplog.text
    assert "labels 'not  ham' (1 row, first at line 6) and 'Not ham' (1 row, first at line 7)" in caplog.text
    assert "'ham' (2 rows" not in caplog.text  # a label typed one way is not named
    caplog.clear()
    # JSON numbers: 1.0 is the label 1 (pandas writes an integer column with a gap as floats)
    p = write(tmp_path, "n.jsonl", '{"text": "a", "label": 1.0}\n{"text": "b", "label": 1}\n'
                                   '{"text": "c", "label": 0.5}\n{"text": "d", "label": 0}\n')
    with caplog.at_level(logging.WARNING, logger="llmclassify.data"):
        assert read_table(p).labels == ["1", "1", "0.5", "0"]
    assert "differ only" not in caplog.text


def test_columns_named_in_one_word_with_a_known_name_are_found(tmp_path):
    """Kaggle-style headers: review_text, comment_text, label_id, rating. A known name that is a
    word of exactly one column's name picks that column, and makes the first row a header; an
    exact name comes first; a name with spaces is a text, not a header."""
    t = read_table(write(tmp_path, "k.csv", "id,review_text,rating\n1,great value,5\n2,broke after a day,1\n"))
    assert (t.text_column, t.label_column, t.texts, t.labels) == ("review_text", "rating", ["great value",
                                                                  "broke after a day"], ["5", "1"])
    t = read_table(write(tmp_path, "j.csv", "tweet_id,tweet_text,label_id\n7,hi,0\n8,bye,1\n"))
    assert (t.text_column, t.label_column) == ("tweet_text", "label_id")  # 'text' before 'tweet', one column each
    t = read_table(write(tmp_path, "e.csv", "text_id,content,label\n1,hello,a\n2,bye,b\n"))
    assert t.text_column == "content"  # an exact name before a word
    with pytest.raises(DataError, match="no text column found"):  # 'text' is a word of two columns' names
        read_table(write(tmp_path, "two.csv", "text_a,text_b,label\nx,y,a\nz,w,b\n"))
    # a first row of texts with spaces is data, not a header
    t = read_table(write(tmp_path, "h.csv", "the text of it,a\nmore text here,b\nand more,a\n"))
    assert t.texts[0] == "the text of it" and not t.header


def test_a_title_column_is_read_above_the_text_and_text_columns_may_be_named_together(tmp_path):
    """AG News, DBpedia, Amazon reviews, e-mails: a title / headline / subject column beside the
    text column found by name is read with it, above it; --text-column names one column, or
    several joined in the order given."""
    p = write(tmp_path, "ag.csv", 'title,description,label\nWall St rallies,"Stocks rose, sharply",business\n'
                                  ",The home side won,sport\n")
    t = read_table(p)
    assert t.texts == ["Wall St rallies\nStocks rose, sharply", "The home side won"]  # a blank title: the text alone
    assert t.text_column == "title + description"
    assert [x for chunk in data.iter_records(p) for _, x, _ in chunk] == t.texts  # predict reads it so too
    assert read_table(p, text_column="description").texts == ["Stocks rose, sharply", "The home side won"]
    assert read_table(p, text_column="description,title").texts[0] == "Stocks rose, sharply\nWall St rallies"
    assert read_table(p, text_column="title").texts == ["Wall St rallies"]  # a blank text is skipped
    with pytest.raises(DataError, match="no column 'desc'"):
        read_table(p, text_column="title,desc")
    p = write(tmp_path, "e.jsonl", '{"subject": "WIN", "body": "claim a prize", "label": "spam"}\n'
                                   '{"subject": "lunch", "body": "at noon?", "label": "ham"}\n')
    assert read_table(p).texts == ["WIN\nclaim a prize", "lunch\nat noon?"]
    # the label column is never read as a title; a title-only file is read as it is
    p = write(tmp_path, "t.csv", "text,title\nfirst,a\nsecond,b\n")
    assert read_table(p, label_column="title").texts == ["first", "second"]
    assert read_table(write(tmp_path, "h.tsv", "headline\tlabel\nrates up\tbiz\n")).texts == ["rates up"]
    with pytest.raises(DataError, match="text and label columns are the same column 'title'"):
        read_table(p, text_column="text,title", label_column="title")


def test_extra_fields(tmp_path):
    p = write(tmp_path, "d.csv", "text,label\nhello,a,\nhi,b,extra\n")
    with pytest.raises(DataError, match=r"line 3: expected 2 fields, found 3"):
        read_table(p)


def test_headerless_shapes(tmp_path):
    p = write(tmp_path, "one.csv", "just text\nmore text\n")
    with pytest.raises(DataError, match="one column and no header"):
        read_table(p)
    p = write(tmp_path, "three.csv", "a,b,c\nd,e,f\n")
    with pytest.raises(DataError, match="3 columns and no header"):
        read_table(p)


def test_a_headerless_file_of_texts_cut_by_their_delimiter_is_an_error_not_half_texts(tmp_path):
    """One column of texts, each holding one comma (or ';', or a tab) unquoted, reads as two
    columns of phrases: taking either as the texts would drop half of every text."""
    texts = ["Call me later, I am busy", "Win a free prize now, text WIN", "See you at 5, ok then"]
    for name, delimiter in (("c.csv", ","), ("s.csv", ";"), ("t.tsv", "\t")):
        p = write(tmp_path, name, "".join(t.replace(",", delimiter) + "\n" for t in texts))
        for read in (iter_texts, read_table):
            with pytest.raises(DataError, match=r"line 1: has two columns and no header, and neither holds labels"):
                list(read(p))
    # ids beside texts, and labels that recur, are read as before
    assert list(iter_texts(write(tmp_path, "ids.csv", "1,Call me later\n2,Win a prize\n3,See you\n"))) == [
        ["Call me later", "Win a prize", "See you"]]
    assert list(iter_texts(write(tmp_path, "l.csv", "Call me later,not spam\nWin now,spam\nSee you,not spam\n"))) == [
        ["Call me later", "Win now", "See you"]]


def test_format_detection_and_errors(tmp_path):
    p = write(tmp_path, "SMSlike", "ham\thello\nspam\twin\n")
    assert data.detect_format(p) == "tsv"
    assert read_table(p).labels == ["ham", "spam"]
    assert data.detect_format(write(tmp_path, "j", '{"a": 1}\n')) == "jsonl"
    with pytest.raises(UserError, match="unknown data format 'xml'"):
        read_table(p, fmt="xml")
    with pytest.raises(DataError, match="plain text"):
        read_table(write(tmp_path, "d.txt", "hello\n"))
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="is a directory"):
        read_table(tmp_path, fmt="csv")


def test_parquet_without_pyarrow(tmp_path):
    p = write(tmp_path, "d.parquet", b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="pip install pyarrow"):
            read_table(p)
    else:
        with pytest.raises(DataError):
            read_table(p)


def test_parquet_reads_like_its_jsonl_twin(tmp_path):
    import pyarrow as pa  # the test extra installs it
    import pyarrow.parquet as pq

    records = [{"text": "hi, there", "label": "ham"}, {"text": None, "label": "spam"},
               {"text": "WIN now", "label": "spam"}, {"text": "a\nb", "label": None}, {"text": "ok", "label": "ham"}]
    jsonl = read_table(write(tmp_path, "d.jsonl", "".join(json.dumps(r) + "\n" for r in records)))
    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(records), p, row_group_size=2)  # rows read across batches
    t = read_table(p)
    assert (t.texts, t.labels, t.lines, t.skipped) == (jsonl.texts, jsonl.labels, jsonl.lines, jsonl.skipped)
    assert list(iter_texts(p, chunk_size=2)) == [["hi, there", ""], ["WIN now", "a\nb"], ["ok"]]


# What `datasets` 5.2.0 writes in a Parquet file's schema (Dataset.to_parquet, as the Hub's files):
# a ClassLabel column, and a list of ClassLabels (multi-label).
HF_FEATURES = {"text": {"dtype": "string", "_type": "Value"},
               "label": {"names": ["negative", "positive"], "_type": "ClassLabel"},
               "tags": {"feature": {"names": ["a", "b"], "_type": "ClassLabel"}, "_type": "List"}}


def test_parquet_from_hugging_face_datasets_reads_the_class_label_names(tmp_path):
    """Integer labels become the names the file declares; -1 (no label) is a row without one."""
    import pyarrow as pa  # the test extra installs it
    import pyarrow.parquet as pq

    def parquet(name, labels, tags, features=HF_FEATURES):
        table = pa.table({"text": [f"text {i}" for i in range(len(labels))], "label": labels, "tags": tags})
        table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": features}})})
        pq.write_table(table, tmp_path / name)
        return tmp_path / name

    p = parquet("hf.parquet", [1, 0, -1, 1], [[0], [1, 0], [], [1]])
    t = read_table(p)
    assert (t.texts, t.labels, t.skipped["missing_label"]) == (["text 0", "text 1", "text 3"],
                                                               ["positive", "negative", "positive"], 1)
    assert read_table(p, label_column="tags").labels == [["a"], ["a", "b"], ["b"]]
    plain = parquet("plain.parquet", [1, 0, 1], [[0], [1], [0]], features={})  # no names: the integers
    assert read_table(plain).labels == ["1", "0", "1"]
    with pytest.raises(DataError, match=r"bad\.parquet, line 2, field 'label': label 2 is past the 2 names"):
        read_table(parquet("bad.parquet", [1, 2], [[0], [1]]))


def test_unbalanced_quote_in_csv_is_an_error_or_one_row(tmp_path):
    # An unbalanced quote in CSV swallows the rest of the file into one field; with a huge
    # remainder csv raises, and the message points at the likely cause.
    big = "x" * (200_000)
    p = write(tmp_path, "d.csv", f'text,label\n"open,a\n{big},b\n')
    with pytest.raises(DataError, match="unbalanced double quote"):
        read_table(p)


def test_labels_written_as_list_literals_are_multi_label(tmp_path, caplog):
    """pandas' to_csv of a column of lists writes "['sport', 'politics']": every label so written
    is a multi-label row ('[]' none, skipped as a JSON [] is), not a class per combination."""
    p = write(tmp_path, "ml.csv", "text,labels\nvote,\"['politics']\"\nmatch and minister,\"['sport', 'politics']\"\n"
                                  'none,[]\ngoal,"[""sport"", 3]"\n')
    with caplog.at_level(logging.WARNING, logger="llmclassify.data"):
        t = read_table(p)
    assert t.multi_label and t.labels == [["politics"], ["politics", "sport"], ["3", "sport"]]
    assert t.lines == [2, 3, 5] and t.skipped["missing_label"] == 1
    assert "skipped 1 row: 1 with no label (first at line 4)" in caplog.text
    # one label that is not a list literal: every label is a name as written
    p = write(tmp_path, "mixed.csv", "text,label\na,\"['x']\"\nb,[URGENT]\n")
    assert read_table(p).labels == ["['x']", "[URGENT]"] and not read_table(p).multi_label


def test_multi_label(tmp_path):
    p = write(tmp_path, "d.csv", "text,labels\na,x|y\nb,y\nc, y | x |\nd,z\n")
    t = read_table(p, label_sep="|")
    assert t.multi_label
    assert t.labels == [["x", "y"], ["y"], ["x", "y"], ["z"]]
    lm = LabelMap.from_labels(t.labels)
    assert lm.multi_label and lm.encode(t.labels) == [[0, 1], [1], [0, 1], [2]]
    p = write(
        tmp_path, "d.jsonl", '{"text": "a", "label": ["b", "a"]}\n{"text": "c", "label": "a"}\n'
    )
    t = read_table(p)
    assert t.multi_label and t.labels == [["a", "b"], ["a"]]


def test_tiny_fixtures_read():
    a = read_table(FIXTURES / "tiny_spam.csv")
    b = read_table(FIXTURES / "tiny_spam.jsonl")
    assert a.texts == b.texts and a.labels == b.labels
    assert a.label_counts() == {"ham": 20, "spam": 20}


# ------------------------------------------------------------------------------------------
# iter_texts


def test_iter_texts_chunks_and_formats(tmp_path):
    p = write(tmp_path, "d.txt", "one\r\ntwo\n\nthree\n")
    assert list(iter_texts(p, chunk_size=2)) == [["one", "two"], ["three"]]
    p = write(tmp_path, "d.csv", 'id,text\n1,hello\n2,\n3,"multi\nline"\n')
    assert list(iter_texts(p)) == [["hello", "", "multi\nline"]]
    p = write(tmp_path, "d.jsonl", '{"sentence": "a"}\n{"sentence": null}\n')
    assert list(iter_texts(p)) == [["a", ""]]
    p = write(tmp_path, "d.tsv", "ham\thello there you\nspam\twin\tbig\n")
    assert list(iter_texts(p)) == [["hello there you", "win\tbig"]]
    p = write(tmp_path, "one.tsv", "just a text\nanother\twith a tab\n")
    assert list(iter_texts(p)) == [["just a text", "another\twith a tab"]]
    assert list(iter_texts(write(tmp_path, "e.csv", ""))) == []


def test_iter_texts_sms_matches_read_table(sms):
    got = [t for chunk in iter_texts(builtin_path("sms-spam"), chunk_size=1000) for t in chunk]
    assert got == sms.texts


def test_iter_texts_streams(tmp_path):
    # A generator: the first chunk comes before the bad line far down the file is read.
    p = write(tmp_path, "d.txt", b"ok\n" * 10 + b"\xff\n")
    it = iter_texts(p, chunk_size=5)
    assert next(it) == ["ok"] * 5
    with pytest.raises(DataError, match="line 11"):
        list(it)


# ------------------------------------------------------------------------------------------
# load_dataset, download


def test_load_dataset_unknown_name(tmp_path):
    with pytest.raises(DataError, match="did you mean the built-in data set 'sms-spam'"):
        load_dataset("sms_spam")
    p = write(tmp_path, "d.csv", "text,label\na,x\n")
    assert len(load_dataset(p)) == 1


def _zip_with(tmp_path, payload: bytes, member="SMSSpamCollection") -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme", "x")
        zf.writestr(member, payload)
    p = tmp_path / "sms.zip"
    p.write_bytes(buf.getvalue())
    return p.as_uri()


def test_download_verifies_checksum(tmp_path):
    good = builtin_path("sms-spam").read_bytes()
    (tmp_path / "out").mkdir()
    out = download_sms_spam(tmp_path / "out", url=_zip_with(tmp_path, good))
    assert out == tmp_path / "out" / "SMSSpamCollection"
    assert out.read_bytes() == good
    assert sorted(os.listdir(tmp_path / "out")) == ["SMSSpamCollection"]

    dest = tmp_path / "bad" / "sms.tsv"
    with pytest.raises(UserError, match="sha256 .* expected 7d039a24"):
        download_sms_spam(dest, url=_zip_with(tmp_path, good + b"tampered"))
    assert not dest.exists()
    assert not dest.parent.exists() or not list(dest.parent.iterdir())


def test_download_errors(tmp_path):
    with pytest.raises(UserError, match="packaged copy"):
        download_sms_spam(tmp_path, url=(tmp_path / "nope.zip").as_uri())
    with pytest.raises(UserError, match="no SMSSpamCollection"):
        download_sms_spam(tmp_path, url=_zip_with(tmp_path, b"x", member="other"))
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a valid zip"):
        download_sms_spam(tmp_path, url=(tmp_path / "junk.zip").as_uri())


# ------------------------------------------------------------------------------------------
# LabelMap


def test_label_map_order_and_json():
    lm = LabelMap.from_labels(["spam", "ham", "ham"])
    assert lm.names == ["ham", "spam"] and lm.index("spam") == 1 and lm.name(0) == "ham"
    assert LabelMap.from_labels(["10", "2", "-1", "02"]).names == ["-1", "02", "2", "10"]
    assert LabelMap.from_labels(["10", "2", "x"]).names == ["10", "2", "x"]
    assert LabelMap.from_json(json.dumps(lm.to_json())) == lm
    with pytest.raises(DataError, match="unknown label 'eggs'"):
        lm.encode(["eggs"])
    with pytest.raises(UserError, match="duplicate"):
        LabelMap(["a", "a"])
    with pytest.raises(UserError):
        LabelMap.from_json('{"a": 1}')


@given(st.lists(st.text(min_size=1), min_size=1, max_size=20))
def test_label_map_round_trip(names):
    lm = LabelMap.from_labels(names)
    again = LabelMap.from_json(json.loads(json.dumps(lm.to_json())))
    assert again == lm
    assert lm.decode(lm.encode(names)) == names
    assert sorted(set(names)) == sorted(lm.names)


# ------------------------------------------------------------------------------------------
# prepare / parse_split


def make_table(texts, labels):
    return Table(
        texts=list(texts),
        labels=list(labels),
        lines=list(range(1, len(texts) + 1)),
        source="mem",
        text_column="text",
        label_column="label",
    )


def test_parse_split():
    assert parse_split("0.7,0.1,0.2") == (0.7, 0.1, 0.2)
    assert parse_split("80,20,0") == (0.8, 0.2, 0.0)
    assert parse_split([0.9, 0, 0.1]) == (0.9, 0.0, 0.1)
    for bad in ("0.7,0.1", "0.5,0.1,0.1", "a,b,c", "0,0.5,0.5", "1.2,-0.1,-0.1"):
        with pytest.raises(UserError, match="--split"):
            parse_split(bad)


def test_prepare_stratified_and_deterministic():
    texts = [f"t{i}" for i in range(1000)]
    labels = ["a"] * 800 + ["b"] * 150 + ["c"] * 50
    t = make_table(texts, labels)
    p = prepare(t, seed=7)
    r = p.report["splits"]
    assert r["train"] == {"a": 560, "b": 105, "c": 35}
    assert r["val"] == {"a": 80, "b": 15, "c": 5}
    assert r["test"] == {"a": 160, "b": 30, "c": 10}
    q = prepare(t, seed=7)
    assert p.train.texts == q.train.texts and p.test.labels == q.test.labels
    assert prepare(t, seed=8).train.texts != p.train.texts
    # Train is shuffled across classes, not sorted by class.
    assert p.train.labels[:50] != sorted(p.train.labels[:50])
    assert sorted(p.train.texts + p.val.texts + p.test.texts) == sorted(texts)


def test_prepare_conflicts_and_duplicates():
    texts = (
        ["x", "x", "y", "y", "z", "z", "w"]
        + [f"a{i}" for i in range(10)]
        + [f"b{i}" for i in range(10)]
    )
    labels = ["a", "a", "a", "b", "b", "b", "a"] + ["a"] * 10 + ["b"] * 10
    p = prepare(make_table(texts, labels))
    r = p.report
    assert r["conflicting_texts"] == 1 and r["conflicting_rows_removed"] == 2
    assert r["duplicates_removed"] == 2
    assert r["rows_used"] == 23
    everything = p.train.texts + p.val.texts + p.test.texts
    assert "y" not in everything and everything.count("x") == 1
    # Without dedupe everything is kept, conflicts still counted.
    r2 = prepare(make_table(texts, labels), dedupe=False).report
    assert r2["rows_used"] == 27 and r2["conflicting_texts"] == 1 and r2["duplicates_removed"] == 0


def test_prepare_errors():
    with pytest.raises(DataError, match=r"only one class \('a'\)"):
        prepare(make_table(["1", "2", "3"], ["a"] * 3))
    with pytest.raises(DataError, match=r"only one class \('a'\).*leaving out 1 with too few texts \('b' 2\)"):
        prepare(make_table([f"t{i}" for i in range(32)], ["a"] * 30 + ["b"] * 2))
    t = make_table([f"t{i}" for i in range(12)], ["a"] * 10 + ["b"] * 2)
    with pytest.raises(DataError, match=r"2 of 12 texts are in 1 class with fewer than 3 texts .* too many to "
                                        r"leave out: is 'label' the class column\? \(a score or an id is not: 'b' 2\)"):
        prepare(t)
    p = prepare(t, split="0.5,0.5,0")
    assert p.report["splits"]["test"] == {"a": 0, "b": 0} and p.report["classes_left_out"] == {}
    with pytest.raises(DataError, match="too many to leave out"):
        prepare(t, split="0.5,0.5,0", min_per_class=5)
    with pytest.raises(UserError, match="balance"):
        prepare(t, split="0.5,0.5,0", balance="oversample")


def test_classes_too_small_to_split_are_left_out_and_named(caplog):
    """A class with fewer texts than non-empty splits cannot be trained and measured: it is
    left out with its rows, named in a warning and the report; the rest split as without it.
    Multi-label: an error (a text holds several labels)."""
    texts = [f"t{i}" for i in range(40)]
    labels = ["a"] * 20 + ["e"] * 10 + ["b"] * 2 + ["c"] + ["d"] * 7
    with caplog.at_level(logging.WARNING, logger="llmclassify.data"):
        p = prepare(make_table(texts, labels))
    assert p.label_map.names == ["a", "d", "e"]
    assert p.report["classes_left_out"] == {"c": 1, "b": 2}
    assert ("left out 2 classes with fewer than 3 texts after deduplication (one per split of 0.7/0.1/0.2): "
            "'c' 1, 'b' 2; add texts to keep them") in caplog.text
    kept = [(x, y) for x, y in zip(texts, labels) if y not in ("b", "c")]
    alone = prepare(make_table([x for x, _ in kept], [y for _, y in kept]))
    for name in ("train", "val", "test"):
        assert getattr(p, name).texts == getattr(alone, name).texts
    assert sum(len(getattr(p, n).texts) for n in ("train", "val", "test")) == 37
    # a test file holding a class left out says so
    # a test file holding a class left out says so (train and validation need two texts a class)
    with pytest.raises(DataError, match=r"label 'c' \(line 2\) has 1 training text, too few to train it"):
        prepare(make_table(texts, labels), test_table=make_table(["u1", "u2"], ["b", "c"]))
    # a column of scores or ids is not a long tail of classes: past LEFT_OUT_MAX of the texts, an error
    scores = [f"{i / 100}" for i in range(len(texts))]
    with pytest.raises(DataError, match=r"40 of 40 texts are in 40 classes .* too many to leave out"):
        prepare(make_table(texts, scores))
    multi = Table(texts=texts, labels=[[y] for y in labels], lines=list(range(1, 41)), source="mem",
                  text_column="text", label_column="labels", multi_label=True)
    with pytest.raises(DataError, match=r"label 'c' has fewer than 3 texts after deduplication \(1\)"):
        prepare(multi)


def test_a_test_file_is_the_test_split_as_it_is():
    table = make_table([f"t{i}" for i in range(32)] + ["shared", "shared"], ["a", "b"] * 16 + ["b", "b"])
    test = make_table(["u1", "shared", "u2", "u1", "u3"], ["b", "b", "a", "b", "a"])
    p = prepare(table, split="0.7,0.1,0.2", test_table=test)
    # the file's rows in order, its duplicate removed, its labels in the training data's ids
    assert p.test.texts == ["u1", "shared", "u2", "u3"] and p.test.lines == [1, 2, 3, 5]
    assert p.label_map.decode(p.test.labels) == ["b", "b", "a", "a"]
    # the rest goes to train and validation only, 7 : 1, without the test file's texts
    assert (len(p.train), len(p.val)) == (28, 4)
    assert "shared" not in p.train.texts + p.val.texts
    assert p.report["test_texts_removed_from_training"] == 1 and p.report["test_source"] == test.source
    assert p.report["test_duplicates_removed"] == 1 and p.report["test_conflicting_rows_removed"] == 0
    assert p.report["splits"]["test"] == {"a": 2, "b": 2}
    # without dedupe both files stay as they are
    p = prepare(table, test_table=test, dedupe=False)
    assert len(p.test) == 5 and len(p.train) + len(p.val) == 34
    bad = make_table(["v1", "v2"], ["a", "c"])
    with pytest.raises(DataError, match=r"label 'c' \(line 2\) is not in the training data \(a, b\)"):
        prepare(table, test_table=bad)


def test_prepare_small_class_gets_one_per_split():
    t = make_table([f"t{i}" for i in range(103)], ["a"] * 100 + ["b"] * 3)
    p = prepare(t)
    for name in ("train", "val", "test"):
        assert p.report["splits"][name]["b"] == 1


def test_prepare_undersample_train_only():
    t = make_table([f"t{i}" for i in range(500)], ["a"] * 400 + ["b"] * 100)
    p = prepare(t, balance="undersample")
    assert p.report["splits"]["train"] == {"a": 70, "b": 70}
    assert p.report["undersampled"] == {"before": {"a": 280, "b": 70}, "after": {"a": 70, "b": 70}}
    assert p.report["splits"]["test"] == {"a": 80, "b": 20}


def test_max_texts_splits_a_stratified_sample_that_keeps_every_class_splittable():
    """--max-texts: about N texts, every class its share and at least one text per split, the
    same sample for the same seed; a test file stays whole; single-label only."""
    texts = [f"t{i}" for i in range(1000)]
    t = make_table(texts, ["a"] * 800 + ["b"] * 195 + ["c"] * 5)
    p = prepare(t, seed=7, max_texts=100)
    assert p.report["sampled"] == {"from": 1000, "to": 102}  # 'c': 0.5 of a share, topped up to 3
    counts = {c: sum(p.report["splits"][s][c] for s in ("train", "val", "test")) for c in "abc"}
    assert counts == {"a": 79, "b": 20, "c": 3} and all(p.report["splits"][s]["c"] == 1 for s in ("train", "val", "test"))
    assert prepare(t, seed=7, max_texts=100).train.texts == p.train.texts
    assert prepare(t, seed=8, max_texts=100).train.texts != p.train.texts
    assert set(p.train.texts + p.val.texts + p.test.texts) < set(texts)
    assert prepare(t, max_texts=1000).report["sampled"] is None  # no more texts than asked: all of them
    test = make_table(["u1", "u2", "u3"], ["a", "b", "c"])
    q = prepare(t, max_texts=100, test_table=test)
    assert q.test.texts == ["u1", "u2", "u3"] and len(q.train) + len(q.val) == 101  # "c": one per split, 2
    with pytest.raises(UserError, match="--max-texts must be a positive number"):
        prepare(t, max_texts=0)
    multi = make_table(texts[:60], [["x"], ["y"], ["x", "y"]] * 20)
    multi.multi_label = True
    with pytest.raises(UserError, match="--max-texts is not supported for multi-label"):
        prepare(multi, max_texts=30)


def test_prepare_multi_label():
    labels = [["x"], ["y"], ["x", "y"]] * 20
    t = make_table([f"t{i}" for i in range(60)], labels)
    t.multi_label = True
    p = prepare(t)
    assert p.label_map.multi_label
    assert len(p.train) + len(p.val) + len(p.test) == 60
    assert all(isinstance(y, list) for y in p.train.labels)
    with pytest.raises(UserError, match="multi-label"):
        prepare(t, balance="undersample")


def test_prepare_sms_undersample(sms):
    p = prepare(sms, balance="undersample", seed=123)
    assert p.report["splits"]["train"]["ham"] == p.report["splits"]["train"]["spam"] == 457


# ------------------------------------------------------------------------------------------
# Robustness: anything in a file gives a Table or a UserError, nothing else.

_FMTS = ["csv", "tsv", "jsonl", None]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=300), fmt=st.sampled_from(_FMTS))
def test_random_bytes_never_crash(tmp_path, content, fmt):
    p = tmp_path / "f.dat"
    p.write_bytes(content)
    try:
        t = read_table(p, fmt=fmt)
    except UserError:
        return
    assert len(t.texts) == len(t.labels) == len(t.lines) > 0


_alphabet = st.sampled_from(list('ab,\t"\n\r {}[]:x1é\\') + ["text", "label", '"text"', "\ufeff"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.lists(_alphabet, max_size=60).map("".join),
    fmt=st.sampled_from(_FMTS),
    quoting=st.sampled_from([None, True]),
)
def test_random_text_never_crashes(tmp_path, content, fmt, quoting):
    p = tmp_path / "f.dat"
    p.write_text(content, encoding="utf-8", newline="")
    try:
        t = read_table(p, fmt=fmt, quoting=quoting)
    except UserError:
        pass
    else:
        assert all(x.strip() for x in t.texts)
        assert len(t.texts) == len(t.labels) == len(t.lines)
    try:
        for chunk in iter_texts(p, fmt=fmt, chunk_size=3):
            assert all(isinstance(x, str) for x in chunk)
    except UserError:
        pass


def test_text_only_reading_keeps_the_id_columns_or_the_columns_named():
    """Which input columns `predict` carries beside each text: by default those whose one-word
    name holds id (or uid, guid, uuid) as a word, never a text column; `keep` names others."""
    from llmclassify.data.columns import _kept_columns

    cols = ["Tweet-ID", "text", "valid", "idea", "video_id", "user uuid", "label"]
    assert _kept_columns("f.csv", cols, None, ("text",)) == ("Tweet-ID", "video_id")
    assert _kept_columns("f.csv", ["id", "text"], None, ("id",)) == ()  # the text column itself is not kept
    assert _kept_columns("f.csv", cols, "none", ("text",)) == ()
    assert _kept_columns("f.csv", cols, "LABEL, idea,label", ("text",)) == ("label", "idea")
    assert _kept_columns("f.csv", ["a,b", "text"], "a,b", ("text",)) == ("a,b",)
    with pytest.raises(DataError, match="no column 'vid'"):
        _kept_columns("f.csv", cols, "vid", ("text",))
