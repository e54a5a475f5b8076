"""The facts every benchmark result records: CPU model and flags, cores, torch, commit, date."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from llmclassify.precision import cpu_features


def git_commit() -> str:
    """The checkout's commit, with '+dirty' when files differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def describe() -> dict:
    """CPU facts (llmclassify.precision.cpu_features), the commit, the date, the command line, and
    a one-line `summary` for tables."""
    f = cpu_features()
    info = {**f, "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(["python", *sys.argv])}
    info["summary"] = (f"{f['cpu']}, {f['cores']} cores, flags {' '.join(f['flags']) or 'none of note'}, "
                       f"torch {f['torch']}")
    return info
