"""Built-in data sets: the packaged files (`builtin_path`), `load_dataset` (a built-in data set
by name, or any file), and `download_sms_spam` (the original from UCI, checksum-verified)."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

from ..errors import DataError, UserError
from ..files import atomic_open
from .columns import _close
from .readers import Table, read_table
from .rows import _codec

# Built-in data sets: name -> (file in llmclassify/datasets, format).
BUILTIN_DATASETS = {"sms-spam": ("sms_spam_collection.tsv", "tsv")}

SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SMS_SPAM_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"
SMS_SPAM_MEMBER = "SMSSpamCollection"


def builtin_path(name: str) -> Path:
    """Path of the packaged file of built-in data set `name` (e.g. `sms-spam`)."""
    if name not in BUILTIN_DATASETS:
        raise UserError(
            f"unknown built-in data set '{name}' (built-in: {', '.join(BUILTIN_DATASETS)})"
        )
    filename, _ = BUILTIN_DATASETS[name]
    return Path(str(resources.files("llmclassify").joinpath("datasets", filename)))


def load_dataset(name_or_path: str | os.PathLike, **kw) -> Table:
    """`read_table` on a file, or on a built-in data set by name (`sms-spam`).

    `sms-spam` is SMSSpamCollection v.1 (CC BY 4.0, see llmclassify/datasets/ATTRIBUTION.md):
    5,574 rows, 4,827 ham, 747 spam. Pass `quoting=True` to read it exactly as the book's
    `pandas.read_csv(sep="\\t")` does (5,572 rows), which `reference_split` needs to reproduce
    the book's rows.
    """
    key = os.fspath(name_or_path)
    if key in BUILTIN_DATASETS:
        kw.setdefault("fmt", BUILTIN_DATASETS[key][1])
        _codec(kw.get("encoding", "utf-8"))  # a bad name is still an error
        kw["encoding"] = "utf-8"  # the packaged files are UTF-8, whatever the user's files are
        return read_table(builtin_path(key), **kw)
    if not Path(key).exists():
        guess = _close(key, list(BUILTIN_DATASETS))
        did = f"; did you mean the built-in data set '{guess}'?" if guess else ""
        raise DataError(
            f"no such file{did} (built-in data sets: {', '.join(BUILTIN_DATASETS)})", file=key
        )
    return read_table(key, **kw)


def download_sms_spam(
    dest: str | os.PathLike, url: str = SMS_SPAM_URL, timeout: float = 60.0
) -> Path:
    """Download SMSSpamCollection from UCI, check its sha256, write it to `dest` atomically.

    `dest` is a file path, or a directory to hold `SMSSpamCollection`. Not needed for normal
    use: the same file ships in the package as the `sms-spam` data set. Any failure (no
    network, bad zip, checksum mismatch) raises a one-line `UserError`.
    """
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / SMS_SPAM_MEMBER
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            payload = resp.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"cannot download {url}: {reason}; no download is needed, the packaged copy "
            "(data set 'sms-spam') is used by default"
        ) from None
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            names = [n for n in zf.namelist() if Path(n).name == SMS_SPAM_MEMBER]
            if not names:
                raise UserError(f"{url}: the zip holds no {SMS_SPAM_MEMBER}")
            data = zf.read(names[0])
    except zipfile.BadZipFile as e:
        raise UserError(f"{url}: not a valid zip file ({e})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SMS_SPAM_SHA256:
        raise UserError(
            f"{url}: {SMS_SPAM_MEMBER} has sha256 {digest}, expected {SMS_SPAM_SHA256}; "
            "the download is corrupt or the file changed upstream"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(dest, "wb") as fh:
        fh.write(data)
    return dest

