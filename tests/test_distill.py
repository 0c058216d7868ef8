"""The distilled generator: the z -> factors map, and tiny distillation runs that learn, resume and ship."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.publish import export_run
from core.stylegan3 import Generator
from core.stylegan3.networks import estimate_w_avg
from core.synthfaces.factors import FACTOR_NAMES, GLASSES_PROBS, glasses_kind, sample_factors
from core.synthfaces.latent import (GLASSES_CUTS_Z, GLASSES_MIDDLES_Z, LATENT_NAMES, Z_DIM, factors_from_z,
                                    glasses_cut_distance, z_from_factors)
from core.synthfaces.render import render
from core.synthfaces.latent import targets
from core.train import distill_config
from core.train.distill import step_latents, train_distill
from core.train.distill_config import DistillConfig
from core.train.distill_losses import feature_loss, glasses_map
from core.train.distill_start import build_generator
from core.train.rundir import RunDir
from tests.conftest import kill_after_checkpoints

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(resolution=32, w_dim=32, channel_base=256, channel_max=16, num_layers=3, margin_size=2, batch_size=8,
            log_every=1, sample_every=5, checkpoint_every=5, eval_every=10, eval_images=32, lr=0.01,
            mapping_lr_multiplier=1.0, ema_images=200)


def tiny(tmp_path: Path, name: str, **overrides) -> DistillConfig:
    return DistillConfig(name=name, runs_dir=str(tmp_path), **{**TINY, **overrides})


def test_every_latent_coordinate_drives_exactly_its_own_factor():
    assert Z_DIM == len(LATENT_NAMES) == len(FACTOR_NAMES) - 1  # the two glasses factors share one coordinate
    z = torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(0))
    base = factors_from_z(z)
    assert torch.equal(base, factors_from_z(z.clone()))  # deterministic
    for i, name in enumerate(LATENT_NAMES):
        moved = z.clone()
        moved[:, i] += 1.5
        changed = (factors_from_z(moved) - base).abs().amax(0) > 0
        driven = {"eyeglasses", "sunglasses"} if name == "glasses" else {name}
        assert {FACTOR_NAMES[j] for j in torch.nonzero(changed).flatten().tolist()} == driven, name


def test_continuous_factors_are_the_normal_cdf_and_the_glasses_follow_the_world():
    z = torch.randn(40_000, Z_DIM, generator=torch.Generator().manual_seed(1))
    f = factors_from_z(z)
    smile = FACTOR_NAMES.index("smile")
    expected = 0.5 * (1 + torch.erf(z[:, LATENT_NAMES.index("smile")] / 2 ** 0.5))
    assert torch.allclose(f[:, smile], expected, atol=1e-6)
    assert abs(float(f[:, smile].mean()) - 0.5) < 0.01 and abs(float(f[:, smile].std()) - 12 ** -0.5) < 0.01
    glasses = f[:, FACTOR_NAMES.index("eyeglasses")], f[:, FACTOR_NAMES.index("sunglasses")]
    assert not bool((glasses[0] * glasses[1]).any())  # never both
    shares = (1 - glasses[0] - glasses[1]).mean(), glasses[0].mean(), glasses[1].mean()
    for share, p in zip(shares, GLASSES_PROBS):
        assert abs(float(share) - p) < 0.01


def test_the_inverse_round_trips():
    f = sample_factors(torch.arange(500), seed=3)
    assert torch.allclose(factors_from_z(z_from_factors(f)), f, atol=1e-5)
    z = torch.randn(500, Z_DIM, generator=torch.Generator().manual_seed(2))
    back = z_from_factors(factors_from_z(z))
    assert torch.allclose(back[:, :-1], z[:, :-1], atol=1e-3)
    assert torch.allclose(factors_from_z(back), factors_from_z(z), atol=1e-5)  # the glasses kind survives


def test_the_glasses_kind_switches_at_each_cut_and_the_cut_distance_measures_how_near():
    z = torch.zeros(7, Z_DIM)
    low, high = GLASSES_CUTS_Z
    z[:, -1] = torch.tensor([-2.0, low - 0.01, low + 0.01, (low + high) / 2, high - 0.01, high + 0.01, 3.0])
    assert glasses_kind(factors_from_z(z)).tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert torch.allclose(glasses_cut_distance(z), torch.tensor([2 + low, 0.01, 0.01, (high - low) / 2, 0.01, 0.01,
                                                                 3 - high]), atol=1e-5)
    read = torch.zeros(3, len(FACTOR_NAMES))
    read[:, FACTOR_NAMES.index("eyeglasses")] = torch.tensor([0.4, 0.9, 0.9])
    read[:, FACTOR_NAMES.index("sunglasses")] = torch.tensor([0.3, 0.2, 0.6])
    assert glasses_kind(read).tolist() == [0, 1, 2]  # an analyzer reading both counts as sunglasses
    with pytest.raises(ValueError, match="factors must have shape"):
        glasses_kind(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="z must have shape"):
        glasses_cut_distance(torch.zeros(3, 2))


def test_bad_latents_are_refused():
    with pytest.raises(ValueError, match=r"z must have shape \[batch, 23\]"):
        factors_from_z(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="NaN"):
        factors_from_z(torch.full((1, Z_DIM), float("nan")))
    with pytest.raises(ValueError, match="factors must have shape"):
        z_from_factors(torch.zeros(3))


def _evals(run: RunDir) -> list[dict]:
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if "eval_l1" in x]


def test_a_tiny_distillation_learns_and_ships(tmp_path):
    cfg = tiny(tmp_path, "learn", steps=300, eval_every=150, sample_every=100, checkpoint_every=100, ship=True,
               ship_to=str(tmp_path / "ship" / "g"))
    torch.manual_seed(cfg.seed)
    before = Generator(**cfg.generator_kwargs())
    report = train_distill(cfg, progress=False)
    run = RunDir(tmp_path / "learn")
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    first, last = (sum(x["loss"] for x in part) / len(part) for part in (lines[:10], lines[-10:]))
    assert last < 0.8 * first  # the pixel loss falls (measured: to 0.58 of its start)
    # the faces move toward their targets: held-out L1 of the shipped generator against the renders
    z = torch.randn(32, Z_DIM, generator=torch.Generator().manual_seed(9))
    real = targets(z, cfg.resolution)[0]
    shipped = Generator.from_pretrained(tmp_path / "ship" / "g")
    with torch.no_grad():
        err = [float(((G(z) + 1) / 2 - real).abs().mean()) for G in (before, shipped)]
    assert err[1] < 0.75 * err[0]
    assert report["eval_l1"] == _evals(run)[-1]["eval_l1"] and set(report) >= {"eval_identity_cosine_median",
                                                                                  "eval_landmark_nme"}
    assert shipped.mapping.normalize_z is False
    assert shipped.mapping.w_avg.abs().sum() > 0  # the truncation centre is estimated at shipping, not left at 0
    assert torch.allclose(shipped.mapping.w_avg, estimate_w_avg(shipped.mapping))
    config = json.loads((tmp_path / "ship" / "g.json").read_text())
    assert config["images_seen"] == 300 * 8 and "factors_from_z" in config["latent"]
    role, G, notes = export_run(run.path)  # what `python -m core.publish` would upload
    assert role == "generator" and notes["step"] == 300
    assert torch.equal(G(z), shipped(z))
    assert sorted(p.name for p in run.samples.glob("*.png"))[-1] == "00000300.png"


def test_a_killed_distillation_resumes_exactly(tmp_path, one_thread):
    args = [f"{k}={v}" for k, v in {**TINY, "runs_dir": str(tmp_path), "steps": 40, "eval_images": 0,
                                    "checkpoint_every": 3, "sample_every": 100}.items()]
    killed_at = kill_after_checkpoints("distill", ["name=killed", *args], tmp_path / "killed", timeout=120)["step"]
    assert 0 < killed_at < 40
    run = RunDir(tmp_path / "killed")
    train_distill(tiny(tmp_path, "killed", steps=40, eval_images=0, checkpoint_every=3, sample_every=100),
                  resume=True, progress=False)
    train_distill(tiny(tmp_path, "straight", steps=40, eval_images=0, checkpoint_every=3, sample_every=100),
                  progress=False)
    a, _ = RunDir(tmp_path / "straight").latest()
    b, _ = RunDir(tmp_path / "killed").latest()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [json.loads(x)["step"] for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))  # nothing logged twice, nothing lost


def test_the_fidelity_report_on_a_tiny_generator(tmp_path):
    from core.analysis import load_analyzer
    from core.reports import generator as report
    cfg = tiny(tmp_path, "r", steps=2, eval_images=0)
    torch.manual_seed(0)
    G = Generator(**cfg.generator_kwargs()).eval()
    result, images = report.report(G, load_analyzer("synthfaces"), samples=48)
    assert result["samples"] == 48 and 0 < result["l1"] < 1 and 0 < result["fd_analyzer_real_real"] < result[
        "fd_analyzer"]  # an untrained generator is far from the renders; two rendered sets are close
    assert result["face_check_pass_rate_rendered"] > 0.9 and result["face_check_pass_rate"] < 0.5
    assert set(result["goals"]) == set(report.GOALS) and not result["goals"]["identity_cosine_median"]["met"]
    assert result["fid_inception"] is None and "Inception" in result["fid_inception_note"]
    assert result["ppl_w_end_analyzer"] > 0 and result["ppl_z_full_analyzer"] > 0
    glasses = result["glasses"]
    generated, rendered = (torch.tensor(glasses[f"confusion_{k}"]) for k in ("generated", "rendered"))
    assert int(generated.sum()) == int(rendered.sum()) == 48
    assert float(generated.trace()) / 48 == pytest.approx(result["glasses_accuracy"])
    assert float(rendered.trace()) > 0.8 * 48 and rendered.trace() > generated.trace(), (rendered, generated)
    bins = glasses["by_cut_distance"]
    assert sum(b["faces"] for b in bins) == 48 and bins[-1]["to"] is None
    assert sum(b["wrong_generated"] for b in bins) == 48 - int(generated.trace())
    table = report.markdown(result)
    assert "| landmark NME vs true landmarks (goal <= 5 %) |" in table and "Goals met:" in table
    assert "| true kind | read none | read eyeglasses | read sunglasses |" in table and "| over 0.4 |" in table
    assert images["real"].shape == images["fake"].shape == (16, 3, 32, 32)
    from tests.conftest import tiny_kwargs
    with pytest.raises(ValueError, match="one per SynthFaces factor"):
        report.report(Generator(**tiny_kwargs()), load_analyzer("synthfaces"), samples=16)
    with pytest.raises(ValueError, match="samples must be at least 16"):
        report.report(G, load_analyzer("synthfaces"), samples=8)
    from core.analysis import analyze
    from core.metrics.fidelity import fidelity
    faces = images["real"]
    read = analyze(load_analyzer("synthfaces"), faces)
    with pytest.raises(ValueError, match="one reading per face"):
        fidelity(faces, faces, torch.zeros(16, 5, 2), torch.zeros(16, 10), read, analyze(load_analyzer(), faces[:8]))


def test_the_readme_try_it_commands_never_touch_the_shipped_checkpoints(tmp_path):
    """Training ships only when asked (--ship): the README's "try it" runs leave checkpoints/ byte-identical, and an
    empty `--set ship_to=` means "nowhere" even with --ship."""
    import hashlib

    from core.checkpoints import CHECKPOINT_DIR
    from core.train.__main__ import main

    def snapshot() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(CHECKPOINT_DIR.iterdir())}

    before = snapshot()
    tiny_sets = [f"runs_dir={tmp_path}", "steps=2", "eval_images=0", "log_every=1", "sample_every=2",
                 "checkpoint_every=2"]
    assert main(["distill", "--config", str(ROOT / "configs/distill_synthfaces64.yaml"), "--set", *tiny_sets,
                 "channel_base=256", "channel_max=16", "batch_size=2"]) == 0
    assert main(["gan", "--config", str(ROOT / "configs/gan_synthfaces64.yaml"), "--set", *tiny_sets,
                 "name=gan_try", "channel_base=256", "channel_max=16", "d_channel_base=256", "d_channel_max=16",
                 "batch_size=4", "mbstd_group=2", "num_layers=3", "margin_size=2", "num_fp16_res=0"]) == 0
    assert main(["distill", "--config", str(ROOT / "configs/distill_synthfaces64.yaml"), "--ship", "--set", *tiny_sets,
                 "name=empty_ship", "ship_to=", "channel_base=256", "channel_max=16", "batch_size=2"]) == 0
    assert snapshot() == before


def test_the_shipped_example_run_resumes_where_it_stopped(tmp_path):
    """The long run continues on any machine from the checkpoint shipped in examples/runs: it is complete and
    verified, its metrics and status end at its step, and one more step trains from it with the recipe's config."""
    import shutil

    from core.config import load_config
    example = ROOT / "examples" / "runs" / "distill_synthfaces64"
    tensors, meta = RunDir(example).latest()
    step = meta["step"]
    logged = [json.loads(x)["step"] for x in (example / "metrics.jsonl").read_text().splitlines()]
    cfg = load_config(DistillConfig, ROOT / "configs" / "distill_synthfaces64.yaml",
                      {"runs_dir": str(tmp_path), "steps": step + 1, "eval_images": 0, "sample_every": 10 ** 6})
    assert step - cfg.log_every < max(logged) <= step == json.loads((example / "status.json").read_text())["step"]
    adversarial = cfg.weight_adversarial > 0 and step > cfg.adversarial_from
    assert any(k.startswith("D.") for k in tensors) == adversarial  # its discriminator resumes too, not fresh
    shutil.copytree(example, tmp_path / example.name)
    train_distill(cfg, resume=True, progress=False)
    resumed, resumed_meta = RunDir(tmp_path / example.name).latest()
    assert resumed_meta["step"] == step + 1
    assert not torch.equal(resumed["G.mapping.fc0.weight"], tensors["G.mapping.fc0.weight"])  # it trained on


