"""The context entropy model: lossless, independent parts, and the same bytes on every machine."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from vqcodec.codec import container, payload
from vqcodec.entropy import ContextTables
from vqcodec.entropy import context as ctx
from vqcodec.errors import ModelMismatchError, VQCodecError, WeightsError
from vqcodec.models.context import ContextConfig, ContextModel
from vqcodec.testing.fuzz import tiny_codec
from vqcodec.testing.models import tiny_context, tiny_model
from vqcodec.training.context import code_length
from vqcodec.weights import load_context, save_context


def structured_grid(shape=(19, 22), size=64, seed=0) -> np.ndarray:
    """Flat patches of one code with some noise: what a context model can predict."""
    rng = np.random.default_rng(seed)
    grid = np.kron(rng.integers(0, size, (5, 6)), np.ones((4, 4), dtype=np.int64))[: shape[0], : shape[1]]
    return np.where(rng.random(grid.shape) < 0.2, rng.integers(0, size, grid.shape), grid)


@pytest.fixture(scope="module")
def codec():
    return tiny_codec()


@pytest.fixture(scope="module")
def coder(codec):
    return codec.entropy.for_level(64, "context")


def test_the_container_and_the_entropy_registry_agree_on_the_id():
    from vqcodec.entropy import CONTEXT, NAMES

    assert container.CONTEXT_ENTROPY_ID == CONTEXT and NAMES[CONTEXT] == "context model"


def test_exp_table_is_built_exactly():
    assert ctx.EXP[0] == 1 << ctx.PROB_BITS and ctx.EXP[-1] == 1 and (np.diff(ctx.EXP) <= 0).all()
    assert abs(ctx.EXP[16] / ctx.EXP[0] - math.exp(-1)) < 1e-4  # 16 score units are one nat


def test_stages_cover_the_grid_in_the_documented_order():
    stages = ctx.stage_map(8, 8)
    assert np.bincount(stages.ravel()).tolist() == [4, 4, 8, 16, 32]
    assert stages[0, 0] == 0 and stages[2, 2] == 1 and stages[1, 1] == 3 and stages[0, 1] == 4


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (19, 22)])
def test_round_trip_plain(coder, shape):
    grid = structured_grid(shape)
    (data,) = coder.encode(grid)
    decoded, ok = coder.decode([data], np.zeros(shape, dtype=np.int64))
    assert ok == [True] and np.array_equal(decoded, grid)


def test_parts_decode_alone(coder):
    """A packet is coded from its own positions only: others may be missing or damaged."""
    grid = structured_grid()
    parts = container.packet_assignment(*grid.shape, 5)
    payloads = coder.encode(grid, parts, 5)
    damaged = [payloads[0], None, payloads[2], b"\xff" * 9, payloads[4]]
    decoded, ok = coder.decode(damaged, parts)
    for k in (0, 2, 4):
        assert ok[k] and np.array_equal(decoded[parts == k], grid[parts == k])
    assert not ok[1] and (decoded[parts == 1] == 0).all()
    decoded, ok = coder.decode([b"\xff" * 9, None, b"", b"\x00\x01", None], parts)  # none decodes: still no crash
    assert decoded.shape == grid.shape and len(ok) == 5


def test_codec_files_round_trip_with_lost_packets(codec):
    image = np.random.default_rng(0).integers(0, 256, (40, 57, 3), dtype=np.uint8)
    indices = codec.encode_indices(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, 16)[0].numpy()
    for packets in (None, 4):
        data = codec.encode(image, level=16, packets=packets, entropy="context", granularity="16").data
        stream = container.read(data)
        assert stream.header.entropy_model == container.CONTEXT_ENTROPY_ID and stream.header.version == 3
        assert stream.header.context_fingerprint == codec.entropy.context.fingerprint
        grid = payload.read(stream, codec.check_compatible(stream.header))
        assert grid.known.all() and np.array_equal(grid.indices, indices)
    del stream.packets[2]
    report = codec.decode_with_report(stream).report
    assert report.packets_lost == [2] and report.indices_lost == int((container.packet_assignment(3, 4, 4) == 2).sum())


def test_static_files_still_decode_and_context_needs_its_tables(codec, tiny_model_path):
    image = np.zeros((20, 30, 3), np.uint8)
    static = codec.encode(image, level=16, entropy="static", granularity="16").data
    assert container.read(static).header.version == 1
    context = codec.encode(image, level=16, granularity="16").data  # auto: the context model when loaded
    assert container.read(context).header.entropy_model == container.CONTEXT_ENTROPY_ID
    packetized = codec.encode(image, level=16, packets=3, granularity="16").data  # auto: the static prior for packets
    assert container.read(packetized).header.entropy_model == 1
    plain = tiny_codec(context=False)
    assert plain.decode(static).size == (30, 20)
    with pytest.raises(ModelMismatchError, match="context model"):
        plain.decode(context)
    with pytest.raises(VQCodecError, match="no context model"):
        plain.encode(image, level=16, entropy="context")
    other = tiny_codec()
    other.entropy.context = tiny_context(other.model, seed=1)
    with pytest.raises(ModelMismatchError, match="context model"):
        other.decode(context)


def _kernel_variants():
    """Other ways to compute the same integer convolution: another library kernel, and another
    summation order (input channels reversed)."""

    def conv2d(x, weight, dilation):
        return torch.nn.functional.conv2d(x, weight, padding=dilation, dilation=dilation)

    def reversed_channels(x, weight, dilation):
        return ORIGINAL_CONV(x.flip(1), weight.flip(1), dilation)

    return {"conv2d": conv2d, "reversed": reversed_channels}


ORIGINAL_CONV = ctx._conv3x3


@pytest.mark.parametrize("variant", ["conv2d", "reversed"])
def test_bytes_do_not_depend_on_the_arithmetic_kernel(coder, monkeypatch, variant):
    """Integers below 2**53 are exact in float64 whatever the order of the sums: another kernel
    gives the same features, frequencies and bytes."""
    grid = structured_grid()
    reference = coder.encode(grid)[0]
    monkeypatch.setattr(ctx, "_conv3x3", _kernel_variants()[variant])
    assert coder.encode(grid)[0] == reference


def test_features_are_integers_in_range(coder):
    grid = torch.from_numpy(structured_grid())[None]
    known = torch.from_numpy(ctx.stage_map(*grid.shape[1:]) < 4)[None]
    feats = coder.context.tables.features(grid, known, 64)
    assert (feats == feats.round()).all() and feats.min() >= 0 and feats.max() <= ctx.ACT_MAX


SCRIPT = """
import hashlib, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2])
from tests.test_context import structured_grid
from vqcodec.testing.fuzz import tiny_codec
coder = tiny_codec().entropy.for_level(64, "context")
grid = structured_grid((33, 41))
data = coder.encode(grid)[0]
decoded, ok = coder.decode([data], np.zeros(grid.shape, dtype=np.int64))
assert ok[0] and (decoded == grid).all()
print(hashlib.sha256(data).hexdigest())
"""


def test_bytes_are_the_same_in_other_processes_and_thread_counts(coder):
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    expected = hashlib.sha256(coder.encode(structured_grid((33, 41)))[0]).hexdigest()
    for threads in (1, 2, 4):
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(threads), root], capture_output=True, text=True,
                             check=True, cwd=root)
        assert out.stdout.strip() == expected, f"{threads} threads"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_computes_the_same_frequencies(coder):
    tables = coder.context.tables
    grid = torch.from_numpy(structured_grid())[None]
    for stage in range(ctx.N_STAGES):
        known = torch.from_numpy(ctx.stage_map(*grid.shape[1:]) < stage)[None]
        cpu = tables.features(grid, known, 64)
        gpu = tables.to("cuda").features(grid.cuda(), known.cuda(), 64)
        assert torch.equal(cpu, gpu.cpu())
        assert np.array_equal(tables.frequencies(cpu[0].flatten(1).t(), 64),
                              tables.to("cuda").frequencies(gpu[0].flatten(1).t(), 64))


def test_tables_move_between_devices_unchanged(coder):
    tables = coder.context.tables
    grid = torch.from_numpy(structured_grid())[None]
    known = torch.from_numpy(ctx.stage_map(*grid.shape[1:]) < 2)[None]
    assert torch.equal(tables.to("cpu").features(grid, known, 64), tables.features(grid, known, 64))


def test_tables_outside_the_exact_bounds_are_refused():
    model = tiny_model()
    arrays = dict(tiny_context(model).arrays)
    arrays["conv.0.mult"] = np.full_like(arrays["conv.0.mult"], 2**31 - 1)
    arrays["conv.0.bias"] = np.full_like(arrays["conv.0.bias"], 2**30)
    with pytest.raises(ValueError, match="exact-arithmetic"):
        ContextTables(arrays)
    arrays = dict(tiny_context(model).arrays)
    arrays["level.16.embed"] = arrays["level.16.embed"][:3]
    with pytest.raises(ValueError, match="bad shape"):
        ContextTables(arrays)


def test_context_files_are_bound_to_their_model(tmp_path):
    model = tiny_model()
    tables = tiny_context(model)
    path = tmp_path / "tiny.context.safetensors"
    save_context(path, tables, b"\x01" * 8, ContextConfig())
    assert load_context(path, b"\x01" * 8).fingerprint == tables.fingerprint
    with pytest.raises(WeightsError, match="train_context"):
        load_context(path, b"\x02" * 8)


def test_integer_export_codes_what_training_learned():
    """The real payload of a trained net is within a few percent of its float cross-entropy, and
    well under the uniform code: export and training agree."""
    torch.manual_seed(0)
    levels = [64]
    codebooks = {64: torch.randn(64, 4)}
    net = ContextModel(ContextConfig(code_dim=4, embed=8, width=16, dilations=[1, 2]), levels)
    grids = [structured_grid((16, 16), seed=s) for s in range(8)]
    batch = torch.from_numpy(np.stack(grids))
    region = torch.ones_like(batch, dtype=torch.bool)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(150):
        loss = code_length(net, batch, region, codebooks[64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    float_bits = code_length(net, batch, region, codebooks[64]).item() / math.log(2)
    coder = ctx.ContextCoder(ContextTables(net.export(codebooks)), 64)
    real_bits = 8 * sum(len(coder.encode(g, np.zeros(g.shape, dtype=np.int64), 1)[0]) for g in grids)
    assert real_bits < 0.75 * batch.numel() * 6
    assert abs(real_bits - float_bits) < 0.06 * float_bits + 8 * 4 * len(grids), (real_bits, float_bits)


def test_config_round_trips():
    config = ContextConfig(embed=5, width=7, dilations=[1, 3])
    assert ContextConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["dilations"] == [1, 3]


def _photos(folder, count=3, size=(72, 56)):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize(size, Image.BICUBIC).save(folder / f"p{i}.png")
    return folder


def test_train_context_script_trains_resumes_and_exports(tmp_path, tiny_model_path):
    from conftest import load_script

    photos = _photos(tmp_path / "photos", count=21)
    script = load_script("train_context")
    common = ["--model", str(tiny_model_path), "--data", f"{photos}:1,0.5", "--out", str(tmp_path / "run"),
              "--batch-size", "4", "--crop", "4", "--embed", "4", "--width", "8", "--dilations", "1,2", "--threads", "1"]
    assert script.main([*common, "--steps", "6"]) == 0
    export = tiny_model_path.with_suffix(".context.safetensors")
    first = load_context(export)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 6
    assert script.main([*common, "--steps", "8"]) == 0  # resumes at step 6
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 8
    assert load_context(export).fingerprint != first.fingerprint
    report = json.loads((tmp_path / "run" / "holdout_bytes.json").read_text())
    assert set(report) == {"64", "16", "4"} and all(r["context_bytes"] > 0 for r in report.values())


def test_evaluate_entropy_script_reports_lossless_savings(tmp_path, tiny_model_path, capsys):
    from conftest import load_script

    from vqcodec.weights import load_model

    loaded = load_model(tiny_model_path)
    save_context(tiny_model_path.with_suffix(".context.safetensors"), tiny_context(loaded.model), loaded.fingerprint,
                 ContextConfig())
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "entropy.json"
    args = [str(photos), "--model", str(tiny_model_path), "--levels", "16,64", "--packets", "3", "--packet-levels", "16",
            "--decode-level", "16", "--threads", "1", "--out", str(out)]
    assert load_script("evaluate_entropy").main(args) == 0
    results = json.loads(out.read_text())["levels"]
    assert set(results) == {"16", "64"} and results["16"]["context_full_decode_s"] > 0
    assert "| 64 |" in capsys.readouterr().out


def test_cli_entropy_choice_and_info(tmp_path, tiny_model_path, capsys):
    from PIL import Image

    from vqcodec.cli import main
    from vqcodec.weights import load_model

    model = ["--model", str(tiny_model_path)]
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 57, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    assert main(["encode", str(tmp_path / "p.png"), "-o", str(tmp_path / "c.vqc"), "--entropy", "context", *model]) == 1
    assert "no context model" in capsys.readouterr().err  # none beside this model yet
    loaded = load_model(tiny_model_path)
    tables = tiny_context(loaded.model)
    save_context(tiny_model_path.with_suffix(".context.safetensors"), tables, loaded.fingerprint, ContextConfig())
    for kind in ("static", "context"):
        assert main(["encode", str(tmp_path / "p.png"), "-o", str(tmp_path / f"{kind}.vqc"), "--entropy", kind,
                         "--granularity", "16", *model]) == 0
        assert main(["decode", str(tmp_path / f"{kind}.vqc"), "-o", str(tmp_path / f"{kind}.png"), *model]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "static.png")), np.asarray(Image.open(tmp_path / "context.png")))
    capsys.readouterr()
    assert main(["info", str(tmp_path / "context.vqc")]) == 0
    out = capsys.readouterr().out
    assert "context model (id 2)" in out and tables.fingerprint.hex() in out and "version 3" in out
