"""Training monitor: incremental run reading (core/train/runs.py) and the Streamlit app, headless and in Chromium."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from apps.monitor_proxy import free_port
from tools.screenshots import chromium, chromium_path
from core.imaging import save_grid
from core.train.runs import MetricsTail, config_table, downsample, list_runs, run_status, sample_steps, smooth

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "apps" / "training_monitor.py"


def write_run(root: Path, name: str, state: str, steps: int, lr: float = 0.001, updated: float | None = None,
              pid: int | None = None, **extra) -> Path:
    import torch
    run = root / name
    (run / "samples").mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(f"name: {name}\nlr: {lr}\nbatch_size: 16\n")
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            f.write(json.dumps({"step": step, "time": 1000.0 + step, "loss": 1.0 / step, "lr": lr}) + "\n")
    for step in (steps // 2, steps):
        save_grid(torch.full((2, 3, 8, 8), step / steps), run / "samples" / f"{step:08d}.png", 2)
    status = {"state": state, "step": steps, "updated": time.time() if updated is None else updated, **extra}
    if pid is not None:
        status.update(pid=pid, host=socket.gethostname())
    (run / "status.json").write_text(json.dumps(status))
    return run


def test_metrics_tail_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.poll() == 0  # no file yet
    path.write_text('{"step": 1, "time": 1.0, "loss": 2.0}\n{"step": 2, "time": 2.0, "lo')
    assert tail.poll() == 1 and tail.series["loss"].values == [2.0]
    with open(path, "a") as f:
        f.write('ss": 1.5, "acc": 0.1}\n{"step": 3, "time": 3.0, "loss": 1.0}\n')
    assert tail.poll() == 2
    assert tail.series["loss"].steps == [1, 2, 3] and tail.series["acc"].steps == [2]
    assert tail.steps_per_second() == pytest.approx(1.0)
    with open(path, "a") as f:  # stopped for an hour, then on at the same pace: the speed is still one step a second
        f.write("".join(json.dumps({"step": s, "time": 3600.0 + s}) + "\n" for s in range(4, 8)))
    assert tail.poll() == 4 and tail.steps_per_second() == pytest.approx(1.0)
    path.write_text('{"step": 1, "time": 9.0, "loss": 7.0}\nnot json\n')  # rewound by a resumed run
    assert tail.poll() == 1 and tail.series["loss"].values == [7.0] and tail.bad_lines == 1
    with open(path, "a") as f:  # text, bools and nulls are not scalars; a record needs an integer step
        f.write('{"step": 2, "loss": "nan?", "flag": true, "lr": null, "acc": 3}\n{"step": "x", "loss": 1.0}\n')
    assert tail.poll() == 1 and tail.bad_lines == 2
    assert tail.series["loss"].values == [7.0] and tail.series["acc"].values == [3]
    assert "flag" not in tail.series and "lr" not in tail.series
    path.unlink()
    assert tail.poll() == 0 and tail.series == {}


def test_run_status_states(tmp_path):
    now = time.time()
    assert run_status(write_run(tmp_path, "a", "running", 3)).state == "running"
    old = write_run(tmp_path, "b", "running", 3, updated=now - 10_000)
    os.utime(old / "metrics.jsonl", (now - 10_000, now - 10_000))
    assert run_status(old).state == "stale"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert run_status(write_run(tmp_path, "c", "running", 3, pid=dead.pid)).state == "stale"
    assert run_status(write_run(tmp_path, "d", "running", 3, pid=os.getpid())).state == "running"
    failed = run_status(write_run(tmp_path, "e", "failed", 3, error="FloatingPointError: nan"))
    assert failed.state == "failed" and "nan" in failed.detail
    (tmp_path / "f").mkdir()
    assert run_status(tmp_path / "f").state == "unknown"
    (tmp_path / "f" / "status.json").write_text('{"state": "runn')
    assert "unreadable" in run_status(tmp_path / "f").detail


def test_listing_samples_configs_smoothing_and_downsampling(tmp_path):
    a = write_run(tmp_path, "a", "finished", 10, lr=0.001)
    b = write_run(tmp_path, "b", "finished", 10, lr=0.002)
    assert {p.name for p in list_runs(tmp_path)} == {"a", "b"} and list_runs(tmp_path / "none") == []
    assert [s for s, _ in sample_steps(a)] == [5, 10]
    keys, cols, differ = config_table({"a": {"lr": 0.001, "x": 1}, "b": {"lr": 0.002, "x": 1, "y": 2}})
    assert keys == ["lr", "x", "y"] and differ == {"lr", "y"} and cols["a"][2] == "—"
    assert smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no ramp from zero
    assert smooth([0.0, 10.0], 0.5)[1] == pytest.approx(10 * 0.5 / 0.75)
    steps = list(range(100_000))
    values = [float(i % 1000) for i in steps]
    values[55_555] = 1e6
    xs, ys = downsample(steps, values, 2000)
    assert len(xs) <= 2000 and ys.max() == 1e6 and (np.diff(xs) > 0).all() and xs[0] == 0
    assert b.exists()


def points(axis) -> int:
    """Length of a plotly trace axis, plain list or plotly's base64 typed array."""
    if isinstance(axis, dict):
        return len(base64.b64decode(axis["bdata"])) // np.dtype(axis["dtype"]).itemsize
    return len(axis)