def test_the_shipped_generator_is_the_example_run_with_the_glasses_layer_fine_tuned(tmp_path):
    """The shipped generator descends from the example run: its config names the run's step and images, its built
    glasses layer is the one `init_from` the run builds, bit for bit (that layer never trains), and the trained
    layers moved a little in the fine-tune, so it draws nearly, not exactly, the run's faces."""
    from core.checkpoints import load_pretrained
    from core.config import load_config
    cfg = load_config(DistillConfig, ROOT / "configs/distill_synthfaces64.yaml",
                      {"runs_dir": str(tmp_path), "quantize_glasses": True,
                       "init_from": str(ROOT / "examples/runs/distill_synthfaces64")})
    start = build_generator(cfg)
    assert start.origin["step"] == 30_000 and start.origin["images_seen"] == 480_000  # counted from its steps
    shipped, config = load_pretrained("synthfaces_stylegan3", kind=Generator.kind)
    assert config["started_from"] == {"init_from": "examples/runs/distill_synthfaces64", "step": 30_000,
                                      "images_seen": 480_000}
    assert config["images_seen"] == 480_000 + config["step"] * config["trained_with"]["batch_size"]
    built, trained = dict(start.G_ema.mapping.named_parameters()), dict(shipped.mapping.named_parameters())
    assert all(torch.equal(built[n], trained[n]) for n in ("fc0.weight", "fc0.bias"))
    assert not torch.equal(built["fc1.weight"], trained["fc1.weight"])
    z = torch.randn(8, Z_DIM, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        moved = (start.G_ema(z, noise_mode="const") - shipped.eval()(z, noise_mode="const")).abs().mean()
    assert 0 < moved < 0.02  # images in [-1, 1]: the fine-tune moved pixels by about 0.004


def test_the_learning_rate_schedule_holds_then_decays_and_a_resume_can_change_it(tmp_path):
    """The rate comes from the config at every step, so a resumed run follows a newly set schedule instead of the
    rate stored with the optimizer in its checkpoint."""
    from core.train.distill import learning_rate
    cfg = tiny(tmp_path, "lr", steps=20, eval_images=0, sample_every=100, checkpoint_every=10, log_every=1)
    train_distill(cfg, progress=False)
    decayed = tiny(tmp_path, "lr", steps=20, eval_images=0, sample_every=100, checkpoint_every=10, log_every=1,
                   lr_decay_from=10, lr_final=0.001)
    run = RunDir(tmp_path / "lr")
    for p in run.checkpoints.glob("00000020.*"):  # back to step 10: the resume retrains the rest on the new schedule
        p.unlink()
    train_distill(decayed, resume=True, progress=False)
    logged = {x["step"]: x["lr"] for x in map(json.loads, (run.path / "metrics.jsonl").read_text().splitlines())}
    assert [logged[s] for s in (1, 10, 11)] == pytest.approx([0.01] * 3)  # logged as s: the rate of step s - 1
    assert logged[15] == pytest.approx(learning_rate(decayed, 14)) and 0.001 < logged[15] < 0.01
    assert logged[20] < logged[16] < logged[12] and logged[20] == pytest.approx(learning_rate(decayed, 19))
    assert logged[20] < 0.0013  # near lr_final at the end
    short = tiny(tmp_path, "short", steps=20, lr_decay_from=30)  # a run cut shorter than its decay: no decay
    assert learning_rate(short, 19) == short.lr


def test_the_analyzer_terms_join_at_their_step(tmp_path):
    """Pixels alone shape the face first; from `analyzer_from` on, the analyzer's terms count in the loss."""
    cfg = tiny(tmp_path, "terms", steps=6, eval_images=0, sample_every=100, checkpoint_every=100, log_every=1,
               weight_identity=0.1, weight_factors=0.1, weight_landmarks=0.5, analyzer_from=3)
    train_distill(cfg, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "terms" / "metrics.jsonl").read_text().splitlines()]
    assert [("loss_landmarks" in x) for x in lines] == [False] * 3 + [True] * 3
    for x in lines[3:]:
        terms = x["loss_pixel"] + 0.1 * x["loss_identity"] + 0.1 * x["loss_factors"] + 0.5 * x["loss_landmarks"]
        assert x["loss"] == pytest.approx(terms) and x["loss"] > x["loss_pixel"]
    assert all(x["loss"] == x["loss_pixel"] for x in lines[:3])


