"""Evaluation pieces: classical codecs at matched bpp, and the evaluate/plot scripts end to end."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script, save_tiny_model
from PIL import Image

from vqcodec.codec import container
from vqcodec.evaluation.channel import packet_loss_mask, simulate_loss
from vqcodec.evaluation.classical import Trials, available_codecs
from vqcodec.metrics import fid, inception_features


def _photo(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, 128 + 100 * np.sin(xx / 9.0 + seed)], -1)
    return Image.fromarray(np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_highest_quality_under_target(name):
    codec = available_codecs()[name]
    trials = Trials(_photo(96, 64, 0))
    target = 1.0
    point = trials.at_bpp(codec, target)
    assert point is not None and point.bpp <= target
    i = codec.qualities.index(point.quality)
    if i + 1 < len(codec.qualities):
        assert len(codec.encode(trials.image, codec.qualities[i + 1])) * 8 / trials.pixels > target
    assert trials.at_bpp(codec, 1e-4) is None


def test_resampling_reaches_lower_rates():
    codec = available_codecs()["webp"]
    trials = Trials(_photo(256, 192, 1))
    target = trials.lowest_bpp(codec) * 0.5
    assert trials.at_bpp(codec, target) is None
    point = trials.resampled_at_bpp(codec, target, score=lambda rec: 0.0)
    assert point is not None and point.scale < 1 and point.bpp <= target
    assert point.reconstruction.size == (256, 192)


def test_fid_needs_and_loads_user_weights(tmp_path):
    from torchvision.models import inception_v3

    path = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict(), path)
    feats = inception_features(path)
    assert feats(torch.rand(2, 3, 64, 64)).shape == (2, 2048)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 4, generator=g), torch.randn(300, 4, generator=g)
    assert fid(a, b) < 0.2 < fid(a, b + 2)


def test_evaluate_and_plot_end_to_end(tmp_path, tiny_model_path, mock_squeezenet):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        _photo(300, 272, i).save(data / f"img{i}.png")
    out = tmp_path / "results"
    argv = ["--data", str(data), "--out", str(out), "--model", str(tiny_model_path), "--levels", "64", "16",
            "--codecs", "jpeg,webp", "--workers", "1", "--threads", "1"]
    evaluate = load_script("evaluate")
    assert evaluate.main(argv) == 0
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 2 * 2 * (1 + 4)
    for r in rows:
        if r["codec"].startswith("vqcodec"):
            f = out / "files" / f"{Path(r['image']).stem}.L{r['level']}.vqc"
            assert int(r["bytes"]) == f.stat().st_size
            assert float(r["bpp"]) == pytest.approx(f.stat().st_size * 8 / (300 * 272))
        elif r["bpp"]:
            assert float(r["bpp"]) <= float(r["target_bpp"]) + 1e-12
    summary = json.loads((out / "summary.json").read_text())
    vq = [e for e in summary if e["codec"].startswith("vqcodec")]
    assert len(vq) == 2 and all(np.isfinite(e["kid_squeeze"]) for e in vq)
    assert all(0 < float(r["haarpsi"]) <= 1 for r in rows if r["bpp"])
    assert all(0 < e["haarpsi"] <= 1 for e in summary if e["reached"])
    assert evaluate.main(argv) == 0  # resumed: nothing left to do
    assert len(list(csv.DictReader(open(out / "per_image.csv")))) == len(rows)

    # rate control added to the finished images: vqcodec-rc at each target, the classical codecs matched to its files
    targets = [0.02, 0.03]
    assert evaluate.main([*argv, "--bpp-targets", *map(str, targets)]) == 0
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    rc = [r for r in rows if r["rc_target"]]
    assert len(rows) == 2 * 2 * (1 + 4) + len(rc) and len(rc) == 2 * len(targets) * (1 + 4)
    vq_rc = {(r["image"], float(r["rc_target"])): r for r in rc if r["codec"].startswith("vqcodec-rc:")}
    assert len(vq_rc) == 2 * len(targets)
    for (image, target), r in vq_rc.items():
        f = out / "files" / f"{Path(image).stem}.R{target:g}.vqc".replace("R0.", "R0p")
        assert int(r["bytes"]) == f.stat().st_size <= target * 300 * 272 / 8
        assert 0 < float(r["haarpsi"]) <= 1 and float(r["bpp"]) == float(r["target_bpp"])
    for r in rc:
        if r["bpp"]:  # ≤ the bytes of vqcodec-rc's file for that image and target
            assert int(r["bytes"]) <= int(vq_rc[(r["image"], float(r["rc_target"]))]["bytes"])
            assert r["haarpsi"] != ""
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(e["rc_target"] for e in summary if e["codec"].startswith("vqcodec-rc")) == targets
    report = load_script("report")
    assert report.table(summary).count("\n") == 2 + 1 and report.rc_table(summary).count("\n") == 2 + 1
    assert "HaarPSI" in report.rc_table(summary) and "| 0.02 |" in report.rc_table(summary)
    short = [dict(e, images=e["images"] - 1) if e["codec"].startswith("vqcodec-rc") and e["rc_target"] == 0.02 else e
             for e in summary]  # a run stopped part-way through one target
    assert "images)" not in report.rc_table(summary) and "| 0.02 (1 of 2 images) |" in report.rc_table(short)
    assert load_script("plot_rd").main(["--results", str(out)]) == 0
    assert (out / "rd.png").stat().st_size > 10_000 and (out / "rd.svg").exists()

    # a per_image.csv from before HaarPSI: upgraded in place, its HaarPSI missing (NaN), nothing recomputed
    old = [k for k in evaluate.FIELDS if k not in ("haarpsi", "rc_target")]
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, old, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r for r in rows if not r["rc_target"])
    assert evaluate.main(argv) == 0
    upgraded = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(upgraded) == 2 * 2 * (1 + 4) and all(r["haarpsi"] == "" for r in upgraded)
    summary = json.loads((out / "summary.json").read_text())
    assert all(np.isnan(e["haarpsi"]) and np.isfinite(e["psnr"]) for e in summary if e["codec"].startswith("vqcodec"))


def test_evaluate_and_diagnose_at_several_realism_settings(tmp_path, mock_squeezenet):
    from vqcodec.testing.models import save_tiny_knob

    model = save_tiny_knob(tmp_path / "knob.safetensors")
    data = tmp_path / "data"
    data.mkdir()
    _photo(300, 272, 0).save(data / "img0.png")
    out = tmp_path / "results"
    assert load_script("evaluate").main(["--data", str(data), "--out", str(out), "--model", str(model), "--levels", "16",
                                         "--codecs", "", "--workers", "1", "--realism", "0", "1"]) == 0
    rows = {r["codec"]: r for r in csv.DictReader(open(out / "per_image.csv"))}
    assert sorted(rows) == ["vqcodec:tiny@R0", "vqcodec:tiny@R1"]
    assert rows["vqcodec:tiny@R0"]["bytes"] == rows["vqcodec:tiny@R1"]["bytes"]  # one file, two decodes
    assert rows["vqcodec:tiny@R0"]["psnr"] != rows["vqcodec:tiny@R1"]["psnr"]
    table = load_script("report").table(json.loads((out / "summary.json").read_text()))
    assert "| 16, R=0 |" in table and "| 16, R=1 |" in table

    assert load_script("diagnose").main(["--data", str(data), "--out", str(tmp_path / "diag"), "--model", str(model),
                                         "--levels", "16", "--realism", "0", "1"]) == 0
    conditions = {r["condition"] for r in json.loads((tmp_path / "diag" / "per_image.json").read_text())}
    assert conditions == {"unquantized, R=0", "level 16, R=0", "unquantized, R=1", "level 16, R=1"}


def test_evaluate_loss_script_end_to_end(tmp_path, mock_squeezenet):
    from vqcodec.models.restorer import IndexRestorer, RestorerConfig
    from vqcodec.weights import load_model, save_restorer

    model_path = save_tiny_model(tmp_path / "m.safetensors")
    restorer = IndexRestorer(RestorerConfig(code_dim=4, width=16, depth=1, heads=2))
    save_restorer(tmp_path / "m.restorer.safetensors", restorer, load_model(model_path).fingerprint)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        _photo(176, 168, i).save(data / f"img{i}.png")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:loss -->\nold\n<!-- /results:loss -->\n")
    out = tmp_path / "loss"
    args = ["--data", str(data), "--out", str(out), "--model", str(model_path), "--levels", "16", "4",
            "--rates", "0", "0.2", "0.5", "--seeds", "0", "--figure-image", "img1.png", "--readme", str(readme)]
    assert load_script("evaluate_loss").main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {(e["level"], e["rate"], e["method"]) for e in summary} == {
        (level, rate, m) for level in (16, 4) for rate, m in [(0.0, "none")] + [(r, m) for r in (0.2, 0.5) for m in
                                                                            ("transformer", "neighbour", "fixed")]}
    with open(out / "per_image.csv", newline="") as f:
        lost = {(r["rate"], int(r["lost"])) for r in csv.DictReader(f)}
    assert lost == {("0.0", 0), ("0.2", round(0.2 * 121)), ("0.5", round(0.5 * 121))}  # 176x168 px = 11x11 indices
    assert (out / "quality_vs_loss.png").exists() and (out / "restored_img1_L16.png").exists()
    text = readme.read_text()
    assert "old" not in text and "| 16 | 20% |" in text and "quality_vs_loss.png" in text
    assert "](img/restored.jpg)" in text and (tmp_path / "img/restored.jpg").exists()
    rows = (out / "per_image.csv").read_text().count("\n")
    assert load_script("evaluate_loss").main(args) == 0  # resumed: nothing recomputed
    assert (out / "per_image.csv").read_text().count("\n") == rows


@pytest.mark.parametrize("packets, fraction, seed", [(5, 0.2, 0), (20, 0.3, 1), (20, 0.5, 7), (8, 0.0, 3), (8, 1.0, 3)])
def test_packet_loss_mask_loses_the_packets_simulate_loss_drops(packets, fraction, seed):
    grid = (7, 11)
    header = container.Header(model_id="m", fingerprint=bytes(8), level=16, width=grid[1] * 16, height=grid[0] * 16,
                              grid_width=grid[1], grid_height=grid[0], factor=16, entropy_model=0,
                              flags=container.FLAG_PACKETIZED, packets=packets)
    stream = container.Stream(header, packets={k: b"" for k in range(packets)})
    lost = set(range(packets)) - set(simulate_loss(stream, fraction, "packet", seed).packets)
    assert len(lost) == round(fraction * packets)
    layout = container.packet_assignment(*grid, packets)
    known = packet_loss_mask(grid, packets, fraction, seed)
    assert known.shape == grid and torch.equal(known, torch.from_numpy(~np.isin(layout, sorted(lost))))


def test_rate_control_only_runs_compare_granularities(tmp_path, tiny_model_path, mock_squeezenet):
    """`--levels` with no value skips the fixed levels; `--granularity` picks the grid; report.versus
    sets two runs side by side, target by target."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        _photo(160, 144, i).save(data / f"img{i}.png")
    evaluate, report = load_script("evaluate"), load_script("report")
    summaries = {}
    for granularity in ("16", "adaptive"):
        out = tmp_path / granularity
        assert evaluate.main(["--data", str(data), "--out", str(out), "--model", str(tiny_model_path), "--levels",
                              "--bpp-targets", "0.05", "--codecs", "", "--workers", "1", "--threads", "1",
                              "--granularity", granularity, "--tone", "off" if granularity == "16" else "on"]) == 0
        rows = list(csv.DictReader(open(out / "per_image.csv")))
        assert len(rows) == 2 and all(r["rc_target"] == "0.05" for r in rows)
        headers = [container.read_header(f.read_bytes()) for f in (out / "files").iterdir()]
        if granularity == "16":  # (adaptive rate control may also pick a fixed-grid file)
            assert all(not h.granularity_map and not h.tone for h in headers)
        else:
            assert all(h.tone for h in headers)
        summaries[granularity] = json.loads((out / "summary.json").read_text())
    table = report.versus(summaries["adaptive"], summaries["16"])
    ours, base = (next(e for e in summaries[g] if e["codec"].startswith("vqcodec")) for g in ("adaptive", "16"))
    assert table.count("\n") == 2 and f"{ours['psnr'] - base['psnr']:+.2f}" in table.splitlines()[2]


