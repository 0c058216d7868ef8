"""The suite launches with its apps in tabs, binds loopback by default, explains missing models, links the monitor."""
from __future__ import annotations

import urllib.request

import app


def test_defaults_bind_loopback(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    args = app.parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860 and not args.share
    assert app.parse_args(["--host", "0.0.0.0", "--port", "9000"]).port == 9000


def test_every_app_has_its_tab_and_the_monitor_is_linked():
    demo = app.build_app()
    config = demo.get_config_file()
    tabs = [c["props"].get("label") for c in config["components"] if c.get("type") in ("tab", "tabitem")]
    assert tabs == ["Face mixing", "Latent sliders", "VP metric", "Training monitor"]
    texts = [c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown"]
    assert not any("Not available" in t or "could not be loaded" in t for t in texts)  # embedded models all load
    # each app appears once (a page built inside a tab renders into it; rendering it again would duplicate it)
    assert sum(c.get("type") == "button" and c["props"].get("value") == "Mix" for c in config["components"]) == 1
    assert sum("## Latent sliders" in t for t in texts) == 1
    assert sum(c.get("type") == "slider" for c in config["components"]) > 5  # the sliders app is in its tab
    assert any("http://127.0.0.1:8501" in t and "training_monitor.py" in t for t in texts)


def test_monitor_flag_starts_streamlit_on_loopback(tmp_path):
    import time
    proc = app.start_monitor("127.0.0.1", str(tmp_path), port=8599)
    try:
        deadline, body = time.time() + 60, ""
        while time.time() < deadline and not body:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8599/_stcore/health", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert body == "ok"
    finally:
        proc.terminate()
        proc.wait()


def test_launched_server_serves_the_page():
    demo = app.build_app()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        with urllib.request.urlopen(demo.local_url, timeout=30) as r:
            assert r.status == 200
            assert "Latent Lab" in r.read().decode("utf-8", "replace")
    finally:
        demo.close()


def test_a_model_set_that_cannot_load_is_explained_in_its_tab(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = app.build_app(models="hf:nobody/nothing", device="cpu").get_config_file()
    texts = [c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown"]
    assert any("could not be loaded" in t and "HF_HUB_OFFLINE" in t for t in texts)