def curve_points(at, key: str) -> int:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["layout"]["title"]["text"] == key:
            return sum(points(trace["x"]) for trace in spec["data"])
    raise AssertionError(f"no curve for {key}")


def test_monitor_app_headless(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    write_run(tmp_path, "old", "failed", 20, lr=0.002, updated=time.time() - 50, error="RuntimeError: boom")
    time.sleep(0.05)
    live = write_run(tmp_path, "live", "running", 30, pid=os.getpid())
    monkeypatch.setenv("LATENT_LAB_RUNS", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert at.multiselect[0].value == ["live"]  # newest run selected first
    table = at.dataframe[0].value
    assert list(table["run"]) == ["live"] and "running" in table["state"][0] and table["step"][0] == 30
    assert curve_points(at, "loss") == 30 and curve_points(at, "lr") == 30
    with open(live / "metrics.jsonl", "a") as f:  # the run goes on, and its last line is half written
        f.write("".join(json.dumps({"step": s, "time": 2000.0 + s, "loss": 0.01}) + "\n" for s in range(31, 41)))
        f.write('{"step": 41, "lo')
    at.run()
    assert curve_points(at, "loss") == 40
    at.multiselect[0].set_value(["live", "old"]).run()
    assert not at.exception
    statuses = " ".join(at.dataframe[0].value["state"])
    assert "running" in statuses and "failed" in statuses
    assert curve_points(at, "loss") == 60  # both runs overlaid
    assert any("differ" in c.value for c in at.caption)  # lr differs between the two configs (the Configs panel)
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1
    at.checkbox[0].check().run()  # log scale
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]["type"] == "log"
    shutil.rmtree(tmp_path / "old")  # deleted while watched
    at.run()
    assert not at.exception and any("deleted while watched: old" in w.value for w in at.warning)


def test_monitor_app_with_no_runs_shows_the_shipped_example(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("LATENT_LAB_RUNS", str(tmp_path / "nothing"))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and "example run" in at.info[0].value
    assert at.multiselect[0].value and at.multiselect[0].value[0].endswith("(example)")
    assert at.get("plotly_chart") and (len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1)


def test_sections_put_losses_first_and_draw_a_family_as_one_chart(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core.train.runs import sections
    keys = {"loss_g", "loss_d", "fd_analyzer", "images_per_s", "lr", *(f"factor_w1/f{i}" for i in range(24))}
    groups = sections(keys)
    assert [g.title for g in groups] == ["Losses", "Metrics", "Throughput and schedule", "factor_w1/* (24 series)"]
    assert groups[0].keys == ["loss_d", "loss_g"] and groups[-1].family and not groups[-1].expanded
    run = write_run(tmp_path, "gan", "running", 12, pid=os.getpid())
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 12, "time": 1012.0, "fd_analyzer": 2.0,
                            **{f"factor_w1/f{i}": i / 24 for i in range(24)}}) + "\n")
        f.write("not json\n")
    (run / "samples" / "00000013.png").write_bytes(b"\x89PNG half")  # a damaged newest sample
    monkeypatch.setenv("LATENT_LAB_RUNS", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert titles[0] == "loss" and titles.index("loss") < titles.index("factor_w1/* (24 series)")
    family = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                  if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("factor_w1"))
    assert len(family["data"]) == 24  # one chart, 24 series
    assert [h.value for h in at.subheader][:2] == ["Losses", "Latest samples"]  # samples beside the losses
    captions = " ".join(c.value for c in at.caption)
    assert "1 malformed metric line(s) skipped" in captions and "could not be read (skipped)" in captions
    header = at.dataframe[0].value
    assert header["ETA"][0] == "—" and "ago" in header["last line"][0]


@pytest.mark.skipif(chromium_path() is None, reason="needs a system Chromium; .ci/run installs it")
def test_curve_grows_in_a_real_browser_while_a_run_trains(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The run must outlast the browser's start on a slow, shared machine, so it has far more epochs than it gets
    # to run: the finally block kills it.
    sets = ["name=live", f"runs_dir={tmp_path}", "train_identities=10", "per_identity=4", "val_identities=4",
            "val_per_identity=2", "width=8", "hidden=32", "embed_dim=16", "batch_size=8", "epochs=100000", "lr=0.001",
            "log_every=1", "ship_to=''"]
    trainer = subprocess.Popen([sys.executable, "-m", "core.train", "analyzer", "--set", *sets], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
                               "--server.address", "127.0.0.1", "--server.port", str(port),
                               "--browser.gatherUsageStats", "false", "--", "--runs", str(tmp_path)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "live" / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)
        with chromium() as page:
            page.goto(f"http://127.0.0.1:{port}", timeout=60_000)
            page.wait_for_selector(".js-plotly-plot", timeout=90_000)
            count = "() => Math.max(0, ...[...document.querySelectorAll('.js-plotly-plot')].map(e => " \
                    "(e._fullData || []).reduce((n, t) => n + (t._length || 0), 0)))"
            first = page.evaluate(count)
            page.wait_for_function(f"({count})() > {first}", timeout=90_000)
            assert page.evaluate(count) > first > 0
            page.screenshot(path=str(tmp_path / "monitor.png"), full_page=True)
    finally:
        for proc in (trainer, server):
            proc.kill()
            proc.wait()
