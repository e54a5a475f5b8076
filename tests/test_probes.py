"""Probes, the recipe search, the baseline and the one scoring path, on the tiny model.

Each test checks a definition against an independent computation: pooled features against
Hugging Face's own hidden states, a probe run against a probe run with every block kept, the
search against a copy of the data whose test labels were scrambled, the baseline against a
plain scikit-learn fit, `evaluate` against what training printed.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from llmclassify import precision
from llmclassify.features import POOLED, probe_layers, trunk_pass
from llmclassify.inputs import cut_tokens, pad_batch
from llmclassify.loaders import load_model
from llmclassify.model import Decoder
from llmclassify.precision import fast_bfloat16
from llmclassify.predict import Classifier, evaluate_run
from llmclassify.probes import ProbeClassifier, candidate_probes, parse_probe, probe_name
from llmclassify.train import run as train_mod
from llmclassify.train import train

from .conftest import tiny_train_config
from .tiny import tiny_gpt2_hf, tiny_llama_hf


def _decoder(hf_dir):
    lm = load_model(str(hf_dir))
    dec = Decoder(lm.config)
    dec.load_state_dict(lm.state_dict)
    return dec.eval()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_pooled_features_equal_hf_hidden_states(tmp_path, family):
    """Layer l's vectors = final norm of HF's hidden_states[l], mean / last over real tokens."""
    hf_dir, hf = (tiny_gpt2_hf if family == "gpt2" else tiny_llama_hf)(tmp_path)
    dec = _decoder(hf_dir)
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(1, 250, (int(n),), generator=g).tolist() for n in (3, 9, 1, 6)]
    pooled, _ = trunk_pass(dec, ids, 0, layers=[0, 1, 2], progress=False)
    for i, seq in enumerate(ids):  # each text alone, no padding: HF's own forward
        with torch.no_grad():
            hs = hf(torch.tensor([seq]), output_hidden_states=True).hidden_states
        for j, layer in enumerate([0, 1, 2]):
            # HF applies the final norm to its last hidden state already
            h = hs[layer][0] if layer == len(hs) - 1 else dec.final_norm(hs[layer][0])
            want = torch.stack([h.mean(0), h[-1]])
            got = pooled.data[i, j].float()
            torch.testing.assert_close(got, want, atol=2e-2 * want.abs().max().item() + 1e-3, rtol=1e-2)


def test_probe_classifier_equals_its_definition_and_exits_early(tmp_path):
    """ProbeClassifier logits = standardised linear map of the picked pooled vectors; cutting
    the blocks above its deepest layer changes nothing."""
    hf_dir, _ = tiny_llama_hf(tmp_path)
    dec = _decoder(hf_dir)
    picks = ((1, "mean"), (1, "last"))
    clf = ProbeClassifier(dec, picks, 3)
    torch.nn.init.normal_(clf.head.weight)
    clf.mean.normal_()
    clf.scale.uniform_(0.5, 2.0)
    ids = torch.randint(1, 250, (4, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    with torch.no_grad():
        pooled, _ = trunk_pass(dec, [r[m.bool()].tolist() for r, m in zip(ids, mask)], 0, layers=[1],
                               progress=False)
        x = torch.cat([pooled.data[:, 0, POOLED.index(p)].float() for _, p in picks], 1)
        want = clf.head((x - clf.mean) / clf.scale)
        full = clf(ids, mask)
        del dec.blocks[clf.depth:]  # early exit: layer 1 needs block 0 only
        assert len(dec.blocks) == 1
        cut = clf(ids, mask)
    torch.testing.assert_close(full, cut, atol=0, rtol=0)
    torch.testing.assert_close(full, want, atol=5e-3, rtol=1e-3)  # the pass stores float16


def test_logistic_path_fits_every_c_of_its_grid():
    """Warm-started along the grid, each C still reaches its own optimum: with too loose a
    tolerance the previous C's solution already passes lbfgs's test, and a larger C returns the
    smaller one's model (the search's C grid collapses; tol 1e-3 left C=10 here 10% off)."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from llmclassify.probes import LogisticPath

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    z = (rng.normal(0, 1.0, (3, 40))[y] + rng.normal(0, 1.5, (600, 40))).astype(np.float32)
    path = LogisticPath(3)
    for C in (0.01, 0.1, 1.0, 10.0):
        w, _ = path.fit(z, y, C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(z, y).coef_
        assert np.abs(w - ref).max() < 0.06 * np.abs(ref).max(), C


def test_a_line_search_giving_up_is_not_shown_a_spent_iteration_budget_is(monkeypatch):
    """Newton-CG's line-search warnings (60 texts of 20 topics gave two on stderr) are dropped;
    a ConvergenceWarning is not."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from llmclassify.probes import LogisticPath

    fit = LogisticRegression.fit
    said = []

    def noisy_fit(self, z, y):
        for message, category in said:
            warnings.warn(message, category, stacklevel=2)
        return fit(self, z, y)

    monkeypatch.setattr(LogisticRegression, "fit", noisy_fit)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    z = rng.normal(size=(50, 4)).astype(np.float32)
    said[:] = [("The line search algorithm did not converge", RuntimeWarning), ("Line Search failed", UserWarning)]
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        LogisticPath(2).fit(z, y, 1.0)
    assert not shown
    said[:] = [("lbfgs failed to converge", ConvergenceWarning)]
    with pytest.warns(ConvergenceWarning):
        LogisticPath(2).fit(z, y, 1.0)


@pytest.mark.parametrize("C", [0.3, 30.0])
def test_out_of_fold_predictions_never_come_from_a_model_that_saw_their_rows(C):
    """Labels unrelated to the features score at chance out of fold, at every C. Starting each
    fold's fit from the previous fold's solution (which was fitted on this fold's rows) failed
    here: at C 30, more columns than rows, macro-F1 0.81 on random labels (ATIS's search: 0.96
    to 0.98 against 0.85 to 0.89 with independent folds; benchmarks/results/warm-folds.md)."""
    from llmclassify.probes import out_of_fold, stratified_folds
    from llmclassify.search import _macro_f1

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 400)).astype(np.float32)
    for grid in ((C,), (C / 10, C)):
        oof = out_of_fold(x, y, 3, stratified_folds(y, 5, 0), grid)
        assert _macro_f1(oof[C], y, ["a", "b", "c"]) < 0.45


@pytest.mark.parametrize("features", ["dense", "sparse"])
def test_a_kept_probe_is_solved_to_its_optimum(features):
    """fit_logistic (a refit, the baseline: the models a run keeps) stops where the gradient of
    scikit-learn's objective is near zero, not at the search's looser tolerance, where the point
    lbfgs stops at depends on the BLAS's summation order (one BLAS thread or two). Sparse rows
    (the baseline's n-grams, many more columns than rows) go to the other solver
    (probes.SPARSE_SOLVER): the same optimum."""
    from scipy.sparse import csr_matrix

    from llmclassify.probes import fit_logistic, softmax

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    if features == "dense":
        z = (rng.normal(0, 1.0, (3, 60))[y] + rng.normal(0, 1.5, (400, 60))).astype(np.float32)
    else:  # 2,000 columns, 12 non-zero a row, some of them telling the class
        telling = 2000 - 1 - y[:, None] * 7 - rng.integers(0, 7, (400, 2))  # 7 columns a class
        cols = np.concatenate([rng.integers(0, 2000, (400, 10)), telling], 1)
        z = csr_matrix((np.full(cols.size, 0.3, np.float32), cols.ravel(), np.arange(0, cols.size + 1, 12)),
                       shape=(400, 2000))
    C, n = 10.0, len(y)
    w, b = fit_logistic(z, y, 3, C)
    residual = softmax(np.asarray(z @ w.T, dtype=np.float64) + b) - np.eye(3)[y]
    grad_w = np.asarray(z.T @ residual).T / n + w / (C * n)  # mean cross-entropy + |W|^2 / (2 C n)
    grad_b = residual.mean(0)
    assert max(np.abs(grad_w).max(), np.abs(grad_b).max()) < 1e-5


def test_probe_names_round_trip_and_candidates():
    picks = ((10, "mean"), (16, "mean"), (30, "last"))
    assert parse_probe(probe_name(picks), 30) == picks
    with pytest.raises(Exception, match="between 1 and 30"):
        parse_probe("mean@31", 30)
    layers = probe_layers(30)
    assert layers[-1] == 30 and layers[0] >= 7
    cands = candidate_probes(layers)
    assert len(set(cands)) == len(cands)  # no candidate twice
    assert ((30, "last"),) in cands  # today's last-token view is always tried


def test_probe_run_predicts_what_training_reported_and_runs_fewer_blocks(tiny_model_dir, small_data, tmp_path):
    run = tmp_path / "probe"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="probe", probe="mean@1"))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["recipe"] == "probe" and cfg["probe"] == [[1, "mean"]]
    clf = Classifier.load(run)
    assert len(clf.model.decoder.blocks) == 1  # of 2: early exit
    name, m = evaluate_run(run)
    for k in ("accuracy", "macro_f1", "confusion_matrix"):
        assert m[k] == s["splits"]["test"][k]
    assert m["baseline"]["macro_f1"] == pytest.approx(s["baseline"]["splits"]["test"]["macro_f1"])


def test_averaged_probes_are_one_probe_whose_logits_are_the_members_mean():
    """average_probes: members over overlapping picks, each with its own standardiser, merged
    into one LinearProbe on the union whose logits equal the mean of theirs."""
    from llmclassify.probes import LinearProbe, average_probes

    rng = np.random.default_rng(0)
    d, n_classes = 5, 3
    vectors = {pick: rng.normal(rng.normal(0, 3), rng.uniform(0.5, 4), (50, d))
               for pick in [(2, "mean"), (3, "last"), (1, "mean")]}
    members = [((2, "mean"),), ((3, "last"), (2, "mean")), ((1, "mean"), (3, "last"))]

    def x(picks):
        return np.concatenate([vectors[p] for p in picks], 1)

    parts = [(picks, LinearProbe(rng.normal(0, 1, len(picks) * d), rng.uniform(0.3, 3, len(picks) * d),
                                 rng.normal(0, 1, (n_classes, len(picks) * d)), rng.normal(0, 1, n_classes)))
             for picks in members]
    merged = average_probes(parts)
    picks = ((2, "mean"), (3, "last"), (1, "mean"))  # the union, in order of first appearance
    want = np.mean([probe.logits(x(p)) for p, probe in parts], 0)
    np.testing.assert_allclose(merged.logits(x(picks)), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_the_search_answers_with_an_ensemble_of_its_top_probes_and_the_run_predicts_it(
        tiny_model_dir, small_data, tmp_path):
    """`--recipe probe` with no `--probe`: the search's answer is the ensemble of its ENSEMBLE
    best probes by CV (one per set of features: a probe or its class-weighted refit), the
    single probes are reported but not chosen, and the saved run predicts what training
    reported, running only the deepest member's blocks."""
    from llmclassify.search import ENSEMBLE

    run = tmp_path / "ens"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="probe", baseline="none"))
    cands = s["recipe"]["candidates"]
    singles = sorted([c for c in cands if c["kind"] == "probe" and not c["members"]], key=lambda c: -c["cv_macro_f1"])
    ens = [c for c in cands if c["members"]]
    assert len(ens) == 1 and s["recipe"]["chosen"] == ens[0]["name"] and ens[0]["choosable"]
    seen, want = set(), []
    for c in singles:  # best first: a probe or its class-weighted refit, whichever scored higher
        if c["name"].removesuffix(" balanced") not in seen:
            seen.add(c["name"].removesuffix(" balanced"))
            want.append(c["name"])
    assert ens[0]["members"] == want[:ENSEMBLE]
    assert not any(c["choosable"] for c in singles)
    cfg = json.loads((run / "config.json").read_text())
    member_picks = [parse_probe(m.removeprefix("probe ").removesuffix(" balanced"), 2) for m in ens[0]["members"]]
    assert [tuple(p) for p in cfg["probe"]] == list(dict.fromkeys(p for m in member_picks for p in m))  # the union
    clf = Classifier.load(run)
    assert len(clf.model.decoder.blocks) == max(layer for m in member_picks for layer, _ in m)
    _, m = evaluate_run(run)
    assert m["confusion_matrix"] == s["splits"]["test"]["confusion_matrix"]
    assert m["macro_f1"] == pytest.approx(s["splits"]["test"]["macro_f1"])


def test_a_named_probe_is_not_averaged_with_others(tiny_model_dir, small_data, tmp_path):
    s = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "one", recipe="probe", probe="last@2",
                                baseline="none"))
    assert not any(c["members"] for c in s["recipe"]["candidates"])
    assert s["recipe"]["chosen"].startswith("probe last@2")


