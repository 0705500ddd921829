"""Untrusted weights files: corrupt, foreign or hostile ones give a WeightsError naming the file, quickly,
and nothing in vqcodec unpickles code (docs/security.md)."""

import ast
import json
import resource
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import save_tiny_model, tiny_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_registry import write_taming_checkpoint

from vqcodec import Codec, registry
from vqcodec.errors import WeightsError
from vqcodec.taming_checkpoint import load_taming
from vqcodec.weights import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("good") / "tiny.safetensors")


def _rewrite(good: Path, out: Path, tensors=None, config=None) -> Path:
    """A copy of ``good`` with tensors added/replaced and config fields changed."""
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
    cfg = {**json.loads(meta["vqcodec_config"]), **(config or {})}
    save_file({**load_file(str(good)), **(tensors or {})}, str(out), metadata={**meta, "vqcodec_config": json.dumps(cfg)})
    return out


def _corruptions(good: Path, tmp: Path) -> dict[str, Path]:
    data = good.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    files = {
        "truncated": data[: len(data) // 2],
        "truncated-header": data[:20],
        "header-byte-flipped": data[:8 + header_len // 2] + bytes([data[8 + header_len // 2] ^ 0x40]) + data[9 + header_len // 2:],
        "huge-header-length": (2**63).to_bytes(8, "little") + data[8:],
        "random-bytes": bytes(range(256)) * 8,
        "empty": b"",
    }
    out = {}
    for name, content in files.items():
        out[name] = tmp / f"{name}.safetensors"
        out[name].write_bytes(content)
    out["pickle"] = tmp / "pickle.safetensors"
    torch.save({"state_dict": tiny_model().state_dict()}, out["pickle"])
    out["foreign-safetensors"] = tmp / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(out["foreign-safetensors"]), metadata={"format": "pt"})
    out["malformed-level-key"] = _rewrite(good, tmp / "level-key.safetensors", {"level.16": torch.zeros(2)})
    out["malformed-prior-key"] = _rewrite(good, tmp / "prior-key.safetensors", {"prior.abc": torch.zeros(2, dtype=torch.int32)})
    out["invalid-prior"] = _rewrite(good, tmp / "prior.safetensors", {"prior.16": torch.zeros(16, dtype=torch.int32)})
    out["prior-without-level"] = _rewrite(good, tmp / "prior-level.safetensors", {"prior.8": torch.full((8,), 2**17, dtype=torch.int32)})
    out["override-wrong-shape"] = _rewrite(good, tmp / "override.safetensors",
                                           {"level.16.override.post_quant_conv.bias": torch.zeros(3)})
    out["codebook-scalar"] = _rewrite(good, tmp / "scalar.safetensors", {"level.8.codebook": torch.zeros(())})
    out["codebook-wrong-size"] = _rewrite(good, tmp / "size.safetensors", {"level.8.codebook": torch.zeros(7, 4)})
    out["codebook-wrong-width"] = _rewrite(good, tmp / "codebook.safetensors", {"level.8.codebook": torch.zeros(8, 3)})
    out["unknown-config-field"] = _rewrite(good, tmp / "config.safetensors", config={"evil": 1})
    return out


CASES = ["truncated", "truncated-header", "header-byte-flipped", "huge-header-length", "random-bytes", "empty", "pickle",
         "foreign-safetensors", "malformed-level-key", "malformed-prior-key", "invalid-prior", "prior-without-level",
         "override-wrong-shape", "codebook-scalar", "codebook-wrong-size", "codebook-wrong-width", "unknown-config-field"]


@pytest.fixture(scope="module")
def corrupted(good, tmp_path_factory) -> dict[str, Path]:
    return _corruptions(good, tmp_path_factory.mktemp("corrupted"))


def test_every_case_is_built(corrupted):
    assert sorted(corrupted) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_corrupt_or_foreign_weights_name_the_file(corrupted, case):
    path = corrupted[case]
    with pytest.raises(WeightsError) as exc:
        Codec.from_pretrained(path, device="cpu")
    assert str(path) in str(exc.value)


def test_config_cannot_ask_for_gigabytes(good, tmp_path):
    """The network is built without memory and filled from the file, so a config claiming 2**31 codes
    (32 GB of codebook) fails on the shape check instead of allocating."""
    path = _rewrite(good, tmp_path / "huge.safetensors", config={"n_embed": 2**31})
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="huge.safetensors: weights do not match their config"):
        load_model(path)
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 256 * 1024  # kB


def test_taming_config_cannot_ask_for_gigabytes(tmp_path):
    """Same for a taming checkpoint whose model.yaml asks for 65536 channels (150 GB of convolutions)."""
    write_taming_checkpoint(tmp_path / "t")
    config = tmp_path / "t" / "configs" / "model.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["model"]["params"]["ddconfig"]["ch"] = 2**16
    config.write_text(yaml.safe_dump(doc))
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="last.ckpt: weights do not match"):
        load_taming(tmp_path / "t" / "checkpoints" / "last.ckpt")
    assert time.perf_counter() - start < 5.0


def test_taming_checkpoint_with_non_tensor_values(tmp_path):
    write_taming_checkpoint(tmp_path / "t")
    ckpt = tmp_path / "t" / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {"encoder.conv_in.weight": 5}}, ckpt)
    with pytest.raises(WeightsError, match="last.ckpt"):
        load_taming(ckpt)


def test_registered_weights_are_verified_by_sha256(good, monkeypatch):
    """A registered model found in $VQCODEC_HOME loads only when its SHA-256 matches the registry."""
    cached = registry.cache_dir() / "fake" / "fake.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(good.read_bytes())
    monkeypatch.setitem(registry.REGISTRY, "fake", registry.ModelSpec("fake", "vqcodec", "fake.safetensors", "ab" * 32))
    with pytest.raises(WeightsError, match="SHA-256 does not match") as exc:
        registry.load("fake", download=False)
    assert str(cached) in str(exc.value)
    spec = registry.ModelSpec("fake", "vqcodec", "fake.safetensors", registry.sha256_file(cached))
    monkeypatch.setitem(registry.REGISTRY, "fake", spec)
    assert registry.load("fake", download=False)[0] == "fake"


@pytest.mark.slow
def test_default_model_is_pinned_by_sha256():
    spec = registry.REGISTRY[registry.DEFAULT_MODEL]
    assert spec.sha256 and len(spec.sha256) == 64
    assert registry.sha256_file(registry.embedded_path(spec.filename)) == spec.sha256


def _calls(tree: ast.AST, module: str, name: str):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name
                and isinstance(node.func.value, ast.Name) and node.func.value.id == module):
            yield node


@pytest.mark.parametrize("folder", ["vqcodec", "scripts"])
def test_torch_load_only_with_weights_only(folder):
    """Every torch.load in the package and scripts passes weights_only=True; nothing calls pickle.load(s)."""
    seen = 0
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree, "torch", "load"):
            seen += 1
            flags = {k.arg: k.value for k in call.keywords}
            assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, \
                f"{path}:{call.lineno}: torch.load without weights_only=True"
        for name in ("load", "loads", "Unpickler"):
            assert not list(_calls(tree, "pickle", name)), f"{path}: pickle.{name}"
    assert folder == "scripts" or seen >= 3
