"""The notebook runs top to bottom (on a tiny model and a generated image), so it cannot rot."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "levels.ipynb"


def test_levels_notebook_executes(tiny_model_path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    image = tmp_path / "img.png"
    yy, xx = np.mgrid[0:48, 0:80]
    Image.fromarray((np.stack([xx * 3, yy * 5, xx + yy], -1) % 256).astype(np.uint8)).save(image)
    monkeypatch.setenv("VQCODEC_MODEL", str(tiny_model_path))
    monkeypatch.setenv("VQCODEC_IMAGE", str(image))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "levels: [64, 16, 4]" in outputs and "level     4:" in outputs