def test_auto_search_never_reads_the_test_split(tiny_model_dir, small_data, tmp_path, monkeypatch):
    """Flipping every test label turns test accuracy a into 1 - a, and changes nothing else."""
    first = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "a", recipe="auto", epochs=1,
                                    search_finetune=True))
    real = train_mod._prepare_data

    def scrambled(cfg):
        prep = real(cfg)
        prep.test.labels[:] = [1 - y for y in prep.test.labels]
        return prep

    monkeypatch.setattr(train_mod, "_prepare_data", scrambled)
    second = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "b", recipe="auto", epochs=1,
                                     search_finetune=True))
    def scores(summary):
        return [{k: v for k, v in c.items() if k != "seconds"} for c in summary["recipe"]["candidates"]]

    assert scores(first) == scores(second)
    assert first["recipe"]["chosen"] == second["recipe"]["chosen"]
    assert first["splits"]["test"]["accuracy"] + second["splits"]["test"]["accuracy"] == pytest.approx(1.0)
    assert first["splits"]["val"] == second["splits"]["val"]
    kinds = {c["kind"] for c in first["recipe"]["candidates"]}
    assert kinds == {"probe", "hybrid", "finetune"}


def test_auto_fine_tunes_only_when_asked(tiny_model_dir, small_data, tmp_path, monkeypatch, capsys):
    """`--recipe auto` searches probes and the hybrid: no fine-tuning epochs, no trunk cache
    (the pass keeps pooled vectors only); `--search-finetune` adds the fine-tuned top, and is
    for auto alone."""
    from llmclassify import features
    from llmclassify.cli import main
    from llmclassify.errors import UserError

    boundaries = []
    real = features.trunk_pass
    monkeypatch.setattr(features, "trunk_pass", lambda *a, **k: boundaries.append(k["boundary"]) or real(*a, **k))
    for asked in (False, True):
        boundaries.clear()
        run = tmp_path / f"auto-{asked}"
        s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="auto", epochs=1, search_finetune=asked))
        kinds = {c["kind"] for c in s["recipe"]["candidates"]}
        assert kinds == ({"probe", "hybrid", "finetune"} if asked else {"probe", "hybrid"})
        assert ("fit" in s["seconds"]) == asked == (run / "metrics.jsonl").exists()
        assert len(boundaries) == 3 and all((b is not None) == asked for b in boundaries)
    for recipe in ("finetune", "probe"):
        with pytest.raises(UserError, match="--search-finetune adds the fine-tuned top to --recipe auto"):
            tiny_train_config(tiny_model_dir, small_data, tmp_path / "x", recipe=recipe, search_finetune=True)
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(small_data), "-o", str(tmp_path / "c"),
                 "--recipe", "finetune", "--search-finetune", "--quiet"]) == 2
    assert "--search-finetune adds the fine-tuned top" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_run_fits_its_probes_and_baseline_on_one_blas_thread(tiny_model_dir, small_data, tmp_path, monkeypatch):
    """numpy / scipy's BLAS runs on one thread during the search and the baseline (the small
    L-BFGS fits lose to OpenBLAS's thread hand-offs: benchmarks/results/blas-threads.md), and the
    caller's setting comes back after the run."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from llmclassify import search

    def blas_threads():
        return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    seen = {}
    real = search.search_probes

    def spy(*args, **kw):
        seen["search"] = blas_threads()
        return real(*args, **kw)

    monkeypatch.setattr(search, "search_probes", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "run", recipe="probe", epochs=1))
        after = blas_threads()
    assert seen["search"] == [1]
    assert before == after == [2]


def test_baseline_is_fitted_on_the_same_split(tiny_model_dir, small_data, tmp_path):
    """The saved baseline equals scikit-learn's TfidfVectorizer + LogisticRegression fitted on
    the run's own train + validation texts, and is scored on its test texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    run = tmp_path / "b"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="probe", probe="last@2"))
    split = json.loads((run / "split.json").read_text())
    texts = split["train"]["texts"] + split["val"]["texts"]
    y = split["train"]["labels"] + split["val"]["labels"]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    lr = LogisticRegression(C=s["baseline"]["C"], max_iter=1000).fit(vec.fit_transform(texts), y)
    want = lr.predict(vec.transform(split["test"]["texts"]))
    base = Classifier.load(run).baseline
    got = base.proba(split["test"]["texts"]).argmax(1)
    assert (got == want).mean() >= 0.95  # same model up to the solver's tolerance
    assert s["baseline"]["splits"]["test"]["n"] == len(split["test"]["texts"]) == s["splits"]["test"]["n"]


