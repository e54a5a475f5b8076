"""Bad input and faults (issue 8, part A), driven through the real CLI.

Every bad input either stops with ONE line `llmclassify: error: <file>, line N: ...` and exit
status 2 (no traceback unless --debug), or, where the input is usable, goes on with a warning
that gives counts. Most cases run `llmclassify.cli.main` in-process; a few run
`python -m llmclassify` to check the real exit status and stderr. docs/errors.md lists what the
user sees for each input.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmclassify.cli import main

from .cli_helpers import assert_one_line_error, cli

SRC = Path(__file__).resolve().parents[1] / "src" / "llmclassify"

HAM = [f"see you at lunch {i}, ok?" for i in range(20)]
SPAM = [f"WIN a free prize {i} now, call 0800" for i in range(20)]
LONG = " ".join(["word"] * 400)  # about 400 tokens: over the tiny model's 256


def rows(n_ham: int = 20, n_spam: int = 20) -> list[tuple[str, str]]:
    return [(t, "ham") for t in HAM[:n_ham]] + [(t, "spam") for t in SPAM[:n_spam]]


def csv_text(pairs, header: str = "text,label", eol: str = "\n") -> str:
    out = [header] if header else []
    out += [f'"{t}",{lab}' if "," in t else f"{t},{lab}" for t, lab in pairs]
    return eol.join(out) + eol


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p
def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("llmclassify: warning: ")]


# ------------------------------------------------------------------------------------------
# Inputs that cannot be used: one line, exit 2, for train and evaluate alike

BAD_LABELLED = [
    # (file name, content, extra CLI args, substrings of the one-line message)
    ("empty.csv", b"", [], ["empty.csv: is empty"]),
    ("header_only.csv", "text,label\n", [], ["header_only.csv: has a header row but no data rows"]),
    ("lable.csv", csv_text(rows(), header="text,lable"), [],
     ["lable.csv: no label column found", "did you mean 'lable'?", "--label-column"]),
    ("txt.csv", csv_text(rows(), header="txt,label"), [],
     ["txt.csv: no text column found", "did you mean 'txt'?", "--text-column"]),
    ("flag.csv", csv_text(rows()), ["--label-column", "labl"],
     ["flag.csv: no column 'labl'; did you mean 'label'?"]),
    ("blank_texts.csv", "text,label\n   ,ham\n,spam\n", [],
     ["blank_texts.csv: no usable rows: 2 with an empty text, 0 with no label"]),
    ("no_labels.csv", "text,label\nhello,\nbye,  \n", [],
     ["no_labels.csv: no usable rows: 0 with an empty text, 2 with no label in column 'label'"]),
    ("utf8.csv", b"text,label\nhello,ham\ncaf\xe9 au lait,spam\n", [],
     ["utf8.csv, line 3: not valid UTF-8 (byte 0xe9 at byte 4 of the line)"]),
    ("utf16.csv", "text,label\nhello,ham\n".encode("utf-16"), [], ["utf16.csv, line 1: is UTF-16"]),
    ("quote_eof.csv", "text,label\n" + "".join(f"text {i},{'ham' if i % 2 else 'spam'}\n" for i in range(10))
     + '"an open quote,ham\n' + "".join(f"more {i},spam\n" for i in range(30)), [],
     ["quote_eof.csv, line 12: unbalanced double quote", "lines 12-42 would be read as one text"]),
    ("quote_mid.csv", csv_text(rows()[:10]) + '"an open quote,ham\n' + csv_text(rows()[10:], header=""), [],
     ["quote_mid.csv, line 12: expected 2 fields, found 3 (an unbalanced double quote?"]),
    ("fields.csv", "text,label\nhello,ham\nhello, world,spam\n", [],
     ["fields.csv, line 3: expected 2 fields, found 3 (a comma inside a text needs double quotes)"]),
    ("bad.jsonl", '{"text": "a", "label": "ham"}\n{"text": "b", "label": \n', [],
     ["bad.jsonl, line 2: not valid JSON"]),
    ("texts.txt", "just a text\nanother\n", [], ["texts.txt: plain text has one text per line and no labels"]),
]

TRAIN_ONLY = [
    ("one_class.csv", csv_text(rows(n_spam=0)), [],
     ["one_class.csv: only one class ('ham') in label column 'label'", "needs at least two"]),
    ("few.csv", csv_text(rows(n_spam=1)), [],  # two classes, one too small to split: one left
     ["few.csv: only one class ('ham') in label column 'label'", "leaving out 1 with too few texts ('spam' 1)"]),
    ("three.csv", "text,label\n" + "".join(f"text number {i},{('a', 'b', 'c')[i % 3]}\n" for i in range(30)),
     ["--tune-threshold", "f1"], ["--tune-threshold f1 needs two classes; the data has 3"]),
]


@pytest.mark.parametrize("name,content,extra,needles", BAD_LABELLED + TRAIN_ONLY,
                         ids=[c[0] for c in BAD_LABELLED + TRAIN_ONLY])
def test_train_refuses_unusable_data(tmp_path, capsys, tiny_model_dir, name, content, extra, needles):
    data = write(tmp_path, name, content)
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "train", "--model", tiny_model_dir, "--data", data, "-o", out, "--quiet", *extra)
    assert_one_line_error(rc, err, *needles)
    assert not out.exists() or not any(out.iterdir()), "a failed run wrote files"


@pytest.mark.parametrize("name,content,extra,needles", BAD_LABELLED, ids=[c[0] for c in BAD_LABELLED])
def test_evaluate_refuses_unusable_data(tmp_path, capsys, tiny_run, name, content, extra, needles):
    data = write(tmp_path, name, content)
    rc, _, err = cli(capsys, "evaluate", tiny_run, "--data", data, *extra)
    assert_one_line_error(rc, err, *needles)


def test_evaluate_unknown_label(tmp_path, capsys, tiny_run):
    data = write(tmp_path, "eggs.csv", "text,label\nhello,ham\nbye,eggs\n")
    rc, _, err = cli(capsys, "evaluate", tiny_run, "--data", data)
    assert_one_line_error(rc, err, "eggs.csv: label 'eggs' was not among the run's labels (ham, spam)")


# ------------------------------------------------------------------------------------------
# Usable inputs: train goes on, and says what it skipped or cut, with counts


def test_train_crlf_and_bom_read_like_plain_utf8(tmp_path, capsys, tiny_model_dir):
    data = write(tmp_path, "crlf_bom.csv", b"\xef\xbb\xbf" + csv_text(rows(), eol="\r\n").encode())
    out = tmp_path / "run"
    rc, stdout, err = cli(capsys, "train", "--model", tiny_model_dir, "--data", data, "-o", out,
                          "--epochs", "1", "--quiet")
    assert rc == 0, err
    assert warnings_of(err) == []
    split = json.loads((out / "split.json").read_text())
    texts = {t for s in ("train", "val", "test") for t in split[s]["texts"]}
    assert texts == set(HAM + SPAM)  # no "\r" kept, no BOM glued to the header or a text
    assert split["labels"] == ["ham", "spam"]


def test_train_skips_blank_rows_and_truncates_long_texts_with_counts(tmp_path, capsys, tiny_model_dir):
    pairs = rows()
    pairs[0] = (pairs[0][0] + " " + LONG, "ham")
    pairs[-1] = (pairs[-1][0] + " " + LONG, "spam")
    data = write(tmp_path, "d.csv", csv_text(pairs) + "   ,ham\n,spam\nno label here,\n")
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "train", "--model", tiny_model_dir, "--data", data, "-o", out,
                     "--epochs", "1", "--quiet")
    assert rc == 0, err
    warns = warnings_of(err)
    assert any("d.csv: skipped 3 rows: 2 with an empty text, 1 with no label (first at line 42)" in w
               for w in warns), warns
    trunc = [w for w in warns if "truncated to 256 tokens" in w]
    assert len(trunc) == 1
    counts = json.loads((out / "metrics.json").read_text())["truncated"]
    assert sum(counts.values()) == 2
    assert trunc[0].endswith(", ".join(f"{s} {n}" for s, n in counts.items()))


def test_train_tsv_keeps_unbalanced_quotes_literally(tmp_path, capsys, tiny_model_dir):
    pairs = rows()
    pairs[3] = ('"an open quote and more', "ham")
    data = write(tmp_path, "d.tsv", "".join(f"{lab}\t{t}\n" for t, lab in pairs))
    out = tmp_path / "run"
    rc, _, err = cli(capsys, "train", "--model", tiny_model_dir, "--data", data, "-o", out,
                     "--epochs", "1", "--quiet")
    assert rc == 0, err
    split = json.loads((out / "split.json").read_text())
    texts = [t for s in ("train", "val", "test") for t in split[s]["texts"]]
    assert len(texts) == 40 and '"an open quote and more' in texts  # no rows merged


def test_train_never_overwrites_an_existing_run_dir(tmp_path, capsys, tiny_model_dir, small_data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    rc, _, err = cli(capsys, "train", "--model", tiny_model_dir, "--data", small_data, "-o", out, "--quiet")
    assert_one_line_error(rc, err, "output directory exists and is not empty (use --overwrite to replace it)")
    assert (out / "keep.txt").read_text() == "precious"
    f = write(tmp_path, "file", "x")
    rc, _, err = cli(capsys, "train", "--model", tiny_model_dir, "--data", small_data, "-o", f, "--quiet")
    assert_one_line_error(rc, err, "exists and is not a directory")


# ------------------------------------------------------------------------------------------
# Usable inputs: evaluate


def test_evaluate_crlf_bom_gives_the_same_metrics(tmp_path, capsys, tiny_run):
    plain = write(tmp_path, "plain.csv", csv_text(rows()))
    odd = write(tmp_path, "odd.csv", b"\xef\xbb\xbf" + csv_text(rows(), eol="\r\n").encode())
    got = []
    for f in (plain, odd):
        rc, _, err = cli(capsys, "evaluate", tiny_run, "--data", f, "--json", tmp_path / f"{f.stem}.json")
        assert rc == 0 and warnings_of(err) == [], err
        got.append(json.loads((tmp_path / f"{f.stem}.json").read_text()))
    assert got[0] == got[1]


def test_evaluate_warns_one_class_long_texts_and_skipped_rows(tmp_path, capsys, tiny_run):
    pairs = rows(n_spam=0)
    pairs[0] = (LONG, "ham")
    data = write(tmp_path, "d.csv", csv_text(pairs) + ",ham\n")
    rc, out, err = cli(capsys, "evaluate", tiny_run, "--data", data, "--json", tmp_path / "m.json")
    assert rc == 0, err
    warns = warnings_of(err)
    assert any("d.csv: skipped 1 row: 1 with an empty text (first at line 22)" in w for w in warns), warns
    assert any("d.csv: 1 of the run's 2 labels never occur (spam)" in w for w in warns), warns
    assert any("d.csv: 1 of 20 texts are longer than 256 tokens and were truncated" in w for w in warns), warns
    assert json.loads((tmp_path / "m.json").read_text())["truncated"] == 1


def test_evaluate_output_path_checked_before_work(tmp_path, capsys, tiny_run):
    rc, _, err = cli(capsys, "evaluate", tiny_run, "--json", tmp_path / "no" / "m.json")
    assert_one_line_error(rc, err, "m.json: folder", "does not exist")


# ------------------------------------------------------------------------------------------
# predict


BAD_PREDICT = [
    ("utf8.txt", b"hello\ncaf\xe9\n", [], ["utf8.txt, line 2: not valid UTF-8"]),
    ("quote.csv", 'text\nfine\n"never closed\nmore\n', [], ["quote.csv, line 3: unbalanced double quote"]),
    ("col.csv", "txt,label\nhello,1\n", [], ["col.csv: no text column found", "did you mean 'txt'?"]),
    ("col2.csv", "text,id\nhello,1\n", ["--text-column", "tex"], ["col2.csv: no column 'tex'; did you mean 'text'?"]),
    ("utf16.txt", "hello\n".encode("utf-16"), [], ["utf16.txt, line 1: is UTF-16"]),
    ("wide.csv", "a,b,c\n1,2,3\n", [], ["wide.csv, line 1: has 3 columns and no header row"]),
    ("bad.jsonl", '{"text": "a"}\n[1, 2]\n', [], ["bad.jsonl, line 2: expected a JSON object per line"]),
]


@pytest.mark.parametrize("name,content,extra,needles", BAD_PREDICT, ids=[c[0] for c in BAD_PREDICT])
def test_predict_refuses_unusable_input(tmp_path, capsys, tiny_run, name, content, extra, needles):
    f = write(tmp_path, name, content)
    out = tmp_path / "out.jsonl"
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", out, *extra)
    assert_one_line_error(rc, err, *needles)
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl*")), "partial output left behind"


def test_predict_missing_paths(tmp_path, capsys, tiny_run):
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", tmp_path / "nope.txt")
    assert_one_line_error(rc, err, "nope.txt: no such file")
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", tmp_path)  # a folder: each file below it a text
    assert_one_line_error(rc, err, "is a folder without files")
    f = write(tmp_path, "t.txt", "hello\n")
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", tmp_path / "no" / "out.jsonl")
    assert_one_line_error(rc, err, "out.jsonl: folder", "does not exist")
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", tmp_path)
    assert_one_line_error(rc, err, "is a directory; give a file name for the output")
    rc, _, err = cli(capsys, "predict", tmp_path / "norun", "hello")
    assert_one_line_error(rc, err, "norun: no such run directory")
    rc, _, err = cli(capsys, "predict", tmp_path, "hello")
    assert_one_line_error(rc, err, "config.json: missing (not a run directory, or the run did not finish)")


def test_predict_flag_values(tmp_path, capsys, tiny_run):
    for args in (["--threshold", "2"], ["--threshold", "x"], ["--batch-size", "0"]):
        with pytest.raises(SystemExit) as e:
            main(["predict", str(tiny_run), "hello", *args])
        assert e.value.code == 2
        assert "error: argument" in capsys.readouterr().err


def test_predict_rows_line_up_and_warnings_count(tmp_path, capsys, tiny_run):
    lines = ["hello there", "", "   ", "WIN a prize now", LONG, "ok", ""]
    f = write(tmp_path, "in.txt", "\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    rc, stdout, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", out)
    assert rc == 0, err
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["line"] for r in got] == [1, 4, 5, 6]  # blank lines are not rows; lines say where
    assert [r["truncated"] for r in got] == [False, False, True, False]
    assert "wrote 4 predictions" in stdout
    warns = warnings_of(err)
    assert any("in.txt: skipped 3 blank lines (each output row records its input line)" in w for w in warns)
    assert any("in.txt: 1 of 4 texts are longer than 256 tokens and were truncated (first at line 5" in w
               for w in warns), warns
    # a CSV row with an empty text field is a row: scored, counted, warned
    f = write(tmp_path, "in.csv", "id,text\n1,hello\n2,\n3,bye\n")
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", out)
    assert rc == 0, err
    assert [json.loads(x)["line"] for x in out.read_text().splitlines()] == [2, 3, 4]
    assert any("in.csv: 1 of 3 texts are empty (first at line 3)" in w for w in warnings_of(err))
    # a misspelled header that names no known column is read as data, with a warning
    f = write(tmp_path, "hdr.csv", "txt,id\nhello,1\nbye,2\n")
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", out)
    assert rc == 0, err
    assert len(out.read_text().splitlines()) == 3
    assert any("hdr.csv: line 1 ('txt,id') is read as data, not a header: 'txt' is not a known column name "
               "(did you mean 'text'?)" in w for w in warnings_of(err)), err
    # printed output marks truncation too
    rc, stdout, err = cli(capsys, "predict", tiny_run, LONG, "short")
    assert rc == 0 and stdout.splitlines()[0].endswith("\t(truncated)")


def test_predict_output_table_by_suffix(tmp_path, capsys, tiny_run):
    """`-o x.csv` / `x.tsv` writes a table (a column per class's probability) holding what the
    JSON lines hold, row for row; any other name JSON lines."""
    import csv

    f = write(tmp_path, "in.csv", 'id,text\n1,hello there\n2,"WIN a prize, now"\n3,\n')
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", tmp_path / "p.jsonl")
    assert rc == 0, err
    want = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    labels = list(want[0]["probabilities"])
    for name, delimiter in (("p.csv", ","), ("p.TSV", "\t")):
        rc, stdout, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", tmp_path / name)
        assert rc == 0 and "wrote 3 predictions" in stdout, err
        with open(tmp_path / name, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter=delimiter))
        assert list(rows[0]) == ["line", "id", "label", *(f"p_{lab}" for lab in labels), "truncated"]
        assert [int(r["line"]) for r in rows] == [w["line"] for w in want] == [2, 3, 4]
        assert [r["id"] for r in rows] == [w["id"] for w in want] == ["1", "2", "3"]
        assert [r["label"] for r in rows] == [w["label"] for w in want]
        for r, w in zip(rows, want):
            assert [float(r[f"p_{lab}"]) for lab in labels] == pytest.approx(list(w["probabilities"].values()),
                                                                                 abs=1e-6)
    assert not list(tmp_path.glob(".p.*")), "temporary file left behind"


def test_predict_crlf_bom_same_as_plain(tmp_path, capsys, tiny_run):
    texts = HAM[:5] + SPAM[:5]
    outs = []
    for name, data in (("plain.txt", "\n".join(texts).encode() + b"\n"),
                       ("odd.txt", b"\xef\xbb\xbf" + "\r\n".join(texts).encode() + b"\r\n")):
        f = write(tmp_path, name, data)
        rc, _, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", tmp_path / f"{name}.jsonl")
        assert rc == 0, err
        outs.append((tmp_path / f"{name}.jsonl").read_text())
    assert outs[0] == outs[1]


def _tmp_leftovers(d: Path) -> list[Path]:
    return [p for p in d.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


@pytest.mark.parametrize("exc,code", [(KeyboardInterrupt, 130), (RuntimeError, 1)])
def test_predict_interrupted_leaves_no_partial_output(tmp_path, capsys, tiny_run, monkeypatch, exc, code):
    from llmclassify.predict import Classifier

    f = write(tmp_path, "in.txt", "".join(f"text number {i}\n" for i in range(2100)))  # 3 chunks of 1024
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    real, calls = Classifier.predict, []

    def flaky(self, texts, **kw):
        calls.append(len(texts))
        if len(calls) == 3:  # two chunks already written to the temporary file
            raise exc("boom")
        return real(self, texts, **kw)

    monkeypatch.setattr(Classifier, "predict", flaky)
    rc, _, err = cli(capsys, "predict", tiny_run, "--input", f, "-o", out)
    assert rc == code and len(err.splitlines()) == 1, err
    assert out.read_text() == "previous results\n"  # untouched: the new file was never renamed in
    assert _tmp_leftovers(tmp_path) == []


def test_predict_records_holds_one_chunk_at_a_time(tiny_run):
    from llmclassify.predict import Classifier, StreamReport

    clf = Classifier.load(tiny_run)
    pulled = yielded = lead = 0

    def source():
        nonlocal pulled
        for i in range(1, 2001):
            pulled += 1
            yield i, f"text {i}", {"id": i}

    report = StreamReport()
    for line, kept, _pred in clf.predict_records(source(), report=report, chunk=100):
        yielded += 1
        assert line == yielded and kept == {"id": line}
        lead = max(lead, pulled - yielded)
    assert yielded == report.rows == 2000 and lead < 100


_MEMORY_CHILD = r"""
import sys, torch
torch.set_num_threads(1)  # steadier timing on a shared machine
from llmclassify.cli import main

def hwm_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])