def test_the_edge_term_measures_lost_sharpness_and_joins_the_loss(tmp_path):
    import torch.nn.functional as F

    from core.train.distill_losses import edge_loss
    real = targets(torch.randn(8, Z_DIM, generator=torch.Generator().manual_seed(4)), 64)[0]
    blurred = F.avg_pool2d(real, 3, stride=1, padding=1, count_include_pad=False)
    shifted = (real + 0.1).clamp(0, 1)  # a brightness change keeps the edges
    assert edge_loss(real, real) == 0
    assert edge_loss(blurred, real) > 3 * edge_loss(shifted, real)
    cfg = tiny(tmp_path, "edges", steps=3, eval_images=0, sample_every=100, checkpoint_every=100, log_every=1,
               weight_edges=2.0)
    train_distill(cfg, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "edges" / "metrics.jsonl").read_text().splitlines()]
    assert all(x["loss"] == pytest.approx(x["loss_pixel"] + 2.0 * x["loss_edges"]) for x in lines)


def test_the_pixel_distance_is_l1_or_squared_l2_at_every_scale(tmp_path):
    from core.train.distill_losses import pixel_loss
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    assert pixel_loss(a, b, [1], "l1") == pytest.approx(float((a - b).abs().mean()))
    assert pixel_loss(a, b, [1], "l2") == pytest.approx(float(((a - b) ** 2).mean()))
    pooled = torch.nn.functional.avg_pool2d(a - b, 4)
    assert pixel_loss(a, b, [1, 4], "l2") == pytest.approx(float((((a - b) ** 2).mean() + (pooled ** 2).mean()) / 2))
    with pytest.raises(ValueError, match="pixel_norm"):
        tiny(tmp_path, "bad", pixel_norm="l3")


