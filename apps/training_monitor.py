"""Training monitor (Streamlit): live curves, samples by step, configs side by side, status of each run.

    streamlit run apps/training_monitor.py -- --runs runs/

Reads only the run-directory format (core/train/rundir.py). The live part re-runs on its own every few seconds
and reads only what each metrics file gained since the last refresh.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402

from core.train.runs import (MetricsTail, config_table, downsample, list_runs, read_config, run_status,  # noqa: E402
                             sample_steps, smooth)

def runs_root() -> Path:
    """--runs from the command line (after streamlit's `--`), else $LATENT_LAB_RUNS, else runs/."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--runs", default=os.environ.get("LATENT_LAB_RUNS", "runs"))
    args, _ = p.parse_known_args(sys.argv[1:])
    return Path(args.runs)


def tail(run: Path) -> MetricsTail:
    """One incremental reader per run, kept across refreshes in the session."""
    tails = st.session_state.setdefault("tails", {})
    key = str(run.resolve())
    if key not in tails:
        tails[key] = MetricsTail(run / "metrics.jsonl")
    tails[key].poll()
    return tails[key]


def status_table(runs: list[Path]) -> None:
    rows = []
    for run in runs:
        s, t = run_status(run), tail(run)
        rate = t.steps_per_second()
        rows.append({"run": run.name, "status": s.state, "step": max(s.step, t.last_step()),
                     "steps/s": f"{rate:.2f}" if rate else "—",
                     "updated": f"{int(time.time() - s.updated)} s ago" if s.updated else "—", "note": s.detail})
    st.dataframe(rows, hide_index=True, width="stretch")


def curves(runs: list[Path], weight: float, log_y: bool, columns: int = 2) -> None:
    tails = {run.name: tail(run) for run in runs}
    keys = sorted(set().union(*(t.series for t in tails.values())))
    if not keys:
        st.info("No metrics logged yet.")
        return
    cols = st.columns(columns)
    for i, key in enumerate(keys):
        fig = go.Figure()
        for name, t in tails.items():
            s = t.series.get(key)
            if not s or not s.steps:
                continue
            values = smooth(s.values, weight) if weight > 0 and len(s.values) > 1 else s.values
            xs, ys = downsample(s.steps, values)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines" if len(xs) > 1 else "markers", name=name))
        fig.update_layout(title=key, height=280, margin=dict(l=10, r=10, t=40, b=10), showlegend=len(tails) > 1,
                          xaxis_title="step", yaxis_type="log" if log_y else "linear")
        cols[i % columns].plotly_chart(fig, key=f"curve-{key}")


def samples(runs: list[Path]) -> None:
    for run in runs:
        found = sample_steps(run)
        st.markdown(f"**{run.name}**")
        if not found:
            st.caption("no samples yet")
            continue
        steps = [s for s, _ in found]
        chosen = steps[-1]
        if len(steps) > 1:
            chosen = st.select_slider("step", options=steps, value=steps[-1], key=f"samples-{run.name}")
        path = dict(found)[chosen]
        try:
            st.image(path.read_bytes(), caption=f"{run.name}, step {chosen}")
        except FileNotFoundError:
            st.caption("that sample was just removed")


def configs(runs: list[Path]) -> None:
    keys, columns, differ = config_table({run.name: read_config(run) for run in runs})
    if not keys:
        st.caption("no config.yaml")
        return
    rows = [{"key": ("● " if k in differ else "") + k, **{name: str(col[i]) for name, col in columns.items()}}
            for i, k in enumerate(keys)]
    if differ:
        st.caption(f"● marks the {len(differ)} key(s) that differ between the selected runs")
    st.dataframe(rows, hide_index=True, width="stretch", height=min(36 * (len(rows) + 1), 600))


def main() -> None:
    st.set_page_config(page_title="Latent Lab: training monitor", layout="wide")
    root = runs_root()
    st.title("Training monitor")
    available = list_runs(root)
    if not available:
        st.warning(f"No runs in {root.resolve()} yet. Start one with `python -m core.train ...`; "
                   "this page picks it up on its own.")

        @st.fragment(run_every=2)
        def wait_for_runs() -> None:
            if list_runs(root):
                st.rerun()

        wait_for_runs()
        return
    names = [p.name for p in available]
    names += [n for n in st.session_state.get("runs", []) if n not in names]  # keep runs deleted while watched
    with st.sidebar:
        st.caption(f"runs folder: {root.resolve()}")
        selected = st.multiselect("runs", names, default=names[:1], key="runs")
        weight = st.slider("smoothing", 0.0, 0.99, 0.6, 0.01)
        log_y = st.checkbox("log scale", value=False)
        every = st.select_slider("refresh every (s)", options=[1, 2, 5, 10, 30], value=2)
    runs = [root / n for n in selected if (root / n).is_dir()]
    gone = [n for n in selected if not (root / n).is_dir()]
    if gone:
        st.warning(f"deleted while watched: {', '.join(gone)}")

    @st.fragment(run_every=every)
    def live() -> None:
        present = [r for r in runs if r.is_dir()]
        status_table(present)
        curves(present, weight, log_y)

    if runs:
        live()
        tab_samples, tab_config = st.tabs(["Samples", "Config"])
        with tab_samples:
            samples(runs)
        with tab_config:
            configs(runs)


main()
