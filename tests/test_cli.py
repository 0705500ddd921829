import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqcodec.cli import main


@pytest.fixture
def images(tmp_path, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo[:17, :23]).save(folder / "b.png")
    Image.fromarray(photo).convert("RGBA").save(folder / "c.png")
    return folder


def test_encode_info_decode_through_subprocess(tmp_path, images, tiny_model_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    vqc = tmp_path / "a.vqc"
    run = lambda *a: subprocess.run([sys.executable, "-m", "vqcodec.cli", *a], capture_output=True, text=True, env=env)  # noqa: E731
    r = run("encode", str(images / "a.png"), "-o", str(vqc), "--model", str(tiny_model_path), "--level", "16")
    assert r.returncode == 0, r.stderr
    assert "bpp" in r.stderr
    r = run("info", str(vqc))
    assert r.returncode == 0 and "level        16 codes" in r.stdout and "57x40" in r.stdout
    out = tmp_path / "a.png"
    r = run("decode", str(vqc), "-o", str(out), "--model", str(tiny_model_path))
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (57, 40)
    r = run("decode", str(vqc), "-o", str(out), "--model", str(tiny_model_path))
    assert r.returncode == 1 and "exists" in r.stderr and "Traceback" not in r.stderr


def test_batch_directory_with_progress_and_warning(tmp_path, images, tiny_model_path, capsys):
    out = tmp_path / "out"
    assert main(["encode", str(images), "-o", str(out), "--model", str(tiny_model_path)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.vqc", "b.vqc", "c.vqc"]
    assert "alpha channel dropped" in capsys.readouterr().err
    dec = tmp_path / "dec"
    assert main(["decode", str(out / "*.vqc"), "-o", str(dec), "--model", str(tiny_model_path)]) == 0
    assert Image.open(dec / "b.png").size == (23, 17)


def test_batch_continues_past_bad_file(tmp_path, images, tiny_model_path, capsys):
    (images / "bad.png").write_bytes(b"not really a png")
    out = tmp_path / "out"
    assert main(["encode", str(images), "-o", str(out), "--model", str(tiny_model_path)]) == 1
    err = capsys.readouterr().err
    assert "1 of 4 inputs failed" in err and "bad.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.vqc", "b.vqc", "c.vqc"]


def test_batches_of_files_write_what_single_files_write(tmp_path, images, tiny_model_path, capsys):
    """--batch-size 3 over two sizes and a bad file: the same files and pictures as one at a time,
    and the bad file still gets its own error."""
    (images / "bad.png").write_bytes(b"not really a png")
    model = ["--model", str(tiny_model_path), "--level", "16"]
    for n in ("1", "3"):
        assert main(["encode", str(images), "-o", str(tmp_path / f"enc{n}"), "--batch-size", n, *model]) == 1
        assert "bad.png" in capsys.readouterr().err
        assert main(["decode", str(tmp_path / f"enc{n}"), "-o", str(tmp_path / f"dec{n}"), "--batch-size", n, *model[:2]]) == 0
    for name in ("a", "b", "c"):
        assert (tmp_path / "enc1" / f"{name}.vqc").read_bytes() == (tmp_path / "enc3" / f"{name}.vqc").read_bytes()
        assert np.array_equal(np.asarray(Image.open(tmp_path / "dec1" / f"{name}.png")),
                              np.asarray(Image.open(tmp_path / "dec3" / f"{name}.png")))
    for wrong in (["--batch-size", "0"], ["--batch-size", "2", "--ray", "-o", str(tmp_path / "ray")]):
        with pytest.raises(SystemExit) as exc:
            main(["encode", str(images), *wrong, *model])
        assert exc.value.code == 2


def test_default_output_beside_input_and_no_overwrite(images, tiny_model_path, capsys):
    assert main(["encode", str(images / "a.png"), "--model", str(tiny_model_path)]) == 0
    assert (images / "a.vqc").exists()
    assert main(["encode", str(images / "a.png"), "--model", str(tiny_model_path)]) == 1
    assert main(["encode", str(images / "a.png"), "--model", str(tiny_model_path), "--force"]) == 0


def test_refuses_to_overwrite_input(images, tiny_model_path, capsys):
    src = images / "a.png"
    before = src.read_bytes()
    assert main(["encode", str(src), "-o", str(src), "--model", str(tiny_model_path), "--force"]) == 1
    assert "input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_stdin_stdout(tmp_path, images, tiny_model_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    png = (images / "a.png").read_bytes()
    enc = subprocess.run([sys.executable, "-m", "vqcodec.cli", "encode", "-", "-o", "-", "--model", str(tiny_model_path)],
                         input=png, capture_output=True, env=env)
    assert enc.returncode == 0 and enc.stdout[:4] == b"\x89VQC"
    dec = subprocess.run([sys.executable, "-m", "vqcodec.cli", "decode", "-", "-o", "-", "--model", str(tiny_model_path)],
                         input=enc.stdout, capture_output=True, env=env)
    assert dec.returncode == 0 and dec.stdout[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "content, message",
    [(b"", "magic"), (b"\x89VQC\x01", "truncated"), (b"GIF89a" + bytes(50), "magic")],
)
def test_bad_bitstreams_give_clear_errors(tmp_path, tiny_model_path, capsys, content, message):
    bad = tmp_path / "bad.vqc"
    bad.write_bytes(content)
    assert main(["decode", str(bad), "-o", str(tmp_path / "x.png"), "--model", str(tiny_model_path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_truncated_file_via_info(tmp_path, images, tiny_model_path, capsys):
    vqc = tmp_path / "a.vqc"
    assert main(["encode", str(images / "a.png"), "-o", str(vqc), "--model", str(tiny_model_path)]) == 0
    vqc.write_bytes(vqc.read_bytes()[:-1])
    assert main(["info", str(vqc)]) == 1
    assert "truncated" in capsys.readouterr().err


def test_missing_model_and_level_errors(tmp_path, images, tiny_model_path, capsys):
    assert main(["encode", str(images / "a.png"), "-o", str(tmp_path / "x.vqc"), "--model", "no-such-model"]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert main(["encode", str(images / "a.png"), "-o", str(tmp_path / "x.vqc"), "--model", str(tiny_model_path), "--level", "3"]) == 1
    assert "levels" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["encode", str(tmp_path / "*.png")])
    assert exc.value.code == 2


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "encode" in out and "decode" in out and "info" in out


def test_sigint_leaves_no_partial_output(tmp_path, photo, tiny_model_path):
    """A real Ctrl-C in the middle of a batch: exit 130, only complete .vqc files, no temp files."""
    from vqcodec.codec.container import unpack

    src = tmp_path / "many"
    src.mkdir()
    big = np.tile(photo, (8, 8, 1))
    for i in range(60):
        Image.fromarray(np.roll(big, i, axis=1)).save(src / f"{i:03d}.png")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "vqcodec.cli", "encode", str(src), "-o", str(out), "--model",
                             str(tiny_model_path)], stderr=subprocess.PIPE, env=env,
                            # a shell's background job inherits SIGINT ignored, and Python then keeps it so
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and any(out.glob("*.vqc"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    written = sorted(out.iterdir())
    assert 0 < len(written) < 60
    for f in written:
        assert f.suffix == ".vqc"
        unpack(f.read_bytes())
