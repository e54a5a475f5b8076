"""What a benchmark ran on and from: the machine (CPU facts come from
`llmclassify.precision.cpu_features`, the one place that reads them), the torch version, the
git commit, the date and the command line. Every benchmark script records `describe()` beside
its figures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def git_commit(repo: str | Path = REPO) -> str:
    """Short commit of `repo`'s HEAD, with `+dirty` when tracked files differ from it (but the
    results in benchmarks/results/, which an earlier benchmark of the same batch may have just
    written); `unknown` outside a git checkout (or without git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def describe(argv: list[str] | None = None) -> dict:
    """The machine and the run: cpu, flags (the ones precision.py decides on), cores, torch,
    commit, date, command, and `summary`, one line of them for a report's header."""
    from llmclassify.precision import cpu_features

    facts = cpu_features()
    argv = sys.argv if argv is None else argv
    flags = ", ".join(facts["flags"]) or "none of " + "/".join(("avx2", "avx512f", "avx512_bf16"))
    return {
        **facts,
        "python": sys.version.split()[0],
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python", *argv]),
        "summary": f"{facts['cpu']}, {facts['cores']} cores ({flags}); torch {facts['torch']}",
    }


def report_header(title: str, m: dict) -> list[str]:
    """The first lines of a result's markdown: its title, then the command, commit and date, and
    the machine (`m`: describe())."""
    return [f"# {title}", "", f"Command: `{m['command']}`; commit {m['commit']}; {m['date']}.", "",
            f"Machine: {m['summary']}.", ""]


def write_report(out: str | Path, report: dict, md: list[str]) -> None:
    """OUT.json (`report`) and OUT.md (the lines `md`), then the lines printed."""
    import json

    out = Path(out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
