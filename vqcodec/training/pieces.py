"""Files in pieces: a GPU machine returns files under a size cap, so checkpoints travel split.

``split_file`` writes ``<name>.partNNN`` pieces and a ``<name>.pieces.json`` manifest with the
SHA-256 of every piece and of the whole; ``join_pieces`` checks them all and rebuilds the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..fileio import atomic_write


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_file(path: str | Path, out_dir: str | Path, max_bytes: int = 15 * 2**20) -> Path:
    """Split ``path`` into pieces of at most ``max_bytes`` in ``out_dir``; returns the manifest path."""
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()
    pieces = []
    for i, start in enumerate(range(0, max(len(data), 1), max_bytes)):
        chunk = data[start : start + max_bytes]
        name = f"{path.name}.part{i:03d}"
        atomic_write(out_dir / name, chunk, force=True)
        pieces.append({"file": name, "bytes": len(chunk), "sha256": _sha256(chunk)})
    manifest = out_dir / f"{path.name}.pieces.json"
    text = json.dumps({"name": path.name, "bytes": len(data), "sha256": _sha256(data), "pieces": pieces}, indent=1)
    atomic_write(manifest, text.encode(), force=True)
    return manifest


def join_pieces(manifest: str | Path, dest: str | Path | None = None) -> Path:
    """Rebuild the file a manifest describes (beside it unless ``dest``), verifying every checksum."""
    manifest = Path(manifest)
    info = json.loads(manifest.read_text())
    parts = []
    for piece in info["pieces"]:
        chunk = (manifest.parent / piece["file"]).read_bytes()
        if _sha256(chunk) != piece["sha256"]:
            raise ValueError(f"{piece['file']}: SHA-256 mismatch (damaged or incomplete transfer)")
        parts.append(chunk)
    data = b"".join(parts)
    if _sha256(data) != info["sha256"]:
        raise ValueError(f"{info['name']}: SHA-256 of the joined pieces does not match the manifest")
    dest = Path(dest) if dest else manifest.parent / info["name"]
    atomic_write(dest, data, force=True)
    return dest