def test_the_feature_term_counts_errors_on_the_eyes_and_mouth_not_the_background(tmp_path):
    from core.synthfaces.render import LANDMARK_NAMES
    from core.train.distill_losses import feature_loss, feature_map
    real, landmarks, _ = targets(torch.randn(4, Z_DIM, generator=torch.Generator().manual_seed(6)), 64)
    weight = feature_map(landmarks, 64, 0.05)
    pupil = landmarks[:, LANDMARK_NAMES.index("left_pupil")].round().long()
    b = torch.arange(4)
    assert torch.all(weight[b, 0, pupil[:, 1], pupil[:, 0]] > 0.8)
    assert torch.all(weight[:, :, :3, :3] < 1e-3)  # the corner is background
    on_eye, on_corner = real.clone(), real.clone()
    on_eye[b, :, pupil[:, 1], pupil[:, 0]] += 0.5
    on_corner[:, :, 0, 0] += 0.5
    assert feature_loss(on_eye, real, weight) > 100 * feature_loss(on_corner, real, weight)
    cfg = tiny(tmp_path, "features", steps=3, eval_images=0, sample_every=100, checkpoint_every=100, log_every=1,
               weight_features=5.0)
    train_distill(cfg, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "features" / "metrics.jsonl").read_text().splitlines()]
    assert all(x["loss"] == pytest.approx(x["loss_pixel"] + 5.0 * x["loss_features"]) for x in lines)
    assert all(x["loss_features"] > 0 for x in lines)