run, warm, big, out = sys.argv[1:5]
assert main(["predict", run, "--input", warm, "-o", out, "--batch-size", "256"]) == 0
before = hwm_kib()
assert main(["predict", run, "--input", big, "-o", out, "--batch-size", "256"]) == 0
print("HWM_GROWTH_KIB", hwm_kib() - before)
"""


def test_predict_streams_a_big_file_with_flat_memory(tmp_path, tiny_run):
    # 100,000 rows: holding them (texts, ids, predictions) costs ~50 MB here; streaming ~10 MB.
    n = 100_000
    words = ["hello", "free", "prize", "call", "now", "see", "you", "later", "ok", "win", "cash"]
    big = tmp_path / "big.txt"
    with open(big, "w") as fh:
        for i in range(n):
            fh.write("\n" if i % 1000 == 999 else " ".join(words[(i + k) % 11] for k in range(1 + i % 7)) + "\n")
    warm = tmp_path / "warm.txt"
    warm.write_text("".join(big.read_text().splitlines(keepends=True)[:5000]))
    child = tmp_path / "child.py"
    child.write_text(_MEMORY_CHILD)
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, str(child), str(tiny_run), str(warm), str(big), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    growth_mb = int(re.search(r"HWM_GROWTH_KIB (-?\d+)", r.stdout).group(1)) / 1024
    assert growth_mb < 30, f"peak RSS grew {growth_mb:.1f} MB predicting {n} rows"
    got = out.read_text().splitlines()
    assert len(got) == n - n // 1000
    want_lines = [i + 1 for i in range(n) if i % 1000 != 999]
    assert [json.loads(x)["line"] for x in got[:2000]] == want_lines[:2000]
    assert json.loads(got[-1])["line"] == want_lines[-1]


# ------------------------------------------------------------------------------------------
# Safe loading: run directories and caches are read as JSON and safetensors only


UNSAFE = [r"\btorch\.load\s*\(", r"\bimport\s+pickle\b", r"\bpickle\.loads?\s*\(", r"weights_only\s*=\s*False",
          r"allow_pickle\s*=\s*True", r"\bnp\.load\s*\(", r"\bnumpy\.load\s*\(", r"\bimport\s+(dill|joblib|cloudpickle)\b",
          r"\bmarshal\.loads?\s*\(", r"\byaml\.(unsafe_)?load\s*\(", r"torch\.serialization"]


def test_no_pickle_anywhere_in_the_package():
    hits = []
    for f in SRC.rglob("*.py"):
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            hits += [f"{f.relative_to(SRC)}:{i}: {line.strip()}" for pat in UNSAFE if re.search(pat, code)]
    assert hits == []


class _Booby:
    """Unpickling this creates a marker file: proof that nothing was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_in_place_of_weights_is_refused_and_never_unpickled(tmp_path, capsys, tiny_run):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_run, bad)
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps(_Booby(marker))
    (bad / "classifier.safetensors").write_bytes(payload)
    rc, _, err = cli(capsys, "predict", bad, "hello")
    assert_one_line_error(rc, err, "classifier.safetensors: checksum does not match config.json "
                                   "(file truncated or altered)")
    # even with the checksum forged to match, the bytes are parsed as safetensors only
    import hashlib

    cfg = json.loads((bad / "config.json").read_text())
    cfg["weights"]["sha256"] = hashlib.sha256(payload).hexdigest()
    (bad / "config.json").write_text(json.dumps(cfg))
    rc, _, err = cli(capsys, "predict", bad, "hello")
    assert_one_line_error(rc, err, "classifier.safetensors: not a valid safetensors file")
    # and a config naming another kind of weights file is refused before reading it
    shutil.copy(bad / "classifier.safetensors", bad / "pytorch_model.bin")
    cfg["weights"]["file"] = "pytorch_model.bin"
    (bad / "config.json").write_text(json.dumps(cfg))
    rc, _, err = cli(capsys, "predict", bad, "hello")
    assert_one_line_error(rc, err, "weights file 'pytorch_model.bin' is not a .safetensors file")
    assert not marker.exists()