def test_report_of_a_rate_control_run_writes_its_table_and_plot(tmp_path, tiny_model_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    _photo(160, 144, 0).save(data / "img0.png")
    report = load_script("report")
    monkeypatch.setattr(report, "ROOT", tmp_path)
    readme = tmp_path / "eval.md"
    readme.write_text("# results\n")
    assert report.main(["--data", str(data), "--name", "rc", "--readme", str(readme), "--workers", "1", "--model",
                        str(tiny_model_path), "--levels", "--bpp-targets", "0.05", "--codecs", "", "--threads", "1",
                        "--granularity", "16", "--tone", "off"]) == 0
    assert "<!-- results:rc_rc -->" in readme.read_text() and "| 0.05 |" in readme.read_text()
    assert (tmp_path / "docs" / "img" / "rd_rc.png").stat().st_size > 10_000


def test_sheet_shows_each_granularity_and_tone_setting_beside_the_original(tmp_path, tiny_model_path):
    data = tmp_path / "data"
    data.mkdir()
    _photo(160, 144, 0).save(data / "smooth.png")
    sheet = load_script("realism_sheet")
    out = tmp_path / "sheet.png"
    assert sheet.main(["--data", str(data), "--out", str(out), "--model", str(tiny_model_path), "--bpp", "0.06",
                       "--granularity", "adaptive", "--tone", "off", "on", "--realism", "1", "--codecs", "",
                       "--size", "64", "--crop", "smooth:8:8", "--crop", "smooth:80:60", "--keep", str(tmp_path / "files")]) == 0
    picture = Image.open(out)
    # two rows; original + two files (+ each one's token map when it has coarse tokens)
    assert picture.height == 2 * (64 + sheet.LABEL + 4)
    assert 3 * (64 + 4) <= picture.width <= 5 * (64 + 4)
    kept = sorted(p.name for p in (tmp_path / "files").iterdir())
    assert kept == ["smooth.adaptive.tone-off.vqc", "smooth.adaptive.tone-on.vqc"]


def test_sheet_reuses_the_kept_files_without_encoding(tmp_path, tiny_model_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    _photo(160, 144, 0).save(data / "smooth.png")
    sheet = load_script("realism_sheet")
    args = ["--data", str(data), "--model", str(tiny_model_path), "--bpp", "0.06", "--tone", "off", "on",
            "--realism", "1", "--codecs", "", "--size", "64", "--crop", "smooth:8:8", "--keep", str(tmp_path / "files")]
    assert sheet.main(args + ["--out", str(tmp_path / "first.png")]) == 0

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(sheet.Codec, "encode", no_encoding)
    assert sheet.main(args + ["--out", str(tmp_path / "again.png"), "--reuse"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "first.png")), np.asarray(Image.open(tmp_path / "again.png")))
    with pytest.raises(AssertionError, match="encoded again"):  # without --reuse the photo is coded anew
        sheet.main(args + ["--out", str(tmp_path / "third.png")])


def test_blind_test_hides_the_sides_and_tallies_the_answers(tmp_path, tiny_model_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _photo(160, 144, 0).save(data / "smooth.png")
    blind = load_script("blind_test")
    out = tmp_path / "blind"
    assert blind.main(["make", "--data", str(data), "--out", str(out), "--model", str(tiny_model_path), "--codec", "webp",
                       "--bpp", "0.3", "--size", "48", "--crop", "smooth:8:8", "--crop", "smooth:100:90", "--crop", "smooth:60:20",
                       "--cache", str(tmp_path / "cache"), "--seed", "1"]) == 0
    pairs = sorted(p.name for p in out.glob("pair-*.png"))
    assert pairs == ["pair-01.png", "pair-02.png", "pair-03.png"]
    assert Image.open(out / pairs[0]).size == (3 * (48 + 4), 48 + 18 + 4)  # A | original | B, captioned
    key = list(csv.DictReader(open(out / "key.csv")))
    assert all(sorted([row["A"].split()[0], row["B"].split()[0]]) == ["vqcodec", "webp+resample"] for row in key)
    assert len({row["A"].split()[0] for row in key}) == 2  # the sides are drawn, not fixed
    assert [r["choice"] for r in csv.DictReader(open(out / "answers.csv"))] == ["", "", ""]  # for the rater to fill in
    # pick vqcodec's side in the first pair, the other side in the second, no preference in the third
    ours = "A" if key[0]["A"].startswith("vqcodec") else "B"
    other = "B" if key[1]["A"].startswith("vqcodec") else "A"
    (out / "answers.csv").write_text(f"pair,choice\npair-01.png,{ours}\npair-02.png,{other.lower()}\npair-03.png,=\n")
    capsys.readouterr()
    assert blind.main(["tally", str(out)]) == 0
    assert "vqcodec preferred in 1 of 3 pairs (33%), the classical codec in 1, no preference in 1" in capsys.readouterr().out
    (out / "bad.csv").write_text("pair,choice\npair-01.png,C\n")
    with pytest.raises(SystemExit, match="is not A, B or ="):
        blind.main(["tally", str(out), "--answers", "bad.csv"])
