"""Running the CLI in-process and checking its one-line errors: shared by the tests of bad input."""

from __future__ import annotations

from llmclassify.cli import main


def cli(capsys, *args) -> tuple[int, str, str]:
    """`llmclassify ARGS...` in this process: (exit status, stdout, stderr)."""
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    """Exit status 2 and ONE line `llmclassify: error: ...` holding every needle, no traceback."""
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmclassify: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