def test_corrupt_run_files_are_one_line_errors(tmp_path, capsys, tiny_run):
    for name, content, needle in [
        ("config.json", "{not json", "config.json: not valid JSON"),
        ("metrics.json", "[1, 2", "metrics.json: not valid JSON"),
        ("tokenizer.json", "{}", "tokenizer.json: cannot read tokenizer"),
        ("split.json", '{"train": 1}', "split.json: not a valid split file"),
    ]:
        bad = tmp_path / name
        shutil.copytree(tiny_run, bad)
        (bad / name).write_text(content)
        rc, _, err = cli(capsys, "evaluate", bad)
        assert_one_line_error(rc, err, needle)


# ------------------------------------------------------------------------------------------
# The real process: exit status 2, one line on stderr, no traceback; --debug shows it


def _run(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "llmclassify", *map(str, args)], input=stdin,
                          capture_output=True, timeout=300, env=env)


def test_process_exit_status_and_debug_traceback(tmp_path, tiny_model_dir):
    data = write(tmp_path, "bad.csv", b"text,label\nhello,ham\ncaf\xe9,spam\n")
    r = _run("train", "--model", tiny_model_dir, "--data", data, "-o", tmp_path / "run", "--quiet")
    err = r.stderr.decode()
    assert r.returncode == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad.csv, line 3: not valid UTF-8" in err
    r = _run("--debug", "train", "--model", tiny_model_dir, "--data", data, "-o", tmp_path / "run2", "--quiet")
    err = r.stderr.decode()
    assert r.returncode != 0 and "Traceback" in err and "DataError" in err and "bad.csv, line 3" in err


