"""Corpus mode (vqcodec.corpus, ``--ray``) on a local 2-CPU Ray instance with a tiny model."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec import Codec
from vqcodec.cli import main
from vqcodec.codec.image_io import load_image
from vqcodec.corpus import MANIFEST, CorpusRun, decode_corpus, encode_corpus
from vqcodec.fileio import sha256_bytes

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"), pytest.mark.filterwarnings("ignore:RGBA image")]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("ray_vqcodec_home"))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", runtime_env={"env_vars": {"VQCODEC_HOME": home}})
    yield
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path, photo):
    """Three images (one in a subfolder, one with alpha) and a file that is not an image."""
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo[:17, :23]).save(folder / "b.png")
    Image.fromarray(photo[::-1]).convert("RGBA").save(folder / "sub" / "c.png")
    (folder / "bad.png").write_bytes(b"not really a png")
    return folder


def _rows(manifest):
    return {row["source"]: row for row in pq.read_table(manifest).to_pylist()}


def test_encode_resume_decode(local_ray, tmp_path, corpus, tiny_model_path):
    out = tmp_path / "out"
    report = encode_corpus(corpus, out, CorpusRun(model=tiny_model_path, progress=False), level=16)
    assert report.manifest == out / MANIFEST and (report.ok, report.skipped) == (3, 0)
    assert [(s.rsplit("/", 1)[-1], "not an image" in e) for s, e in report.failed] == [("bad.png", True)]
    rows = _rows(report.manifest)
    assert sorted(r["status"] for r in rows.values()) == ["error", "ok", "ok", "ok"]
    codec = Codec.from_pretrained(tiny_model_path, device="cpu")
    for source, row in rows.items():
        if row["status"] == "ok":
            data = Path(row["output"]).read_bytes()
            assert data == codec.encode(load_image(source), level=16).data  # the same bytes as the plain codec
            assert (row["bytes"], row["sha256"], row["level"]) == (len(data), sha256_bytes(data), 16)
    assert (out / "sub" / "c.vqc").is_file() and not (out / "bad.vqc").exists()

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.vqc")}
    again = encode_corpus(corpus, out, CorpusRun(model=tiny_model_path, progress=False), level=16)
    assert (again.ok, again.skipped, len(again.failed)) == (0, 3, 1)  # only the error row is retried
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.vqc")} == mtimes

    decoded = decode_corpus(out, tmp_path / "dec", CorpusRun(model=tiny_model_path, progress=False))
    assert (decoded.ok, decoded.failed) == (3, [])
    for row in _rows(decoded.manifest).values():
        expected = np.asarray(codec.decode(Path(row["source"]).read_bytes()))
        assert np.array_equal(np.asarray(Image.open(row["output"])), expected)
        assert row["level"] == 16


def test_cli_ray(local_ray, tmp_path, corpus, tiny_model_path, capsys):
    out, model = tmp_path / "out", ["--model", str(tiny_model_path)]
    assert main(["encode", str(corpus), "-o", str(out), "--ray", "--level", "16", *model]) == 1
    err = capsys.readouterr().err
    assert "bad.png" in err and "3 ok, 0 already done, 1 errors" in err and str(out / MANIFEST) in err
    (out / MANIFEST).unlink()  # as if the run died before its manifest: identical outputs count as done
    assert main(["encode", str(corpus), "-o", str(out), "--ray", "--level", "16", *model]) == 1
    assert "3 ok, 0 already done, 1 errors" in capsys.readouterr().err
    assert main(["decode", str(out), "-o", str(tmp_path / "dec"), "--ray", "local", "-q", *model]) == 0
    assert Image.open(tmp_path / "dec" / "sub" / "c.png").size == (57, 40)


@pytest.mark.parametrize("argv, message", [
    (["encode", "x.png", "-o", "out", "--ray"], "--ray takes one input directory"),
    (["encode", ".", "--ray"], "--ray needs -o OUTDIR"),
    (["decode", ".", "-o", "out", "--ray", "--simulate-loss", "0.1"], "--simulate-loss does not go with --ray"),
])
def test_cli_ray_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_without_ray_installed(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray.data", None)  # what `import ray.data` finds without the extra
    assert main(["encode", str(corpus), "-o", str(tmp_path / "out"), "--ray"]) == 1
    assert "pip install 'vqcodec[ray]'" in capsys.readouterr().err
