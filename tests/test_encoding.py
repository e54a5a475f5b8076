"""--encoding: files that are not UTF-8 are read (train, evaluate, predict) when their encoding is
named; a wrong encoding name, or bytes the named encoding cannot decode, is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmclassify.data import detect_format, iter_records, iter_texts, load_dataset, read_table
from llmclassify.errors import DataError, UserError

from .cli_helpers import assert_one_line_error, cli

HAM = [f"café à midi {i}, d'accord?" for i in range(20)]
SPAM = [f"GAGNEZ un prix {i} maintenant, appelez 0800 – déjà réservé" for i in range(20)]


def latin1_csv(tmp_path: Path, name: str = "fr.csv", encoding: str = "latin-1") -> Path:
    rows = [(t, "ham") for t in HAM] + [(t.replace("–", "-"), "spam") for t in SPAM]
    body = "text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows)
    p = tmp_path / name
    p.write_bytes(body.encode(encoding))
    return p
def test_latin1_csv_needs_encoding_and_reads_with_it(tmp_path):
    p = latin1_csv(tmp_path)
    with pytest.raises(DataError, match=r"line 2: not valid UTF-8 \(byte 0xe9.*--encoding latin-1"):
        read_table(p)
    t = read_table(p, encoding="latin-1")
    assert t.texts[0] == HAM[0] and len(t) == 40
    assert load_dataset(p, encoding="latin1").texts == t.texts  # any spelling Python knows
    assert [x for chunk in iter_texts(p, encoding="latin-1") for x in chunk] == t.texts


def test_cp1252_and_utf16(tmp_path):
    p = tmp_path / "smart.tsv"
    p.write_bytes("label\ttext\nham\t“quoted” – ok\r\nspam\tWIN €5\n".encode("cp1252"))
    t = read_table(p, encoding="cp1252")
    assert t.texts == ["“quoted” – ok", "WIN €5"] and t.lines == [2, 3]
    # UTF-16: decoded as a stream (a line end is two bytes); CRLF stripped, a lone CR kept
    u = tmp_path / "u16.tsv"
    u.write_bytes("text\tlabel\r\nhéllo\rthere\ta\nbye\tb\n".encode("utf-16"))
    t = read_table(u, encoding="utf-16")
    assert t.texts == ["héllo\rthere", "bye"] and t.lines == [2, 3]
    with pytest.raises(DataError, match="is UTF-16; save it as UTF-8 or pass --encoding utf-16"):
        read_table(u)
    # sniffing a file without a known extension decodes it first
    nx = tmp_path / "u16data"
    nx.write_bytes("a\tb\n".encode("utf-16"))
    assert detect_format(nx, encoding="utf-16") == "tsv"
    txt = tmp_path / "u16.txt"
    txt.write_bytes("one\n\ntwo\n".encode("utf-16-le"))
    stats: dict = {}
    assert list(iter_records(txt, encoding="utf-16-le", stats=stats)) == [[(1, "one", {}), (3, "two", {})]]
    assert stats == {"blank_lines": 1}


def test_undecodable_bytes_name_the_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(b"text,label\nok,a\nbad \x81 byte,b\n")
    with pytest.raises(DataError, match=r"bad.csv, line 3: not valid cp1252 \(byte 0x81 at byte 5"):
        read_table(p, encoding="cp1252")
    odd = tmp_path / "odd.txt"
    odd.write_bytes("hello\n".encode("utf-16-le") + b"\x00")  # a truncated code unit
    with pytest.raises(DataError, match="not valid utf-16-le"):
        list(iter_texts(odd, encoding="utf-16-le"))


@pytest.mark.parametrize("name", ["nope", "base64", ""])
def test_wrong_encoding_name_is_one_line(tmp_path, name):
    p = latin1_csv(tmp_path)
    with pytest.raises(UserError, match=f"unknown text encoding '{name}'") as e:
        read_table(p, encoding=name)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="unknown text encoding"):
        load_dataset("sms-spam", encoding=name)


def test_builtin_data_set_is_utf8_whatever_the_encoding():
    assert load_dataset("sms-spam", encoding="latin-1").texts == load_dataset("sms-spam").texts


def test_cli_train_evaluate_predict_latin1(tmp_path, capsys, tiny_model_dir):
    data = latin1_csv(tmp_path)
    out = tmp_path / "run"
    args = ["train", "--model", tiny_model_dir, "--data", data, "-o", out, "--epochs", "1",
            "--batch-size", "8", "--quiet"]
    rc, _, err = cli(capsys, *args)
    assert_one_line_error(rc, err, "fr.csv, line 2: not valid UTF-8", "--encoding")
    assert_one_line_error(*cli(capsys, *args, "--encoding", "klingon")[::2], "unknown text encoding 'klingon'")
    rc, stdout, err = cli(capsys, *args, "--encoding", "latin-1")
    assert rc == 0, err
    assert "run saved to" in stdout
    assert json.loads((out / "config.json").read_text())["train_config"]["encoding"] == "latin-1"

    rc, stdout, err = cli(capsys, "evaluate", out, "--data", data, "--encoding", "latin-1")
    assert rc == 0, err
    assert_one_line_error(*cli(capsys, "evaluate", out, "--data", data)[::2], "not valid UTF-8")

    texts = tmp_path / "in.txt"
    texts.write_bytes("café gratuit\nà bientôt\n".encode("latin-1"))
    preds = tmp_path / "preds.jsonl"
    rc, _, err = cli(capsys, "predict", out, "--input", texts, "--encoding", "latin-1", "-o", preds)
    assert rc == 0, err
    assert [json.loads(x)["line"] for x in preds.read_text().splitlines()] == [1, 2]
    assert_one_line_error(*cli(capsys, "predict", out, "--input", texts)[::2], "in.txt, line 1: not valid UTF-8")
    assert_one_line_error(*cli(capsys, "predict", out, "--input", texts, "--encoding", "klingon")[::2],
                   "unknown text encoding 'klingon'")