def test_baseline_out_of_fold_equals_a_vectorizer_fitted_per_fold_on_the_texts():
    """Each out-of-fold row comes from a TF-IDF and regression fitted on the other folds' texts
    alone (no vocabulary or idf from the held-out fold), every C along one path."""
    from llmclassify import baseline, search
    from llmclassify.probes import LogisticPath, softmax

    words = ["free", "prize", "call", "now", "meet", "lunch", "later", "ok", "win", "cash", "home"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 9))) + ("!" if i % 3 else "") for i in range(60)]
    y = np.array([int("prize" in t or "cash" in t) for t in texts])
    folds = search.repeated_folds(y, 0)[0]
    got = baseline.out_of_fold(texts, y, 2, folds, (1.0, 10.0))
    arr = np.asarray(texts, dtype=object)
    for held in folds[:3]:
        keep = np.setdiff1d(np.arange(len(y)), held)
        vec = baseline.vectorizer()
        x = vec.fit_transform(arr[keep])
        path = LogisticPath(2)
        for C in (1.0, 10.0):
            w, b = path.fit(x, y[keep], C)
            np.testing.assert_allclose(got[C][held], softmax(np.asarray(vec.transform(arr[held]) @ w.T) + b),
                                       rtol=1e-5, atol=1e-6)


def test_evaluate_reports_the_test_metrics_training_printed_with_a_tuned_threshold(
        tiny_model_dir, small_data, tmp_path):
    """The #14 bug: evaluate scored with argmax where training applied the tuned threshold."""
    run = tmp_path / "thr"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, tune_threshold="precision",
                                target_precision=0.99))
    assert json.loads((run / "config.json").read_text())["threshold"] not in (None, 0.5)
    _, m = evaluate_run(run)
    for k in ("accuracy", "macro_f1", "balanced_accuracy", "confusion_matrix", "per_class"):
        assert m[k] == s["splits"]["test"][k]
    # the gap to the baseline, text by text, is that of the figures reported, in train and evaluate
    gap = s["baseline"]["test_difference"]
    assert gap["macro_f1_difference"] == pytest.approx(
        s["splits"]["test"]["macro_f1"] - s["baseline"]["splits"]["test"]["macro_f1"], abs=1e-12)
    assert gap["n"] == s["splits"]["test"]["n"] and gap["interval"][0] <= gap["macro_f1_difference"] <= gap["interval"][1]
    assert m["baseline_difference"] == gap


