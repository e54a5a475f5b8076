"""The user cache directory: downloaded model files and dequantized GGUF weights.

``~/.cache/llmclassify`` unless the environment variable ``LLMCLASSIFY_CACHE`` or an explicit
argument says otherwise. Everything written here goes to a temporary name first and is then
renamed into place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

ENV_VAR = "LLMCLASSIFY_CACHE"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: `override`, else $LLMCLASSIFY_CACHE, else ~/.cache/llmclassify (not created)."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "llmclassify"


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where downloaded model files (e.g. the default GGUF) live."""
    return cache_dir(override) / "models"


def gguf_cache_dir(sha256: str, override: str | os.PathLike[str] | None = None) -> Path:
    """Where the dequantized weights of the GGUF file with this sha256 live."""
    return cache_dir(override) / "gguf" / sha256


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_sha256(path: str | os.PathLike[str], override: str | os.PathLike[str] | None = None) -> str:
    """sha256 of a file, remembered in the cache keyed by (absolute path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = cache_dir(override) / "sha256.json"
    try:
        memo = json.loads(memo_path.read_text())
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    digest = sha256_file(p)
    memo = {k: v for k, v in memo.items() if not k.startswith(f"{p}|")}
    memo[key] = digest
    try:
        atomic_write_text(memo_path, json.dumps(memo, indent=0))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return digest


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same directory and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
