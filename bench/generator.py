"""Generator throughput: ms per image, images per second and peak memory, per config, resolution, batch, device, mode.

    python -m bench.generator                       # CPU rows (and CUDA rows when a GPU is present)
    python -m bench.generator --device cuda --resolutions 1024 --batches 1,8 --modes fp32,fp16,compile
    python -m bench.generator --quick               # one tiny row, a smoke test

Modes: fp32 (default ops), reference (zero-insertion reference ops), fp16 (the official mixed-precision layers,
CUDA only), compile (torch.compile of the synthesis network). Each row runs in a fresh process so that peak
memory (CUDA: max allocated; CPU: peak resident set) belongs to that row alone.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_row(row: dict) -> dict:
    """Time one (config, resolution, batch, device, mode) in this process."""
    import torch

    from core.stylegan3 import Generator, generator_kwargs

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(row["device"])
    overrides = dict(row.get("overrides") or {})
    G = Generator(**generator_kwargs(row["cfg"], row["resolution"], **overrides))
    G = G.eval().requires_grad_(False).to(device)
    z = torch.randn(row["batch"], G.z_dim, device=device)
    ws = G.mapping(z, truncation_psi=0.7)
    kwargs = {}
    synth = G.synthesis
    if row["mode"] == "reference":
        kwargs["reference_ops"] = True
    elif row["mode"] in ("fp32", "compile"):
        kwargs["force_fp32"] = True
    if row["mode"] == "compile":
        synth = torch.compile(G.synthesis, dynamic=False)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(row["warmup"]):
            synth(ws, **kwargs)
        sync()
        warm_s = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(row["iters"]):
            synth(ws, **kwargs)
        sync()
        elapsed = time.perf_counter() - t0
    images = row["iters"] * row["batch"]
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(row, ms_per_image=1000 * elapsed / images, images_per_s=images / elapsed, peak_mib=peak_mib,
                warmup_s=warm_s, params=sum(p.numel() for p in G.parameters()),
                device_name=(torch.cuda.get_device_name() if device.type == "cuda"
                             else f"cpu x{torch.get_num_threads()}"))


def _spawn(row: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--row", json.dumps(row)], capture_output=True, text=True)
    if out.returncode != 0:
        return dict(row, error=(out.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def format_table(results: list[dict]) -> str:
    """Fixed-width table of benchmark rows."""
    head = f"{'config':<12}{'res':>6}{'batch':>6}  {'device':<20}{'mode':<10}{'ms/img':>10}{'img/s':>9}{'peak MiB':>10}"
    lines = [head, "-" * len(head)]
    for r in results:
        prefix = (f"{r['cfg']:<12}{r['resolution']:>6}{r['batch']:>6}  "
                  f"{r.get('device_name', r['device']):<20}{r['mode']:<10}")
        if "error" in r:
            lines.append(prefix + f"  error: {r['error'][:60]}")
        else:
            lines.append(prefix + f"{r['ms_per_image']:>10.1f}{r['images_per_s']:>9.2f}{r['peak_mib']:>10.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--row", help=argparse.SUPPRESS)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--configs", default="stylegan3-t,stylegan3-r")
    p.add_argument("--resolutions", default="64,256,1024")
    p.add_argument("--batches", default="1")
    p.add_argument("--modes", default="fp32,reference", help="fp32, reference, fp16 (cuda), compile")
    p.add_argument("--iters", type=int, default=0, help="timed iterations (default: by resolution)")
    p.add_argument("--quick", action="store_true", help="one tiny CPU row (smoke test)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    if args.row:
        print(json.dumps(run_row(json.loads(args.row))))
        return 0

    import torch
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    rows = []
    if args.quick:
        rows.append(dict(cfg="stylegan3-t", resolution=32, batch=1, device="cpu", mode="fp32", iters=2, warmup=1,
                         overrides=dict(channel_base=1024, channel_max=32, z_dim=32, w_dim=32)))
    else:
        for device in devices:
            for cfg in args.configs.split(","):
                for res in map(int, args.resolutions.split(",")):
                    for batch in map(int, args.batches.split(",")):
                        for mode in args.modes.split(","):
                            if mode == "fp16" and device != "cuda":
                                continue
                            if device == "cpu" and res >= 1024 and mode == "reference":
                                continue
                            iters = args.iters or (20 if device == "cuda" else (5 if res <= 64 else 1))
                            warmup = 3 if device == "cuda" or res <= 256 else 1
                            rows.append(dict(cfg=cfg, resolution=res, batch=batch, device=device, mode=mode,
                                             iters=iters, warmup=warmup))
    results = []
    for row in rows:
        results.append(_spawn(row))
        print(format_table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    raise SystemExit(main())