def test_the_first_cutoff_and_stopband_come_from_the_config_and_survive_the_export(tmp_path):
    """The long run's generator starts at a higher cutoff than StyleGAN3's default (lab notebook, step 10,500):
    the config sets it, a checkpoint records it, and the exported generator is rebuilt with it."""
    from core.train.distill import export_model
    default, raised = tiny(tmp_path, "default"), tiny(tmp_path, "raised", steps=2, first_cutoff=6, first_stopband=6.43,
                                                       eval_images=0, sample_every=100, checkpoint_every=1)
    G = Generator(**raised.generator_kwargs())
    assert Generator(**default.generator_kwargs()).synthesis.input.bandwidth == 2
    assert G.synthesis.input.bandwidth == 6 and G.synthesis.input.sampling_rate == 16  # no slower than the default
    train_distill(raised, progress=False)
    tensors, meta = RunDir(tmp_path / "raised").latest()
    _, exported = export_model(tensors, meta)  # loads strictly: the rebuilt layers have the trained shapes
    assert exported.synthesis.input.bandwidth == 6


def test_the_adversarial_phase_joins_a_resumed_run_with_a_fresh_discriminator(tmp_path):
    """A run trained on pixels resumes with a discriminator (absent from its checkpoint), whose term counts from
    `adversarial_from`; D learns to tell the rendered faces from the generated ones and is checkpointed."""
    common = dict(eval_images=0, sample_every=100, checkpoint_every=3, log_every=1)
    train_distill(tiny(tmp_path, "adv", steps=6, **common), progress=False)
    cfg = tiny(tmp_path, "adv", steps=30, weight_adversarial=0.1, adversarial_from=8, r1_interval=4, **common)
    train_distill(cfg, resume=True, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "adv" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 31))
    assert [("loss_adversarial" in x) for x in lines] == [False] * 8 + [True] * 22
    for x in lines[8:]:
        assert x["loss"] == pytest.approx(x["loss_pixel"] + 0.1 * x["loss_adversarial"])
    margin = [x["logits_real"] - x["logits_fake"] for x in lines[-5:]]
    assert min(margin) > 0, margin
    tensors, meta = RunDir(tmp_path / "adv").latest()
    assert any(k.startswith("D.") for k in tensors) and "d_optimizer" in meta


def test_bf16_auxiliary_networks_leave_the_generator_in_float32_and_still_learn(tmp_path):
    """aux_precision=bf16 runs D and the analyzer under bfloat16 autocast: their terms move a little from the
    float32 run's, G's pixel term does not move at all, G stays float32, and D still tells the faces apart."""
    common = dict(steps=30, eval_images=0, sample_every=100, checkpoint_every=30, log_every=1, weight_adversarial=0.1,
                  r1_interval=4, weight_landmarks=0.5)
    runs = {}
    for precision in ("fp32", "bf16"):
        train_distill(tiny(tmp_path, precision, aux_precision=precision, **common), progress=False)
        runs[precision] = [json.loads(x) for x in (tmp_path / precision / "metrics.jsonl").read_text().splitlines()]
    first = {k: v[0] for k, v in runs.items()}
    assert first["bf16"]["loss_pixel"] == first["fp32"]["loss_pixel"]
    for term in ("loss_adversarial", "loss_landmarks"):
        assert first["bf16"][term] != first["fp32"][term]
        assert first["bf16"][term] == pytest.approx(first["fp32"][term], rel=0.05)
    assert min(x["logits_real"] - x["logits_fake"] for x in runs["bf16"][-5:]) > 0
    tensors, _ = RunDir(tmp_path / "bf16").latest()
    assert all(v.dtype == torch.float32 for k, v in tensors.items() if k.startswith(("G.", "G_ema.", "D.")))
    with pytest.raises(ValueError, match="aux_precision"):
        tiny(tmp_path, "bad", aux_precision="fp16")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_uses_bfloat16_only_where_the_cpu_computes_it(tmp_path, monkeypatch, native):
    """aux_precision=auto: bfloat16 autocast on a CPU with native bfloat16, float32 on one that would emulate it
    (12x slower steps), so the shipped config trains at full speed on both kinds of machine."""
    monkeypatch.setattr(distill_config, "native_bf16", lambda: native)
    x = torch.ones(2, 2)
    with tiny(tmp_path, "auto", aux_precision="auto").aux_autocast():
        assert (x @ x).dtype == (torch.bfloat16 if native else torch.float32)
    with tiny(tmp_path, "forced", aux_precision="bf16").aux_autocast():
        assert (x @ x).dtype == torch.bfloat16


def test_a_landmark_conditioned_discriminator_reads_the_targets_landmark_map(tmp_path):
    """With d_landmarks, D sees a fourth channel: bumps on the target's true eye, nose and mouth landmarks, the same
    for the rendered face and the generated one (so it can judge whether the features are in their places)."""
    from core.train.distill_losses import discriminator_input, feature_map
    z = torch.randn(2, Z_DIM, generator=torch.Generator().manual_seed(0))
    real, landmarks, _ = targets(z, 32)
    condition = feature_map(landmarks, 32, 0.05)
    x = discriminator_input(real, condition)
    assert x.shape == (2, 4, 32, 32) and torch.equal(x[:, :3], real * 2 - 1)
    eye = landmarks[0, 0].round().long()
    assert x[0, 3, eye[1], eye[0]] > 0.8 and x[0, 3, 0, 0] == -1  # on a landmark vs a corner
    train_distill(tiny(tmp_path, "cond", steps=4, eval_images=0, sample_every=100, checkpoint_every=4,
                       weight_adversarial=0.1, d_landmarks=True), progress=False)
    tensors, _ = RunDir(tmp_path / "cond").latest()
    assert tensors["D.from_rgb.weight"].shape[1] == 4