def test_evaluate_compares_two_runs_on_the_same_texts_text_by_text(tiny_model_dir, small_data, tmp_path, capsys,
                                                                    caplog):
    """`evaluate A --compare B`: B's figures are those `evaluate B` gives, the gap is A's macro-F1
    minus B's, and the texts each alone gets right are counted from their own predictions (each
    run's threshold applied); a run split otherwise, or of other classes, is a one-line error;
    on a labelled file each run's training texts among it are counted in a warning."""
    from llmclassify.data import read_table

    from .cli_helpers import assert_one_line_error, cli

    a, b = tmp_path / "a", tmp_path / "b"
    train(tiny_train_config(tiny_model_dir, small_data, a, tune_threshold="precision", target_precision=0.99))
    train(tiny_train_config(tiny_model_dir, small_data, b, recipe="probe", probe="last@2", baseline="none"))
    _, ma = evaluate_run(a)
    _, mb = evaluate_run(b)
    _, m = evaluate_run(a, compare=b)
    assert m["macro_f1"] == ma["macro_f1"]
    for k in ("accuracy", "macro_f1", "confusion_matrix", "per_class"):
        assert m["comparison"]["metrics"][k] == mb[k]
    d = m["comparison"]["difference"]
    assert d["macro_f1_difference"] == pytest.approx(ma["macro_f1"] - mb["macro_f1"], abs=1e-12)
    test = json.loads((a / "split.json").read_text())["test"]
    clf_a = Classifier.load(a)
    truth = [clf_a.labels[i] for i in test["labels"]]
    right_a = [p.label == t for p, t in zip(clf_a.predict(test["texts"]), truth)]
    right_b = [p.label == t for p, t in zip(Classifier.load(b).predict(test["texts"]), truth)]
    assert (d["a_only_right"], d["b_only_right"]) == (sum(x and not y for x, y in zip(right_a, right_b)),
                                                      sum(y and not x for x, y in zip(right_a, right_b)))
    assert d["n"] == len(truth)

    rc, out, err = cli(capsys, "evaluate", a, "--compare", b, "--json", tmp_path / "m.json")
    assert rc == 0, err
    assert f"test macro-F1, {a} - {b}: {d['macro_f1_difference']:+.4f}" in out and "test b" in out.splitlines()[0]
    assert json.loads((tmp_path / "m.json").read_text())["comparison"]["difference"] == json.loads(json.dumps(d))

    other_split, other_classes = tmp_path / "c", tmp_path / "d"
    train(tiny_train_config(tiny_model_dir, small_data, other_split, recipe="probe", probe="last@2",
                            baseline="none", seed=8))
    t = read_table(small_data)
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text("".join(json.dumps({"text": x, "label": "junk" if y == "spam" else y}) + "\n"
                               for x, y in zip(t.texts, t.labels)))
    train(tiny_train_config(tiny_model_dir, renamed, other_classes, recipe="probe", probe="last@2", baseline="none"))
    capsys.readouterr()  # what training logged
    assert_one_line_error(*cli(capsys, "evaluate", a, "--compare", other_split)[::2], "its test split is not")
    assert_one_line_error(*cli(capsys, "evaluate", a, "--compare", other_classes)[::2],
                          "its labels (ham, junk) are not")

    caplog.clear()
    _, m = evaluate_run(a, data=str(small_data), compare=other_split)  # texts both runs trained on
    for run in (a, other_split):
        split = json.loads((run / "split.json").read_text())
        seen = {x for part in ("train", "val") for x in split[part]["texts"]}
        n = sum(x in seen for x in t.texts)
        assert 0 < n < len(t.texts)
        assert any(f"{n} of its {len(t.texts)} texts are among {run}'s training" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert m["comparison"]["difference"]["n"] == len(t.texts)


@pytest.mark.parametrize("n_spam, tuned", [(40, True), (60, False)])
def test_auto_threshold_is_tuned_out_of_fold_where_two_classes_are_unbalanced(
        tiny_model_dir, tmp_path, n_spam, tuned):
    """auto: a probe on 60 ham / 40 spam gets the threshold with the best macro-F1 of its
    out-of-fold predictions over train + validation, applied in the metrics and by predict;
    60 / 60 keeps argmax."""
    from llmclassify.scoring import logit_metrics

    from .conftest import write_small_sms

    data = write_small_sms(tmp_path / f"sms-{n_spam}.tsv", n_ham=60, n_spam=n_spam)
    run = tmp_path / "run"
    s = train(tiny_train_config(tiny_model_dir, data, run, recipe="probe", baseline="none"))
    threshold = json.loads((run / "config.json").read_text())["threshold"]
    if not tuned:
        assert threshold is None and s["threshold"] is None
        return
    split = json.loads((run / "split.json").read_text())
    n_pool = len(split["train"]["labels"]) + len(split["val"]["labels"])
    assert s["threshold"]["objective"] == "macro-f1"
    assert s["threshold"]["tuned_on"] == f"out-of-fold predictions of train + validation ({n_pool} texts)"
    assert threshold == pytest.approx(s["threshold"]["threshold"]) and threshold != 0.5
    clf = Classifier.load(run)
    names = split["labels"]
    texts, y = split["test"]["texts"], torch.as_tensor(split["test"]["labels"])
    proba = clf.predict_proba(texts)
    for k in ("accuracy", "macro_f1", "confusion_matrix"):  # the metrics are the threshold's
        assert s["splits"]["test"][k] == logit_metrics(torch.log(proba), y, names, threshold=threshold)[k]
    assert [p.label for p in clf.predict(texts)] == [names[int(p >= threshold)] for p in proba[:, 1]]
    none = train(tiny_train_config(tiny_model_dir, data, tmp_path / "none", recipe="probe", baseline="none",
                                   tune_threshold="none"))
    assert none["threshold"] is None


def test_the_baseline_note_says_what_the_search_compared_where_validation_disagrees():
    from llmclassify.train.run import baseline_note
    from llmclassify.train.state import Fitted

    base = {"cv_macro_f1": 0.9617, "splits": {"val": {"macro_f1": 0.9824}}}
    probe = Fitted({}, None, {}, [], candidates=[{"name": "probe mean@16", "cv_macro_f1": 0.9828}],
                   chosen="probe mean@16")
    assert baseline_note(0.99, base, probe) is None
    assert baseline_note(0.9781, None, probe) is None
    assert baseline_note(0.9781, base, probe) == (
        "note: on validation this run's macro-F1 (0.9781) is below the TF-IDF baseline's (0.9824); out of "
        "fold over train + validation, what the search chose by: 0.9828 against 0.9617")
    tuned = Fitted({}, None, {}, [], candidates=[{"name": "finetune", "cv_macro_f1": None}], chosen="finetune")
    assert baseline_note(0.9781, base, tuned).endswith("below the TF-IDF baseline's (0.9824)")


def test_template_is_applied_saved_and_used(tiny_model_dir, small_data, tmp_path):
    run = tmp_path / "tpl"
    template = "Message: {text}\nCategory:"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="probe", probe="last@2",
                                template=template))
    clf = Classifier.load(run)
    assert clf.spec.template == template
    ids, _ = clf.encode(["hi"])
    assert ids[0] == clf.tokenizer.encode("Message: hi\nCategory:")
    _, m = evaluate_run(run)
    assert m["accuracy"] == s["splits"]["test"]["accuracy"]
    with pytest.raises(Exception, match="exactly once"):
        tiny_train_config(tiny_model_dir, small_data, run, template="no field here")


@pytest.mark.parametrize("tie", [-1.0, 1.0])  # the question kept whatever its score, or never
def test_template_auto_keeps_the_question_where_cross_validation_prefers_it(tiny_model_dir, small_data, tmp_path,
                                                                           monkeypatch, tie):
    from llmclassify.inputs import label_question

    monkeypatch.setattr("llmclassify.train.run.QUESTION_LEAD", tie)
    run = tmp_path / "tpl-auto"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="probe", template="auto"))
    found = s["template_search"]
    clf = Classifier.load(run)
    question = label_question(clf.spec.labels)
    assert found["question"] == question and set(found["cv_macro_f1"]) == {"none", "question"}
    assert found["chosen"] == ("question" if tie < 0 else "none")
    assert clf.spec.template == (question if tie < 0 else None)
    ids, _ = clf.encode(["hi"])
    assert ids[0] == clf.tokenizer.encode(question.format(text="hi") if tie < 0 else "hi")
    _, m = evaluate_run(run)  # the saved classifier reads what its probe was fitted on
    assert m["accuracy"] == s["splits"]["test"]["accuracy"] and m["macro_f1"] == s["splits"]["test"]["macro_f1"]
    with pytest.raises(Exception, match="--template auto"):
        tiny_train_config(tiny_model_dir, small_data, run, recipe="finetune", template="auto")


@pytest.mark.parametrize("ngrams", ["words", "words+chars"])
def test_hybrid_prediction_mixes_the_ngram_model_it_was_chosen_with(tiny_model_dir, small_data, tmp_path, monkeypatch,
                                                                     ngrams):
    """A hybrid run averages the probe's probabilities with the baseline's, or with
    `--hybrid-ngrams words+chars` with its own words + characters model, saved beside the
    baseline (which stays the word model shown beside the run); `evaluate` gives the run's own
    test figures."""
    from llmclassify import baseline, search

    rule = search.choose
    monkeypatch.setattr(search, "choose", lambda cands, by: next(  # the hybrid, wherever it is offered
        (c for c in cands if c.kind == "hybrid"), None) or rule(cands, by))
    run = tmp_path / "auto"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="auto", epochs=1, hybrid_ngrams=ngrams))
    clf = Classifier.load(run)
    assert clf.spec.recipe == "hybrid" and clf.baseline.parts == baseline.BASELINE
    split = json.loads((run / "split.json").read_text())
    texts = split["test"]["texts"]
    if ngrams == "words":
        assert clf.hybrid_ngrams is clf.baseline and not (run / f"{baseline.PARTNER_STEM}.json").exists()
        assert "hybrid_ngrams" not in s["baseline"]
    else:
        assert clf.hybrid_ngrams.parts == baseline.HYBRID_NGRAMS
        assert s["baseline"]["hybrid_ngrams"]["name"] == baseline.PARTNER_NAME
        assert not np.allclose(clf.hybrid_ngrams.proba(texts), clf.baseline.proba(texts), atol=1e-3)
    w = clf.spec.hybrid_weight
    ids, _ = clf.encode(texts)
    own = clf._model_proba(ids, 32).numpy()
    np.testing.assert_allclose(clf.predict_proba(texts).numpy(), w * own + (1 - w) * clf.hybrid_ngrams.proba(texts),
                               atol=1e-6)
    _, m = evaluate_run(run)
    assert m["accuracy"] == s["splits"]["test"]["accuracy"]
    assert m["macro_f1"] == pytest.approx(s["splits"]["test"]["macro_f1"])


def test_hybrid_ngrams_beyond_words_need_the_search_and_its_baseline(tiny_model_dir, small_data, tmp_path):
    from llmclassify.errors import UserError

    for other in ({"recipe": "finetune"}, {"recipe": "probe"}, {"recipe": "auto", "baseline": "none"}):
        with pytest.raises(UserError, match="--hybrid-ngrams words\\+chars"):
            tiny_train_config(tiny_model_dir, small_data, tmp_path / "x", hybrid_ngrams="words+chars", **other)


