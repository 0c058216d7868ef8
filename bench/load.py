"""The suite under load: N concurrent gradio_client clients mixing faces and editing sliders at once.

    python -m bench.load                        # 50 clients against `python app.py` on this machine
    python -m bench.load --clients 20 --settle 30

The suite runs as its own process (`python app.py --no-monitor`, as a visitor reaches it). First one client makes
--idle slider edits on the idle server (the baseline); then every client, in its own thread, makes one mix and
--edits edits in a shuffled order, all at once. Printed: calls that succeeded, p50/p95 latency per endpoint, the
loaded edit p95 over the idle one (a ratio, which holds on any machine), and the server's resident memory before
the burst, right after it, and --settle seconds later. On this 2-core machine the clients share the CPU with the
server, which makes every figure a little worse than a remote visitor would see.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    """Resident memory of a process, in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Visitor:
    """One gradio_client client and the calls it makes (timed, in ms)."""

    def __init__(self, url: str) -> None:
        from gradio_client import Client
        self.client = Client(url, verbose=False)
        self.sliders = len(self.client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/edit"]
                           ["parameters"]) - 5  # seed, truncation, move x, move y, rotate, then the sliders

    def edit(self, rng: random.Random) -> None:
        alphas = [0.0] * self.sliders
        alphas[rng.randrange(self.sliders)] = rng.uniform(-2, 2)
        self.client.predict(rng.randrange(1000), 0.7, 0.0, 0.0, 0.0, *alphas, api_name="/edit")

    def mix(self, rng: random.Random) -> None:
        self.client.predict(rng.randrange(1000), None, rng.randrange(1000), None, 0.7, 0, api_name="/mix")


def timed(call, times: dict[str, list[float]], errors: list[str], name: str, *args) -> None:
    t0 = time.perf_counter()
    try:
        call(*args)
    except Exception as e:  # a failed call is counted, with its reason
        errors.append(f"{name}: {type(e).__name__}: {str(e)[:120]}")
        return
    times.setdefault(name, []).append((time.perf_counter() - t0) * 1000)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--edits", type=int, default=4, help="slider edits per client (each also makes one mix)")
    p.add_argument("--idle", type=int, default=30, help="edits on the idle server, for the baseline")
    p.add_argument("--settle", type=float, default=60.0, help="seconds after the burst to read memory again")
    p.add_argument("--port", type=int, default=7899)
    args = p.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py", "--no-monitor", "--device", "cpu", "--port", str(args.port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}/"
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the suite did not start")
                time.sleep(1)
        rng = random.Random(0)
        idle: dict[str, list[float]] = {}
        errors: list[str] = []
        one = Visitor(url)
        for _ in range(args.idle + 3):
            timed(one.edit, idle, errors, "edit", rng)
        idle["edit"] = idle.get("edit", [])[3:]  # the first calls warm the server up
        before = rss_mib(server.pid)
        visitors = [Visitor(url) for _ in range(args.clients)]
        loaded: dict[str, list[float]] = {}

        def visit(v: Visitor, seed: int) -> None:
            r = random.Random(seed)
            calls = ["mix"] + ["edit"] * args.edits
            r.shuffle(calls)
            for name in calls:
                timed(getattr(v, name), loaded, errors, name, r)

        threads = [threading.Thread(target=visit, args=(v, i)) for i, v in enumerate(visitors)]
        t0, server_cpu, client_cpu = time.perf_counter(), cpu_s(server.pid), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        server_cpu, client_cpu = cpu_s(server.pid) - server_cpu, time.process_time() - client_cpu
        after = rss_mib(server.pid)
        time.sleep(args.settle)
        settled = rss_mib(server.pid)
        total = args.clients * (1 + args.edits)
        print(f"{args.clients} clients, {total} calls in {wall:.1f} s: {total - len(errors)} succeeded, "
              f"{len(errors)} failed")
        for e in errors[:5]:
            print(f"  {e}")
        print(f"CPU during the burst: server {server_cpu:.1f} s, the clients {client_cpu:.1f} s (of {2 * wall:.0f} "
              f"core-seconds on {os.cpu_count()} cores)")
        print("\n| endpoint | calls | p50 ms | p95 ms |\n|---|---:|---:|---:|")
        print(f"| edit, idle server | {len(idle['edit'])} | {statistics.median(idle['edit']):.0f} | "
              f"{percentile(idle['edit'], 0.95):.0f} |")
        for name in ("edit", "mix"):
            ms = loaded.get(name, [])
            if ms:
                print(f"| {name}, under load | {len(ms)} | {statistics.median(ms):.0f} | {percentile(ms, 0.95):.0f} |")
        if loaded.get("edit"):
            ratio = percentile(loaded["edit"], 0.95) / percentile(idle["edit"], 0.95)
            print(f"\nedit p95 under load / idle: {ratio:.1f}x")
        print(f"server memory: {before:.0f} MiB before, {after:.0f} MiB after the burst, {settled:.0f} MiB "
              f"{args.settle:.0f} s later ({(settled - before) / before:+.1%})")
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
