"""GAN training: discriminator, R1, blur, EMA, the analyzer FD, and tiny real training runs (learn, resume, kill)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.metrics.fd import (FeatureModelUnavailable, analyzer_features, factor_match, frechet_distance,
                             inception_features)
from core.stylegan3 import Generator
from core.stylegan3.discriminator import Discriminator, MinibatchStd
from core.synthfaces import render_faces
from core.train.ema import update_ema
from core.train.gan import GanConfig, blur, r1_penalty, train_gan
from core.train.rundir import RunDir
from tests.conftest import kill_after_checkpoints, resume_in_a_process

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(resolution=32, z_dim=16, w_dim=16, channel_base=256, channel_max=16, num_layers=3, margin_size=2,
            d_channel_base=256, d_channel_max=32, batch_size=8, log_every=1, sample_every=4, checkpoint_every=2,
            eval_every=4, eval_images=64, r1_interval=2, blur_fade_images=64, ship_to="")


def tiny(tmp_path: Path, name: str, **overrides) -> GanConfig:
    return GanConfig(name=name, runs_dir=str(tmp_path), **{**TINY, **overrides})


def metrics(run: RunDir) -> list[dict]:
    return [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]


def test_discriminator_shapes_and_bad_input():
    D = Discriminator(32, channel_base=256, channel_max=32, mbstd_group=4)
    assert D(torch.randn(8, 3, 32, 32)).shape == (8,)
    with pytest.raises(ValueError, match=r"\[batch, 3, 32, 32\]"):
        D(torch.randn(8, 3, 64, 64))
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(48)
    with pytest.raises(ValueError, match="multiple of the minibatch-std group"):
        D(torch.randn(6, 3, 32, 32))


def test_minibatch_std_reads_the_spread_of_each_group():
    x = torch.zeros(4, 2, 3, 3)
    x[2:] = 1.0  # groups are (0, 2) and (1, 3) for group size 2: each pair holds a 0 and a 1 -> std 0.5
    y = MinibatchStd(group_size=2)(x)
    assert y.shape == (4, 3, 3, 3)
    assert torch.allclose(y[:, 2], torch.full((4, 3, 3), 0.5), atol=1e-4)
    same = MinibatchStd(group_size=4)(torch.ones(4, 2, 3, 3))
    assert same[:, 2].abs().max() < 1e-3


def test_r1_penalty_is_the_squared_input_gradient():
    a = torch.randn(1, 3, 8, 8)
    logits, penalty = r1_penalty(lambda x: (x * a).sum(dim=[1, 2, 3]), torch.randn(4, 3, 8, 8), sigma=0.0)
    assert logits.shape == (4,)
    assert torch.allclose(penalty, a.square().sum().expand(4), rtol=1e-5)


def test_blur_keeps_the_mean_and_smooths():
    x = torch.rand(2, 3, 32, 32)
    assert blur(x, 0.0) is x
    y = blur(x, 2.0)
    assert y.shape == x.shape
    inner = (slice(None), slice(None), slice(8, 24), slice(8, 24))
    assert torch.allclose(y[inner].mean(), x.mean(), atol=0.02)
    assert y[inner].std() < x[inner].std() / 3


def test_ema_update():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    update_ema(a, b, beta=1.0)
    assert torch.equal(a.weight, before)
    update_ema(a, b, beta=0.25)
    assert torch.allclose(a.weight, 0.25 * before + 0.75 * b.weight)
    update_ema(a, b, beta=0.0)
    assert torch.equal(a.weight, b.weight)


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 4))
    y = rng.standard_normal((20000, 4)) * 2 + np.array([1.0, 0, 0, 0])
    # N(0, I) vs N(m, 4I): |m|^2 + tr(I + 4I - 2 * 2I) = 1 + 4
    assert frechet_distance(x, y) == pytest.approx(5.0, rel=0.05)
    assert frechet_distance(x, rng.standard_normal((20000, 4))) < 0.01
    with pytest.raises(ValueError, match="same width"):
        frechet_distance(x, y[:, :3])


def test_analyzer_fd_tells_faces_from_damaged_faces():
    from core.analysis import load_analyzer
    analyzer = load_analyzer("synthfaces")
    a = render_faces(torch.arange(0, 300), seed=1).images
    b = render_faces(torch.arange(5000, 5300), seed=2).images
    feats_a, fac_a = analyzer_features(analyzer, a)
    feats_b, fac_b = analyzer_features(analyzer, b)
    feats_c, fac_c = analyzer_features(analyzer, blur(a, 3.0))
    real_real, real_blurred = frechet_distance(feats_a, feats_b), frechet_distance(feats_a, feats_c)
    assert real_blurred > 3 * real_real
    match_same, match_blur = factor_match(fac_a, fac_b), factor_match(fac_a, fac_c)
    assert sum(match_blur.values()) > sum(match_same.values())


def test_inception_fid_says_what_is_missing(tmp_path):
    with pytest.raises(FeatureModelUnavailable, match="torchvision|weights not found"):
        inception_features(torch.rand(2, 3, 16, 16), weights=tmp_path / "missing.pth")


def test_tiny_run_learns_writes_everything_and_ships_a_generator(tmp_path):
    cfg = tiny(tmp_path, "t", steps=8, ship=True, ship_to=str(tmp_path / "ship" / "g"))
    report = train_gan(cfg, progress=False)
    run = RunDir(tmp_path / "t")
    lines = metrics(run)
    assert [x["step"] for x in lines if "loss_d" in x] == list(range(1, 9))
    # the discriminator learns to tell SynthFaces from the untrained generator
    assert lines[-2]["logits_real"] > lines[-2]["logits_fake"]
    assert any("r1_penalty" in x for x in lines)
    assert report["fd_analyzer"] > report["fd_analyzer_real_real"] > 0
    assert set(p.name for p in run.samples.glob("*.png")) == {"00000004.png", "00000008.png"}
    assert json.loads((run.path / "status.json").read_text())["state"] == "finished"
    G = Generator.from_pretrained(tmp_path / "ship" / "g.safetensors")
    assert G(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    shipped = json.loads((tmp_path / "ship" / "g.json").read_text())
    assert shipped["metrics"]["fd_analyzer"] == pytest.approx(report["fd_analyzer"])
    assert "not Inception FID" in shipped["evaluation"]


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    train_gan(tiny(tmp_path, "straight", steps=6, eval_images=0), progress=False)
    train_gan(tiny(tmp_path, "split", steps=4, eval_images=0), progress=False)
    train_gan(tiny(tmp_path, "split", steps=6, eval_images=0), resume=True, progress=False)
    a, _ = RunDir(tmp_path / "straight").latest()
    b, meta = RunDir(tmp_path / "split").latest()
    assert meta["step"] == 6
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [x["step"] for x in metrics(RunDir(tmp_path / "split")) if "loss_d" in x]
    assert steps == list(range(1, 7))


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    sets = [f"{k}={v}" for k, v in {**TINY, "name": "k", "runs_dir": str(tmp_path), "steps": 16,
                                     "eval_images": 0, "ship_to": "''"}.items()]
    assert kill_after_checkpoints("gan", sets, tmp_path / "k")["step"] < 16
    resume_in_a_process("gan", sets)
    run = RunDir(tmp_path / "k")
    assert [x["step"] for x in metrics(run) if "loss_d" in x] == list(range(1, 17))
    assert json.loads((run.path / "status.json").read_text())["state"] == "finished"


def test_vp_loss_makes_latent_changes_predictable(one_thread):
    """Training G with Q (the VP loss) makes single-dimension changes easier to name than training Q alone on the
    same frozen G, from the same start and data. Measured at 200 steps (accuracy on 1,024 held-out pairs, chance
    0.25): joint minus control 0.12 and 0.20 for seeds 0 and 1 (0.12 to 0.31 over seeds 0-3 on 512 pairs), 0.120
    with 1 thread and 0.112 with 2 (seed 0); control alone 0.26 to 0.33. The bound 0.06 is half the smallest gap,
    about seven times the spread between thread counts."""
    from core.metrics.vp import VarPredNet, vp_loss

    def trained(train_g: bool) -> float:
        torch.manual_seed(0)
        G = Generator(**tiny(Path("."), "vp").generator_kwargs())
        Q = VarPredNet(4, 8)
        opt = torch.optim.Adam([*Q.parameters(), *(G.parameters() if train_g else [])], lr=0.01)
        gen = torch.Generator().manual_seed(1)
        for _ in range(200):
            z = torch.randn(16, 16, generator=gen)
            loss, _ = vp_loss(G, Q, z, G(z), 4, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        Q.eval()
        with torch.no_grad():
            held_out = torch.Generator().manual_seed(99)
            z = torch.randn(1024, 16, generator=held_out)
            return vp_loss(G, Q, z, G(z), 4, held_out)[1].item()

    joint, control = trained(True), trained(False)
    assert control < 0.35 and joint - control > 0.06


def test_vp_weight_trains_a_predictor_that_resumes_with_the_run(tmp_path):
    with pytest.raises(ValueError, match="vp_dims"):
        tiny(tmp_path, "bad", vp_weight=1.0, vp_dims=1)
    vp = dict(vp_weight=1.0, vp_dims=4, vp_width=8, eval_images=0)
    train_gan(tiny(tmp_path, "straight", steps=4, **vp), progress=False)
    train_gan(tiny(tmp_path, "split", steps=2, **vp), progress=False)
    train_gan(tiny(tmp_path, "split", steps=4, **vp), resume=True, progress=False)
    a, _ = RunDir(tmp_path / "straight").latest()
    b, _ = RunDir(tmp_path / "split").latest()
    assert any(k.startswith("Q.") for k in a) and any(k.startswith("q_optim.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines = [x for x in metrics(RunDir(tmp_path / "split")) if "loss_vp" in x]
    assert [x["step"] for x in lines] == [1, 2, 3, 4] and all(0 <= x["vp_accuracy"] <= 1 for x in lines)
