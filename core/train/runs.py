"""Reading run directories while they are written: incremental metrics, status with staleness, samples, configs.

The training monitor polls these every few seconds, so `MetricsTail` reads only the bytes appended since its last
call, keeps a half-written last line for later, and starts over when the file shrinks (a resumed run rewinds it)
or disappears (the run was deleted).
"""
from __future__ import annotations

import io
import json
import math
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import orjson
import scipy.signal
import yaml

_NUMBER = {int, float}  # the scalar types a metric may have (bool and None are not metrics)
STALE_AFTER_S = 300.0  # a 'running' run whose status has not changed for this long is reported stale


@dataclass
class Series:
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


class MetricsTail:
    """Incremental reader of a run's metrics.jsonl into one (steps, values) series per scalar."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.series: dict[str, Series] = {}
        self.times: list[tuple[int, float]] = []  # (step, wall time) of each record
        self.bad_lines = 0

    def _reset(self) -> None:
        self.offset, self.series, self.times, self.bad_lines = 0, {}, [], 0

    def poll(self) -> int:
        """Read complete lines appended since the last call; returns how many records were added."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            if self.offset:
                self._reset()
            return 0
        if size < self.offset:  # rewound by a resumed run, or replaced
            self._reset()
        if size == self.offset:
            return 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(size - self.offset)
        end = chunk.rfind(b"\n")
        if end < 0:  # only a half-written line so far
            return 0
        self.offset += end + 1
        lines = chunk[:end].split(b"\n")
        try:  # one C-speed parse of the whole chunk; line by line only when some line is broken
            records = orjson.loads(b"[" + b",".join(x for x in lines if x.strip()) + b"]")
        except orjson.JSONDecodeError:
            records = []
            for line in lines:
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    self.bad_lines += 1
        good = [r for r in records if type(r) is dict and type(r.get("step")) is int]
        self.bad_lines += len(records) - len(good)
        keys: set[str] = set()
        for r in good:
            keys.update(r)
        keys.discard("step")
        steps = [r["step"] for r in good]
        for key in keys:  # column by column: far quicker than appending scalar by scalar
            values = [r.get(key) for r in good]
            if not set(map(type, values)) <= _NUMBER:  # some records lack it or hold text, bools, None
                keep = [i for i, v in enumerate(values) if type(v) in _NUMBER]
                key_steps, values = [steps[i] for i in keep], [values[i] for i in keep]
            else:
                key_steps = steps
            if not values:
                continue
            if key == "time":
                self.times.extend(zip(key_steps, map(float, values)))
                continue
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = Series()
            s.steps.extend(key_steps)
            s.values.extend(values)
        return len(good)

    def last_step(self) -> int:
        return max((s.steps[-1] for s in self.series.values() if s.steps), default=0)

    def steps_per_second(self, window: int = 50) -> Optional[float]:
        """Training speed: the median over the intervals between the last `window` records, so that a pause (a
        stopped run, or a resume after a while) does not drag it down (None until two records with distinct times
        exist)."""
        recent = self.times[-window:]
        rates = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(recent, recent[1:]) if b[1] > a[1] and b[0] > a[0]]
        return float(statistics.median(rates)) if rates else None


@dataclass
class RunStatus:
    state: str  # running | finished | failed | stale | unknown
    step: int
    updated: Optional[float]
    detail: str = ""
    total_steps: Optional[int] = None  # what the run plans to reach, when its status says


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def run_status(run_dir: str | Path, stale_after: float = STALE_AFTER_S, now: Optional[float] = None) -> RunStatus:
    """The run's state; 'running' becomes 'stale' when its status is old or its process is gone."""
    path = Path(run_dir) / "status.json"
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return RunStatus("unknown", 0, None, "no status.json yet")
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as e:
        return RunStatus("unknown", 0, None, f"unreadable status.json: {e}")
    if not isinstance(status, dict):
        return RunStatus("unknown", 0, None, "malformed status.json (not an object): skipped")
    state, step, updated = status.get("state", "unknown"), status.get("step", 0), status.get("updated")
    if state not in ("running", "finished", "failed") or type(step) is not int or not (
            updated is None or type(updated) in (int, float)):
        return RunStatus("unknown", 0, None, f"malformed status.json (state {state!r}, step {step!r}, updated "
                                             f"{updated!r}): skipped")
    now = time.time() if now is None else now
    if state == "running":
        metrics = Path(run_dir) / "metrics.jsonl"
        last_write = max(float(updated or 0), metrics.stat().st_mtime if metrics.exists() else 0.0)
        if status.get("host") == socket.gethostname() and "pid" in status and not _pid_alive(status["pid"]):
            return RunStatus("stale", step, updated, f"process {status['pid']} is gone")
        if now - last_write > stale_after:
            return RunStatus("stale", step, updated, f"no update for {int(now - last_write)} s")
    total = status.get("total_steps")
    return RunStatus(state, step, updated, str(status.get("error", "")), total if type(total) is int else None)


