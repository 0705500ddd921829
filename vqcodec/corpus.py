"""Corpus-scale encoding and decoding on Ray Data: a folder of images ↔ a folder of ``.vqc`` files.

The file list becomes a Ray dataset; an actor pool, one loaded :class:`~vqcodec.codec.Codec` per
actor (one GPU each where the cluster has GPUs, two CPU threads each otherwise), reads each
input, converts it and writes the output atomically, so both folders must be on a filesystem
every node sees. Every input becomes one manifest row, ``status`` "ok" or "error": a bad file is a
row with its error, never a failed job. The manifest (``OUTDIR/manifest.parquet``) is rewritten
atomically every minute and at the end, so a rerun skips the rows already done; it assumes the
same settings (``force`` redoes everything). Ray is imported inside the functions: ``import
vqcodec`` never needs it.

Parquet, not CSV or JSON lines: typed columns (bytes, bpp and level stay numbers, a missing value
stays null) in a compact file that pandas, DuckDB and ``ray.data.read_parquet`` read as they are,
which matters at millions of rows; pyarrow comes with Ray Data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from .codec.image_io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, encode_image_file, load_image
from .codec.restore import DEFAULT_STEPS
from .errors import VQCodecError
from .fileio import atomic_save, atomic_write, sha256_bytes

MANIFEST = "manifest.parquet"
COLUMNS = ("source", "output", "bytes", "bpp", "level", "sha256", "status", "error")
CHECKPOINT_S = 60.0  # how often the driver rewrites the manifest while the job runs
CPU_THREADS = 2  # per CPU actor: the runner's floor for pixels that do not depend on the thread count


@dataclass
class CorpusReport:
    """What a corpus run did; ``failed`` holds ``(source, error)`` of the error rows."""

    manifest: Path
    ok: int = 0
    skipped: int = 0  # ok rows of an earlier run, not redone
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class CorpusRun:
    """Where and how a corpus job runs. ``address``: "local" starts a Ray instance on this machine;
    "auto", "HOST:6379" or "ray://HOST:10001" joins a cluster, whose nodes must all see the input
    and output folders at the same paths. An already initialised Ray is used as it is. ``model``:
    a registered name or a weights file (decoding: default, the model each file names)."""

    address: str = "local"
    model: str | Path | None = None
    weights: str | Path | None = None
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    num_actors: int | None = None
    force: bool = False  # redo every input, ignoring the manifest
    progress: bool = True


def encode_corpus(src_dir: str | Path, out_dir: str | Path, run: CorpusRun = CorpusRun(), **encode_options) -> CorpusReport:
    """Encode every image under ``src_dir`` (recursively) to ``out_dir`` with the same relative
    paths and a ``.vqc`` suffix; ``encode_options`` are :meth:`Codec.encode`'s (``level``,
    ``scale``, ``bpp``, ``max_bytes``, ``packets``, ``packet_bytes``, ``entropy``, ``granularity``, ``tone``)."""
    return _run(_Encoder, src_dir, out_dir, IMAGE_SUFFIXES, ".vqc", encode_options, run)


def decode_corpus(
    src_dir: str | Path, out_dir: str | Path, run: CorpusRun = CorpusRun(), restore: str = "auto",
    restore_steps: int = DEFAULT_STEPS, realism: float | None = None,
) -> CorpusReport:
    """Decode every ``.vqc`` file under ``src_dir`` to a PNG in ``out_dir`` (``realism``: see
    :meth:`Codec.decode_with_report`)."""
    options = {"restore": restore, "restore_steps": restore_steps, "realism": realism}
    return _run(_Decoder, src_dir, out_dir, {".vqc"}, ".png", options, run)


# -- the actors ------------------------------------------------------------------------------------
class _Actor:
    """One per Ray actor: loads its codec(s) once, then turns each row's input file into its output."""

    def __init__(self, model: str | None, weights: str | None, device: str, max_pixels: int, force: bool,
                 options: dict) -> None:
        import torch

        if device == "cpu":
            torch.set_num_threads(CPU_THREADS)
        self.model, self.weights, self.device, self.max_pixels = model, weights, device, max_pixels
        self.force, self.options = force, options
        self.codecs: dict = {}

    def codec(self, name: str):
        from .codec import Codec

        if name not in self.codecs:
            self.codecs[name] = Codec.from_pretrained(name, weights=self.weights, device=self.device, max_pixels=self.max_pixels)
        return self.codecs[name]

    def convert(self, source: str, output: str) -> tuple[bytes, float, int]:
        """Input file → (output bytes, bpp of the .vqc, level); read here, so a bad file is an error row."""
        raise NotImplementedError

    def __call__(self, batch):
        import pyarrow as pa

        rows = []
        for source, output in zip(batch["source"].to_pylist(), batch["output"].to_pylist()):
            row = dict.fromkeys(COLUMNS) | {"source": source, "output": output}
            try:
                data, bpp, level = self.convert(source, output)
                _write_output(Path(output), data, self.force)
                row |= {"bytes": len(data), "bpp": bpp, "level": level, "sha256": sha256_bytes(data), "status": "ok"}
            except Exception as exc:  # noqa: BLE001 - a bad input is a row with its error, never a failed job
                message = str(exc) if isinstance(exc, (VQCodecError, OSError)) else f"{type(exc).__name__}: {exc}"
                row |= {"status": "error", "error": message}
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=_schema())


class _Encoder(_Actor):
    def convert(self, source: str, output: str) -> tuple[bytes, float, int]:
        from .registry import DEFAULT_MODEL

        encoded = self.codec(self.model or DEFAULT_MODEL).encode(load_image(source, self.max_pixels), **self.options)
        return encoded.data, encoded.bpp, encoded.header.level


