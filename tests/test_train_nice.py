"""NICE training (train-disentanglement) and the leakage probe (train-discriminators) on a tiny generator."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from core.nice import NICE
from core.publish import export_run
from core.stylegan3 import Generator
from core.train.nice import NiceConfig, train_discriminators, train_disentanglement, train_nice
from core.train.rundir import RunDir
from core.world import WorldConfig
from tests.conftest import tiny_kwargs


def tiny_generator(tmp_path):
    torch.manual_seed(0)
    G = Generator(**tiny_kwargs(resolution=32))
    return G.save_pretrained(tmp_path / "g")


def test_training_logs_every_loss_resumes_and_ships(tmp_path):
    g = tiny_generator(tmp_path)
    cfg = NiceConfig(name="n", runs_dir=str(tmp_path), generator=str(g), id_dim=12, hidden=32, depth=2,
                     batch_size=4, steps=4, log_every=1, sample_every=2, checkpoint_every=2,
                     ship=True, ship_to=str(tmp_path / "ship" / "nice"))
    train_nice(cfg, progress=False)
    cfg.steps = 6
    report = train_nice(cfg, resume=True, progress=False)
    run = RunDir(tmp_path / "n")
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    for key in ("loss_identity", "loss_attributes", "loss_landmarks", "loss_contrastive", "loss_adversarial",
                "disc_attr_from_id", "disc_id_from_attr"):
        assert all(math.isfinite(x[key]) for x in lines), key
    assert report["loss"] > 0 and sorted(p.name for p in run.samples.glob("*.png"))[-1] == "00000006.png"
    nice = NICE.from_pretrained(tmp_path / "ship" / "nice.safetensors")
    w = torch.randn(3, 32)
    assert (nice.decode(nice.encode(w)) - w).abs().max() < 1e-5
    assert json.loads((run.path / "status.json").read_text())["state"] == "finished"
    role, published, notes = export_run(run.path)  # what `python -m core.publish` publishes
    assert role == "nice" and published.init_kwargs["dim"] == 32 and notes["step"] == 6
    assert torch.allclose(published.encode(w), nice.encode(w))
    again = train_nice(cfg, resume=True, progress=False)  # resumed at its last step: ships what it logged there
    assert again == {k: v for k, v in lines[-1].items() if k not in ("step", "time", "steps_per_s", "images_seen")}
    assert json.loads((tmp_path / "ship" / "nice.json").read_text())["metrics"] == again


def test_console_commands(tmp_path, capsys):
    g = tiny_generator(tmp_path)
    common = [f"runs_dir={tmp_path}", f"generator={g}", "id_dim=12", "hidden=32", "depth=2", "batch_size=4"]
    assert train_disentanglement(["--ship", "--set", "name=c", "steps=2", *common, f"ship_to={tmp_path / 'nice'}"]) == 0
    assert train_discriminators(["--set", *common, f"nice={tmp_path / 'nice.safetensors'}", "disc_steps=20"]) == 0
    out = capsys.readouterr().out
    assert "attributes_from_identity_code" in out and "identity_from_attribute_code" in out
    assert train_disentanglement(["--set", "unknown_key=1"]) == 2
    assert train_disentanglement(["--set", "unknown_key=1", "--set", "steps=2"]) == 2  # every --set counts


def test_mix_scores_tell_which_donor_a_mix_resembles(tmp_path):
    from core.metrics.identity import mix_scores, split_w_mix
    from core.world import Frozen
    g = tiny_generator(tmp_path)
    world = Frozen(NiceConfig(generator=str(g)))
    take_a = mix_scores(world.sample_w, world.render, world.analyzer, lambda a, b: a, pairs=32)
    take_b = mix_scores(world.sample_w, world.render, world.analyzer, lambda a, b: b, pairs=32)
    assert take_a.to_identity_donor > 0.999  # the mix is A itself: cosine 1
    assert take_b.to_attribute_donor > 0.999 and take_b.to_identity_donor < 0.999
    half = mix_scores(world.sample_w, world.render, world.analyzer, split_w_mix(16), pairs=32)
    assert half.to_identity_donor < 1 and half.to_attribute_donor < 1


def test_w_versus_nice_report(tmp_path):
    from core.reports import nice as nice_report
    g = tiny_generator(tmp_path)
    torch.manual_seed(1)
    nice = NICE(32, 12, hidden=32, depth=2)
    for p in nice.parameters():  # a non-trivial (untrained) bijection
        torch.nn.init.normal_(p, std=0.1)
    path = nice.save_pretrained(tmp_path / "nice")
    cfg = WorldConfig(generator=str(g), id_dim=5, disc_hidden=16, disc_steps=5, batch_size=8)
    result, arrays = nice_report.report(cfg, str(path), samples=200, pairs=16, progress=False, faces="dlib",
                                        dci_trees=20)
    assert set(result["spaces"]) == {"W", "NICE"} and "hair_colour" in result["dci_factors"]
    for space in result["spaces"].values():
        assert -1 <= space["similarity_to_identity_donor"] <= 1 and 0 <= space["dci_disentanglement"] <= 1
        assert math.isfinite(space["leak_identity_from_attribute_code"])
        assert "found no face" in space["real_faces"]["note"]  # SynthFaces are no real faces: said, not faked
    assert arrays["identity_code"].shape == (200, 12) and arrays["attribute_code"].shape == (200, 20)
    table = nice_report.markdown(result)
    assert table.count("\n") == 2 + len(nice_report.ROWS) - 2 and "| W | NICE |" in table  # no true mix here
    assert result["factors"] == "analyzer" and "true mix" not in table
    assert len(nice_report.pca_figure(arrays).data) == 4


class IdentityMapping(torch.nn.Module):
    """W is z (one w per latent), not normalised: the distilled generator's mapping convention."""

    normalize_z = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.unsqueeze(1)