def test_word_and_character_ngrams_equal_scikit_learns_feature_union_and_survive_saving(tmp_path):
    """The partner's features are two TfidfVectorizers side by side (words 1-2, characters 2-5
    within words), each normalised on its own; saved and loaded, the model gives the same
    probabilities."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    from llmclassify import baseline

    rng = np.random.default_rng(0)
    words = ["free", "prize", "call", "now", "meet", "lunch", "later", "ok", "win", "cash", "Übung", "naïve"]
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 9))) + ("!" if i % 3 else "") for i in range(60)]
    y = np.array([int("prize" in t or "cash" in t) for t in texts])
    model = baseline.fit(texts, y, 2, 10.0, baseline.HYBRID_NGRAMS)
    union = FeatureUnion([("w", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                          ("c", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))])
    want = union.fit_transform(texts)
    got = model.transform(texts)
    assert got.shape == want.shape and got.shape[1] > len(union.transformer_list[0][1].vocabulary_)
    np.testing.assert_allclose(got.toarray(), want.toarray(), atol=1e-6)
    model.save(tmp_path, baseline.PARTNER_STEM)
    again = baseline.Baseline.load(tmp_path, baseline.PARTNER_STEM)
    np.testing.assert_array_equal(again.proba(texts), model.proba(texts))
    assert baseline.Baseline.load(tmp_path) is None  # the partner is not the run's baseline


def test_a_fresh_process_fits_on_one_thread_of_every_blas_it_loads(tiny_model_dir, small_data, tmp_path):
    """In a new interpreter (as the CLI runs) scipy's own OpenBLAS, loaded after the run's limit
    was set, would keep its threads: every BLAS library is on one thread during the search."""
    import ast
    import subprocess
    import sys

    code = f"""
from threadpoolctl import threadpool_info
from llmclassify import search
from llmclassify.train import TrainConfig, train
seen = []
real = search.search_probes
def spy(*a, **k):
    seen.extend((i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas")
    return real(*a, **k)
search.search_probes = spy
train(TrainConfig(model={str(tiny_model_dir)!r}, data={str(small_data)!r}, output_dir={str(tmp_path / "run")!r},
                  recipe="probe", epochs=1, progress=False, seed=7))
print(sorted(set(seen)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    libs = ast.literal_eval(out.strip().splitlines()[-1])
    assert len({path for path, _ in libs}) >= 2  # numpy's and scipy's
    assert {n for _, n in libs} == {1}, libs


@pytest.mark.parametrize("width", [12, 150])  # fewer features than rows (solved over them), more (over rows)
def test_ridge_screen_equals_scikit_learn_ridge_per_fold(width):
    from sklearn.linear_model import Ridge

    from llmclassify.probes import RIDGE_ALPHAS, ridge_screen, stratified_folds

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, width)) * rng.uniform(0.1, 5, size=width)
    y = (x[:, 0] + rng.normal(size=90) > 0).astype(int) + (x[:, 1] > 1)
    folds = stratified_folds(y, 5, 0)
    got = ridge_screen(x, y, 3, folds)
    z = (x - x.mean(0)) / x.std(0)
    for a in RIDGE_ALPHAS:
        want = np.zeros(len(y), dtype=int)
        for held in folds:
            keep = np.setdiff1d(np.arange(len(y)), held)
            r = Ridge(alpha=a * len(keep)).fit(z[keep], np.eye(3)[y[keep]])
            want[held] = r.predict(z[held]).argmax(1)
        np.testing.assert_array_equal(got[a], want)


def test_out_of_fold_grid_warm_starts_to_the_fits_it_replaces():
    """Each fold's C grid is one warm-started path: the same probabilities as a fresh fit per C
    (to the solver's tolerance); the search takes the best C, the first one on a tie."""
    from llmclassify.probes import (
        C_GRID,
        fit_logistic,
        out_of_fold,
        softmax,
        standardiser,
        stratified_folds,
    )
    from llmclassify.search import cross_validate

    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 20)) * rng.uniform(0.5, 3, size=20)
    y = (x[:, :3].sum(1) + rng.normal(size=120) > 0).astype(int) + (x[:, 4] > 2)
    folds = stratified_folds(y, 4, 0)
    got = out_of_fold(x, y, 3, folds, C_GRID)
    assert list(got) == list(C_GRID)
    mean, scale = standardiser(x)
    z = ((x - mean) / scale).astype(np.float32)
    for C in C_GRID:
        want = np.zeros((len(y), 3))
        for held in folds:
            keep = np.setdiff1d(np.arange(len(y)), held)
            w, b = fit_logistic(z[keep], y[keep], 3, C)
            want[held] = softmax(z[held] @ w.T + b)
        np.testing.assert_allclose(got[C], want, atol=0.02)
    assert not np.allclose(got[C_GRID[0]], got[C_GRID[-1]], atol=0.02)  # the grid's C does matter

    names = ["a", "b", "c"]
    same = {0.5: np.eye(3)[y], 0.1: np.eye(3)[y]}  # two settings scoring alike: the first wins
    setting, f1, oof = cross_validate(lambda f: same, y, names, [folds, folds])
    assert setting == 0.5 and np.array_equal(oof, np.eye(3)[y])


@pytest.fixture
def two_cores():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the folds fork where Linux forks")
def test_cross_validation_fits_its_folds_in_forked_processes_and_equals_a_loop(two_cores):
    """The search's folds run in processes forked from the run (cores.map_forked), in order, an
    error in one raised here; the probabilities cross_validate assembles fold by fold equal
    out_of_fold's over each repeat, and those of the same folds on one core, bit for bit."""
    import os

    from llmclassify.cores import map_forked, workers
    from llmclassify.probes import C_GRID, out_of_fold, out_of_fold_fitter
    from llmclassify.search import cross_validate, repeated_folds

    assert workers(10) == 2 and workers(1) == 1
    ran = map_forked(lambda i: (i, os.getpid()), list(range(6)))
    assert [i for i, _ in ran] == list(range(6)) and os.getpid() not in {pid for _, pid in ran}
    with pytest.raises(ZeroDivisionError):
        map_forked(lambda i: 1 / i, [1, 0])

    rng = np.random.default_rng(4)
    x = rng.normal(size=(150, 12)) * rng.uniform(0.5, 3, size=12)
    y = (x[:, :3].sum(1) + rng.normal(size=150) > 0).astype(int) + (x[:, 4] > 1.5)
    names = ["a", "b", "c"]
    repeats = repeated_folds(y, 7)
    grid = C_GRID[:3]
    fit_oof = out_of_fold_fitter(x, y, 3)
    C, f1, oof = cross_validate(lambda f: fit_oof(f, grid), y, names, repeats)
    loop = [out_of_fold(x, y, 3, folds, grid) for folds in repeats]
    assert np.array_equal(oof, np.mean([o[C] for o in loop], 0))
    torch.set_num_threads(1)
    assert workers(10) == 1
    assert np.array_equal(cross_validate(lambda f: fit_oof(f, grid), y, names, repeats)[2], oof)
    assert len(repeats) == 2 and not np.array_equal(repeats[0][0], repeats[1][0])  # two shuffles, not one twice


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the folds fork where Linux forks")
def test_a_forked_worker_ends_on_sigterm_under_the_runs_handler(two_cores):
    """A run keeps SIGTERM for its next checkpoint (resume.py's handler); a worker must not
    inherit that: SIGTERM ends it, and the parent hears of it (BrokenProcessPool) instead of
    waiting on a worker that will not end."""
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from llmclassify.cores import map_forked

    kept = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: kept.append(signum))
    try:
        with pytest.raises(BrokenProcessPool):
            map_forked(lambda i: os.kill(os.getpid(), signal.SIGTERM) or i, [0, 1])
    finally:
        signal.signal(signal.SIGTERM, old)
    assert kept == []  # the parent's handler never ran


