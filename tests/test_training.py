"""The training loop and level building on a tiny model and a few generated photos."""

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script, tiny_config
from PIL import Image

from vqcodec import Codec
from vqcodec.models import VQGAN
from vqcodec.testing.models import save_tiny_knob, tiny_model
from vqcodec.training.data import RandomCrops
from vqcodec.training.inputs import deployed_codes, sample_map
from vqcodec.training.levels import index_counts, keep_finetuned, kmeans_codebook, priors_from_counts
from vqcodec.training.loop import TrainingRun
from vqcodec.training.losses import LossConfig
from vqcodec.training.trainer import TrainConfig, crop_loader, load_checkpoint_model, train
from vqcodec.weights import load_model, load_realism, save_model


@pytest.fixture
def photo_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(4):
        yy, xx = np.mgrid[0:48, 0:56]
        img = np.stack([xx * (i + 2), yy * 3, (xx + yy) * (i + 1)], -1) % 256 + rng.integers(0, 20, (48, 56, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_train_resume_export_and_levels(tmp_path, photo_dir, mock_squeezenet):
    cfg = TrainConfig(data=str(photo_dir), out=str(tmp_path / "run"), steps=4, batch_size=2, crop=32,
                      restart_every=2, checkpoint_every=2, sample_every=2, kmeans_samples=64, loss=LossConfig(disc_start=2))
    model_cfg = tiny_config()
    model_cfg.l2_normalize = True
    ckpt = train(cfg, model_cfg)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 4 and (tmp_path / "run" / "sample_000002.png").exists()
    assert {"ema", "discriminator", "optimizer_disc"} <= set(state)
    ema_model, live_model = load_checkpoint_model(ckpt), load_checkpoint_model(ckpt, ema=False)
    assert not torch.equal(ema_model.quant_conv.weight, live_model.quant_conv.weight)
    first = load_checkpoint_model(ckpt)
    cfg.steps = 6
    train(cfg, model_cfg)
    assert torch.load(ckpt, weights_only=True)["step"] == 6
    model = load_checkpoint_model(ckpt)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), model.state_dict().values()))

    build_levels = load_script("build_levels")
    out = tmp_path / "levels.safetensors"
    assert build_levels.main(["--checkpoint", str(ckpt), "--data", str(photo_dir), "--out", str(out), "--levels", "16", "8",
                              "--finetune-steps", "2", "--decoder-levels", "8", "--holdout", "1", "--batch-size", "2",
                              "--crop", "32", "--default-level", "16"]) == 0
    report = json.loads(Path(str(out) + ".levels.json").read_text())
    assert set(report) == {"16", "8"} and "tuned_decoder" in report["8"] and "tuned_decoder" not in report["16"]
    built = Codec.from_pretrained(out, device="cpu")
    assert built.levels == [64, 16, 8]
    assert any(k.startswith("quant_conv.") for k in built.model.level_overrides[16])
    decoder_kept = report["8"]["kept"] == "tuned_decoder"
    assert decoder_kept == any(k.startswith("decoder.") for k in built.model.level_overrides[8])
    image = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    assert built.decode(built.encode(image).data).size == (50, 40)

    batches = [torch.rand(1, 3, 32, 48) for _ in range(3)]
    usage = index_counts(model, batches, [64])[64]
    model.add_level(kmeans_codebook(model.codebook(), 8, usage))
    counts = index_counts(model, batches, model.levels)
    assert int(counts[8].sum()) == 3 * 2 * 3
    path = tmp_path / "m.safetensors"
    save_model(path, model, priors_from_counts(counts))
    codec = Codec.from_pretrained(path, device="cpu")
    assert codec.levels == [64, 8]
    assert codec.decode(codec.encode(np.zeros((20, 30, 3), np.uint8), level=8).data).size == (30, 20)


def test_distributed_training_two_cpu_processes(tmp_path, photo_dir, mock_squeezenet):
    """torchrun with 2 processes on the gloo backend trains and checkpoints once, from rank 0."""
    out = tmp_path / "ddp"
    worker = Path(__file__).resolve().parent / "helpers" / "ddp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(worker), str(photo_dir), str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert records == [{"world": 2, "step": 4}] * 2
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt"]