class RenderingGenerator(torch.nn.Module):
    """A stand-in for a perfectly distilled generator: W is z, and a face is render(factors_from_z(w))."""

    def __init__(self) -> None:
        super().__init__()
        from core.synthfaces.latent import Z_DIM
        self.z_dim = self.w_dim = Z_DIM
        self.img_resolution = 32
        self.mapping = IdentityMapping(Z_DIM)

    def images_from_w(self, w: torch.Tensor) -> torch.Tensor:
        from core.synthfaces.latent import factors_from_z
        from core.synthfaces.render import render
        return render(factors_from_z(w), self.img_resolution)[0]


def test_mixes_are_scored_against_the_true_mix_on_the_distilled_generator():
    from core.analysis import load_analyzer
    from core.metrics.identity import split_w_mix, true_mix_scores
    from core.synthfaces.factors import NUM_IDENTITY
    G, analyzer = RenderingGenerator(), load_analyzer("synthfaces")
    exact = true_mix_scores(G, analyzer, split_w_mix(NUM_IDENTITY), pairs=24, batch=12)  # z's identity coordinates
    assert exact.l1 < 1e-6 and exact.identity_cosine > 0.999 and exact.pairs == 24
    wrong = true_mix_scores(G, analyzer, lambda a, b: b, pairs=24)  # B itself: B's identity, not A's
    assert wrong.l1 > 0.02 and wrong.identity_cosine < exact.identity_cosine - 0.3, wrong
    with pytest.raises(ValueError, match="distilled generator"):
        true_mix_scores(Generator(**tiny_kwargs(resolution=32)), analyzer, lambda a, b: a, pairs=2)


def test_the_nice_report_uses_exact_factors_and_the_true_mix_on_a_distilled_generator(tmp_path):
    from core.reports import nice as nice_report
    from core.synthfaces import FACTOR_NAMES
    from core.train.distill_config import DistillConfig
    from tests.test_distill import TINY
    torch.manual_seed(0)
    G = Generator(**DistillConfig(name="t", **TINY).generator_kwargs())
    g = G.save_pretrained(tmp_path / "g")
    nice = NICE(32, 12, hidden=32, depth=2)
    path = nice.save_pretrained(tmp_path / "nice")
    cfg = WorldConfig(generator=str(g), id_dim=12, disc_hidden=16, disc_steps=5, batch_size=8)
    with pytest.raises(ValueError, match="samples must be at least 40"):
        nice_report.report(cfg, str(path), samples=39, pairs=16, progress=False)
    result, arrays = nice_report.report(cfg, str(path), samples=200, pairs=16, progress=False, dci_trees=20)
    assert result["factors"] == "exact (distilled generator)" and result["dci_factors"] == list(FACTOR_NAMES)
    for space in result["spaces"].values():
        assert -1 <= space["identity_cosine_to_true_mix"] <= 1 and 0 < space["l1_to_true_mix"] < 1
    assert "| mix vs true mix (pixel L1" in nice_report.markdown(result)
    # the exact factors: in [0, 1], glasses exactly 0 or 1
    glasses = arrays["factors"][:, FACTOR_NAMES.index("sunglasses")]
    assert set(np.unique(glasses)) <= {0.0, 1.0} and arrays["factors"].min() >= 0
