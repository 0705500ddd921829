"""The fuzz corpus replayed with its documented outcomes, and a short fuzzing pass (no atheris needed)."""

import traceback

import numpy as np
import pytest

from vqcodec.codec import container
from vqcodec.testing import fuzz

CORPUS = sorted(fuzz.SEED_CORPUS.iterdir())


@pytest.fixture(scope="module")
def targets():
    return fuzz.Targets()


def test_corpus_is_small_and_named_by_outcome():
    assert len(CORPUS) >= 70
    names = {"ok", "any", "BitstreamError", "UnsupportedVersionError", "ModelMismatchError"}
    for path in CORPUS:
        assert path.name.split("--")[0] in names and path.suffix in (".vqc", ".sym", ".ctx"), path.name
        assert path.stat().st_size <= 8192, path.name


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_input_ends_in_its_documented_outcome(targets, path):
    """Every target ends in a result or a VQCodecError; the primary one in the outcome the name states."""
    data = path.read_bytes()
    outcomes = {}
    for name, fn in targets.chosen().items():
        outcome, crash = fuzz.classify(fn, data)
        assert crash is None, f"{name} crashed on {path.name}:\n" + "".join(traceback.format_exception(crash))
        outcomes[name] = outcome
    expected = path.name.split("--")[0]
    got = outcomes[{".vqc": "codec", ".sym": "entropy", ".ctx": "context"}[path.suffix]]
    if expected == "ok" and got == "ModelMismatchError" and not _same_tiny_model(targets):
        pytest.skip("this torch builds another tiny model; rewrite the corpus: python scripts/fuzz.py --make-corpus tests/fuzz_corpus")
    assert expected == "any" or got == expected


def _same_tiny_model(targets) -> bool:
    header = container.read((fuzz.SEED_CORPUS / "ok--level16-57x40.vqc").read_bytes()).header
    return header.fingerprint == targets.codec.fingerprint


def test_harness_writes_the_seed_corpus(targets):
    """Every seed the harness writes is in the corpus, byte for byte (found inputs may be added)."""
    if not _same_tiny_model(targets):
        pytest.skip("this torch builds another tiny model")
    for name, data in fuzz.seed_corpus(targets.codec).items():
        assert (fuzz.SEED_CORPUS / name).read_bytes() == data, name


@pytest.mark.parametrize("packets", [None, 4])
def test_header_field_edits_land_where_the_container_reads_them(targets, packets):
    data = targets.codec.encode(np.zeros((17, 33, 3), np.uint8), level=16, packets=packets).data
    edited = fuzz.set_field(fuzz.set_field(data, "width", 40), "grid_width", 3)
    header = container.read(edited).header
    assert (header.width, header.grid_width, header.height, header.level) == (40, 3, 17, 16)
    assert fuzz.fix_crcs(edited) == edited  # set_field fixed the CRCs


def test_short_random_fuzzing_pass(tmp_path, capsys):
    """What CI runs instead of atheris: the corpus, then seeded mutations of it for a few seconds."""
    code = fuzz.main(["--seconds", "6", "--artifacts", str(tmp_path), "--timeout", "5"])
    summary = capsys.readouterr().out
    assert code == 0, summary
    assert "crashes=0 hangs=0 over_memory=0" in summary
    inputs = int(summary.split("inputs=")[1].split()[0])
    assert inputs > len(CORPUS)
    assert not list(tmp_path.iterdir())  # no failing input saved


def test_fuzzer_reports_a_crash(tmp_path, targets, capsys, monkeypatch):
    """The harness itself: an exception that is not a VQCodecError is a crash and its input is saved."""
    monkeypatch.setattr(targets.codec, "decode", lambda data: {}["boom"])
    monkeypatch.setattr(fuzz, "Targets", lambda: targets)
    assert fuzz.main(["--runs", "3", "--target", "codec", "--artifacts", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "crashes=3" in captured.out and "KeyError" in captured.err
    assert len(list(tmp_path.glob("crash-*"))) == 3
