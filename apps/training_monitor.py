"""Training monitor (Streamlit): the losses and the latest samples on top, then grouped curves, for one run or
several overlaid.

    streamlit run apps/training_monitor.py --server.address 127.0.0.1 -- --runs runs/
    python app.py --monitor          (the same page inside the suite, at /monitor/ on the suite's port)

Reads only the run-directory format (core/train/runs.py). Curves are grouped by name as TensorBoard groups tags:
losses first, then the other metrics, throughput, and each `<prefix>/<name>` family collapsed into one chart. The
live part re-runs every few seconds and reads only what each metrics file gained. With no runs yet, the example run
shipped in examples/runs is shown, labelled as such. Anything unreadable (bad metric lines, a damaged sample, a
malformed status) is named and skipped; the rest keeps showing.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from core.train.runs import (MetricsTail, Section, config_table, downsample, list_runs, run_config, read_sample,
                             sample_steps, sections, smooth, summarise)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "runs"
EXAMPLE_TAG = " (example)"


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


def _duration(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min" if seconds >= 3600 else \
        f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def header(runs: dict[str, Path]) -> None:
    """One compact line per run: state, step, speed, time since its last line, time left."""
    rows = []
    for name, run in runs.items():
        t = tail(run)
        s = summarise(run, t)
        rows.append({"run": name, "state": s.state, "step": s.step,
                     "steps/s": f"{s.steps_per_s:.2f}" if s.steps_per_s else "—",
                     "last line": _duration(s.since_last_s) + (" ago" if s.since_last_s is not None else ""),
                     "ETA": _duration(s.eta_s), "note": s.detail})
        if t.bad_lines:
            st.caption(f"{name}: {t.bad_lines} malformed metric line(s) skipped")
    st.dataframe(rows, hide_index=True, width="stretch")


def _traces(fig: go.Figure, runs: dict[str, Path], key: str, weight: float, label: str) -> bool:
    found = False
    for name, run in runs.items():
        s = tail(run).series.get(key)
        if not s or not s.steps:
            continue
        values = smooth(s.values, weight) if weight > 0 and len(s.values) > 1 else s.values
        xs, ys = downsample(s.steps, values)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines" if len(xs) > 1 else "markers", name=label.format(
            run=name, key=key)))
        found = True
    return found


def chart(runs: dict[str, Path], key: str, weight: float, log_y: bool) -> None:
    fig = go.Figure()
    _traces(fig, runs, key, weight, "{run}")
    fig.update_layout(title=key, height=260, margin=dict(l=10, r=10, t=40, b=10), showlegend=len(runs) > 1,
                      xaxis_title="step", yaxis_type="log" if log_y else "linear")
    st.plotly_chart(fig, key=f"curve-{key}")
    missing = [name for name, run in runs.items() if key not in tail(run).series]
    if missing and len(missing) < len(runs):
        st.caption(f"{key}: not logged by {', '.join(missing)}")


def family_chart(runs: dict[str, Path], section: Section, weight: float, log_y: bool) -> None:
    """A family (`prefix/name`, e.g. one curve per factor) as one multi-line chart."""
    fig = go.Figure()
    label = "{run}: {key}" if len(runs) > 1 else "{key}"
    for key in section.keys:
        _traces(fig, runs, key, weight, label)
    fig.update_layout(title=section.title, height=420, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step",
                      yaxis_type="log" if log_y else "linear")
    st.plotly_chart(fig, key=f"family-{section.title}")


def charts(runs: dict[str, Path], keys: list[str], weight: float, log_y: bool, columns: int = 2) -> None:
    cols = st.columns(columns)
    for i, key in enumerate(keys):
        with cols[i % columns]:
            chart(runs, key, weight, log_y)


def latest_samples(runs: dict[str, Path]) -> None:
    """The newest sample grid of each run, with a step slider through the earlier ones."""
    for name, run in runs.items():
        found = sample_steps(run)
        if not found:
            st.caption(f"{name}: no samples yet")
            continue
        steps = [s for s, _ in found]
        key = f"samples-{name}"
        follow = st.session_state.get(f"{key}-follow", True)  # stay on the newest until the user picks another
        chosen = steps[-1] if follow or st.session_state.get(key) not in steps else st.session_state[key]
        if len(steps) > 1:
            chosen = st.select_slider(f"{name}: step", options=steps, value=chosen, key=key)
        st.session_state[f"{key}-follow"] = chosen == steps[-1]
        data = read_sample(dict(found)[chosen])
        if data is None:
            st.caption(f"{name}: sample of step {chosen} could not be read (skipped)")
        else:
            st.image(data, caption=f"{name}, step {chosen}")


def configs(runs: dict[str, Path]) -> None:
    keys, columns, differ = config_table({name: run_config(run) for name, run in runs.items()})
    if not keys:
        st.caption("no config.yaml")
        return
    rows = [{"key": ("● " if k in differ else "") + k, **{name: str(col[i]) for name, col in columns.items()}}
            for i, k in enumerate(keys)]
    if differ:
        st.caption(f"● marks the {len(differ)} key(s) that differ between the selected runs")
    st.dataframe(rows, hide_index=True, width="stretch", height=min(36 * (len(rows) + 1), 600))


def available(root: Path) -> tuple[dict[str, Path], bool]:
    """{label: run folder} of the runs under `root`, newest first; the shipped example runs when there are none."""
    runs = {p.name: p for p in list_runs(root)}
    if runs:
        return runs, False
    return {p.name + EXAMPLE_TAG: p for p in list_runs(EXAMPLES)}, True


def main() -> None:
    st.set_page_config(page_title="Latent Lab: training monitor", layout="wide")
    root = runs_root()
    st.title("Training monitor")
    found, example = available(root)
    if example:
        st.info(f"No runs in {root.resolve()} yet, so this shows the example run shipped with Latent Lab. Start "
                f"one with `python -m core.train ...`; this page switches to it on its own.")

        @st.fragment(run_every=2)
        def wait_for_runs() -> None:
            if list_runs(root):
                st.rerun()

        wait_for_runs()
    if not found:
        st.warning(f"No runs in {root.resolve()} yet. Start one with `python -m core.train ...`.")
        return
    names = list(found)
    names += [n for n in st.session_state.get("runs", []) if n not in names]  # keep runs deleted while watched
    with st.sidebar:
        st.caption(f"runs folder: {root.resolve()}")
        selected = st.multiselect("runs", names, default=names[:1], key="runs")
        weight = st.slider("smoothing", 0.0, 0.99, 0.6, 0.01)
        log_y = st.checkbox("log scale", value=False)
        every = st.select_slider("refresh every (s)", options=[1, 2, 5, 10, 30], value=2)
    gone = [n for n in selected if n not in found or not found[n].is_dir()]
    if gone:
        st.warning(f"deleted while watched: {', '.join(gone)}")

    @st.fragment(run_every=every)
    def live() -> None:
        runs = {n: found[n] for n in selected if n in found and found[n].is_dir()}
        if not runs:
            return
        header(runs)
        groups = sections(set().union(*(tail(r).series for r in runs.values())))
        if not groups:
            st.info("No metrics logged yet.")
        top = groups[0] if groups and groups[0].title == "Losses" else None
        left, right = st.columns([3, 2])
        with left:
            if top is not None:
                st.subheader("Losses")
                charts(runs, top.keys, weight, log_y, columns=1 if len(top.keys) < 3 else 2)
        with right:
            st.subheader("Latest samples")
            latest_samples(runs)
        for section in groups[1 if top is not None else 0:]:
            with st.expander(section.title, expanded=section.expanded):
                if section.family:
                    family_chart(runs, section, weight, log_y)
                else:
                    charts(runs, section.keys, weight, log_y)

    if selected:
        live()
        with st.expander("Configs", expanded=False):
            configs({n: found[n] for n in selected if n in found})


main()
