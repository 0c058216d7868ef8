"""Model sets and the Hub, against a stand-in Hub server on 127.0.0.1 serving files this test made."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from core import hub
from core.publish import export_run, push
from core.publish import main as publish_main
from core.checkpoints import CheckpointError
from core.stylegan3 import Generator
from core.train.gan import GanConfig
from core.train.rundir import RunDir
from tests.conftest import tiny_kwargs
from tests.hub_server import FakeHub


def go_offline(monkeypatch):
    import huggingface_hub.constants as constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def generator_files(tmp_path: Path, seed: int, stem: str = "generator") -> tuple[dict[str, bytes], Generator]:
    torch.manual_seed(seed)
    G = Generator(**tiny_kwargs()).eval()
    path = G.save_pretrained(tmp_path / f"src{seed}" / stem)
    return {f"{stem}.safetensors": path.read_bytes(), f"{stem}.json": path.with_suffix(".json").read_bytes()}, G


def publish(server: FakeHub, tmp_path: Path, repo: str, seed: int) -> tuple[str, Generator]:
    files, G = generator_files(tmp_path, seed)
    manifest = {"models": {"generator": {"filename": "generator", "kind": "stylegan3"}}}
    return server.commit(repo, {**files, hub.MANIFEST: json.dumps(manifest).encode()}), G


def same_output(a: Generator, b: Generator) -> bool:
    z = torch.randn(2, a.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a(z, noise_mode="const"), b(z, noise_mode="const"))


def test_unknown_names_and_roles_say_what_exists():
    with pytest.raises(hub.HubError, match="unknown model set 'nope'.*embedded.*ffhq.*hf:owner/name"):
        hub.model_set("nope")
    with pytest.raises(hub.HubError, match="no 'mixer'.*generator, directions, analyzer, vae"):
        hub.load("embedded", "mixer")
    with pytest.raises(hub.HubError, match="hf:owner/name"):
        hub.model_set("hf:justaname")


def test_embedded_set_loads_from_checkpoints_offline(monkeypatch):
    go_offline(monkeypatch)
    analyzer = hub.load("embedded", "analyzer")
    assert analyzer(torch.rand(1, 3, 64, 64)).embedding.shape[0] == 1
    assert hub.load("embedded", "vae").decode(torch.zeros(1, 100)).shape == (1, 3, 45, 45)
    G = hub.load("embedded", "generator")
    assert G(torch.randn(1, G.z_dim)).shape == (1, 3, 64, 64)
    assert hub.load("embedded", "nice").dim == G.w_dim


def test_pages_share_one_frozen_copy_and_training_gets_its_own(monkeypatch):
    from core.models import load_models
    go_offline(monkeypatch)
    shared = load_models("embedded", ("generator",))["generator"]
    assert load_models("embedded", ("generator", "nice"), device="cpu")["generator"] is shared
    assert not any(p.requires_grad for p in shared.parameters()) and not shared.training
    private = hub.load("embedded", "generator")
    assert private is not shared and all(p.requires_grad for p in private.parameters())
    assert torch.equal(private.mapping.fc0.weight, shared.mapping.fc0.weight)


def test_a_page_gets_its_roles_or_a_message_naming_the_missing_one_and_what_builds_it(monkeypatch):
    from core.models import MissingRole, load_models
    go_offline(monkeypatch)
    models = load_models("embedded", ("generator",), ("directions", "nice", "encoder"))
    assert set(models.roles) == {"generator", "directions", "nice", "encoder"} and "smile" in models["directions"]
    monkeypatch.delitem(hub.EMBEDDED.models, "encoder")
    models = load_models("embedded", ("generator",), ("encoder",))
    assert set(models.roles) == {"generator"} and "has no 'encoder'" in models.notes["encoder"]  # optional: said
    with pytest.raises(MissingRole, match=r"'ffhq' has no 'nice' model.*train-disentanglement"):
        load_models("ffhq", ("generator", "nice"))  # the set is parsed and checked before anything loads


def test_ffhq_without_weights_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(hub.FFHQ_REPO_ENV, raising=False)
    with pytest.raises(hub.HubError, match=r"core\.stylegan3\.convert.*LATENT_LAB_FFHQ_REPO"):
        hub.resolve(hub.model_set("ffhq").models["generator"], local_dir=tmp_path)


def test_ffhq_from_a_hub_repo_holding_converted_weights(fake_hub, tmp_path, monkeypatch):
    files, G = generator_files(tmp_path, 3, stem=hub.FFHQ_NAME)
    sha = fake_hub.commit("someone/sg3-ffhq", files)
    monkeypatch.setenv(hub.FFHQ_REPO_ENV, f"someone/sg3-ffhq@{sha}")
    ckpt = hub.model_set("ffhq").models["generator"]
    assert ckpt.revision == sha
    path = hub.resolve(ckpt, local_dir=tmp_path / "empty")
    assert same_output(Generator.from_pretrained(path), G)


def test_download_cache_reuse_and_revision_pinning(fake_hub, tmp_path):
    v1, g1 = publish(fake_hub, tmp_path, "alice/tiny", seed=1)
    v2, g2 = publish(fake_hub, tmp_path, "alice/tiny", seed=2)
    assert v1 != v2
    assert same_output(hub.load("hf:alice/tiny", "generator"), g2)  # main -> newest commit
    assert same_output(hub.load(f"hf:alice/tiny@{v1}", "generator"), g1)  # pinned
    fetched = len(fake_hub.gets("generator.safetensors"))
    assert fetched == 2
    assert same_output(hub.load(f"hf:alice/tiny@{v1}", "generator"), g1)
    assert len(fake_hub.gets("generator.safetensors")) == fetched  # the second load came from the cache
    with pytest.raises(hub.HubError, match="does not exist|not a Latent Lab"):
        hub.load("hf:alice/tiny@" + "0" * 40, "generator")


def test_offline_mode_uses_the_cache_and_explains_a_miss(fake_hub, tmp_path, monkeypatch):
    v1, g1 = publish(fake_hub, tmp_path, "alice/tiny", seed=1)
    hub.load(f"hf:alice/tiny@{v1}", "generator")
    go_offline(monkeypatch)
    before = len(fake_hub.requests)
    assert same_output(hub.load(f"hf:alice/tiny@{v1}", "generator"), g1)
    assert len(fake_hub.requests) == before  # nothing asked of the server
    with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE"):
        hub.load("hf:alice/other", "generator")


def test_interrupted_download_is_retried_and_complete(fake_hub, tmp_path):
    v1, g1 = publish(fake_hub, tmp_path, "alice/tiny", seed=1)
    fake_hub.truncate_once.add("generator.safetensors")
    assert same_output(hub.load(f"hf:alice/tiny@{v1}", "generator"), g1)
    assert len(fake_hub.gets("generator.safetensors")) == 2  # the cut transfer, then the one that finished


def test_download_that_never_completes_fails_clearly(fake_hub, tmp_path):
    v1, _ = publish(fake_hub, tmp_path, "alice/tiny", seed=1)
    fake_hub.truncate_always.add("generator.safetensors")
    with pytest.raises(hub.HubError, match="downloading alice/tiny.*failed.*try again"):
        hub.load(f"hf:alice/tiny@{v1}", "generator")


def test_corrupt_file_on_the_hub_is_reported(fake_hub, tmp_path):
    v1, _ = publish(fake_hub, tmp_path, "alice/tiny", seed=1)
    fake_hub.corrupt.add("generator.safetensors")
    with pytest.raises(hub.HubError, match="corrupt.*Delete"):
        hub.load(f"hf:alice/tiny@{v1}", "generator")


def test_corrupted_cached_copy_is_downloaded_again(fake_hub, tmp_path):
    v1, g1 = publish(fake_hub, tmp_path, "alice/tiny", seed=1)
    path = hub.resolve(hub.model_set(f"hf:alice/tiny@{v1}").models["generator"])
    blob = path.resolve()
    blob.write_bytes(blob.read_bytes()[:1000])  # damaged on disk after a good download
    assert same_output(hub.load(f"hf:alice/tiny@{v1}", "generator"), g1)
    assert len(fake_hub.gets("generator.safetensors")) == 2


def test_shapes_are_verified_on_load(fake_hub, tmp_path):
    files, _ = generator_files(tmp_path, 1)
    wrong = json.loads(files["generator.json"])
    wrong["init_kwargs"]["channel_max"] = 64
    manifest = {"models": {"generator": {"filename": "generator", "kind": "stylegan3"}}}
    sha = fake_hub.commit("alice/wrong", {**files, "generator.json": json.dumps(wrong).encode(),
                                          hub.MANIFEST: json.dumps(manifest).encode()})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        hub.load(f"hf:alice/wrong@{sha}", "generator")


def test_push_a_run_then_load_it_back(fake_hub, tmp_path):
    cfg = GanConfig(resolution=32, z_dim=16, w_dim=16, channel_base=256, channel_max=16, num_layers=3,
                    margin_size=2, batch_size=8)
    torch.manual_seed(0)
    G = Generator(**cfg.generator_kwargs()).eval()
    run = RunDir.create(tmp_path / "runs" / "tiny", cfg)
    run.log(5, loss_g=0.7, fd_analyzer=12.5)
    run.save(5, {f"G_ema.{k}": v for k, v in G.state_dict().items()}, {"kind": "gan_training",
                                                                         "config": asdict(cfg)})
    (run.samples / "00000005.png").write_bytes(b"\x89PNG fake grid")
    commit = push(run.path, "bob/tiny-gan")
    assert len(commit) == 40
    files = fake_hub.commits["bob/tiny-gan"][commit]
    assert {"generator.safetensors", "generator.json", hub.MANIFEST, "README.md", "samples.png",
            "config.yaml"} <= set(files)
    card = files["README.md"].decode()
    assert card.startswith("---\nlibrary_name: latent-lab") and "fd_analyzer | 12.5" in card
    assert same_output(hub.load(f"hf:bob/tiny-gan@{commit}", "generator"), G)


def test_an_analyzer_run_with_the_landmark_refinement_exports_loadably(tmp_path):
    from core.analysis import FaceAnalyzer
    from core.train.analyzer import AnalyzerConfig, train_analyzer
    cfg = AnalyzerConfig(name="a", runs_dir=str(tmp_path), train_identities=6, per_identity=4, val_identities=4,
                         val_per_identity=2, width=8, hidden=32, embed_dim=16, batch_size=12, epochs=1,
                         landmark_stride=2)
    train_analyzer(cfg, progress=False)
    role, model, notes = export_run(tmp_path / "a")
    assert role == "analyzer" and model.init_kwargs["landmark_stride"] == 2 and isinstance(model, FaceAnalyzer)
    path = model.save_pretrained(tmp_path / "published", **notes)
    assert FaceAnalyzer.from_pretrained(path).init_kwargs["landmark_stride"] == 2


def test_push_refuses_a_run_without_checkpoints(tmp_path):
    RunDir.create(tmp_path / "empty", GanConfig())
    assert publish_main(["run", "--run", str(tmp_path / "empty"), "--repo", "bob/x"]) == 2


def test_ffhq_from_a_hub_repo_holding_the_official_pickle_is_converted_once(fake_hub, tmp_path, monkeypatch):
    from tests.official_layout import write_official_pickle
    torch.manual_seed(4)
    G = Generator(**tiny_kwargs()).eval()
    pkl = write_official_pickle(tmp_path / f"{hub.FFHQ_NAME}.pkl", G)
    sha = fake_hub.commit("nvidia-mirror/sg3", {f"{hub.FFHQ_NAME}.pkl": pkl.read_bytes()})
    monkeypatch.setenv(hub.FFHQ_REPO_ENV, f"nvidia-mirror/sg3@{sha}")
    first = hub.load("ffhq", "generator")
    assert same_output(first, G)
    fetched = len(fake_hub.gets(f"{hub.FFHQ_NAME}.pkl"))
    again = hub.load("ffhq", "generator")  # converted once: the cached safetensors are read, nothing is fetched
    assert same_output(again, G) and len(fake_hub.gets(f"{hub.FFHQ_NAME}.pkl")) == fetched