def test_checkpoint_pieces_round_trip_and_damage(tmp_path):
    kit = load_script("gpu_kit")
    split_file, join_pieces = kit.split_file, kit.join_pieces
    original = tmp_path / "last.pt"
    original.write_bytes(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    manifest = split_file(original, tmp_path / "out", max_bytes=3000)
    pieces = sorted((tmp_path / "out").glob("last.pt.part*"))
    assert len(pieces) == 4 and max(p.stat().st_size for p in pieces) <= 3000
    assert join_pieces(manifest, tmp_path / "joined.pt").read_bytes() == original.read_bytes()
    pieces[1].write_bytes(b"x" + pieces[1].read_bytes()[1:])
    with pytest.raises(ValueError, match="part001"):
        join_pieces(manifest, tmp_path / "again.pt")


def test_gpu_shard_respects_its_budget(tmp_path, photo_dir):
    shard = load_script("gpu_kit")
    count, used = shard.make_shard(str(photo_dir), str(tmp_path / "shard"), budget_mb=0.004, quality=90, seed=0)
    files = list((tmp_path / "shard").glob("*.jpg"))
    assert 0 < count == len(files) < 4 and used == sum(f.stat().st_size for f in files) <= 0.004 * 2**20


def test_gpu_shards_are_disjoint_and_never_hold_the_held_out_photos(tmp_path, photo_dir):
    kit = load_script("gpu_kit")
    first, _ = kit.make_shard(str(photo_dir), str(tmp_path / "a"), budget_mb=0.003, quality=90, seed=0, holdout=1)
    second, _ = kit.make_shard(str(photo_dir), str(tmp_path / "b"), budget_mb=1, quality=90, seed=0, holdout=1,
                               exclude=str(tmp_path / "a"))
    a, b = ({p.stem for p in (tmp_path / d).iterdir()} for d in "ab")
    assert first >= 1 and second >= 1 and not a & b
    assert len(a | b) == 3  # 4 photos, 1 held out


def test_loader_processes_draw_different_crops(photo_dir):
    one_photo = sorted(photo_dir.iterdir())[:1] * 2  # same photo twice: only the crop position can differ
    torch.manual_seed(0)  # the loader's per-process seeds come from here: no chance coincidence
    loader = crop_loader(RandomCrops(one_photo, crop=16, seed=0), batch_size=1, num_workers=2)
    first, second = list(loader)
    assert not torch.equal(first, second)


def test_upscaled_crops_are_smoother(tmp_path):
    """--max-upscale enlarges smaller patches: same size out, less pixel-to-pixel change."""
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    plain = RandomCrops([tmp_path / "noise.png"], crop=32, seed=0)
    enlarged = RandomCrops([tmp_path / "noise.png"], crop=32, seed=0, max_upscale=3.0)

    def roughness(data: RandomCrops) -> float:
        xs = torch.stack([data[0] for _ in range(8)])
        assert xs.shape == (8, 3, 32, 32)
        return float((xs[..., 1:] - xs[..., :-1]).abs().mean())

    assert roughness(enlarged) < 0.8 * roughness(plain)
    with pytest.raises(ValueError, match="at least 1"):
        RandomCrops([tmp_path / "noise.png"], max_upscale=0.5)


def test_new_run_starts_from_an_exported_model(tmp_path, photo_dir, mock_squeezenet):
    start = VQGAN(tiny_config())
    save_model(tmp_path / "start.safetensors", start)
    exported = load_model(tmp_path / "start.safetensors").model
    cfg = TrainConfig(data=str(photo_dir), out=str(tmp_path / "run"), steps=0, batch_size=2, crop=32,
                      init_model=str(tmp_path / "start.safetensors"))
    ckpt = train(cfg, exported.config)
    for key, value in exported.state_dict().items():
        assert torch.equal(load_checkpoint_model(ckpt, ema=False).state_dict()[key], value), key


def test_decoder_only_training_keeps_encoder_and_codebook(tmp_path, photo_dir, mock_squeezenet):
    """--train-only decoder: files encoded before keep their indices, only the picture changes."""
    start = VQGAN(tiny_config())
    save_model(tmp_path / "start.safetensors", start)
    second = tmp_path / "second"
    second.mkdir()
    Image.open(photo_dir / "p0.png").transpose(Image.FLIP_TOP_BOTTOM).save(second / "q.png")
    cfg = TrainConfig(data=[str(photo_dir), str(second)], out=str(tmp_path / "run"), steps=3, batch_size=2, crop=32,
                      restart_every=1, init_model=str(tmp_path / "start.safetensors"), train_only="decoder",
                      loss=LossConfig(mse_weight=10.0, perceptual_weight=0.0))
    trained = load_checkpoint_model(train(cfg, start.config), ema=False).state_dict()
    before = load_model(tmp_path / "start.safetensors").model.state_dict()
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv.", "quantize."))]
    assert frozen and all(torch.equal(trained[k], before[k]) for k in frozen)
    assert any(not torch.equal(trained[k], before[k]) for k in before if k.startswith("decoder."))
    with pytest.raises(ValueError, match="train_only"):
        train(TrainConfig(data=str(photo_dir), out=str(tmp_path / "bad"), train_only="encoder"), start.config)


def test_finetuned_level_is_kept_only_when_better_in_psnr_and_lpips():
    kmeans = {"psnr": 25.0, "lpips_sq": 0.20}
    assert keep_finetuned(kmeans, {"psnr": 25.1, "lpips_sq": 0.19})
    assert not keep_finetuned(kmeans, {"psnr": 26.0, "lpips_sq": 0.21})  # more fidelity, worse perceptually
    assert not keep_finetuned(kmeans, {"psnr": 24.9, "lpips_sq": 0.10})  # the reverse
    assert not keep_finetuned(kmeans, dict(kmeans))  # a tie keeps the K-means level


def test_training_run_checkpoints_averages_and_budget(tmp_path):
    run = TrainingRun(tmp_path / "run", max_minutes=1)
    assert run.load() is None
    run.save({"step": 3, "w": torch.ones(2)})
    assert run.load()["step"] == 3 and [p.name for p in (tmp_path / "run").iterdir()] == ["last.pt"]
    TrainingRun(tmp_path / "run", main=False).save({"step": 9})  # not the first rank: writes nothing
    assert run.load()["step"] == 3
    run.add({"l1": 1.0})
    run.add({"l1": 3.0})
    assert run.means() == {"l1": 2.0} and run.means() == {}
    assert not run.should_stop(1)
    run.started -= 61
    assert run.should_stop(1) and not run.should_stop(1, agree=lambda local: False)


def test_deployed_codes_are_level_codes_with_coarse_tokens_where_the_latent_is_flat():
    model = tiny_model(levels=(16, 4))
    x = torch.rand(2, 3, 64, 64)
    x[0] = 0.5  # flat: every square merges at any λ
    seen = set()
    for seed in range(12):
        rng = random.Random(seed)
        codes, indices = deployed_codes(model, x, rng)
        level = random.Random(seed).choice(model.levels)
        seen.add(level)
        assert indices.shape == (2, 4, 4) and int(indices.max()) < level
        assert torch.equal(codes, model.indices_to_codes(indices, level))
    assert seen == set(model.levels)
    flat = np.zeros((4, 4))
    flat_map = sample_map({1: flat + 1.0, 2: flat + 1.0, 4: flat + 1.0}, random.Random(1))
    assert (flat_map == 16).all() or not flat_map.any()  # all coarse, or the plain f16 grid
    busy = sample_map({1: flat, 2: flat + 100.0, 4: flat + 100.0}, random.Random(1))
    assert not busy.any()  # merging would cost more error than any λ saves


def test_deployed_inputs_train_the_decoder_alone_from_a_models_fidelity_end(tmp_path, photo_dir, mock_squeezenet):
    path = save_tiny_knob(tmp_path / "start.safetensors")
    loaded = load_model(path)
    fidelity = load_realism(tmp_path / "start.realism.safetensors", loaded).apply(loaded.model, 0.0).state_dict()
    cfg = TrainConfig(data=str(photo_dir), out=str(tmp_path / "run"), steps=0, batch_size=2, crop=64,
                      init_model=str(path), init_realism=0.0, train_only="decoder", deployed_inputs=True,
                      loss=LossConfig(mse_weight=10.0, perceptual_weight=0.0))
    started = load_checkpoint_model(train(cfg, loaded.model.config), ema=False).state_dict()
    assert all(torch.equal(started[k], fidelity[k]) for k in fidelity)
    trained = load_checkpoint_model(train(dataclasses.replace(cfg, steps=2), loaded.model.config), ema=False).state_dict()
    assert all(torch.equal(trained[k], fidelity[k]) for k in fidelity if k.startswith(("encoder.", "quantize.")))
    assert any(not torch.equal(trained[k], fidelity[k]) for k in fidelity if k.startswith("decoder."))
    with pytest.raises(ValueError, match="deployed_inputs"):
        train(TrainConfig(data=str(photo_dir), out=str(tmp_path / "bad"), deployed_inputs=True), loaded.model.config)
    with pytest.raises(ValueError, match="init_realism"):
        train(TrainConfig(data=str(photo_dir), out=str(tmp_path / "bad2"), init_realism=0.0), loaded.model.config)