@pytest.mark.parametrize("peak, want, tried, grid", [
    (100.0, 100.0, [(0.1, 1.0, 10.0), (100.0,), (1000.0,)], (1.0, 0.1, 10.0)),  # past the top, until it stops gaining
    (1.0, 1.0, [(0.1, 1.0, 10.0)], (1.0, 0.1, 10.0)),  # inside the grid: nothing more is tried
    (1e-4, 0.001, [(0.1, 1.0, 10.0), (0.01,), (0.001,)], (1.0, 0.1, 10.0)),  # past the bottom, at most EDGE_DECADES
    (3e-4, 0.0003, [(0.003, 0.03, 0.3), (0.0003,), (3e-05,)], (0.003, 0.03, 0.3)),  # the decimal, not 0.00030000000000000003
])
def test_cross_validated_c_grows_past_the_end_it_chose(peak, want, tried, grid):
    """The grid grows a decade at a time past the end the best C sits at, while that scores
    higher: a synthetic score that peaks at `peak` (every row right at the peak, fewer away).
    A grown C is the decimal a decade away (it is logged and saved), not a float product."""
    from llmclassify.search import EDGE_DECADES, cross_validate_c

    assert EDGE_DECADES == 2
    y = np.arange(200) % 2
    names = ["a", "b"]
    calls = []

    def fit_oof(folds, grid):
        calls.append(tuple(grid))
        out = {}
        for C in grid:
            wrong = min(100, round(20 * abs(np.log10(C / peak))))  # rows predicted wrong, fewer near the peak
            pred = y.copy()
            pred[:wrong] = 1 - pred[:wrong]
            out[C] = np.eye(2)[pred]
        return out

    C, f1, oof = cross_validate_c(fit_oof, y, names, [[np.arange(len(y))]], grid)  # one repeat, one fold: every row
    assert C == want and calls == [pytest.approx(t) for t in tried]
    assert f1 == pytest.approx(float(np.mean(oof.argmax(1) == y)), abs=0.02)  # balanced: macro-F1 ~ accuracy


def test_windows_combine_to_their_definition(tmp_path):
    """A text cut into windows: `mean` = mean over all its tokens of each window's own states,
    `last` = the last window's last token; texts within one window are unchanged."""
    hf_dir, _ = tiny_llama_hf(tmp_path)
    dec = _decoder(hf_dir)
    g = torch.Generator().manual_seed(3)
    ids = [torch.randint(1, 250, (n,), generator=g).tolist() for n in (11, 4, 8)]
    got, _ = trunk_pass(dec, ids, 0, layers=[1, 2], window=4, progress=False)
    whole, _ = trunk_pass(dec, ids, 0, layers=[1, 2], progress=False)
    for i, seq in enumerate(ids):
        pieces = [seq[s:s + 4] for s in range(0, len(seq), 4)]
        alone = [trunk_pass(dec, [p], 0, layers=[1, 2], progress=False)[0].data[0].float() for p in pieces]
        mean = sum(a[:, 0] * len(p) for a, p in zip(alone, pieces)) / len(seq)
        torch.testing.assert_close(got.data[i, :, 0].float(), mean, atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(got.data[i, :, 1].float(), alone[-1][:, 1], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(got.data[1], whole.data[1])  # 4 tokens: one window


def test_windowed_probe_run_predicts_what_training_reported(tiny_model_dir, small_data, tmp_path):
    run = tmp_path / "win"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="probe", window=6))
    clf = Classifier.load(run)
    assert clf.spec.window == 6
    lengths = {sp: [len(clf.tokenizer.encode(t)) for t in json.loads((run / "split.json").read_text())[sp]["texts"]]
               for sp in ("train", "val", "test")}
    assert s["long_texts"]["texts"] == {sp: sum(n > 6 for n in v) for sp, v in lengths.items()}
    assert s["long_texts"]["texts"]["train"] > 0 and s["truncated"] == {"train": 0, "val": 0, "test": 0}
    _, m = evaluate_run(run)
    assert m["accuracy"] == s["splits"]["test"]["accuracy"]
    assert m["confusion_matrix"] == s["splits"]["test"]["confusion_matrix"]


def test_cut_tokens_keeps_the_head_or_head_and_tail():
    ids = list(range(20))
    assert cut_tokens(ids, 8) == list(range(8))
    assert cut_tokens(ids, 8, "head-tail") == [0, 1] + list(range(14, 20))  # a quarter, then the last 6
    assert cut_tokens(ids[:8], 8, "head-tail") == ids[:8]  # short texts are unchanged


def test_head_tail_run_reads_head_and_tail_in_training_and_prediction(tiny_model_dir, small_data, tmp_path):
    """--long-texts head-tail: texts over --window are cut to their head and tail, counted, saved
    in the spec; prediction cuts them the same way (it predicts what training reported) and a
    text's middle does not change its prediction."""
    run = tmp_path / "ht"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="probe", window=8, long_texts="head-tail"))
    clf = Classifier.load(run)
    assert (clf.spec.truncate, clf.spec.max_length, clf.spec.truncation) == ("head-tail", 8, True)
    lengths = {sp: [len(clf.tokenizer.encode(t)) for t in json.loads((run / "split.json").read_text())[sp]["texts"]]
               for sp in ("train", "val", "test")}
    over = {sp: sum(n > 8 for n in v) for sp, v in lengths.items()}
    assert s["truncated"] == over == s["long_texts"]["texts"] and over["train"] > 0
    peaks = s["peak_rss_mib"]  # memory by stage: the peak so far after each
    assert list(peaks) == ["prepare", "trunk_pass", "baseline", "probe_search"]
    assert list(peaks.values()) == sorted(peaks.values()) and peaks["prepare"] > 50
    _, m = evaluate_run(run)
    assert m["confusion_matrix"] == s["splits"]["test"]["confusion_matrix"]
    head, tail = "win a prize now ", " call us today" * 4  # more tokens than the head and tail keep
    a, b, c = clf.predict([head + "x " * 40 + tail, head + "y z " * 30 + tail, head + "x " * 40 + " free cash" * 6])
    assert a.truncated and a.probabilities == pytest.approx(b.probabilities)
    assert a.probabilities != pytest.approx(c.probabilities)  # the tail is read


