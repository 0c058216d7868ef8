"""python -m core.build: a complete model set for a generator, stage by stage, served by the app, resumed, published
and loaded back; the real-face labeller's readings on real photos; bad input refused before anything is lost."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from core.build import BuildOptions, Builder
from core.stylegan3 import Generator
from core.train.distill_config import DistillConfig
from tests.test_distill import TINY
from tools.screenshots import chromium, chromium_path

TINY_BUILD = BuildOptions(samples=200, nice_steps=4, encoder_steps=4, batch_size=8, device="cpu", quick_reports=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A set built from a tiny distilled generator with the SynthFaces labeller."""
    root = tmp_path_factory.mktemp("build")
    torch.manual_seed(0)
    generator = Generator(**DistillConfig(name="t", **TINY).generator_kwargs()).save_pretrained(root / "g")
    roles = Builder(str(generator), "synthfaces", root / "set", TINY_BUILD, progress=False).run()
    return root, generator, roles


def _notes(models: str) -> list[str]:
    import app
    config = app.build_app(models=models, device="cpu").get_config_file()
    return [c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown"
            and "Not available" in c["props"].get("value", "")]


def test_a_build_makes_every_role_and_the_app_serves_every_tab(built):
    from core.models import load_models
    root, _, roles = built
    out = root / "set"
    assert set(roles) == {"generator", "directions", "nice", "encoder", "analyzer"}
    models = load_models(str(out), tuple(roles))  # the set folder is a model set
    supervised = {n: d for n, d in models["directions"].items() if d.kind == "supervised"}
    assert {"smile", "yaw", "hair_colour"} <= set(supervised) and all(-1 < d.quality <= 1 for d in supervised.values())
    assert models["nice"].dim == models["generator"].w_dim == models["encoder"].w_dim
    card = json.loads((out / "reports" / "card" / "report.json").read_text())
    assert [r["space"] for r in card["rows"]] == ["generator-z", "generator-w", "generator-nice"]
    for stage in ("pca", "labels", "directions", "nice", "encoder", "reports"):  # what the monitor shows
        assert json.loads((out / "stages" / stage / "status.json").read_text())["state"] == "finished", stage
    notes = _notes(str(out))  # every tab but the VAE lab: its VAE is not the generator's (it says what builds one)
    assert len(notes) == 1 and "VAE lab" in notes[0] and "has no 'vae' model" in notes[0]
    assert "core.train vae" in notes[0]


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_the_built_set_in_a_browser(built):
    import app
    root, _, _ = built
    demo = app.build_app(models=str(root / "set"), device="cpu")
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        with chromium(1400, 1000) as page:
            page.goto(demo.local_url, timeout=120_000)
            for tab, heading in {"Face mixing": "Face mixing", "Latent sliders": "Latent sliders",
                                 "VP metric": "Variation predictability"}.items():
                page.get_by_role("tab", name=tab).click()
                page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
            page.get_by_role("tab", name="Face mixing").click()
            page.locator("#mix-scores").get_by_text("similarity").first.wait_for(timeout=60_000)
    finally:
        demo.close()


