"""Face analyzer: training loop learns on SynthFaces, metrics are right, checkpoints and backends load or fail
clearly."""
from __future__ import annotations

import json

import pytest
import torch

from core.analysis import FaceAnalyzer, load_analyzer
from core.analysis.evaluate import landmark_errors, tar_at_far
from core.checkpoints import CheckpointError, load_checkpoint
from core.config import load_config
from core.synthfaces import LANDMARK_NAMES, NUM_FACTORS
from core.synthfaces.dataset import SynthFacesDataset
from core.train.analyzer import AnalyzerConfig, train_analyzer
from core.train.rundir import RunDir


def test_tar_at_far_on_constructed_embeddings():
    ids = torch.arange(20).repeat_interleave(3)
    centres = torch.nn.functional.normalize(torch.randn(20, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    tight = torch.nn.functional.normalize(centres[ids] + 0.01 * torch.randn(60, 16), dim=1)
    assert tar_at_far(tight, ids, 1e-2)[0] == 1.0
    random = torch.nn.functional.normalize(torch.randn(60, 16), dim=1)
    assert tar_at_far(random, ids, 1e-2)[0] < 0.3
    with pytest.raises(ValueError):
        tar_at_far(random[:3], torch.arange(3))


def test_landmark_errors_are_in_pixels_and_normalised_by_eye_distance():
    true = torch.zeros(1, len(LANDMARK_NAMES), 2)
    true[0, LANDMARK_NAMES.index("left_eye_outer")] = torch.tensor([10.0, 20.0])
    true[0, LANDMARK_NAMES.index("right_eye_outer")] = torch.tensor([30.0, 20.0])
    pred = true + torch.tensor([3.0, 4.0])
    px, nme = landmark_errors(pred, true)
    assert px == pytest.approx(5.0) and nme == pytest.approx(0.25)


def test_tiny_training_run_learns_and_resumes(tmp_path):
    cfg = AnalyzerConfig(name="t", runs_dir=str(tmp_path), train_identities=12, per_identity=6, val_identities=6,
                         val_per_identity=3, width=8, hidden=64, embed_dim=32, batch_size=24, epochs=2,
                         lr=0.003, log_every=1, ship=True, ship_to=str(tmp_path / "ship" / "analyzer"))
    train_analyzer(cfg, progress=False)
    run = RunDir(tmp_path / "t")
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss_landmarks"] for x in lines if "loss_landmarks" in x]
    assert losses[-1] < losses[0]
    assert json.loads((run.path / "status.json").read_text())["state"] == "finished"
    shipped = FaceAnalyzer.from_pretrained(tmp_path / "ship" / "analyzer.safetensors")
    out = shipped(torch.rand(2, 3, 64, 64))
    assert out.embedding.shape == (2, 32) and torch.allclose(out.embedding.norm(dim=1), torch.ones(2))
    assert out.factors.shape == (2, NUM_FACTORS) and out.landmarks.shape == (2, len(LANDMARK_NAMES), 2)
    # resuming a finished 2-epoch run with epochs=3 trains exactly one more epoch
    cfg.epochs = 3
    train_analyzer(cfg, resume=True, progress=False)
    records = map(json.loads, (run.path / "metrics.jsonl").read_text().splitlines())
    epochs = [x["epoch"] for x in records if "epoch" in x]
    assert epochs == [0, 1, 2]
    with pytest.raises(FileExistsError, match="--resume"):
        train_analyzer(cfg, progress=False)


def test_landmark_fine_tune_trains_only_the_named_parts(tmp_path):
    common = dict(runs_dir=str(tmp_path), train_identities=12, per_identity=6, val_identities=6, val_per_identity=3,
                  width=8, hidden=64, embed_dim=32, batch_size=24, log_every=1)
    train_analyzer(AnalyzerConfig(name="base", epochs=1, ship=True, ship_to=str(tmp_path / "base"), **common),
                   progress=False)
    base = FaceAnalyzer.from_pretrained(tmp_path / "base.safetensors")
    parts = ["landmark_lateral", "landmark_head", "landmark_refine", "factor_head"]
    cfg = AnalyzerConfig(name="fine", epochs=2, lr=0.003, init_from=str(tmp_path / "base.safetensors"),
                         train_parts=parts, landmark_stride=2, weight_identity=0.0, seed=5,
                         ship=True, ship_to=str(tmp_path / "fine"), **common)
    train_analyzer(cfg, progress=False)
    fine = FaceAnalyzer.from_pretrained(tmp_path / "fine.safetensors")
    assert fine.init_kwargs["landmark_stride"] == 2
    before, after = base.state_dict(), fine.state_dict()
    for key, value in before.items():  # frozen parts, batch-norm statistics included, are bit-identical
        if key.split(".")[0] in parts:
            assert not torch.equal(value, after[key]) or "running" in key or "num_batches" in key, key
        else:
            assert torch.equal(value, after[key]), key
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(base(images).embedding, fine(images).embedding)
        assert fine(images).landmarks.shape == (4, len(LANDMARK_NAMES), 2)
    _, meta = load_checkpoint(tmp_path / "fine.safetensors")
    assert meta["trained_with"]["init_from"] == cfg.init_from and meta["history"][0]["name"] == "base"
    with pytest.raises(ValueError, match="unknown train_parts.*'neck'"):
        train_analyzer(AnalyzerConfig(name="x", init_from=cfg.init_from, train_parts=["neck"], **common),
                       progress=False)
    with pytest.raises(ValueError, match="train_parts must be a list"):
        train_analyzer(AnalyzerConfig(name="z", train_parts="landmark_head", **common), progress=False)
    with pytest.raises(ValueError, match="was built with"):
        train_analyzer(AnalyzerConfig(name="y", init_from=cfg.init_from, **{**common, "width": 16}), progress=False)
    with pytest.raises(ValueError, match="landmark_stride must be 2 or 4"):
        FaceAnalyzer(landmark_stride=8)


def test_shipped_analyzer_recognises_held_out_identities():
    analyzer = load_analyzer("synthfaces")
    data = SynthFacesDataset(identities=40, per_identity=3, resolution=64, seed=77, first_identity=5_000_000)
    with torch.no_grad():
        out = analyzer(data.images)
    tar, _ = tar_at_far(out.embedding, data.identity, 1e-2)
    assert tar > 0.8
    px, nme = landmark_errors(out.landmarks, data.landmarks)
    assert nme < 0.06
    # other resolutions are resized on the way in; landmarks come back in the input's pixels
    big = SynthFacesDataset(identities=10, per_identity=2, resolution=128, seed=78, first_identity=5_000_000)
    with torch.no_grad():
        out = analyzer(big.images)
    px, nme = landmark_errors(out.landmarks, big.landmarks)
    assert nme < 0.06 and px < 3.0


def test_analyze_reads_any_number_of_images_batch_by_batch_as_one_call_would():
    from core.analysis import analyze
    analyzer = load_analyzer("synthfaces")
    images = SynthFacesDataset(identities=5, per_identity=3, resolution=64, seed=5).images
    with torch.no_grad():
        whole = analyzer(images)
    read = analyze(analyzer, images, batch=4)  # 15 faces: three full batches and one of three
    for field in ("embedding", "factors", "landmarks"):
        assert torch.allclose(getattr(read, field), getattr(whole, field), atol=1e-5), field
    assert not read.embedding.requires_grad


def test_shipped_analyzer_meets_its_targets_on_held_out_identities():
    # the report's split: 200 held-out identities x 4 images at 64 px, recomputed here, not read from the JSON
    from core.analysis.evaluate import evaluate_analyzer
    from core.train.analyzer import VAL_FIRST_IDENTITY
    val = SynthFacesDataset(200, 4, 64, seed=999, first_identity=VAL_FIRST_IDENTITY)
    report = evaluate_analyzer(load_analyzer("synthfaces"), val.images, val.identity, val.factors, val.landmarks)
    assert report["tar_at_far1e-3"] >= 0.95 and report["landmark_nme"] <= 0.03


def test_repeated_set_flags_all_apply(capsys):
    from core.train.__main__ import main
    assert main(["analyzer", "--set", "unknown_key=1", "--set", "epochs=1"]) == 2
    assert "unknown_key" in capsys.readouterr().err


def test_analyzer_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\[batch, 3, H, W\]"):
        FaceAnalyzer()(torch.rand(3, 64, 64))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_analyzer("/nonexistent/analyzer.safetensors")


def test_config_refuses_unknown_keys_and_wrong_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="unknown config keys.*learning_rate"):
        load_config(AnalyzerConfig, path)
    path.write_text("epochs: three\n")
    with pytest.raises(ValueError, match="'epochs' must be int"):
        load_config(AnalyzerConfig, path)
    path.write_text("epochs: 3\nlr: 1\n")
    cfg = load_config(AnalyzerConfig, path, {"batch_size": 8})
    assert cfg.epochs == 3 and cfg.lr == 1.0 and cfg.batch_size == 8
    for bad, message in (({"epochs": 0}, "'epochs' must be > 0"), ({"batch_size": -8}, "'batch_size' must be > 0"),
                         ({"lr": float("nan")}, "'lr' must be a finite number"),
                         ({"log_every": 0}, "'log_every' must be > 0")):  # refused before any work
        with pytest.raises(ValueError, match=message):
            load_config(AnalyzerConfig, path, bad)


def test_killed_run_resumes_from_its_last_checkpoint_on_the_same_schedule(tmp_path):
    import math

    from tests.conftest import kill_after_checkpoints, resume_in_a_process
    sets = ["name=k", f"runs_dir={tmp_path}", "train_identities=10", "per_identity=4", "val_identities=4",
            "val_per_identity=2", "width=8", "hidden=32", "embed_dim=16", "batch_size=8", "epochs=12", "lr=0.001",
            "log_every=1", "ship_to=''"]
    assert kill_after_checkpoints("analyzer", sets, tmp_path / "k", timeout=120)["epoch"] < 11
    resume_in_a_process("analyzer", sets)
    run = RunDir(tmp_path / "k")
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if "epoch" in x] == list(range(12))
    steps = [x["step"] for x in lines if "loss" in x]
    assert steps == list(range(1, 12 * 5 + 1))  # every step once: nothing lost, nothing repeated
    total = 12 * 5
    for x in lines:
        if "lr" in x:  # the cosine schedule continues where it stopped (a line logs the rate its step used)
            assert x["lr"] == pytest.approx(0.001 * 0.5 * (1 + math.cos(math.pi * (x["step"] - 1) / total)), rel=1e-5)
    assert json.loads((run.path / "status.json").read_text())["state"] == "finished"