def list_runs(root: str | Path) -> list[Path]:
    """Run folders under `root` (those with a config.yaml or metrics.jsonl), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir()
            if p.is_dir() and ((p / "config.yaml").exists() or (p / "metrics.jsonl").exists())]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


def sample_steps(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, png) of every sample grid of a run, in step order."""
    out = []
    for p in (Path(run_dir) / "samples").glob("*.png"):
        if p.stem.isdigit():
            out.append((int(p.stem), p))
    return sorted(out)


def run_config(run_dir: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (FileNotFoundError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def config_table(configs: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, list[Any]], set[str]]:
    """(keys, {run: values in key order}, keys whose values differ between runs) for a side-by-side view."""
    keys = sorted(set().union(*configs.values())) if configs else []
    columns = {name: [cfg.get(k, "—") for k in keys] for name, cfg in configs.items()}
    differ = {k for i, k in enumerate(keys) if len({json.dumps(col[i], sort_keys=True, default=str)
                                                       for col in columns.values()}) > 1}
    return keys, columns, differ


def smooth(values: list[float], weight: float) -> np.ndarray:
    """Debiased exponential moving average (weight 0 = raw, 0.99 = very smooth)."""
    if not 0 <= weight < 1:
        raise ValueError("smoothing weight must be in [0, 1)")
    x = np.asarray(values, dtype=np.float64)
    if weight == 0 or len(x) == 0:
        return x
    num = scipy.signal.lfilter([1 - weight], [1, -weight], x)
    den = scipy.signal.lfilter([1 - weight], [1, -weight], np.ones_like(x))
    return num / den


def downsample(steps: list[int], values: list[float] | np.ndarray,
               max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points points, keeping each bucket's min and max so spikes stay visible."""
    xs, ys = np.asarray(steps), np.asarray(values, dtype=np.float64)
    n = len(xs)
    if n <= max_points:
        return xs, ys
    bucket = math.ceil(n / (max_points // 2))
    pad = (-n) % bucket
    grid = np.concatenate([ys, np.full(pad, np.nan)]).reshape(-1, bucket)
    base = np.arange(grid.shape[0]) * bucket
    lo, hi = base + np.nanargmin(grid, axis=1), base + np.nanargmax(grid, axis=1)
    keep = np.unique(np.concatenate([lo, hi]))
    return xs[keep], ys[keep]


THROUGHPUT = {"images_per_s", "steps_per_s", "images_seen", "lr", "epoch", "blur_sigma"}


@dataclass
class Section:
    """A group of curves on the monitor page: separate charts, or one multi-line chart for a family."""

    title: str
    keys: list[str]
    family: bool = False
    expanded: bool = True


def sections(keys: set[str] | list[str]) -> list[Section]:
    """Curves grouped as TensorBoard groups tags: losses first (names starting with 'loss'), then the other
    metrics, then throughput and schedule, then each family `<prefix>/<name>` collapsed as one chart."""
    plain = sorted(k for k in keys if "/" not in k)
    losses = [k for k in plain if k.startswith("loss")]
    throughput = [k for k in plain if k in THROUGHPUT or k.endswith("_per_s")]
    metrics = [k for k in plain if k not in losses and k not in throughput]
    families: dict[str, list[str]] = {}
    for k in sorted(k for k in keys if "/" in k):
        families.setdefault(k.split("/", 1)[0], []).append(k)
    out = [Section("Losses", losses), Section("Metrics", metrics), Section("Throughput and schedule", throughput,
                                                                           expanded=False)]
    out += [Section(f"{prefix}/* ({len(members)} series)", members, family=True, expanded=False)
            for prefix, members in families.items()]
    return [s for s in out if s.keys]


@dataclass
class RunSummary:
    """The compact header of a run: state, step, speed, time since its last line, and the time left."""

    state: str
    step: int
    steps_per_s: Optional[float]
    since_last_s: Optional[float]
    eta_s: Optional[float]
    detail: str = ""


def summarise(run_dir: str | Path, tail: MetricsTail, now: Optional[float] = None) -> RunSummary:
    status = run_status(run_dir, now=now)
    now = time.time() if now is None else now
    step = max(status.step, tail.last_step())
    rate = tail.steps_per_second()
    last = tail.times[-1][1] if tail.times else None
    total = status.total_steps
    eta = (total - step) / rate if rate and total and total > step and status.state == "running" else None
    return RunSummary(status.state, step, rate, now - last if last else None, eta, status.detail)


def read_sample(path: str | Path) -> Optional[bytes]:
    """A sample grid's PNG bytes, or None when the file is gone or cannot be decoded (damaged, or half-written by
    a writer that did not write atomically)."""
    from PIL import Image, UnidentifiedImageError
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    return data