def test_a_build_goes_on_where_it_stopped_and_refuses_another_generator(built, capsys):
    from core.train.rundir import RunDir
    root, generator, _ = built
    out = root / "set"
    (out / "encoder.safetensors").unlink()  # as if killed before the encoder stage shipped
    before = {p: p.stat().st_mtime for p in out.glob("*.safetensors")}
    Builder(str(generator), "synthfaces", out, TINY_BUILD).run()
    said = capsys.readouterr().out
    assert "[nice] done already" in said and "[encoder] done already" not in said
    assert {p: p.stat().st_mtime for p in before} == before  # the finished stages were not redone
    assert (out / "encoder.safetensors").is_file()
    steps = [r["step"] for r in RunDir(out / "stages" / "encoder").records() if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == TINY_BUILD.encoder_steps  # resumed, not repeated
    torch.manual_seed(1)
    other = Generator(**DistillConfig(name="t", **TINY).generator_kwargs()).save_pretrained(root / "other")
    with pytest.raises(ValueError, match="another generator"):
        Builder(str(other), "synthfaces", out, TINY_BUILD)
    assert set(out.glob("*.safetensors")) == set(before) | {out / "encoder.safetensors"}


def test_the_rebuild_report_compares_a_built_set_with_the_shipped_figures(built, tmp_path, monkeypatch):
    from core.reports import rebuild
    root, _, _ = built
    out = tmp_path / "report"
    assert rebuild.main(["--set", str(root / "set"), "--out", str(out), "--quick"]) == 0
    result = json.loads((out / "report.json").read_text())
    built_r2 = json.loads((root / "set" / "directions.json").read_text())["directions"]
    shipped = json.loads((rebuild.resolve_checkpoint(rebuild.SHIPPED_DIRECTIONS).with_suffix(".json")).read_text())
    supervised = {n for n, d in shipped["directions"].items() if d["kind"] == "supervised"}
    rows = {r["what"]: r for r in result["rows"]}
    assert {w for w in rows if w.startswith("direction ")} == {f"direction {n}: R²" for n in supervised}
    for name in supervised:
        row = rows[f"direction {name}: R²"]
        assert row["rebuilt"] == built_r2[name]["quality"] and row["shipped"] == shipped["directions"][name]["quality"]
        assert row["holds"] == (abs(row["rebuilt"] - row["shipped"]) <= rebuild.TOLERANCE["r2"])
    nice = [r for r in result["rows"] if r["what"].startswith(("NICE", "DCI D of the NICE"))]
    assert len(nice) == 4 and nice[-1]["holds"] == (nice[-1]["rebuilt"] > 0)
    assert nice[0]["rebuilt"] == result["nice_report"]["spaces"]["NICE"]["similarity_to_identity_donor"]
    assert all(isinstance(s, float) and s >= 0 for s in result["stages"].values())  # every stage finished, timed
    assert "| holds |" in (out / "report.md").read_text()

    def scored_again(*args, **kwargs):
        raise AssertionError("--update scored the same NICE again")

    monkeypatch.setattr(rebuild, "nice_rows", scored_again)
    assert rebuild.main(["--set", str(root / "set"), "--out", str(out), "--update"]) == 0
    assert json.loads((out / "report.json").read_text())["rows"] == result["rows"]  # kept, not scored again
    assert rebuild.main(["--set", str(tmp_path), "--out", str(tmp_path / "none")]) == 2  # not a build: refused


def test_bad_generators_and_labellers_are_refused_clearly(built, tmp_path):
    from core.build import main
    from core.checkpoints import CheckpointError
    root, generator, _ = built
    with pytest.raises(CheckpointError, match="holds a 'vae' model, not a 'stylegan3' one"):
        Builder("synthfaces_vae", "synthfaces", tmp_path / "vae", TINY_BUILD)
    with pytest.raises(ValueError, match="unknown labeller"):
        Builder(str(generator), "crystal-ball", tmp_path / "x", TINY_BUILD)
    assert not (tmp_path / "x").exists()  # refused before anything was written
    assert main(["--generator", str(generator), "--labeller", "dlib", "--out", str(tmp_path / "dlib"),
                 "--samples", "64"]) == 2  # dlib finds no real face in a 32 px SynthFaces face


def test_a_built_set_publishes_as_one_repo_and_a_missing_role_disables_its_tab(built, fake_hub, monkeypatch, tmp_path):
    from core.models import load_models
    from core.publish import publish_set
    root, _, roles = built
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    commit = publish_set(str(root / "set"), "alice/built")
    models = load_models(f"hf:alice/built@{commit}", tuple(roles))
    assert set(models.roles) == set(roles)
    partial = tmp_path / "partial"
    shutil.copytree(root / "set", partial, ignore=shutil.ignore_patterns("stages"))
    manifest = json.loads((partial / "latent_lab.json").read_text())
    del manifest["models"]["nice"]
    (partial / "latent_lab.json").write_text(json.dumps(manifest))
    mixing = [n for n in _notes(str(partial)) if "Face mixing" in n]  # (the VAE lab says what it lacks, as above)
    assert len(mixing) == 1 and "has no 'nice' model" in mixing[0] and "train-disentanglement" in mixing[0]


def test_the_real_face_labeller_reads_pose_mouth_and_eyes_from_real_photos():
    import cv2
    from skimage import data

    from core.analysis import faces_backend
    from core.labels import LANDMARK_READINGS, landmark_readings
    backend = faces_backend("dlib")
    photo = data.astronaut()

    def read(image: np.ndarray) -> dict[str, float]:
        face = max(backend.detect(np.ascontiguousarray(image)), key=lambda f: f.area)
        return dict(zip(LANDMARK_READINGS, landmark_readings(face.landmarks, image.shape[1], image.shape[0])))

    plain, mirrored = read(photo), read(photo[:, ::-1])
    assert np.sign(plain["yaw"]) == -np.sign(mirrored["yaw"]) and abs(plain["yaw"] + mirrored["yaw"]) < 5
    h, w = photo.shape[:2]
    turned = {angle: read(cv2.warpAffine(photo, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h),
                                         borderMode=cv2.BORDER_REFLECT)) for angle in (-15, 15)}
    assert turned[-15]["roll"] - plain["roll"] == pytest.approx(15, abs=5)  # the roll follows the rotation
    assert plain["roll"] - turned[15]["roll"] == pytest.approx(15, abs=5)
    for r in (plain, mirrored):
        assert 0 < r["mouth_open"] < 0.5 and 0.1 < r["eye_open"] < 0.6 and 0.4 < r["smile"] < 1.2
