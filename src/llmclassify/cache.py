"""The user cache directory: downloaded model files and dequantized GGUF weights.

``~/.cache/llmclassify`` unless the environment variable ``LLMCLASSIFY_CACHE`` or an explicit
argument says otherwise. Everything written here goes to a temporary name first and is then
renamed into place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .files import atomic_write_bytes, sha256_file

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
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(memo_path, json.dumps(memo, indent=0).encode())
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return digest
