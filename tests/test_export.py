"""Issue 17: export to Hugging Face transformers and ONNX, and the scikit-learn estimator.

Parity on tiny random GPT-2 and Llama runs: the HF export through AutoModelForSequenceClassification
and the pipeline, and the ONNX export through onnxruntime, give the run's probabilities to 1e-4,
batched with padding and one by one, with identical labels. Runs the formats cannot express are
refused with one line; `predict` and `serve` take an ONNX directory as they take a run; the
estimator clones, cross-validates and saves to a run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmclassify.cli import main
from llmclassify.export import export_run
from llmclassify.predict import Classifier, open_classifier

from .cli_helpers import assert_one_line_error, cli
from .conftest import tiny_train_config
from .tiny import tiny_llama_hf

SRC = Path(__file__).resolve().parents[1] / "src"
LONG = " ".join(["word"] * 300)  # cut at the run's max length (256 tokens for GPT-2, 64 for Llama)
EXTRA = [LONG, "ok", "URGENT! Call 0800 123 now to claim your prize", "Are we still on for lunch?"]


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, small_data) -> Path:
    """Tiny Llama whose tokenizer adds BOS, fine-tuned with LoRA (merged on export), a head
    without bias and a calibrated temperature (folded into the score)."""
    from llmclassify.train import train

    d = tmp_path_factory.mktemp("llama")
    model_dir, _ = tiny_llama_hf(d, tokenizer=True)
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    (model_dir / "tokenizer_config.json").write_text(json.dumps(cfg | {"add_bos_token": True}))
    train(tiny_train_config(model_dir, small_data, d / "run", head_bias=False, trainable="lora",
                            lora_targets=("q_proj", "v_proj", "o_proj"), calibrate=True))
    return d / "run"


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, small_data) -> Path:
    """Tiny Llama probe: mean of layer 1 and last token of layer 2, standardised."""
    from llmclassify.train import train

    d = tmp_path_factory.mktemp("probe")
    model_dir, _ = tiny_llama_hf(d, tokenizer=True)
    train(tiny_train_config(model_dir, small_data, d / "run", recipe="probe", probe="mean@1,last@2"))
    return d / "run"


RUNS = {"gpt2": "tiny_run", "llama": "llama_run", "probe": "probe_run"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """export(run, fmt) -> the exported directory, written once per module."""
    cache: dict = {}

    def get(run: Path, fmt: str) -> Path:
        if (run, fmt) not in cache:
            cache[run, fmt] = export_run(run, fmt, tmp_path_factory.mktemp(fmt) / "export")
        return cache[run, fmt]

    return get


def texts_of(run: Path) -> list[str]:
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    return split["test"]["texts"] + EXTRA


def proba(preds, labels) -> np.ndarray:
    return np.array([[p.probabilities[lab] for lab in labels] for p in preds])
def edited_run(run: Path, where: Path, **changes) -> Path:
    """A copy of `run` whose config.json says something else (the checks read only the spec)."""
    out = where / "run"
    shutil.copytree(run, out)
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    (out / "config.json").write_text(json.dumps(cfg | changes), encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------- HF


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_hf_export_gives_the_runs_predictions(kind, request, exported):
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    run = request.getfixturevalue(RUNS[kind])
    out = exported(run, "hf")
    clf = Classifier.load(run)
    if kind == "llama":  # what the fixture is for: BOS, merged LoRA, temperature, no head bias
        assert clf.tokenizer.add_bos and clf.spec.lora and clf.temperature != 1.0 and clf.model.head.bias is None
    else:  # GPT-2: the head's bias is folded into the final LayerNorm
        assert clf.model.head.bias is not None
    texts = texts_of(run)
    want = clf.predict(texts)
    want_p = proba(want, clf.labels)

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(model).__name__ == {"gpt2": "GPT2ForSequenceClassification",
                                    "llama": "LlamaForSequenceClassification"}[kind]
    assert model.config.id2label == dict(enumerate(clf.labels))
    assert model.config.label2id == {n: i for i, n in enumerate(clf.labels)}
    assert model.config.pad_token_id == clf.tokenizer.pad_id
    tok = AutoTokenizer.from_pretrained(out)
    assert tok(texts, truncation=True)["input_ids"] == clf.encode(texts)[0]  # BOS, truncation: the run's ids

    with torch.inference_mode():
        batched = model(**tok(texts, padding=True, truncation=True, return_tensors="pt")).logits.softmax(-1)
        alone = torch.cat([model(**tok([t], truncation=True, return_tensors="pt")).logits.softmax(-1)
                           for t in texts])
    for got in (batched.numpy(), alone.numpy()):
        np.testing.assert_allclose(got, want_p, atol=1e-4)
        assert [clf.labels[i] for i in got.argmax(1)] == [p.label for p in want]

    classify = pipeline("text-classification", model=model, tokenizer=tok)
    for batch_size in (8, 1):
        res = classify(texts, truncation=True, top_k=None, batch_size=batch_size)
        got_p = np.array([[{d["label"]: d["score"] for d in r}[lab] for lab in clf.labels] for r in res])
        np.testing.assert_allclose(got_p, want_p, atol=1e-4)
        assert [r[0]["label"] for r in res] == [p.label for p in want]

    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert {"tokenizer.json", "tokenizer_config.json", "config.json", "README.md"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text(encoding="utf-8")
    test, base = clf.metrics["splits"]["test"], clf.metrics["baseline"]["splits"]["test"]
    assert f"{100 * test['accuracy']:.2f}%" in card and f"{100 * base['macro_f1']:.2f}%" in card
    assert "pipeline_tag: text-classification" in card


# ------------------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("kind", ["gpt2", "llama", "probe"])
def test_onnx_export_gives_the_runs_predictions(kind, request, exported):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    run = request.getfixturevalue(RUNS[kind])
    out = exported(run, "onnx")
    ref = Classifier.load(run, trunk_dtype="float32")  # the graph is float32
    texts = texts_of(run)
    want = ref.predict(texts)

    clf = open_classifier(out)
    assert type(clf).__name__ == "OnnxClassifier" and clf.labels == ref.labels
    for got in (clf.predict(texts, batch_size=8), [clf.predict([t])[0] for t in texts]):
        assert [p.label for p in got] == [p.label for p in want]
        assert [p.truncated for p in got] == [p.truncated for p in want]
        np.testing.assert_allclose(proba(got, ref.labels), proba(want, ref.labels), atol=1e-4)

    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["probabilities"]
    for i in graph.input:  # batch and length are dynamic
        assert all(d.dim_param for d in i.type.tensor_type.shape.dim), i
    settings = json.loads((out / "classifier.json").read_text(encoding="utf-8"))
    assert settings["labels"] == ref.labels and settings["padding_side"] == "right"
    assert settings["pad_id"] == ref.tokenizer.pad_id and settings["max_length"] == ref.max_length
    assert settings["add_bos"] == ref.tokenizer.add_bos


def test_onnx_export_carries_what_the_hf_class_cannot(tiny_run, tmp_path):
    """A template, head-tail truncation, visible padding and a tuned threshold live in classifier.json and are applied by
    OnnxClassifier as by the run (the trained weights do not depend on them: edited in the spec)."""
    pytest.importorskip("onnxruntime")
    run = edited_run(tiny_run, tmp_path, template="Message: {text}\nCategory:", padding="fixed:24", pad_to=24,
                     threshold=0.45, truncate="head-tail", max_length=20)
    out = export_run(run, "onnx", tmp_path / "onnx")
    ref, clf = Classifier.load(run), open_classifier(out)
    texts = texts_of(run)
    assert ref.encode(texts) == clf.encode(texts) and all(len(x) == 24 for x in ref.encode(texts)[0])
    assert any(ref.encode(texts)[1])  # some texts were cut (head and tail)
    want, got = ref.predict(texts), clf.predict(texts)
    assert [p.label for p in got] == [p.label for p in want]  # decided by the threshold
    np.testing.assert_allclose(proba(got, ref.labels), proba(want, ref.labels), atol=1e-4)
    settings = json.loads((out / "classifier.json").read_text(encoding="utf-8"))
    assert (settings["template"], settings["pad_to"], settings["threshold"]) == ("Message: {text}\nCategory:", 24, 0.45)
    assert (settings["truncate"], settings["max_length"]) == ("head-tail", 20)


def _numbers(line: str) -> tuple[str, dict]:
    label, probs = line.split("\t")[:2]  # "spam\tham=0.0100  spam=0.9900[\t(truncated)]"
    return label, {k: float(v) for k, v in (p.split("=") for p in probs.split())}


def test_predict_cli_takes_an_onnx_directory(tiny_run, exported, capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    out = exported(tiny_run, "onnx")
    texts = ["WINNER!! claim your prize now", "see you at lunch", LONG]
    assert main(["predict", str(tiny_run), *texts]) == 0
    from_run = capsys.readouterr().out.splitlines()
    assert main(["predict", str(out), *texts]) == 0
    cap = capsys.readouterr()
    from_onnx = cap.out.splitlines()
    assert len(from_onnx) == 3 and from_onnx[2].endswith("(truncated)") and "truncated" in cap.err
    for a, b in zip(from_run, from_onnx):
        (la, pa), (lb, pb) = _numbers(a), _numbers(b)
        assert la == lb and pa == pytest.approx(pb, abs=2e-4)

    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts[:2]) + "\n")
    assert main(["predict", str(out), "--input", str(src), "--output", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2] and [r["label"] for r in rows] == [_numbers(x)[0] for x in from_run[:2]]


def test_evaluate_scores_an_onnx_directory_beside_its_run(tiny_run, exported, small_data, capsys, tmp_path):
    """`evaluate` takes an export as `predict` does: on a labelled file it scores what the run
    scores, and `--compare` between the two finds no text either alone gets right; an export
    keeps no split, so without --data it is a one-line error saying to pass one."""
    from llmclassify.predict import evaluate_run

    from .cli_helpers import assert_one_line_error, cli

    pytest.importorskip("onnxruntime")
    out = exported(tiny_run, "onnx")
    _, from_run = evaluate_run(tiny_run, data=str(small_data))
    _, from_onnx = evaluate_run(out, data=str(small_data), compare=tiny_run)
    for k in ("accuracy", "macro_f1", "confusion_matrix"):
        assert from_onnx[k] == from_run[k] == from_onnx["comparison"]["metrics"][k]
    d = from_onnx["comparison"]["difference"]
    assert (d["macro_f1_difference"], d["a_only_right"], d["b_only_right"], d["n"]) == (0.0, 0, 0, from_run["n"])
    assert "baseline" not in from_onnx  # the TF-IDF model stays with the run
    capsys.readouterr()  # the warnings above (the data file holds the run's training texts) when logging is set up
    assert_one_line_error(*cli(capsys, "evaluate", out)[::2], "split.json: missing (an export keeps no split)",
                          "--data")
    assert_one_line_error(*cli(capsys, "evaluate", tiny_run, "--compare", out)[::2], "has no split.json")


def test_predict_on_an_onnx_directory_does_not_import_torch(tiny_run, exported):
    pytest.importorskip("onnxruntime")
    out = exported(tiny_run, "onnx")
    code = ("import sys; from llmclassify.cli import main; rc = main(['predict', sys.argv[1], 'hello there']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(SRC)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\t")[0] in ("ham", "spam")


def test_serve_takes_an_onnx_directory(tiny_run, exported):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    pytest.importorskip("onnxruntime")
    from fastapi.testclient import TestClient

    from llmclassify.serve import create_app

    texts = ["WINNER!! claim your prize now", "see you at lunch", "ok"]
    want = Classifier.load(tiny_run).predict(texts)
    with TestClient(create_app(open_classifier(exported(tiny_run, "onnx")))) as client:
        r = client.post("/v1/classify", json={"texts": texts})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        info = client.get("/v1/model").json()
    assert [x["label"] for x in results] == [p.label for p in want]
    for got, p in zip(results, want):
        assert got["probabilities"] == pytest.approx(p.probabilities, abs=1e-4)
    assert info["runtime"] == "onnxruntime" and info["labels"] == ["ham", "spam"] and "run_dir" not in info
    assert info["metrics"]["test"]["n"] == info["baseline"]["splits"]["test"]["n"]


# -------------------------------------------------------------------------- refusals, bad input


PROBE = {"recipe": "probe", "probe": [[2, "mean"]]}


@pytest.mark.parametrize("fmt, changes, needles", [
    ("hf", {"pooling": "mean"}, ["pooling 'mean'", "--pooling last", "--format onnx"]),
    ("hf", {"pooling": "first"}, ["pooling 'first'", "--pooling last"]),
    ("hf", {"template": "Message: {text}\nCategory:"}, ["prompt template", "--format onnx"]),
    ("hf", PROBE, ["probe on layer 2", "--recipe finetune", "--format onnx"]),
    ("hf", {"padding": "longest-train", "pad_to": 40}, ["visible pad tokens", "--padding batch"]),
    ("hf", {"threshold": 0.3}, ["threshold (0.3)", "--format onnx"]),
    ("hf", {"causal": False}, ["causal mask", "--format onnx"]),
    ("hf", {"truncate": "head-tail"}, ["head and tail", "--format onnx"]),
    ("hf", {"multi_label": True}, ["multi-label", "--format onnx"]),
    ("hf", {"model_config": {"family": "llama"}}, ["head has a bias", "--no-head-bias", "--format onnx"]),
    ("onnx", PROBE | {"recipe": "hybrid", "hybrid_weight": 0.5}, ["TF-IDF model (recipe hybrid)", "--recipe finetune"]),
    ("onnx", PROBE | {"window": 512}, ["windows", "--window 0"]),
])
def test_runs_the_format_cannot_express_are_refused_in_one_line(tiny_run, tmp_path, capsys, fmt, changes, needles):
    run = edited_run(tiny_run, tmp_path, **changes)
    rc, out, err = cli(capsys, "export", run, "--format", fmt, "--output", tmp_path / "out")
    assert_one_line_error(rc, err, f"export --format {fmt}:", *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written


def test_export_output_is_written_whole_or_not_at_all(tiny_run, tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers")
    from llmclassify.export import hf

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    rc, _, err = cli(capsys, "export", tiny_run, "--format", "hf", "-o", busy)
    assert_one_line_error(rc, err, str(busy), "not empty", "--overwrite")
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]

    rc, _, err = cli(capsys, "export", tmp_path / "nope", "--format", "onnx", "-o", tmp_path / "x")
    assert_one_line_error(rc, err, "no such run directory")
    rc, _, err = cli(capsys, "export", tiny_run, "--format", "hf", "-o", tmp_path / "no" / "such" / "dir")
    assert_one_line_error(rc, err, "does not exist")
    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_run), "--format", "torchscript", "-o", str(tmp_path / "x")])
    assert e.value.code == 2

    def broken(clf, out):  # a failure after files were written: the half-built directory goes
        assert any(out.iterdir())
        raise RuntimeError("boom")

    monkeypatch.setattr(hf, "verify", broken)
    rc, _, err = cli(capsys, "export", tiny_run, "--format", "hf", "-o", busy, "--overwrite")
    assert rc == 1 and "boom" in err
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]  # the old directory is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no temporary directory left


def test_predict_refuses_bad_onnx_directories_in_one_line(tiny_run, exported, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = exported(tiny_run, "onnx")
    rc, _, err = cli(capsys, "predict", out, "hello", "--quantize", "int8")
    assert_one_line_error(rc, err, "ONNX export", "--quantize")
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "classifier.json").write_text('{"format": "something-else"}')
    rc, _, err = cli(capsys, "predict", broken, "hello")
    assert_one_line_error(rc, err, "classifier.json", "not an llmclassify ONNX export")
    shutil.copytree(out, broken, dirs_exist_ok=True)
    (broken / "model.onnx").write_bytes(b"not a graph")
    rc, _, err = cli(capsys, "predict", broken, "hello")
    assert_one_line_error(rc, err, "model.onnx", "cannot load the ONNX model")


# -------------------------------------------------------------------------------- estimator


def sms(small_data: Path) -> tuple[list[str], list[int]]:
    rows = [line.split("\t", 1) for line in small_data.read_text().splitlines()]
    return [t for _, t in rows], [int(lab == "spam") for lab, _ in rows]


def test_estimator_parameters_clone_and_set(tiny_model_dir):
    pytest.importorskip("sklearn")
    from dataclasses import fields

    from sklearn.base import clone

    from llmclassify import LLMClassifier
    from llmclassify.estimator import TRAIN_PARAMS
    from llmclassify.train import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    params = LLMClassifier().get_params()
    assert set(params) == {*TRAIN_PARAMS, "validation_fraction", "output_dir", "progress"}
    assert all(params[k] == defaults[k] for k in TRAIN_PARAMS)  # TrainConfig's defaults, one place
    changed = {"model": str(tiny_model_dir), "recipe": "finetune", "search_finetune": True, "probe": None, "template": "T: {text}",
               "max_length": 32, "window": 64, "long_texts": "head-tail", "pooling": "mean", "head_bias": False, "trainable": "lora", "epochs": 2,
               "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "class_weights": "none", "lora_rank": 4,
               "lora_alpha": 8.0, "calibrate": True, "tune_threshold": "f1", "baseline": "none", "hybrid_ngrams": "words+chars",
               "trunk_dtype": "float32", "seed": 3, "validation_fraction": 0.2, "output_dir": "runs/x",
               "progress": True}
    assert set(changed) == set(params)
    est = LLMClassifier(**changed)
    copy = clone(est)
    assert copy is not est and copy.get_params() == changed
    assert all(getattr(copy, k) is v for k, v in changed.items())  # stored as given
    assert LLMClassifier().set_params(**changed).get_params() == changed


def test_estimator_fit_predict_save_load(tiny_model_dir, small_data, tmp_path, capsys):
    pytest.importorskip("sklearn")
    from llmclassify import LLMClassifier

    texts, y = sms(small_data)
    est = LLMClassifier(model=str(tiny_model_dir), recipe="finetune", epochs=2, lr=1e-3, seed=7)
    assert est.fit(texts, y) is est
    assert est.classes_.tolist() == [0, 1] and est.run_dir_.is_dir()
    pred, p = est.predict(texts), est.predict_proba(texts)
    assert pred.dtype == np.asarray(y).dtype and set(pred.tolist()) <= {0, 1}
    assert p.shape == (len(texts), 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (pred == est.classes_[p.argmax(1)]).all()  # no threshold: the decision is the argmax
    assert est.score(texts, y) > 0.5 and est.metrics_["splits"]["val"]["n"] == 10

    saved = est.save(tmp_path / "saved")
    assert main(["predict", str(saved), texts[0]]) == 0  # a run directory every command reads
    assert capsys.readouterr().out.split("\t")[0] in ("0", "1")  # the run's label names
    again = LLMClassifier.load(saved)
    assert again.get_params() == est.get_params()
    np.testing.assert_allclose(again.predict_proba(texts), p, atol=1e-6)
    assert (again.predict(texts) == pred).all()

    with pytest.raises(ValueError, match="texts"):
        est.fit(texts, y[:-1])


def test_estimator_keeps_a_class_too_small_to_train_as_a_column_of_zeros(tiny_model_dir, small_data, tmp_path):
    pytest.importorskip("sklearn")
    from llmclassify import LLMClassifier

    texts, y = sms(small_data)
    texts, y = texts + ["a lone text of its own class"], y + [2]  # one text: too few to split
    est = LLMClassifier(model=str(tiny_model_dir), recipe="finetune", epochs=1, lr=1e-3, baseline="none").fit(texts, y)
    assert est.classes_.tolist() == [0, 1, 2] and est.classifier_.labels == ["0", "1"]
    assert est.metrics_["data"]["classes_left_out"] == {"2": 1}
    p = est.predict_proba(texts)
    assert p.shape == (len(texts), 3) and (p[:, 2] == 0).all() and np.allclose(p.sum(1), 1, atol=1e-5)
    assert set(est.predict(texts).tolist()) <= {0, 1}
    # evaluating the run on a file that holds the class says why the run does not know it
    from llmclassify.errors import UserError
    from llmclassify.predict import evaluate_run

    f = tmp_path / "eval.jsonl"
    f.write_text('{"text": "hello", "label": "0"}\n{"text": "another lone text", "label": "2"}\n')
    with pytest.raises(UserError, match="label '2' had 1 training text, too few to split, and the run left it out"):
        evaluate_run(est.run_dir_, data=str(f))


def test_cross_val_score_runs_on_the_tiny_model(tiny_model_dir, small_data):
    pytest.importorskip("sklearn")
    from sklearn.model_selection import cross_val_score

    from llmclassify import LLMClassifier

    texts, y = sms(small_data)
    est = LLMClassifier(model=str(tiny_model_dir), recipe="finetune", epochs=1, lr=1e-3, baseline="none")
    scores = cross_val_score(est, texts, y, cv=3)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