def test_a_joining_module_loads_when_the_checkpoint_has_it_and_no_other_module_may_be_missing():
    from core.train.rundir import pack_state, unpack_state
    torch.manual_seed(0)
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    fresh_a, fresh_b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    tensors, meta = pack_state({"A": a, "B": b}, {})
    unpack_state(tensors, meta, {"A": fresh_a, "B": fresh_b}, {}, joining=("B",))
    assert torch.equal(fresh_b.weight, b.weight)  # present: loaded, not left fresh
    only_a, meta = pack_state({"A": a}, {})
    kept = fresh_b.weight.clone()
    unpack_state(only_a, meta, {"A": fresh_a, "B": fresh_b}, {}, joining=("B",))
    assert torch.equal(fresh_b.weight, kept)
    with pytest.raises(RuntimeError, match="Missing key"):
        unpack_state(only_a, meta, {"A": fresh_a, "B": fresh_b}, {})


def test_the_glasses_term_covers_exactly_the_pixels_the_glasses_change(tmp_path):
    z = torch.randn(24, Z_DIM, generator=torch.Generator().manual_seed(4))
    real, landmarks, factors = targets(z, 64)
    worn = (factors[:, FACTOR_NAMES.index("eyeglasses")] + factors[:, FACTOR_NAMES.index("sunglasses")]) > 0
    assert 0 < int(worn.sum()) < len(z)
    mask = glasses_map(real, factors)
    assert mask.shape == (24, 1, 64, 64) and set(mask.unique().tolist()) <= {0.0, 1.0}
    area = mask.mean(dim=(1, 2, 3))
    assert bool((area[~worn] == 0).all()) and bool((area[worn] > 0.02).all())  # measured: 6.7-8.2 % of the face
    rows = torch.nonzero(mask[worn].amax(dim=(0, 1, 3))).flatten()  # the mask lies at the height of the eyes
    eyes_y = landmarks[worn, :6, 1]
    assert rows.min() >= eyes_y.min() - 12 and rows.max() <= eyes_y.max() + 12
    bare = factors.clone()
    bare[:, [FACTOR_NAMES.index("eyeglasses"), FACTOR_NAMES.index("sunglasses")]] = 0
    without = render(bare, 64)[0]
    assert float(feature_loss(without, real, mask)) > 0  # a face drawn without its glasses pays
    elsewhere = real + 0.3 * (1 - mask)  # an error everywhere except the glasses costs this term nothing
    assert float(feature_loss(elsewhere, real, mask)) == 0
    cfg = tiny(tmp_path, "glasses", steps=4, eval_images=0, weight_glasses=2.0, checkpoint_every=4)
    train_distill(cfg, progress=False)
    logged = [json.loads(x) for x in (tmp_path / "glasses" / "metrics.jsonl").read_text().splitlines()]
    assert all(x["loss_glasses"] >= 0 for x in logged) and any(x["loss_glasses"] > 0 for x in logged)


def test_boundary_latents_sit_near_the_glasses_cuts_and_leave_the_rest_of_the_batch_alone(tmp_path):
    plain = DistillConfig(name="plain", runs_dir=str(tmp_path), batch_size=16)
    near = DistillConfig(name="near", runs_dir=str(tmp_path), batch_size=16, glasses_boundary_fraction=0.5,
                         glasses_boundary_width=0.1)
    cuts = torch.tensor(GLASSES_CUTS_Z)
    assert abs(float(torch.distributions.Normal(0, 1).cdf(cuts[0])) - GLASSES_PROBS[0]) < 1e-5
    kinds = set()
    for step in range(20):
        a, b = step_latents(plain, step), step_latents(near, step)
        assert torch.equal(a[8:], b[8:]) and torch.equal(a[:8, :-1], b[:8, :-1])  # only 8 glasses coordinates move
        distance = (b[:8, -1:] - cuts).abs().amin(1)
        assert bool((distance <= 0.1 + 1e-6).all())
        f = factors_from_z(b[:8])
        kinds |= set((f[:, FACTOR_NAMES.index("eyeglasses")] + 2 * f[:, FACTOR_NAMES.index("sunglasses")]).tolist())
        assert torch.equal(step_latents(near, step), b)  # seeded by the step: a resumed run draws the same
    assert kinds == {0.0, 1.0, 2.0}  # both sides of both cuts are drawn
    with pytest.raises(ValueError, match="glasses_boundary"):
        DistillConfig(name="bad", runs_dir=str(tmp_path), glasses_boundary_fraction=1.5)


