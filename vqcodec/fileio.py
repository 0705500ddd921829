"""File output and checksums, each done one way: a temp file in the target folder then a rename
(never a partial file), SHA-256 as hex, and downloads that are verified before they appear."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import WeightsError

_BLOCK = 1 << 20


def atomic_save(path: str | Path, write: Callable[[BinaryIO], None], force: bool = False) -> None:
    """Call ``write`` on a temp file in the same folder, fsync, then rename it to ``path``.

    Nothing appears at ``path`` unless ``write`` returns; an exception (a failed checksum, say)
    removes the temp file. Refuses to replace an existing file unless ``force``.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if not force and path.exists():
            raise FileExistsError(f"{path} exists")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write bytes with :func:`atomic_save`: never a partial file."""
    atomic_save(path, lambda f: f.write(data), force)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in blocks (weights files need not fit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | Path, sha256: str | None = None) -> str:
    """Download ``url`` to ``dest`` atomically and return its hex SHA-256.

    With ``sha256`` the file is checked before it is renamed into place, so a wrong or truncated
    download never appears at ``dest``. Failures raise :class:`WeightsError` naming the URL, and
    where to put the file by hand when there is no network.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()

    def fetch(out: BinaryIO) -> None:
        with urllib.request.urlopen(url, timeout=30) as response:
            for block in iter(lambda: response.read(_BLOCK), b""):
                h.update(block)
                out.write(block)
        if sha256 and h.hexdigest() != sha256:
            raise WeightsError(f"download of {url} has SHA-256 {h.hexdigest()}, expected {sha256}")

    try:
        atomic_save(dest, fetch, force=True)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WeightsError(f"cannot download {url} ({exc}); without network access, place the file at {dest}") from None
    return h.hexdigest()
