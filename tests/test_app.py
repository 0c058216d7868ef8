"""The suite launches, binds loopback by default, and says on screen that it is a placeholder."""
from __future__ import annotations

import urllib.request

import app


def test_defaults_bind_loopback(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    args = app.parse_args([])
    assert args.host == "127.0.0.1" and args.port == 7860 and not args.share
    assert app.parse_args(["--host", "0.0.0.0", "--port", "9000"]).port == 9000


def test_every_tab_says_it_is_a_placeholder():
    demo = app.build_app()
    config = demo.get_config_file()
    tabs = [c["props"].get("label") for c in config["components"] if c.get("type") in ("tab", "tabitem")]
    assert tabs == list(app.PLANNED_TABS)
    texts = [c["props"].get("value", "") for c in config["components"] if c.get("type") == "markdown"]
    assert sum("Placeholder suite" in t for t in texts) == len(app.PLANNED_TABS)


def test_launched_server_serves_the_page():
    demo = app.build_app()
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        with urllib.request.urlopen(demo.local_url, timeout=30) as r:
            assert r.status == 200
            assert "Latent Lab" in r.read().decode("utf-8", "replace")
    finally:
        demo.close()