def test_turned_eyeglasses_latents_wear_eyeglasses_on_turned_faces_and_follow_the_boundary_ones(tmp_path):
    near = DistillConfig(name="near", runs_dir=str(tmp_path), batch_size=16, glasses_boundary_fraction=0.25)
    turned = DistillConfig(name="turned", runs_dir=str(tmp_path), batch_size=16, glasses_boundary_fraction=0.25,
                           eyeglasses_turned_fraction=0.5, eyeglasses_turned_yaw=0.2)
    yaw = LATENT_NAMES.index("yaw")
    sides = set()
    for step in range(20):
        a, b = step_latents(near, step), step_latents(turned, step)
        assert torch.equal(a[:4], b[:4]) and torch.equal(a[12:], b[12:])  # boundary rows first, the rest alone
        others = [i for i in range(Z_DIM - 1) if i != yaw]
        assert torch.equal(a[4:12, others], b[4:12, others])  # only the glasses and yaw coordinates move
        f = factors_from_z(b[4:12])
        assert bool((f[:, FACTOR_NAMES.index("eyeglasses")] == 1).all())
        away = f[:, FACTOR_NAMES.index("yaw")] - 0.5
        assert bool((away.abs() >= 0.2 - 1e-5).all())
        sides |= set(away.sign().tolist())
    assert sides == {-1.0, 1.0}  # turned either way
    for bad in (dict(eyeglasses_turned_fraction=0.8, glasses_boundary_fraction=0.5), dict(eyeglasses_turned_yaw=0.5)):
        with pytest.raises(ValueError, match="eyeglasses_turned"):
            DistillConfig(name="bad", runs_dir=str(tmp_path), **bad)


def test_a_run_directory_start_carries_the_ema_copy_discriminator_and_optimizer_moments(tmp_path):
    from core.stylegan3.discriminator import Discriminator
    from core.train.gan import discriminator_optimizer
    from core.train.rundir import saved_optimizer_state
    adversarial = dict(w_dim=64, eval_images=0, weight_adversarial=0.1, d_channel_base=256, d_channel_max=16)
    base = tiny(tmp_path, "base", steps=4, checkpoint_every=4, **adversarial)
    train_distill(base, progress=False)
    tensors, meta = RunDir(tmp_path / "base").latest()
    cfg = tiny(tmp_path, "on", steps=2, checkpoint_every=2, quantize_glasses=True, init_from=str(tmp_path / "base"),
               ship=True, ship_to=str(tmp_path / "ship" / "on"), d_lr=0.0005, **adversarial)
    start = build_generator(cfg)
    assert start.origin == {"init_from": str(tmp_path / "base"), "step": 4, "images_seen": 4 * 8}
    assert start.added_layers == 1 and start.G_ema.mapping.num_layers == 3 and not start.G_ema.training
    for name, module in (("G.", start.G), ("G_ema.", start.G_ema)):  # the synthesis as trained, EMA copy included
        for k, v in module.synthesis.state_dict().items():
            assert torch.equal(v, tensors[f"{name}synthesis.{k}"]), (name, k)
        assert torch.equal(module.mapping.fc2.weight, tensors[f"{name}mapping.fc1.weight"])
    assert not torch.equal(tensors["G.synthesis.input.affine.weight"], tensors["G_ema.synthesis.input.affine.weight"])
    trained = [p for p in start.G.mapping.parameters() if p.requires_grad]
    opt = torch.optim.Adam([{"params": start.G.synthesis.parameters()}, {"params": trained}], lr=cfg.lr)
    D = Discriminator(**cfg.discriminator_kwargs())
    opt_d = discriminator_optimizer(D, cfg.d_lr, cfg.r1_gamma, cfg.r1_interval)
    start.carry_training_state(cfg, opt, D, opt_d)
    for k, v in D.state_dict().items():
        assert torch.equal(v, tensors[f"D.{k}"]), k
    saved_d = saved_optimizer_state({k[2:]: v for k, v in tensors.items() if k.startswith("d_")}, meta["d_optimizer"])
    assert saved_d and all(torch.equal(opt_d.state_dict()["state"][i]["exp_avg_sq"], saved_d[i]["exp_avg_sq"])
                           for i in saved_d)
    fresh_d = discriminator_optimizer(Discriminator(**cfg.discriminator_kwargs()), cfg.d_lr, cfg.r1_gamma,
                                      cfg.r1_interval)
    assert opt_d.param_groups[0]["lr"] == fresh_d.param_groups[0]["lr"] < base.d_lr  # the rate of this config
    saved = saved_optimizer_state({k[2:]: v for k, v in tensors.items() if k.startswith("g_")}, meta["g_optimizer"])
    synthesis = len(list(start.G.synthesis.parameters()))
    state = opt.state_dict()["state"]
    assert all(torch.equal(state[i]["exp_avg"], saved[i]["exp_avg"]) for i in range(synthesis))
    # old mapping fc0 (folded into the new fc1) starts afresh; old fc1 is the new fc2, two places on
    assert synthesis not in state and synthesis + 1 not in state
    for i in (synthesis + 2, synthesis + 3):
        assert torch.equal(state[i]["exp_avg_sq"], saved[i]["exp_avg_sq"]) and torch.equal(state[i]["step"],
                                                                                               saved[i]["step"])
    train_distill(cfg, progress=False)
    notes = json.loads((tmp_path / "ship" / "on.json").read_text())
    assert notes["started_from"]["step"] == 4 and notes["images_seen"] == 4 * 8 + 2 * 8
    assert RunDir(tmp_path / "on").latest()[1]["images_seen"] == 4 * 8 + 2 * 8
    import shutil
    shutil.rmtree(tmp_path / "base")  # a resume reads its own checkpoint and origin, not the start again
    train_distill(tiny(tmp_path, "on", steps=4, checkpoint_every=2, quantize_glasses=True,
                       init_from=str(tmp_path / "base"), d_lr=0.0005, **adversarial), resume=True, progress=False)
    latest = RunDir(tmp_path / "on").latest()[1]
    assert latest["step"] == 4 and latest["images_seen"] == 4 * 8 + 4 * 8 and latest["started_from"]["step"] == 4
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match="without a complete distillation checkpoint"):
        build_generator(tiny(tmp_path, "x", init_from=str(tmp_path / "empty")))