def test_process_predict_from_stdin(tmp_path, tiny_run):
    r = _run("predict", tiny_run, "--input", "-", stdin=b"\xef\xbb\xbfhello\r\n\r\nWIN cash now\r\n")
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, err
    assert len(out.splitlines()) == 2
    assert "llmclassify: warning: <stdin>: skipped 1 blank line" in err
    r = _run("predict", tiny_run, "--input", "-", stdin=b"fine\n\xffbad\n")
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "<stdin>, line 2: not valid UTF-8" in err


# ------------------------------------------------------------------------------------------
# The server under faults: bad requests mixed into load never stop it; memory stays flat


def test_server_soak_with_bad_requests(tiny_run, tmp_path):
    """benchmarks/soak_test.py, short: 2,000 requests (8% bad, 1% hang-ups) on a real uvicorn
    server on loopback. The 10,000-request figures are in docs/errors.md."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "soak_test.py"
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, str(script), "--run", str(tiny_run), "--requests", "2000",
                        "--warmup", "300", "--max-seconds", "240", "--json", str(out)],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    run = rep["run"]
    assert run["issued"] == 2000 and run["valid_errors"] == 0 and run["bad_unexpected"] == 0
    assert run["bad"] > 50 and run["valid_ok"] == run["valid"]
    assert rep["health_after"]["status"] == "ok"
    assert rep["rss_mb"]["growth"] < 50


def test_one_failing_request_does_not_fail_its_micro_batch(tiny_run):
    """A request the model fails on gets its 500 alone; valid requests gathered into the same
    micro-batch still get their answers. A lone-surrogate text is refused before the model."""
    import asyncio

    import httpx

    from llmclassify.predict import Classifier
    from llmclassify.serve import create_app

    clf = Classifier.load(tiny_run)

    class FailsOnBoom:
        labels, max_length = clf.labels, clf.max_length

        def info(self):
            return clf.info()

        def predict(self, texts, **kw):
            if any("BOOM" in t for t in texts):
                raise RuntimeError("model blew up")
            return clf.predict(texts, **kw)

    app = create_app(FailsOnBoom(), batch_max=32, batch_wait_ms=100)
    bodies = [{"texts": [f"hello {i}", f"prize {i}"]} for i in range(6)]
    bodies.insert(3, {"texts": ["BOOM"]})
    bodies.insert(5, {"texts": ["fine", "\ud800"]})

    async def fire():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            # json.dumps escapes the lone surrogate as \ud800, as a careless client would send it
            return await asyncio.gather(*[ac.post("/v1/classify", content=json.dumps(b),
                                                  headers={"content-type": "application/json"})
                                          for b in bodies])

    responses = asyncio.run(fire())
    status = [r.status_code for r in responses]
    assert status == [200, 200, 200, 500, 200, 422, 200, 200], [r.text for r in responses]
    assert "texts[1]: not valid Unicode" in responses[5].json()["error"]
    assert app.state.batcher.stats.batches < 6  # the valid ones really were batched together


@pytest.mark.parametrize("field, value, flag", [("long_texts", "tail", "--long-texts"), ("data_format", "xml", "--format"),
                                                ("trunk_dtype", "fp8", "--trunk-dtype"),
                                                ("tune_threshold", "recall", "--tune-threshold")])
def test_a_setting_outside_its_choices_names_the_flag(field, value, flag):
    """TrainConfig built in code (the estimator, tests) checks every field with choices as the
    CLI's parser does, and names the flag."""
    from llmclassify.errors import UserError
    from llmclassify.train import TrainConfig

    with pytest.raises(UserError, match=f"unknown {flag} '{value}' \\(choose from "):
        TrainConfig(**{field: value})
