"""User-facing errors: one line that names the file, line, field or tensor at fault.

Anything the user can fix (a bad file, a missing column, an unsupported model) raises
`UserError`; the CLI prints its message on one line and exits with status 2. Every other
exception is a bug or a failed run (exit 1).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix. `str(err)` is the whole one-line message."""

    exit_code = 2


class DataError(UserError):
    """A problem in a data file, located by file, line and field where known."""

    def __init__(self, message: str, *, file=None, line: int | None = None, field: str | None = None):
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")
        self.file, self.line, self.field = file, line, field


class ModelLoadError(UserError):
    """A model source that cannot be loaded: unknown path, architecture, tensor or shape."""


class Interrupted(Exception):
    """Training stopped on SIGINT / SIGTERM after saving a resumable state (resume.py); the
    CLI prints the message (it says how to continue) and exits with `exit_code`, 128 + the
    signal number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)
