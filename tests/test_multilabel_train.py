"""Multi-label end to end (issue 6): a label column with several labels per text trains with
sigmoid + BCE, tunes one threshold per label on validation, and predict / evaluate / serve
return label sets that follow those thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llmclassify.cli import main
from llmclassify.data import load_dataset
from llmclassify.predict import Classifier, evaluate_run, write_predictions
from llmclassify.train import train

from .conftest import tiny_train_config

WORDS = ["alpha", "beta"]


def write_multilabel(path: Path, sep: str = "|") -> Path:
    """SMS texts, each followed by a marker: ' alpha', ' beta', both or none; the labels say
    which markers the text carries (A, B, both or none), so they can be learnt."""
    t = load_dataset("sms-spam")
    rows = []
    for i, text in enumerate(t.texts[:240]):
        k = i % 4
        marks = [w for j, w in enumerate(WORDS) if k & (1 << j)]
        labels = [w[0].upper() for w in marks] or ["none"]
        rows.append(f"{sep.join(labels)}\t{text.replace(chr(9), ' ')} {' '.join(marks)}".rstrip() + "\n")
    path.write_text("".join(rows))
    return path


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory, tiny_model_dir) -> Path:
    d = tmp_path_factory.mktemp("ml")
    data = write_multilabel(d / "ml.tsv")
    out = d / "run"
    train(tiny_train_config(tiny_model_dir, data, out, label_sep="|", trainable="all", epochs=6, lr=3e-3,
                            batch_size=8))
    return out


def test_multilabel_run_learns_and_records_per_label_thresholds(ml_run):
    cfg = json.loads((ml_run / "config.json").read_text())
    assert cfg["multi_label"] is True
    assert cfg["labels"] == ["A", "B", "none"]
    thr = cfg["threshold"]
    assert isinstance(thr, list) and len(thr) == 3 and all(0 < t < 1 for t in thr)
    m = json.loads((ml_run / "metrics.json").read_text())
    test = m["splits"]["test"]
    assert set(test["per_label"]) == {"A", "B", "none"}
    assert test["accuracy"] == test["subset_accuracy"]
    # The markers are learnable: far above chance (random decisions give micro-F1 about 0.4).
    assert test["micro_f1"] > 0.85, test
    history = [json.loads(x) for x in (ml_run / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_multilabel_predict_follows_thresholds_and_reload(ml_run, tmp_path):
    clf = Classifier.load(ml_run)
    texts = ["Ok see you later alpha beta", "Ok see you later beta", "Ok see you later"]
    preds = clf.predict(texts)
    thr = clf.thresholds()
    for p in preds:
        assert p.labels == [lab for lab, t in zip(clf.labels, thr) if p.probabilities[lab] >= t]
        assert p.label == max(p.probabilities, key=p.probabilities.get)
    # independent sigmoids: probabilities need not sum to one, and match the model's logits
    ids, _ = clf.encode(texts[:1])
    from llmclassify.tokenizer import pad_batch

    x, mask = pad_batch(ids, clf.tokenizer.pad_id, side="right")
    with torch.inference_mode():
        expect = torch.sigmoid(clf.model(x, mask))[0]
    got = torch.tensor([preds[0].probabilities[lab] for lab in clf.labels])
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6)
    # one threshold for every label overrides the tuned ones
    low = clf.predict(texts, threshold=0.0)
    assert all(p.labels == clf.labels for p in low)
    out = tmp_path / "p.jsonl"
    write_predictions(out, preds)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["labels"] for r in rows] == [p.labels for p in preds]
    table = tmp_path / "p.csv"  # a table: the decision's labels joined in one cell
    write_predictions(table, preds)
    import csv

    with open(table, newline="") as fh:
        cells = [r["labels"] for r in csv.DictReader(fh)]
    assert cells == ["|".join(p.labels) for p in preds]


def test_multilabel_evaluate_on_file_and_split(ml_run, tmp_path):
    name, m = evaluate_run(ml_run)
    saved = json.loads((ml_run / "metrics.json").read_text())["splits"]["test"]
    assert name == "test"
    assert m["micro_f1"] == pytest.approx(saved["micro_f1"], abs=1e-9)
    data = write_multilabel(tmp_path / "ml.tsv")
    _, mf = evaluate_run(ml_run, data=str(data))
    assert mf["n"] == 240 and 0 <= mf["subset_accuracy"] <= 1


def test_multilabel_cli_and_refusals(tmp_path, tiny_model_dir, capsys):
    data = write_multilabel(tmp_path / "ml.tsv", sep=",")
    out = tmp_path / "run"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(data), "--label-sep", ",",
                 "--epochs", "1", "--output", str(out), "--quiet"]) == 0
    assert "subset accuracy" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["labels"] == ["A", "B", "none"]
    bad = tmp_path / "bad"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(data), "--label-sep", ",",
                 "--calibrate", "--output", str(bad), "--quiet"]) == 2
    assert "single-label" in capsys.readouterr().err
    assert not bad.exists()


def test_multilabel_serve_returns_label_sets(ml_run):
    from fastapi.testclient import TestClient

    from llmclassify.serve import create_app

    clf = Classifier.load(ml_run)
    with TestClient(create_app(clf)) as client:
        r = client.post("/v1/classify", json={"texts": ["hello alpha", "hello"]})
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        expect = clf.predict(["hello alpha", "hello"])
        assert [x["labels"] for x in res] == [p.labels for p in expect]
        r = client.post("/v1/classify", json={"texts": ["hello"], "threshold": 0.0})
        assert r.json()["results"][0]["labels"] == clf.labels