def test_a_quantized_run_starts_from_a_trained_generator_and_never_trains_the_built_layer(tmp_path):
    # w_dim 64: the built layer needs 48 units (22 coordinates passed through, 2 cuts)
    base = tiny(tmp_path, "base", w_dim=64, steps=4, eval_images=0, checkpoint_every=4, ship=True,
                ship_to=str(tmp_path / "ship" / "base"))
    train_distill(base, progress=False)
    start = Generator.from_pretrained(tmp_path / "ship" / "base")
    cfg = tiny(tmp_path, "quantized", w_dim=64, steps=4, eval_images=0, checkpoint_every=2, quantize_glasses=True,
               init_from=str(tmp_path / "ship" / "base"))
    begun = build_generator(cfg)
    G, origin = begun.G, begun.origin
    assert origin["images_seen"] == 4 * 8 and origin["step"] == 4
    assert G.mapping.num_layers == start.mapping.num_layers + 1
    assert [n for n, p in G.named_parameters() if not p.requires_grad] == ["mapping.fc0.weight", "mapping.fc0.bias"]
    z = torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(3))
    middles = z.clone()
    middles[:, -1] = torch.tensor(GLASSES_MIDDLES_Z)[glasses_kind(factors_from_z(z))]
    with torch.no_grad():  # it starts as the trained generator with the glasses coordinate read as its kind
        assert torch.allclose(G(z, noise_mode="const"), start(middles, noise_mode="const"), atol=1e-4)
    train_distill(cfg, progress=False)
    role, trained, _ = export_run(tmp_path / "quantized")
    assert trained.mapping.num_layers == G.mapping.num_layers
    assert torch.equal(trained.mapping.fc0.weight, G.mapping.fc0.weight)  # the built layer stays as built
    assert not torch.equal(trained.mapping.fc1.weight, G.mapping.fc1.weight)  # the trained ones learn
    more = tiny(tmp_path, "quantized", w_dim=64, steps=6, eval_images=0, checkpoint_every=2, quantize_glasses=True,
                init_from=str(tmp_path / "ship" / "base"))
    train_distill(more, resume=True, progress=False)
    assert RunDir(tmp_path / "quantized").latest()[1]["step"] == 6  # resumes its own (quantized) checkpoint
    built = tiny(tmp_path, "built", w_dim=64, steps=0, quantize_glasses=True, init_from=str(tmp_path / "ship" / "base"),
                 ship=True, ship_to=str(tmp_path / "ship" / "built"))
    report = train_distill(built, progress=False)  # zero steps: ships the start with its glasses layer, evaluated
    shipped = Generator.from_pretrained(tmp_path / "ship" / "built")
    with torch.no_grad():
        assert torch.equal(shipped(z, noise_mode="const"), G.eval()(z, noise_mode="const"))
    assert "eval_glasses_accuracy" in report
    notes = json.loads((tmp_path / "ship" / "built.json").read_text())
    assert notes["images_seen"] == 4 * 8 and notes["started_from"]["step"] == 4  # the start's training counts
    with pytest.raises(ValueError, match="steps may be 0 only with init_from"):
        tiny(tmp_path, "nothing", steps=0)
    wider = tiny(tmp_path, "wider", w_dim=64, channel_max=32, init_from=str(tmp_path / "ship" / "base"))
    with pytest.raises(ValueError, match="cannot continue"):
        build_generator(wider)
    again = build_generator(tiny(tmp_path, "again", w_dim=64, quantize_glasses=True,
                                 init_from=str(tmp_path / "ship" / "built")))
    assert again.added_layers == 0 and again.G.mapping.num_layers == G.mapping.num_layers  # never a second layer
    with pytest.raises(ValueError, match="continue it with quantize_glasses=true"):
        build_generator(tiny(tmp_path, "plain", w_dim=64, init_from=str(tmp_path / "ship" / "built")))


def test_the_mapping_rate_scale_moves_only_the_mapping_network_faster(tmp_path):
    moved = {}
    for scale in (1.0, 10.0):
        cfg = tiny(tmp_path, f"scale{scale:g}", steps=1, eval_images=0, mapping_lr_scale=scale, checkpoint_every=1)
        torch.manual_seed(cfg.seed)
        start = Generator(**cfg.generator_kwargs()).state_dict()
        train_distill(cfg, progress=False)
        tensors = RunDir(tmp_path / cfg.name).latest()[0]
        moved[scale] = {part: sum(float((tensors[f"G.{k}"] - v).abs().sum()) for k, v in start.items()
                                  if k.startswith(part) and v.is_floating_point()) for part in ("mapping", "synthesis")}
    assert moved[1.0]["mapping"] > 0
    # Adam's first step moves each parameter by its rate: lr x scale
    assert moved[10.0]["mapping"] == pytest.approx(10 * moved[1.0]["mapping"], rel=1e-3)
    assert moved[10.0]["synthesis"] == pytest.approx(moved[1.0]["synthesis"], rel=1e-6)
    with pytest.raises(ValueError, match="mapping_lr_scale"):
        tiny(tmp_path, "bad", mapping_lr_scale=0)