@pytest.mark.parametrize("dtype,min_cosine", [("bfloat16", 0.999), ("int8", 0.99)])
def test_reduced_precision_trunk_pass_agrees_with_float32(tmp_path, tiny_model_dir, small_data, dtype, min_cosine):
    """The reduced-precision pass (a converted copy of the blocks) gives the float32 features to
    `min_cosine`; a probe trained on each predicts the same labels on 95% of texts, and the
    reduced run predicts what its training reported (prediction uses the same arithmetic)."""
    hf_dir, _ = tiny_llama_hf(tmp_path)
    dec = _decoder(hf_dir)
    g = torch.Generator().manual_seed(5)
    ids = [torch.randint(1, 250, (int(n),), generator=g).tolist() for n in torch.randint(1, 30, (24,), generator=g)]
    f32, _ = trunk_pass(dec, ids, 0, layers=[1, 2], progress=False)
    low, _ = trunk_pass(dec, ids, 0, layers=[1, 2], dtype=dtype, progress=False)
    cos = torch.nn.functional.cosine_similarity(f32.data.float().flatten(2), low.data.float().flatten(2), dim=-1)
    assert cos.min() > min_cosine
    assert not torch.equal(f32.data, low.data)  # it did run in other arithmetic
    assert next(dec.parameters()).dtype == torch.float32  # the decoder itself is untouched
    runs, summaries = {}, {}
    for d in ("float32", dtype):
        runs[d] = tmp_path / d
        summaries[d] = train(tiny_train_config(tiny_model_dir, small_data, runs[d], recipe="probe", probe="mean@2",
                                               trunk_dtype=d))
    assert summaries[dtype]["trunk_dtype"] == dtype
    texts = json.loads((runs["float32"] / "split.json").read_text())["test"]["texts"]
    a = [p.label for p in Classifier.load(runs["float32"]).predict(texts)]
    b = [p.label for p in Classifier.load(runs[dtype]).predict(texts)]
    assert np.mean([x == y for x, y in zip(a, b)]) >= 0.95
    if dtype == "int8" or fast_bfloat16("cpu"):
        _, m = evaluate_run(runs[dtype])
        assert m["confusion_matrix"] == summaries[dtype]["splits"]["test"]["confusion_matrix"]
    if dtype == "int8":  # prediction smooths on the run's recorded texts: the training pass's features
        clf = Classifier.load(runs[dtype])
        assert clf.spec.calibration_ids and all(clf.spec.calibration_ids)
        base = _decoder(tiny_model_dir)
        batch = [x[:8] for x in ids if len(x) >= 8][:4]  # one length: int8 activation scales are per batch
        trained, _ = trunk_pass(base, batch, 0, layers=[2], dtype="int8", calibration=clf.spec.calibration_ids,
                                progress=False)
        unsmoothed, _ = trunk_pass(base, batch, 0, layers=[2], dtype="int8", calibration=[], progress=False)
        input_ids, mask = pad_batch(batch, 0, side="right")
        got = clf.model.pooled(input_ids, mask)[:, 0].to(torch.float16)
        torch.testing.assert_close(got, trained.data[:4, 0], atol=2e-3, rtol=2e-3)
        assert not torch.allclose(got, unsmoothed.data[:4, 0], atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("flags,expected", [(["avx2", "avx512_bf16", "avx512_vnni"], "bfloat16"),
                                             (["amx_bf16"], "bfloat16"), (["avx2", "avx512_vnni"], "int8"),
                                             (["amx_int8"], "int8"), (["avx2", "avx_vnni"], "int8"),
                                             (["avx2"], "float32"), ([], "float32")])
def test_auto_trunk_dtype_follows_the_cpu(monkeypatch, flags, expected):
    """`--trunk-dtype auto`: bfloat16 where the CPU has it fast, else int8 where it has int8 dot
    products, else float32; a named arithmetic is kept (int8 on a GPU is refused)."""
    from llmclassify import precision

    monkeypatch.setattr(precision, "cpu_features", lambda: {"cpu": "test", "flags": flags, "cores": 2, "torch": "x"})
    assert precision.choose_trunk_dtype("cpu") == expected
    assert precision.choose_trunk_dtype("cpu", "float32") == "float32"
    with pytest.raises(ValueError, match="for CPUs"):
        precision.choose_trunk_dtype("cuda", "int8")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_hold_freed_memory_keeps_a_freed_20_mb_block_in_the_process():
    """precision.hold_freed_memory: a freed 20 MB block stays resident for the next pass to
    reuse (no page faults), where glibc's default hands it back to the kernel at once."""
    import subprocess

    probe = (
        "import sys, torch\n"
        "from llmclassify.precision import hold_freed_memory\n"
        "if sys.argv[1] == 'hold': hold_freed_memory()\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "x = torch.ones(5 << 20); before = rss(); del x\n"
        "print((before - rss()) >> 20)\n")
    dropped = {how: int(subprocess.run([sys.executable, "-c", probe, how], capture_output=True, text=True,
                                       check=True).stdout.split()[-1]) for how in ("default", "hold")}
    assert dropped["default"] >= 15 and dropped["hold"] <= 2, dropped


@pytest.mark.parametrize("product", ["int_mm", "onednn"])
def test_int8_linear_is_close_to_float32_and_each_token_independent_of_its_batch(product):
    """Int8Linear, with either int8 product: within int8's rounding of the float32 layer, equal
    to its definition (weights and each token rounded, the integer products summed exactly), and
    a token's output is the same alone as among others whose values are a thousand times larger
    (per-token scales; PyTorch's dynamic quantization, one scale per batch, fails this)."""
    import copy

    from llmclassify.precision import ONEDNN_WEIGHT_LEVELS, Int8Linear, quantize_int8

    if product == "onednn" and not precision._has_onednn_int8():
        pytest.skip("no oneDNN int8 matmul in this PyTorch (not x86)")
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 24)
    x = torch.randn(5, 64)
    q = Int8Linear(lin, product)
    ref = lin(x)
    assert ((q(x) - ref).norm() / ref.norm()) < 0.02
    levels = 127 if product == "int_mm" else ONEDNN_WEIGHT_LEVELS
    w_scale = lin.weight.abs().amax(1) / levels
    x_scale = x.abs().amax(1, keepdim=True) / 127
    exact = (x / x_scale).round() @ (lin.weight / w_scale[:, None]).round().T * x_scale * w_scale + lin.bias
    torch.testing.assert_close(q(x), exact, rtol=1e-5, atol=1e-5)
    crowd = torch.cat([x[:1], 1000 * torch.randn(7, 64)])
    torch.testing.assert_close(q(crowd)[:1], q(x[:1]), rtol=0, atol=0)
    assert q(x.view(1, 5, 64)).shape == (1, 5, 24)
    torch.testing.assert_close(copy.deepcopy(q)(x), q(x), rtol=0, atol=0)  # reduced_blocks copies blocks
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(64, 3)))
    quantize_int8(model)
    assert [type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__] == ["Int8Linear"] * 2


def test_the_int8_product_is_pytorchs_only_where_it_has_fast_kernels(monkeypatch):
    """torch._int_mm runs oneDNN's kernels only on CPUs with AVX512-VNNI and a plain loop
    elsewhere (30-60x slower than float32 on an AVX2-only EPYC): oneDNN's int8 matmul there."""
    from llmclassify import precision

    flags = {"flags": ["avx2", "avx512_vnni", "avx512f"]}
    monkeypatch.setattr(precision, "cpu_features", lambda: flags)
    monkeypatch.setattr(precision, "_has_onednn_int8", lambda: True)
    assert precision.int8_product() == "int_mm"
    flags["flags"] = ["avx2", "avx_vnni"]
    assert precision.int8_product() == "onednn"
    monkeypatch.setattr(precision, "_has_onednn_int8", lambda: False)
    assert precision.int8_product() == "int_mm"


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_int8_smoothing_keeps_the_float32_function_and_cuts_the_int8_error(tmp_path, family):
    """SmoothQuant's rescaling (precision.smooth_for_int8) leaves float32 features unchanged
    (LayerNorm bias, q/k/v bias, grouped K/V heads alike); on blocks whose norm makes one input
    channel a hundred times the rest, read by small weights (as real models' are), the smoothed
    int8 pass is closer to float32 than the unsmoothed one."""
    import copy

    from llmclassify.precision import calibration_ids, input_maxima, smooth_for_int8

    hf_dir = {"gpt2": lambda: tiny_gpt2_hf(tmp_path), "llama": lambda: tiny_llama_hf(tmp_path),
              "qwen2": lambda: tiny_llama_hf(tmp_path, qwen=True)}[family]()[0]
    dec = _decoder(hf_dir)
    for block in dec.blocks:  # an outlier channel in what q/k/v and the MLP read, with small weights
        block.norm1.weight.data[3] *= 100  # reading it (as in real models): the function is the same,
        block.norm2.weight.data[5] *= 100  # but the channel sets each token's int8 scale
        for proj in (block.attn.q_proj, block.attn.k_proj, block.attn.v_proj):
            proj.weight.data[:, 3] /= 100
        for proj in (getattr(block.mlp, "gate_proj", None), block.mlp.up_proj):
            if proj is not None:
                proj.weight.data[:, 5] /= 100
    g = torch.Generator().manual_seed(7)
    ids = [torch.randint(1, 250, (int(n),), generator=g).tolist() for n in torch.randint(4, 30, (24,), generator=g)]
    layers = list(range(1, len(dec.blocks) + 1))
    f32, _ = trunk_pass(dec, ids, 0, layers=layers, progress=False)
    smoothed = copy.deepcopy(dec)
    n = len(dec.blocks)
    smooth_for_int8(smoothed.blocks, input_maxima(dec, n, calibration_ids(ids)))
    same, _ = trunk_pass(smoothed, ids, 0, layers=layers, progress=False)
    assert not torch.equal(smoothed.blocks[0].norm1.weight, dec.blocks[0].norm1.weight)
    torch.testing.assert_close(same.data.float(), f32.data.float(), atol=2e-3, rtol=2e-3)

    def int8_cosine(calibration):
        low, _ = trunk_pass(dec, ids, 0, layers=layers, dtype="int8", calibration=calibration, progress=False)
        return torch.nn.functional.cosine_similarity(f32.data.float(), low.data.float(), dim=-1).mean()

    plain, smoothed = int8_cosine([]), int8_cosine(None)  # no calibration texts: plain int8
    assert 1 - smoothed < (1 - plain) / 4 and plain < 0.999  # the outlier costs plain int8; smoothing undoes it


