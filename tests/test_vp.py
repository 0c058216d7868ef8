"""VP metric on SynthFaces itself: its factors are a perfectly disentangled latent, a rotation of them is not."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from core.metrics.vp import PRESETS, VarPredNet, VPPreset, make_pairs, vp_score, vp_stream
from core.synthfaces import FACTOR_NAMES, NUM_FACTORS, factor_index, render

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


def test_the_stream_refines_run_by_run_and_ends_at_the_final_score():
    updates = list(vp_stream(synthfaces_sampler(), 4, TINY, latent_range=(0, 1), names=list("abcd")))
    results = [u.result for u in updates if u.result is not None]
    assert [len(r.runs) for r in results] == [1, 2]  # one result per finished run, the mean so far
    assert results[0].runs == results[1].runs[:1] and results[-1].names == list("abcd")
    final = vp_score(synthfaces_sampler(), 4, TINY, latent_range=(0, 1))
    assert results[-1].score == final.score and np.array_equal(results[-1].confusion, final.confusion)
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert len(updates) > 20  # fine-grained: a cancelled job stops within a moment
    with pytest.raises(ValueError, match="3 names for 4"):
        next(vp_stream(synthfaces_sampler(), 4, TINY, names=list("abc")))


def test_vp_app_streams_names_dimensions_and_refuses_bad_input(monkeypatch):
    import gradio as gr

    from apps import vp_metric
    monkeypatch.setitem(PRESETS, "interactive", VPPreset(pairs=300, test_ratio=0.5, epochs=2, lr=0.003,
                                                         batch_size=32, runs=2, width=8, resolution=32))
    vp_metric.RESULTS.clear()
    outputs = list(vp_metric.run_vp("synthfaces", "interactive", 0))
    scored = [o for o in outputs if not isinstance(o[1], dict)]  # yields that carry figures (not gr.skip())
    assert len(scored) == 2 and "refining: 1 of 2 runs" in scored[0][0] and "final" in scored[-1][0]
    text, bars, confusion = scored[-1]
    assert "VP score" in text and "24 dimensions" in text and "interactive" in text
    assert list(bars.data[0].x) == list(FACTOR_NAMES)  # dimensions named by factor
    assert list(confusion.data[0].x) == list(FACTOR_NAMES) and np.asarray(confusion.data[0].z).shape == (24, 24)
    again = list(vp_metric.run_vp("synthfaces", "interactive", 0))  # kept: the second visit answers at once
    assert len(again) == 1 and "kept from an earlier run" in again[0][0]
    for args in (("nowhere", "fast", 0), ("synthfaces", "slow", 0), ("synthfaces", "fast", "x"),
                 ("synthfaces", "fast", -5)):
        with pytest.raises(gr.Error):
            next(vp_metric.run_vp(*args))
    config = vp_metric.build().get_config_file()
    assert any(c.get("type") == "plot" for c in config["components"])


def test_latent_spaces_render_and_name_their_dimensions():
    from core.spaces import SAMPLERS, latent_space
    for name in SAMPLERS:
        space = latent_space(name)
        lo, hi = space.latent_range
        z = lo + (hi - lo) * torch.rand(2, space.dim, generator=torch.Generator().manual_seed(0))
        images = space.sample_fn(z)
        assert images.ndim == 4 and images.shape[:2] == (2, 3) and 0 <= images.min() and images.max() <= 1, name
        assert not torch.equal(images[0], images[1]), name
        assert space.names is None or len(space.names) == space.dim, name
        assert space.heavy == name.startswith("generator"), name
    assert latent_space("synthfaces").names == list(FACTOR_NAMES)
    assert latent_space("generator-nice").names[0] == "identity_0"
    space = latent_space("vae:synthfaces_vae_family_beta1")  # any VAE checkpoint by name
    assert space.dim == 10 and space.sample_fn(torch.zeros(1, space.dim)).shape == (1, 3, 45, 45)
    with pytest.raises(ValueError, match="unknown latent space"):
        latent_space("pixels")
    with pytest.raises(ValueError, match="unknown latent space"):
        latent_space("vae:")


def test_bench_vp_refuses_unknown_spaces_and_presets_before_any_work(capsys):
    from bench.vp import main
    for argv, named in ((["--spaces", "synthfaces,pixels"], "pixels"), (["--spaces", "vae:"], "vae:"),
                        (["--spaces", "synthfaces", "--presets", "huge"], "huge")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and named in capsys.readouterr().err


def test_vp_evidence_correlation_and_plot():
    from core.reports.vp_vs_dci import rank_correlation, svg_scatter
    rows = [dict(space=f"s{i}", group="beta-VAE family", vp=v, dci_d=d)
            for i, (v, d) in enumerate([(0.2, 0.1), (0.5, 0.4), (0.4, 0.3), (0.9, 0.8)])]
    assert rank_correlation(rows) == pytest.approx(1.0)
    rows[0]["dci_d"] = 0.95
    assert rank_correlation(rows) == pytest.approx(-0.2)
    assert np.isnan(rank_correlation(rows[:2]))
    svg = svg_scatter(rows, "t")
    assert svg.startswith("<svg") and svg.count("<circle") == 4 and "s3" in svg
    close = [dict(space=f"model {i}", group="g", vp=0.5 + 0.001 * i, dci_d=0.5) for i in range(3)] + \
        [dict(space="far", group="g", vp=0.0, dci_d=0.0)]
    baselines = [float(m) for m in re.findall(r'<text x="[\d.]+" y="([\d.]+)" fill', svg_scatter(close, "t"))]
    assert len(set(baselines[:3])) == 3 and min(np.diff(sorted(baselines[:3]))) >= 13  # stacked, not overprinted


def test_an_update_of_vp_vs_dci_rescores_the_generator_and_keeps_the_family_rows(tmp_path, capsys):
    import json

    from core.metrics.vp import VPPreset
    from core.reports.vp_vs_dci import collect, kept_family, main
    family = [dict(space=f"VAE beta{b}", group="beta-VAE family", dims=10, vp=0.9 - 0.02 * b, vp_spread=0.01,
                   dci_d=0.03) for b in (1, 4)]
    earlier = tmp_path / "vp_vs_dci.json"
    earlier.write_text(json.dumps({"preset": "fast", "rows": family + [dict(space="W", group="generator", vp=0.5)]}))
    assert kept_family(earlier, "fast") == family
    assert main(["--update", "--preset", "interactive", "--out", str(tmp_path)]) == 2
    assert "preset 'fast', not 'interactive'" in capsys.readouterr().err
    assert main(["--update", "--out", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "vp_vs_dci.json").write_text(json.dumps({"preset": "fast", "rows": []}))
    assert main(["--update", "--out", str(tmp_path / "empty")]) == 2
    assert "no beta-VAE family rows" in capsys.readouterr().err
    nice = tmp_path / "nice.json"
    nice.write_text(json.dumps({"spaces": {"W": {"dci_disentanglement": 0.3}, "NICE": {"dci_disentanglement": 0.4}}}))
    tiny = VPPreset(pairs=60, test_ratio=0.5, epochs=2, lr=0.003, batch_size=16, runs=1, width=8, resolution=16)
    rows = collect(tiny, nice, family)
    assert rows[:2] == family and [r["space"] for r in rows[2:]] == ["W", "NICE"]
    assert [r["dci_d"] for r in rows[2:]] == [0.3, 0.4] and all(0 <= r["vp"] <= 1 and r["dims"] == 256
                                                                 for r in rows[2:])


def test_the_vp_tab_shows_the_report_card_row_of_a_space(tmp_path):
    import json

    from apps.vp_metric import card_text
    assert "No report card yet" in card_text("synthfaces", tmp_path / "missing.json")
    row = {"space": "factors", "label": "SynthFaces factors (ceiling)", "dci_disentanglement": 0.9,
           "dci_completeness": 0.8, "dci_informativeness": 1.0, "mig": 0.7, "sap": 0.6, "factor_vae": 1.0,
           "beta_vae": 1.0, "vp": None}
    path = tmp_path / "card.json"
    path.write_text(json.dumps({"rows": [row, {"space": "generator-z", "label": "generator z", "error": "later"}]}))
    text = card_text("synthfaces", path)
    assert "VP compares spaces of one latent size only" in text
    assert "SynthFaces factors (ceiling)" in text and "| 0.900 | 0.800 |" in text and "MIG" in text
    assert "not scored (later)" in card_text("generator-z", path)
    assert "no row" in card_text("vae", path)


def test_the_rotation_family_loses_its_ground_truth_scores_as_it_turns(tmp_path):
    """Constructed: the factors turned by R(t) score lower on every ground-truth metric as t grows; VP's rank
    correlation with a metric is +1 when they order the spaces alike."""
    from core.reports.disentanglement import QUICK
    from core.reports.vp_family import family_report, rank_correlations
    rows = family_report((0.0, 0.1, 1.0), QUICK, vp_preset=None, progress=False)["rows"]
    for metric in ("dci_disentanglement", "mig", "sap"):
        values = [r[metric] for r in rows]
        assert values[0] > values[1] > values[2], (metric, values)
    assert rows[0]["dci_disentanglement"] > 0.95 and rows[-1]["dci_disentanglement"] < 0.3
    assert rank_correlations([3, 2, 1], [0.9, 0.5, 0.1]) == {"spearman": 1.0, "kendall": 1.0}
    # The verdict, in the report and the VP tab: VP runs that fall with t agree; runs that rise rank in reverse;
    # runs that overlap across spaces give an interval across zero.
    from apps.vp_metric import family_view
    from core.reports.vp_family import correlate
    for runs, answer in (([[0.9, 0.8], [0.6, 0.5], [0.2, 0.3]], "VP agrees"),
                         ([[0.2, 0.3], [0.6, 0.5], [0.9, 0.8]], "VP ranks them in reverse"),
                         ([[0.1, 0.9], [0.5, 0.4], [0.9, 0.1]], "VP shows no reliable agreement")):
        result = {"ts": [0.0, 0.1, 1.0], "vp_preset": "interactive", "correlations": correlate(rows, runs),
                  "rows": [{**r, "vp": float(np.mean(v)), "vp_spread": float(np.std(v))} for r, v in zip(rows, runs)]}
        (tmp_path / "report.json").write_text(json.dumps(result))
        text, fig = family_view(tmp_path / "report.json")
        assert f"- dci_disentanglement: {answer}" in text, text
        assert list(fig.data[0].y) == [r["vp"] for r in result["rows"]]
    assert family_view(tmp_path / "none.json")[1] is None
