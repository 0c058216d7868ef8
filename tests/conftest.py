"""Shared fixtures: small generator configs that build and run fast on a 2-core CPU, and the kill-and-resume
harness every training loop's test uses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# One torch thread per pytest-xdist worker (the two workers share the 2 cores), two without xdist.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (the float path is then the same on every machine, and the same as in the
    kill-and-resume harness's processes), and the thread count it found restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_kwargs(cfg: str = "stylegan3-t", resolution: int = 32, **overrides):
    """A published config shrunk in width so that tests run in milliseconds."""
    from core.stylegan3 import generator_kwargs
    base = dict(z_dim=32, w_dim=32, channel_base=1024, channel_max=32, num_layers=6, num_critical=2)
    if cfg == "stylegan3-r":
        base.update(channel_base=2048, channel_max=64)
    base.update(overrides)
    return generator_kwargs(cfg, resolution, **base)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """The stand-in Hub (tests/hub_server.py) as HF_ENDPOINT, with an empty cache. It speaks the LFS upload
    protocol, not Xet's storage protocol, so huggingface_hub is told to take its LFS path (HF_HUB_DISABLE_XET)."""
    import huggingface_hub.constants as constants

    from tests.hub_server import FakeHub
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 5, raising=False)
    yield server
    server.close()


@pytest.fixture
def tiny_generator():
    from core.stylegan3 import Generator
    torch.manual_seed(0)
    return Generator(**tiny_kwargs()).eval()


def kill_after_checkpoints(loop: str, sets: list[str], run_dir: Path, checkpoints: int = 2,
                           timeout: float = 180) -> dict:
    """Start `python -m core.train <loop> --set ...` (one thread), SIGKILL it once its run holds `checkpoints`
    complete checkpoints, and return the newest one's metadata (what a resume continues from)."""
    from core.train.rundir import RunDir
    cmd = [sys.executable, "-m", "core.train", loop, "--set", *sets]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunDir(run_dir)
    deadline = time.time() + timeout
    while time.time() < deadline and len(run.checkpoint_paths() if run.checkpoints.exists() else []) < checkpoints:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run.checkpoint_paths(), "no checkpoint before the kill"
    return json.loads(run.checkpoint_paths()[-1].with_suffix(".json").read_text())


def resume_in_a_process(loop: str, sets: list[str]) -> None:
    """`python -m core.train <loop> --resume --set ...` to its end (one thread), which must succeed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "core.train", loop, "--resume", "--set", *sets], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
