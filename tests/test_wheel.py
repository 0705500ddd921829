"""A built wheel carries its model: encode and decode from a directory far from the checkout."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import numpy as np
import vqcodec
assert vqcodec.__file__.startswith(sys.argv[1]), vqcodec.__file__
image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
data = vqcodec.encode(image, level=64, device="cpu")
print(len(data), vqcodec.decode(data, device="cpu").size)
"""


@pytest.mark.slow
def test_wheel_carries_the_model_and_runs_outside_the_checkout(tmp_path):
    source = tmp_path / "src"  # build from a copy: a build in the checkout would leave build/ behind
    shutil.copytree(ROOT / "vqcodec", source / "vqcodec", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("vqcodec-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {"vqcodec/assets/vqcodec-f16.safetensors", "vqcodec/assets/vqcodec-f16.restorer.safetensors"} <= names
        zf.extractall(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "site")], cwd=elsewhere, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""})
    size, dims = out.stdout.split(" ", 1)
    assert int(size) > 40 and dims.strip() == "(56, 40)"