def test_a_run_converts_and_calibrates_the_trunk_once_for_all_splits(tmp_path, tiny_model_dir, small_data,
                                                                     monkeypatch):
    """The int8 blocks (smoothing's float32 calibration pass included) are built once per run,
    not once per split."""
    from llmclassify import precision

    calls = []
    real = precision.input_maxima
    monkeypatch.setattr(precision, "input_maxima", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = train(tiny_train_config(tiny_model_dir, small_data, tmp_path / "run", recipe="auto", trunk_dtype="int8",
                                baseline="none"))
    assert s["trunk_dtype"] == "int8" and len(calls) == 1


@pytest.mark.parametrize("dtype", ["int8", "bfloat16"])
def test_auto_finetuned_top_predicts_in_the_arithmetic_of_its_trunk_cache(tiny_model_dir, small_data, tmp_path,
                                                                           monkeypatch, dtype):
    """`--recipe auto --search-finetune` trains its fine-tuned candidate on the shared pass's cache (reduced
    arithmetic); when that candidate wins, prediction runs the frozen blocks in the same
    arithmetic (spec.trunk_dtype, spec.frozen_blocks) and reports what training reported."""
    if dtype == "bfloat16" and not fast_bfloat16("cpu"):
        pytest.skip("prediction runs bfloat16 only where the CPU has it fast")
    from llmclassify import search

    real = search.choose
    monkeypatch.setattr(search, "choose", lambda cands, by: next(
        (c for c in cands if c.kind == "finetune"), None) or real(cands, by))
    run = tmp_path / "auto-ft"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="auto", trunk_dtype=dtype, baseline="none",
                                search_finetune=True))
    clf = Classifier.load(run)
    n = len(clf.model.decoder.blocks)
    assert s["recipe"]["chosen"].startswith("finetune") and s["trunk_dtype"] == dtype
    assert (clf.spec.recipe, clf.spec.trunk_dtype, clf.spec.frozen_blocks) == ("finetune", dtype, n - 1)
    assert clf.model.reduced_blocks == n - 1
    _, m = evaluate_run(run)
    assert m["confusion_matrix"] == s["splits"]["test"]["confusion_matrix"]
    assert m["macro_f1"] == pytest.approx(s["splits"]["test"]["macro_f1"])
    texts = json.loads((run / "split.json").read_text())["test"]["texts"]
    low = np.array([[p.probabilities[k] for k in clf.labels] for p in clf.predict(texts)])
    f32 = Classifier.load(run, trunk_dtype="float32")
    assert f32.model.reduced_blocks == 0
    full = np.array([[p.probabilities[k] for k in clf.labels] for p in f32.predict(texts)])
    assert not np.allclose(low, full, atol=1e-6) and np.allclose(low, full, atol=0.1)


def test_layer_mix_is_one_map_weighted_per_vector_and_finds_the_informative_layer():
    """fit_mix returns a concatenation map whose blocks are one D-wide map times a softmax
    weight per vector, and the weight goes to the vector that carries the labels."""
    from llmclassify.probes import fit_mix

    rng = np.random.default_rng(0)
    n, v, d, c = 400, 5, 16, 3
    z = rng.normal(size=(n, v, d))
    y = rng.integers(0, c, n)
    z[:, 3, :c] += 2.0 * np.eye(c)[y]  # only vector 3 knows the label
    weight, bias = fit_mix(z.reshape(n, v * d), y, c, C=1.0, vectors=v)
    blocks = weight.reshape(c, v, d)
    share = np.abs(blocks).sum((0, 2)) / np.abs(blocks).sum()
    assert share.argmax() == 3 and share[3] > 0.9
    ref = blocks[:, 3] / np.abs(blocks[:, 3]).sum()
    for k in range(v):  # every block is the same map, scaled
        np.testing.assert_allclose(blocks[:, k] / np.abs(blocks[:, k]).sum(), ref, atol=1e-4)
    acc = ((z.reshape(n, v * d) @ weight.T + bias).argmax(1) == y).mean()
    assert acc > 0.8


def test_a_layer_mix_probe_predicts_what_training_reported(tiny_model_dir, small_data, tmp_path):
    run = tmp_path / "mix"
    s = train(tiny_train_config(tiny_model_dir, small_data, run, recipe="probe", probe="mix:mean@1+2,last@2",
                                baseline="none"))
    assert s["recipe"]["chosen"].startswith("probe mix:mean@1+2,last@2")  # (" balanced" when that scored higher)
    assert {c["mix"] for c in s["recipe"]["candidates"]} == {True}
    clf = Classifier.load(run)
    assert clf.spec.probe == [(1, "mean"), (2, "mean"), (2, "last")]  # predicts as the concatenation
    _, m = evaluate_run(run)
    assert m["confusion_matrix"] == s["splits"]["test"]["confusion_matrix"]
    assert m["macro_f1"] == pytest.approx(s["splits"]["test"]["macro_f1"])


def test_padded_length_bounds_the_waste_and_the_number_of_shapes():
    from llmclassify.features import padded_length

    got = [padded_length(t) for t in range(1, 2049)]
    assert all(t <= p <= max(t + 3, 1.125 * t) for t, p in zip(range(1, 2049), got))  # < 4 or < 12.5% more
    assert len(set(got)) <= 60  # a few dozen shapes for every length up to 2,048


@pytest.mark.parametrize("n_spam, weighted_tried", [(60, False), (20, True)])
def test_search_tries_balanced_weights_only_where_the_classes_are_not_balanced(n_spam, weighted_tried):
    from llmclassify.features import PooledFeatures
    from llmclassify.probes import candidate_probes
    from llmclassify.search import repeated_folds, search_probes

    rng = np.random.default_rng(3)
    y = np.array([0] * 60 + [1] * n_spam)
    data = torch.from_numpy(rng.normal(size=(len(y), 2, 2, 8)).astype(np.float16))
    data[:, :, :, 0] += torch.from_numpy(y.astype(np.float16))[:, None, None]  # one informative feature
    pool = PooledFeatures(data, [1, 2])
    lines = []
    search_probes(pool, y, ["ham", "spam"], repeated_folds(y, 0), np.arange(len(y) - 10, len(y)),
                  candidate_probes(pool.layers), log=lines.append)
    assert any(line.strip().startswith("probe") and " balanced" in line for line in lines) == weighted_tried
