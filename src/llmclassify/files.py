"""File primitives shared by the run directory, the model cache, the loaders, the data
download and the exports: `atomic_open`, the one way this project writes a file (never
half-written), `atomic_dir`, the same for a directory of files, and streamed sha256 of one or
several files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    encoding: str | None = None,
    chmod: int | None = None,
) -> Iterator[IO]:
    """Open a temporary file beside `path` (`.<name>.XXXX.tmp`, same folder so the rename stays
    on one file system) for writing; when the block ends normally, flush, fsync, and rename it
    to `path`; when it raises (KeyboardInterrupt included), delete it. A reader sees the old
    file or the new one, never part of one.

    `mode` is "wb" or "w" (text: `encoding` defaults to UTF-8). The file is created owner-only
    (mkstemp); `chmod` (e.g. 0o644) sets its mode before the rename.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes a new file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if chmod is not None:
            os.chmod(tmp, chmod)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through `atomic_open`."""
    with atomic_open(path, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory whole or not at all: yield a new empty directory beside `path`
    (`.<name>.XXXX.tmp`); when the block ends normally it takes the place of `path` (an old
    directory there is moved aside, then deleted), when it raises it is deleted. A reader
    sees the old directory (or none) or the new one, never part of one. The caller decides
    whether an existing `path` may be replaced (checkpoint.check_output_dir)."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
        if path.exists():
            old = tmp.with_suffix(".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_files(files: Iterable[str | os.PathLike[str]], chunk: int = 1 << 22) -> str:
    """sha256 of the files' bytes streamed in order (for shards: sorted names, concatenated)."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    return sha256_files([path])
