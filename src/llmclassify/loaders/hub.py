"""Hugging Face Hub ids ("org/name"): fetch a safetensors snapshot into the HF cache, load it.

Only the files a classifier needs are fetched (config, safetensors, tokenizer files). The
standard cache is used and `HF_HUB_OFFLINE`, `HF_HOME` and `HF_HUB_CACHE` are honoured, read
when `load_hub` is called (huggingface_hub reads them once at import). Without network, a
cached snapshot still loads; an uncached one raises a one-line ModelLoadError saying what to
download and where.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelLoadError
from .base import LoadedModel
from .hf import load_hf_dir

ALLOW_PATTERNS = [
    "config.json",
    "model*.safetensors",  # not *.safetensors: Mistral repos also ship consolidated.safetensors
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
]

_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value, read now."""
    v = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return v.strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """The Hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _download_hint(repo_id: str, revision: str | None, cache: Path) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (
        f"download it with `hf download {repo_id}{rev} --include '*.json' 'model*.safetensors' "
        f"merges.txt` (it goes to the cache at {cache}), or pass a local model directory"
    )


def load_hub(repo_id: str, revision: str | None = None) -> LoadedModel:
    """Load a Hub model id through the HF cache; identity kind "hub" with the resolved commit."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = hub_cache_dir()
    offline = hub_offline()
    try:
        snap = snapshot_download(
            repo_id, revision=revision, cache_dir=str(cache), local_files_only=offline,
            allow_patterns=ALLOW_PATTERNS,
        )
    except GatedRepoError:
        raise ModelLoadError(
            f"{repo_id}: gated repository on the Hugging Face Hub; accept its licence on the "
            f"website and log in (`hf auth login`), or pass a local model directory") from None
    except RepositoryNotFoundError:
        raise ModelLoadError(
            f"{repo_id}: no such model on the Hugging Face Hub (or it is private)") from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"{repo_id}: revision '{revision}' not found on the Hub") from None
    except HFValidationError as e:
        raise ModelLoadError(f"{repo_id}: not a valid Hub model id ({str(e).splitlines()[0]})") from None
    except (LocalEntryNotFoundError, OSError) as e:
        # Offline, unreachable, or partly cached: say what to fetch and where it must go.
        if offline:
            why = "HF_HUB_OFFLINE is set"
        else:
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            why = f"the Hub could not be reached ({detail})"
        raise ModelLoadError(
            f"{repo_id}: not in the Hugging Face cache and {why}; "
            + _download_hint(repo_id, revision, cache)) from None
    snap = Path(snap)
    try:
        lm = load_hf_dir(snap)
    except ModelLoadError as e:
        raise ModelLoadError(f"{repo_id}: {e}") from None
    lm.identity = {
        "kind": "hub",
        "source": repo_id,
        "repo_id": repo_id,
        "revision": snap.name,  # snapshot folders are named by their commit hash
        "requested_revision": revision,
        "sha256": lm.identity.get("sha256"),
    }
    return lm
