"""The suite: settings from flags and LATENT_LAB_* variables, one tab per page, a page that cannot load says why,
and the whole suite served on one port the way a Space runs it (the Streamlit monitor proxied at /monitor/,
websocket included, and stopped with the app)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import app
from apps.monitor_proxy import free_port
from tools.screenshots import chromium, chromium_path

ROOT = Path(__file__).resolve().parent.parent


def test_flags_win_over_variables_which_win_over_defaults(monkeypatch):
    for key in ("SPACE_ID", "LATENT_LAB_MODELS", "LATENT_LAB_DEVICE", "LATENT_LAB_RUNS", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(key, raising=False)
    args = app.parse_args([])
    assert (args.host, args.port, args.models, args.device, args.runs, args.monitor) == (
        "127.0.0.1", 7860, "embedded", "auto", "runs", False)
    monkeypatch.setenv("LATENT_LAB_MODELS", "hf:someone/set")
    monkeypatch.setenv("LATENT_LAB_DEVICE", "cpu")
    monkeypatch.setenv("LATENT_LAB_RUNS", "/data/runs")
    monkeypatch.setenv("SPACE_ID", "me/latent-lab")
    args = app.parse_args([])
    assert (args.models, args.device, args.runs, args.host, args.monitor) == (
        "hf:someone/set", "cpu", "/data/runs", "0.0.0.0", True)
    args = app.parse_args(["--models", "embedded", "--no-monitor", "--host", "127.0.0.1"])
    assert (args.models, args.monitor, args.host) == ("embedded", False, "127.0.0.1")


def test_gpu_work_runs_under_spaces_gpu_only_on_a_zero_gpu_space(monkeypatch):
    """ZeroGPU attaches the GPU through `spaces.GPU`; elsewhere the wrapped function is the function itself."""
    import types

    from apps.common import gpu
    wrapped = []
    stand_in = types.ModuleType("spaces")
    stand_in.GPU = lambda fn: wrapped.append(fn) or (lambda *a, **k: ("on gpu", fn(*a, **k)))
    monkeypatch.setitem(sys.modules, "spaces", stand_in)

    def work(x: int) -> int:
        return x + 1

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert gpu(work) is work and not wrapped
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert gpu(work)(1) == ("on gpu", 2) and wrapped == [work]
    monkeypatch.setitem(sys.modules, "spaces", None)  # the package absent: import fails, fn runs as it is
    assert gpu(work) is work


MODEL_HANDLERS = {"mix", "strips", "grid", "render", "both", "encode", "edit_upload", "videos", "score", "reconstruct",
                  "sample", "interpolate"}
NO_MODEL = {"download", "forget_session", "card_text", "<lambda>"}  # handlers that run no model


def test_on_zero_gpu_every_handler_that_runs_a_model_is_wrapped(monkeypatch):
    """ZeroGPU attaches a GPU only inside `spaces.GPU`: every event handler of the suite that runs a model must be
    wrapped, and every handler must be either wrapped or one that runs no model (a new one has to be sorted)."""
    import types
    wrapped = []

    def gpu(fn):
        def on_gpu(*args, **kwargs):
            return fn(*args, **kwargs)
        on_gpu.original = fn
        wrapped.append(fn)
        return on_gpu

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    demo = app.build_app(models="embedded", device="cpu")
    handlers = [f.fn for f in demo.fns.values() if f.fn is not None]
    names = {getattr(getattr(fn, "original", fn), "__name__", "") for fn in handlers}
    on_gpu = {fn.original.__name__ for fn in handlers if hasattr(fn, "original")}
    assert MODEL_HANDLERS <= names, MODEL_HANDLERS - names  # every page built, every model handler registered
    assert on_gpu == MODEL_HANDLERS, (MODEL_HANDLERS - on_gpu, on_gpu - MODEL_HANDLERS)
    assert names - on_gpu <= NO_MODEL, names - on_gpu - NO_MODEL


def test_every_page_has_its_tab():
    config = app.build_app(device="cpu").get_config_file()
    tabs = [c["props"].get("label") for c in config["components"] if c.get("type") in ("tab", "tabitem")]
    assert tabs == ["Face mixing", "Latent sliders", "VP metric", "VAE lab", "Training monitor"]
    texts = [c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown"]
    assert not any("Not available" in t for t in texts)  # the embedded models all load
    # each page appears once (a page built inside a tab renders into it; rendering it again would duplicate it)
    assert sum(c.get("type") == "button" and c["props"].get("value") == "Mix" for c in config["components"]) == 1
    assert sum("## Latent sliders" in t for t in texts) == 1
    assert any("--monitor" in t for t in texts)  # without the monitor, its tab says how to get it


def test_a_model_set_that_cannot_load_is_explained_in_its_tab(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = app.build_app(models="hf:nobody/nothing", device="cpu").get_config_file()
    texts = [c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown"]
    assert sum("Not available for model set `hf:nobody/nothing`" in t and "HF_HUB_OFFLINE" in t for t in texts) >= 3


def test_the_space_header_matches_the_requirements():
    readme = (ROOT / "README.md").read_text()
    header = re.match(r"---\n(.*?)\n---\n", readme, re.S)
    assert header, "README.md must start with the Space's YAML header"
    import yaml
    meta = yaml.safe_load(header.group(1))
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["suggested_hardware"] and meta["short_description"] and len(meta["short_description"]) <= 60
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert meta["sdk_version"] == pins["gradio"]
    import gradio
    assert gradio.__version__ == pins["gradio"]
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev and "pytest" in dev
    assert "pytest" not in (ROOT / "requirements.txt").read_text()
    assert "*.safetensors filter=lfs" in (ROOT / ".gitattributes").read_text()


def processes_with(text: str) -> list[int]:
    """PIDs whose command line contains `text` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def write_run(root: Path) -> Path:
    run = root / "space_run"
    (run / "samples").mkdir(parents=True)
    (run / "config.yaml").write_text("name: space_run\nsteps: 1000\n")
    (run / "status.json").write_text(json.dumps({"state": "running", "step": 20, "updated": time.time(),
                                                 "total_steps": 1000}))
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(1, 21):
            f.write(json.dumps({"step": step, "time": time.time(), "loss": 1 / step, "images_per_s": 5.0,
                                **{f"factor_w1/f{i}": i / 10 for i in range(6)}}) + "\n")
    import torch

    from core.imaging import save_grid
    save_grid(torch.rand(4, 3, 16, 16), run / "samples" / "00000020.png", 2)
    return run


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The suite started as a Space starts it (`python app.py` with SPACE_ID: monitor on, one port); stopped at
    the end, when it must take its monitor child with it."""
    root = tmp_path_factory.mktemp("space")
    runs = root / "runs"
    run = write_run(runs)
    port = free_port()
    env = {**os.environ, "SPACE_ID": "me/latent-lab", "GRADIO_SERVER_PORT": str(port), "LATENT_LAB_RUNS": str(runs),
           "LATENT_LAB_DEVICE": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("SPACE_HOST", None)
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.time() + 240, False
        while time.time() < deadline and not ready:
            try:
                with urllib.request.urlopen(f"{base}/monitor/_stcore/health", timeout=5) as r:
                    ready = r.read() == b"ok"
            except OSError:
                time.sleep(1)
        assert ready, "the suite (with its monitor) did not come up on its one port"
        assert processes_with(str(runs)), "the monitor child is not running"
        yield {"base": base, "port": port, "run": run, "root": root, "pid": server.pid}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    deadline = time.time() + 30
    while processes_with(str(runs)) and time.time() < deadline:
        time.sleep(0.5)
    assert not processes_with(str(runs)), "stopping the app left the monitor running"


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_the_suite_runs_as_a_space_on_one_port_with_the_monitor_inside(space):
    base, run = space["base"], space["run"]
    with chromium(1400, 1000) as page:
        page.goto(base, timeout=120_000)
        headings = {"Face mixing": "Face mixing", "Latent sliders": "Latent sliders",
                    "VP metric": "Variation predictability", "VAE lab": "VAE lab"}
        for tab, heading in headings.items():
            page.get_by_role("tab", name=tab).click()
            page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Training monitor").click()
        frame = page.frame_locator("iframe[title='training monitor']")
        frame.locator(".js-plotly-plot").first.wait_for(timeout=120_000)  # rendered over the proxied websocket
        count = ("() => { const e = document.querySelector('.js-plotly-plot');"  # the loss chart's points
                 " return e ? (e._fullData || []).reduce((n, t) => n + (t._length || 0), 0) : 0; }")
        inner = next(f for f in page.frames if "/monitor" in f.url)
        first = inner.evaluate(count)
        # the layout: losses first, the sample beside them, the factor_w1 family as one chart further down
        titles = inner.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map(e => "
                                "e.layout && e.layout.title ? (e.layout.title.text || e.layout.title) : '')")
        titles = [re.sub(r"<[^>]+>", "", t) for t in titles]  # Streamlit wraps plot titles in <b>
        assert titles and titles[0] == "loss" and "factor_w1/* (6 series)" in titles, titles
        sample_y = inner.evaluate("() => { const i = document.querySelector('img'); "
                                  "return i ? i.getBoundingClientRect().top : -1; }")
        expander_y = inner.evaluate("() => { const e = document.querySelector('details, [data-testid=stExpander]');"
                                    " return e ? e.getBoundingClientRect().top : -1; }")
        assert 0 <= sample_y < expander_y  # the latest sample sits above the grouped sections
        with open(run / "metrics.jsonl", "a") as f:  # the run goes on: the live curve grows
            for step in range(21, 41):
                f.write(json.dumps({"step": step, "time": time.time(), "loss": 1 / step}) + "\n")
        inner.wait_for_function(f"({count})() > {first}", timeout=60_000)
        page.screenshot(path=str(space["root"] / "space.png"), full_page=True)


def _stream_socket(space, origin: str):
    from websockets.sync.client import connect
    return connect(f"ws://127.0.0.1:{space['port']}/monitor/_stcore/stream", origin=origin,
                   subprotocols=["streamlit"], open_timeout=30)


def test_the_monitor_websocket_opens_from_the_suite_and_not_from_another_site(space):
    from websockets.exceptions import InvalidStatus
    with _stream_socket(space, f"http://127.0.0.1:{space['port']}") as ws:  # the suite's own page
        assert ws.subprotocol == "streamlit"
    with pytest.raises(InvalidStatus) as refused:  # any other web page, which a browser lets open websockets too
        _stream_socket(space, "http://evil.example")
    assert refused.value.response.status_code == 403


def _request(space, path: str, data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(f"{space['base']}{path}", data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_an_oversized_body_is_refused_without_being_held(space):
    import socket
    before = rss_kib(space["pid"])
    head = f"POST /monitor/_stcore/health HTTP/1.1\r\nHost: 127.0.0.1:{space['port']}\r\n"
    with socket.create_connection(("127.0.0.1", space["port"]), timeout=60) as sock:  # declared too large
        sock.sendall(f"{head}Content-Length: {400 * 1024 * 1024}\r\n\r\n".encode() + b"x" * 65536)
        assert b" 413 " in sock.recv(4096).split(b"\r\n", 1)[0]
    sent = 0
    with socket.create_connection(("127.0.0.1", space["port"]), timeout=60) as sock:  # chunked, no length given
        sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
        try:
            while sent < 200 * 1024 * 1024:
                sock.sendall(chunk)
                sent += 65536
            answer = sock.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            answer = b" 413 "  # refused while we were still sending
    assert b" 413 " in answer
    assert rss_kib(space["pid"]) - before < 50 * 1024  # KiB: nothing near the 200 MB sent was held
    assert _request(space, "/monitor/_stcore/health", data=b"small")[0] in (200, 405)  # small bodies pass on


def test_bad_or_unserved_paths_and_compression_per_client(space):
    assert _request(space, "/monitor/a%00b")[0] == 400
    assert _request(space, "/monitor/not-streamlit/x")[0] == 404
    status, headers, body = _request(space, "/monitor/")  # no Accept-Encoding: plain bytes
    assert status == 200 and "gzip" not in {k.lower(): v for k, v in headers.items()}.get("content-encoding", "")
    assert b"<html" in body.lower()
    status, headers, _ = _request(space, "/monitor/", headers={"Accept-Encoding": "gzip"})
    assert status == 200


def test_session_files_go_with_their_session_even_when_an_event_writes_late(monkeypatch, tmp_path):
    import threading
    from types import SimpleNamespace
    from apps import common
    monkeypatch.setattr(common, "SESSION_FILES", tmp_path)
    with common.session_file("a", "grid.png") as path:
        path.write_bytes(b"png")
    common.forget_session(SimpleNamespace(session_hash="a"))
    assert not (tmp_path / "a").exists()
    with common.session_file("a", "late.png") as path:  # an event that finishes after its browser closed
        path.write_bytes(b"png")
    common.forget_session(SimpleNamespace(session_hash="b"))  # the next session's end takes it
    assert list(tmp_path.iterdir()) == []

    errors = []
    def write(n):
        try:
            for i in range(200):
                with common.session_file("c", f"{n}.png") as path:
                    path.write_bytes(b"x" * 1000)
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)
    writers = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for t in writers:
        t.start()
    while any(t.is_alive() for t in writers):  # the folder removed while events write into it
        common.forget_session(SimpleNamespace(session_hash="c"))
    assert errors == []
    common.forget_session(SimpleNamespace(session_hash="c"))
    assert list(tmp_path.iterdir()) == []
