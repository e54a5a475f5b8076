"""files.atomic_open: the one write helper (temp file beside the target, fsync, rename; the temp
file goes on failure)."""

from __future__ import annotations

import os

import pytest

from llmclassify.files import atomic_open, atomic_write_bytes


def leftovers(d):
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


def test_atomic_open_writes_and_replaces(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with atomic_open(p, "w") as f:
        f.write("né\n")
        assert p.read_text() == "old"  # the target changes only at the end
    assert p.read_bytes() == "né\n".encode()
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01" and not leftovers(tmp_path)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_open_failure_keeps_the_old_file(tmp_path, exc):
    p = tmp_path / "out.bin"
    p.write_bytes(b"old")
    with pytest.raises(exc), atomic_open(p, "wb") as f:
        f.write(b"half")
        raise exc()
    assert p.read_bytes() == b"old" and not leftovers(tmp_path)


def test_atomic_open_mode_and_chmod(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
    with atomic_open(tmp_path / "m", "wb", chmod=0o644) as f:
        f.write(b"x")
    assert os.stat(tmp_path / "m").st_mode & 0o777 == 0o644
