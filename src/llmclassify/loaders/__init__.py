"""Model loaders: each turns a source into (ModelConfig, state dict in our names).

See docs/architecture.md for the names. `load_model(source)` dispatches on the source:
a preset name, a Hugging Face model directory, a Hub id, or a GGUF file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelLoadError
from .presets import PRESETS, load_preset

if TYPE_CHECKING:
    from .base import LoadedModel

__all__ = ["load_model"]

# "org/name" or "org/name@revision", as the Hub spells ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def load_model(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> LoadedModel:
    """Load a preset name, a Hugging Face model directory, a GGUF file, or a Hub id
    ("org/name", optionally "@revision"), in that order of precedence."""
    s = os.fspath(source)
    if s in PRESETS:
        return load_preset(s, cache_dir)
    p = Path(s).expanduser()
    if p.is_dir():
        from .hf import load_hf_dir

        return load_hf_dir(p)
    if p.is_file():
        from .gguf import is_gguf, load_gguf

        if is_gguf(p):
            return load_gguf(p, cache_dir=cache_dir)
        raise ModelLoadError(f"{p}: not a GGUF file (bad magic bytes) or a model directory")
    if _HUB_ID.match(s) and not s.startswith((".", "~")):
        from .hub import load_hub

        repo, _, rev = s.partition("@")
        return load_hub(repo, revision=rev or None)
    raise ModelLoadError(
        f"{s}: no such file or directory, and not a preset ({', '.join(PRESETS)}) or Hub id (org/name)"
    )
