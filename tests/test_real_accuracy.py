"""Accuracy that matters, trained for real on the default model (slow; runs in CI).

The default split (1,035 test texts, 13% spam): `llmclassify train` as a new user runs it must
beat the baseline by 1 macro-F1 point with an LLM-only probe (the search's ensemble) and reach
spam F1 0.97 within one spam text, which takes the out-of-fold decision threshold. Measured
(benchmarks/results/recipes-22.md): 0.9869 against the baseline solved to its optimum, 0.9729
(+1.40; issue 15 asks for +1.5, missed), spam F1 0.9771. The bound leaves a few texts for CPUs
that round bfloat16 differently.

The book's split of the SMS data (`--preset reference`, 300 test texts): the book's recipe
must keep the test accuracy it was measured at (291 of 300), and `--recipe auto` the 295 of 300
its ensemble of probes gets in bfloat16 and float32 (the TF-IDF baseline: 291). Figures:
benchmarks/results/recipes-ensemble.md. One test text is 0.33 points, and CPUs without AVX-512
round differently, so each bound allows one text.
"""

from __future__ import annotations

import pytest

from llmclassify.train import TrainConfig, train, with_preset

pytestmark = pytest.mark.slow

ONE_TEXT = 1 / 300


def _reference(tmp_path, **kw):
    cfg = with_preset(TrainConfig(output_dir=str(tmp_path / "run"), progress=False, **kw), "reference",
                      overrides=set(kw))
    return train(cfg)


def test_default_run_beats_the_baseline_with_an_llm_only_probe_and_a_tuned_threshold(tmp_path):
    s = train(TrainConfig(output_dir=str(tmp_path / "run"), progress=False))
    test, base = s["splits"]["test"], s["baseline"]["splits"]["test"]
    chosen = next(c for c in s["recipe"]["candidates"] if c["name"] == s["recipe"]["chosen"])
    assert chosen["kind"] == "probe"  # LLM only: no n-gram features
    assert s["threshold"]["objective"] == "macro-f1" and s["threshold"]["threshold"] < 0.5
    assert test["macro_f1"] >= base["macro_f1"] + 0.010  # measured: 0.9869 vs 0.9729 (recipes-22)
    one_spam_text = 0.004  # of about 130 spam texts
    assert test["per_class"]["spam"]["f1"] >= 0.97 - one_spam_text  # measured: 0.9771 (recipes-22)


def test_reference_preset_keeps_its_measured_accuracy(tmp_path):
    s = _reference(tmp_path)
    assert s["recipe"]["chosen"].startswith("finetune")
    assert s["splits"]["test"]["accuracy"] >= 0.97 - ONE_TEXT  # measured: 97.00% (291 of 300)


def test_auto_recipe_on_the_reference_split_beats_the_baseline(tmp_path):
    s = _reference(tmp_path, recipe="auto")
    test, base = s["splits"]["test"], s["baseline"]["splits"]["test"]
    assert test["macro_f1"] > base["macro_f1"]  # measured: 0.9833 vs 0.9700 (recipes-ensemble)
    assert test["accuracy"] >= 0.9833 - ONE_TEXT  # measured: 98.33% (benchmarks/results/recipes-ensemble.md)
    chosen = next(c for c in s["recipe"]["candidates"] if c["name"] == s["recipe"]["chosen"])
    assert chosen["cv_macro_f1"] is not None  # chosen out of fold: auto fine-tunes only with --search-finetune