class _Decoder(_Actor):
    def convert(self, source: str, output: str) -> tuple[bytes, float, int]:
        from .codec.container import read_header
        from .registry import model_named_by_file

        data = Path(source).read_bytes()
        header = read_header(data, self.max_pixels)
        image = self.codec(self.model or model_named_by_file(header.model_id)).decode(data, **self.options)
        return encode_image_file(image, output), len(data) * 8 / (header.width * header.height), header.level


def _write_output(path: Path, data: bytes, force: bool) -> None:
    """Atomic write; an existing identical file counts as written, so a run that died before its
    manifest checkpoint resumes without ``--force``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, data, force=force)
    except FileExistsError:
        if path.read_bytes() != data:
            raise VQCodecError(f"{path} exists with other content (use --force to overwrite)") from None


# -- the driver ------------------------------------------------------------------------------------
def _run(actor: type[_Actor], src_dir, out_dir, suffixes: set[str], out_suffix: str, options: dict, run: CorpusRun) -> CorpusReport:
    """List the inputs, keep the rows an earlier run finished, run the rest on Ray, write the manifest."""
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise VQCodecError("corpus mode needs Ray Data: pip install 'vqcodec[ray]'") from None
    src_dir, out_dir = Path(src_dir).resolve(), Path(out_dir).resolve()
    pairs = _pairs(src_dir, out_dir, suffixes, out_suffix)
    manifest = out_dir / MANIFEST
    done = {} if run.force else {
        row["source"]: row for row in _read_manifest(manifest)
        if row["source"] in pairs and row["status"] == "ok" and Path(row["output"]).is_file()
    }
    rows = dict(done)
    todo = [{"source": s, "output": o} for s, o in pairs.items() if s not in done]
    out_dir.mkdir(parents=True, exist_ok=True)
    model = str(Path(run.model).resolve()) if run.model and Path(run.model).exists() else run.model  # actors' cwd is not ours
    weights = str(Path(run.weights).resolve()) if run.weights else None
    settings = {"model": model, "weights": weights, "max_pixels": run.max_pixels, "force": run.force, "options": options}
    checkpoint = time.monotonic()
    try:
        for row in _ray_map(actor, todo, settings, run) if todo else ():
            rows[row["source"]] = row
            if time.monotonic() - checkpoint > CHECKPOINT_S:
                _write_manifest(manifest, rows)
                checkpoint = time.monotonic()
    finally:
        _write_manifest(manifest, rows)
    failed = [(r["source"], r["error"]) for r in rows.values() if r["status"] != "ok"]
    return CorpusReport(manifest, ok=len(rows) - len(failed) - len(done), skipped=len(done), failed=failed)


def _pairs(src_dir: Path, out_dir: Path, suffixes: set[str], out_suffix: str) -> dict[str, str]:
    """Input path → output path, for every matching file under ``src_dir``, sorted."""
    if not src_dir.is_dir():
        raise VQCodecError(f"{src_dir}: not a directory")
    pairs: dict[str, str] = {}
    seen: dict[Path, Path] = {}
    for path in sorted(src_dir.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        output = (out_dir / path.relative_to(src_dir)).with_suffix(out_suffix)
        if output in seen:
            raise VQCodecError(f"{seen[output]} and {path} would both write {output}; move one of them")
        seen[output] = path
        pairs[str(path)] = str(output)
    if not pairs:
        raise VQCodecError(f"{src_dir}: no {'/'.join(sorted(suffixes))} files in this directory")
    return pairs


def _schema():
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("output", pa.string()), ("bytes", pa.int64()), ("bpp", pa.float64()),
                      ("level", pa.int64()), ("sha256", pa.string()), ("status", pa.string()), ("error", pa.string())])


def _read_manifest(path: Path) -> list[dict]:
    """The rows of an earlier run's manifest; none when there is no manifest."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return []
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise VQCodecError(f"{path}: cannot read the manifest ({exc}); remove it or use --force") from None


def _write_manifest(path: Path, rows: dict[str, dict]) -> None:
    """All rows, sorted by source, replacing the manifest atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([rows[s] for s in sorted(rows)], schema=_schema())
    atomic_save(path, lambda f: pq.write_table(table, f), force=True)


def _ray_map(actor: type[_Actor], todo: list[dict], settings: dict, run: CorpusRun):
    """Yield the manifest row of every item of ``todo``, converted by a pool of ``actor`` on Ray."""
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=run.address, include_dashboard=False if run.address == "local" else None,
                     logging_level="WARNING", log_to_driver=run.progress)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise VQCodecError(f"cannot start or reach Ray at {run.address!r}: {exc}") from None
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        if run.device == "cuda" and not gpus:
            raise VQCodecError("device 'cuda' requested but the Ray cluster has no GPUs")
        use_gpu = gpus > 0 and run.device != "cpu"
        per_actor = 1 if use_gpu else min(CPU_THREADS, cpus)
        size = min(run.num_actors or (gpus if use_gpu else max(1, cpus // per_actor)), len(todo))
        ray.data.DataContext.get_current().enable_progress_bars = run.progress
        if not run.progress:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        dataset = ray.data.from_items(todo, override_num_blocks=min(len(todo), 1000)).map_batches(
            actor, batch_size=1, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=per_actor, num_gpus=1 if use_gpu else 0,
            fn_constructor_kwargs={**settings, "device": "cuda" if use_gpu else "cpu"},
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield from batch.to_pylist()
    finally:
        if started:
            ray.shutdown()
