"""VP metric on SynthFaces itself: its factors are a perfectly disentangled latent, a rotation of them is not."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.metrics.vp import PRESETS, VarPredNet, VPPreset, make_pairs, vp_score
from core.synthfaces import NUM_FACTORS, factor_index, render

CHOSEN = [factor_index(n) for n in ("yaw", "background", "hair_colour", "smile")]
TINY = VPPreset(pairs=800, test_ratio=0.5, epochs=5, lr=0.003, batch_size=32, runs=2, width=16)


def synthfaces_sampler(mixing: torch.Tensor | None = None):
    def sample(z: torch.Tensor) -> torch.Tensor:
        if mixing is not None:
            z = ((z - 0.5) @ mixing + 0.5).clamp(0, 1)
        factors = torch.full((len(z), NUM_FACTORS), 0.5)
        factors[:, CHOSEN] = z
        return render(factors, 32)[0]
    return sample


def test_pairs_differ_in_the_labelled_dimension_only():
    seen = []
    diffs, labels = make_pairs(lambda z: z[:, :3, None, None].expand(-1, 3, 4, 4), 3, 50, seed=1,
                               latent_range=(0, 1))
    for d, label in zip(diffs, labels):
        changed = (d[:, 0, 0].abs() > 0).nonzero().flatten().tolist()
        seen.append(changed == [int(label)])
    assert all(seen) and set(labels.tolist()) == {0, 1, 2}


def test_disentangled_factors_score_higher_than_a_rotation_of_them():
    aligned = vp_score(synthfaces_sampler(), 4, TINY, latent_range=(0, 1))
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
    rotated = vp_score(synthfaces_sampler(q), 4, TINY, latent_range=(0, 1))
    assert aligned.score > 0.8 and aligned.score > rotated.score + 0.1
    assert len(aligned.runs) == 2 and aligned.spread >= 0
    assert aligned.confusion.shape == (4, 4) and aligned.confusion.sum() == 2 * 400
    assert aligned.per_dim.shape == (4,) and np.all((0 <= aligned.per_dim) & (aligned.per_dim <= 1))


def test_presets_and_bad_input():
    assert PRESETS["paper"].pairs == 10_000 and PRESETS["paper"].test_ratio == 0.9 and PRESETS["paper"].epochs == 60
    assert VarPredNet(7)(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    with pytest.raises(ValueError, match="unknown VP preset"):
        vp_score(synthfaces_sampler(), 4, "slow")
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        vp_score(lambda z: z, 4, TINY)


def test_vp_app_scores_synthfaces_and_refuses_bad_input(monkeypatch):
    import gradio as gr

    from apps import vp_metric
    monkeypatch.setitem(PRESETS, "fast", VPPreset(pairs=300, test_ratio=0.5, epochs=2, lr=0.003, batch_size=32,
                                                  runs=1, width=8))
    seen = []
    text, bars, confusion = vp_metric.run_vp("synthfaces", "fast", 0, progress=lambda f, desc: seen.append(f))
    assert "VP score" in text and "24 dimensions" in text and seen[-1] == pytest.approx(1.0)
    assert len(bars.data[0].y) == 24 and np.asarray(confusion.data[0].z).shape == (24, 24)
    for args in (("nowhere", "fast", 0), ("synthfaces", "slow", 0), ("synthfaces", "fast", "x"),
                 ("synthfaces", "fast", -5)):
        with pytest.raises(gr.Error):
            vp_metric.run_vp(*args)
    config = vp_metric.build().get_config_file()
    assert any(c.get("type") == "plot" for c in config["components"])


def test_named_samplers_render_every_space():
    from core.metrics.vp import SAMPLERS, named_sampler
    for name in SAMPLERS:
        sample_fn, dim, (lo, hi) = named_sampler(name)
        z = lo + (hi - lo) * torch.rand(2, dim, generator=torch.Generator().manual_seed(0))
        images = sample_fn(z)
        assert images.ndim == 4 and images.shape[:2] == (2, 3) and 0 <= images.min() and images.max() <= 1, name
        assert not torch.equal(images[0], images[1]), name
    sample_fn, dim, _ = named_sampler("vae:synthfaces_vae_family_beta1")  # any VAE checkpoint by name
    assert dim == 10 and sample_fn(torch.zeros(1, dim)).shape == (1, 3, 45, 45)
    with pytest.raises(ValueError, match="unknown latent space"):
        named_sampler("pixels")


def test_vp_evidence_correlation_and_plot():
    from core.vp_evidence import rank_correlation, svg_scatter
    rows = [dict(space=f"s{i}", group="beta-VAE family", vp=v, dci_d=d)
            for i, (v, d) in enumerate([(0.2, 0.1), (0.5, 0.4), (0.4, 0.3), (0.9, 0.8)])]
    assert rank_correlation(rows) == pytest.approx(1.0)
    rows[0]["dci_d"] = 0.95
    assert rank_correlation(rows) == pytest.approx(-0.2)
    assert np.isnan(rank_correlation(rows[:2]))
    svg = svg_scatter(rows, "t")
    assert svg.startswith("<svg") and svg.count("<circle") == 4 and "s3" in svg
