"""Deploying to a Space with huggingface_hub's upload API, against the stand-in Hub: the model set to a model
repository (large files through LFS), the app without its weights to a Gradio Space, the Space pointed at the set's
commit only once everything is up; the uploaded Space starting from its pinned set, then from the cache alone."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core import hub
from core.hub import MANIFEST, HubError
from core.publish import MAX_FILE, app_files, plan, publish_space
from tests.conftest import ROOT
from tools.screenshots import chromium, chromium_path

SPACE, MODELS = "alice/latent-lab", "alice/latent-lab-models"


@pytest.fixture
def token(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no token stored on this machine is used
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")


def test_the_dry_run_lists_the_app_and_the_set_with_sizes_and_no_weights():
    text = plan(SPACE, None, "embedded")
    assert "app.py" in text and "core/models.py" in text and "requirements.txt" in text
    assert ".safetensors" not in text and "tests/" not in text and "checkpoints/" not in text
    assert "vae (vae)" in text and "generator (stylegan3)" in text and "MB in all" in text
    assert f"LATENT_LAB_MODELS=hf:{MODELS}@<the new commit>" in text


def test_publishing_uploads_the_set_and_the_app_and_points_the_space_at_the_set(fake_hub, token):
    done = publish_space(SPACE, hardware="t4-small")
    models = fake_hub.commits[MODELS][fake_hub.branches[MODELS]["main"]]
    manifest = json.loads(models[MANIFEST])
    assert set(manifest["models"]) == set(hub.EMBEDDED.models)  # every role, one manifest
    for role in manifest["models"]:  # each with the hash of its tensors
        config = json.loads(models[f"{role}.json"])
        assert config["sha256"] == hashlib.sha256(models[f"{role}.safetensors"]).hexdigest()
    assert fake_hub.lfs and any(r[0] == "PUT" for r in fake_hub.requests)  # large files went through LFS
    space = fake_hub.commits[f"spaces/{SPACE}"][fake_hub.branches[f"spaces/{SPACE}"]["main"]]
    assert {"app.py", "README.md", "requirements.txt", "core/models.py", "apps/face_mixing.py"} <= set(space)
    assert max(len(v) for v in space.values()) <= MAX_FILE
    assert not [p for p in space if p.endswith(".safetensors") or "checkpoints/" in p or p.startswith("tests/")]
    assert space["README.md"].startswith(b"---\ntitle: Latent Lab") and fake_hub.sdk[f"spaces/{SPACE}"] == "gradio"
    pointer = fake_hub.variables[f"spaces/{SPACE}"]["LATENT_LAB_MODELS"]["value"]
    assert pointer == done["models"] == f"hf:{MODELS}@{fake_hub.branches[MODELS]['main']}"
    assert fake_hub.hardware[f"spaces/{SPACE}"] == "t4-small"


def test_without_a_token_nothing_is_uploaded(fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(HubError, match="no Hugging Face token"):
        publish_space(SPACE)
    assert not [r for r in fake_hub.requests if r[0] in ("POST", "PUT")]


def test_a_space_with_another_sdk_is_refused_and_not_pointed_at_anything(fake_hub, token):
    from huggingface_hub import HfApi
    HfApi(endpoint=fake_hub.url).create_repo(SPACE, repo_type="space", space_sdk="docker")
    with pytest.raises(HubError, match="'docker' SDK"):
        publish_space(SPACE)
    assert not fake_hub.commits[f"spaces/{SPACE}"] and f"spaces/{SPACE}" not in fake_hub.variables


def test_a_pinned_set_must_exist(fake_hub, token):
    sha = fake_hub.commit(MODELS, {MANIFEST: b'{"models": {}}'})
    with pytest.raises(HubError, match="has no revision 'nope'"):
        publish_space(SPACE, models=f"{MODELS}@nope")
    done = publish_space(SPACE, models=f"{MODELS}@{sha}")  # an existing set: checked, not uploaded again
    assert done["models"] == f"hf:{MODELS}@{sha}" and len(fake_hub.commits[MODELS]) == 1


def test_an_interrupted_upload_is_retried_and_a_failed_one_points_at_nothing(fake_hub, token):
    fake_hub.fail_lfs_puts = 1  # one large file's connection drops: the transfer is tried again
    publish_space(SPACE)
    assert fake_hub.variables[f"spaces/{SPACE}"]["LATENT_LAB_MODELS"]["value"].startswith(f"hf:{MODELS}@")
    other = "alice/second"
    fake_hub.refuse_commits = 10  # every commit of the set fails: after the retries, a clear error
    with pytest.raises(HubError, match="failed after 3 attempt"):
        publish_space(other)
    assert f"spaces/{other}" not in fake_hub.commits and f"spaces/{other}" not in fake_hub.variables


def _serve(folder: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
                if r.status == 200:
                    return server
        except OSError:
            if server.poll() is not None:
                raise AssertionError(f"the Space exited: {server.stdout.read()[-3000:]}")
            time.sleep(1)
    server.kill()
    raise AssertionError("the Space did not start")


def _stop(server: subprocess.Popen) -> str:
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=60)
    return out


def _tab_notes(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as r:
        config = json.loads(r.read())
    return [c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown"
            and "Not available" in c["props"].get("value", "")]


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_the_uploaded_space_serves_every_tab_from_its_set_then_from_the_cache(fake_hub, token, tmp_path):
    from apps.monitor_proxy import free_port
    done = publish_space(SPACE)
    folder = tmp_path / "space"  # a clean copy of what the Space holds: no checkpoints/, no tests
    for path, data in fake_hub.commits[f"spaces/{SPACE}"][fake_hub.branches[f"spaces/{SPACE}"]["main"]].items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    assert not (folder / "checkpoints").exists() and set(app_files(folder)) == set(app_files(ROOT))
    port = free_port()
    env = {**os.environ, "SPACE_ID": SPACE, "LATENT_LAB_MODELS": done["models"], "GRADIO_SERVER_PORT": str(port),
           "LATENT_LAB_DEVICE": "cpu", "PYTHONPATH": str(folder), "LATENT_LAB_RUNS": str(tmp_path / "runs")}
    server = _serve(folder, env, port)
    try:
        assert _tab_notes(port) == []
        with chromium(1400, 1000) as page:
            page.goto(f"http://127.0.0.1:{port}", timeout=120_000)
            for tab, heading in {"Face mixing": "Face mixing", "Latent sliders": "Latent sliders",
                                 "VP metric": "Variation predictability", "VAE lab": "VAE lab"}.items():
                page.get_by_role("tab", name=tab).click()
                page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    finally:
        log = _stop(server)
    assert "fetching the model set" in log  # the first start downloads, and says so
    fetched = len(fake_hub.requests)
    fake_hub.close()  # the network is gone: the second start runs from the cache
    server = _serve(folder, {**env, "GRADIO_SERVER_PORT": str(port)}, port)
    try:
        assert _tab_notes(port) == []
    finally:
        log = _stop(server)
    assert "fetching the model set" not in log and len(fake_hub.requests) == fetched
