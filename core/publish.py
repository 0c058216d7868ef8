"""Publish a training run's model to the Hugging Face Hub, with a manifest and a model card.

    python -m core.publish --run runs/NAME --repo user/name [--private]

The run's newest checkpoint is turned into its deployable model by the training loop that wrote it (each loop's
`export_model`), saved with `save_pretrained`, and uploaded beside `latent_lab.json` (the manifest that makes the
repository a model set: `--models hf:user/name@<commit>`), the run's config, its latest sample grid and a model
card. This module sits above training and the hub; nothing below imports it.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from core.checkpoints import CheckpointError
from core.hub import MANIFEST, HubError
from core.train.rundir import RunDir

# run checkpoint kind -> the training module whose export_model(tensors, meta) gives (role, model)
EXPORTERS = {"gan_training": "core.train.gan", "distill_training": "core.train.distill",
             "analyzer_training": "core.train.analyzer", "nice_training": "core.train.nice",
             "vae_training": "core.train.vae"}


def export_run(run_dir: str | Path) -> tuple[str, Any, dict[str, Any]]:
    """(role, model, notes) of the deployable model in a run's newest checkpoint."""
    run = RunDir(run_dir)
    latest = run.latest()
    if latest is None:
        raise HubError(f"{run.path} has no checkpoint to publish")
    tensors, meta = latest
    kind = meta.get("kind")
    if kind not in EXPORTERS:
        raise HubError(f"{run.path}: checkpoints of kind {kind!r} cannot be published")
    role, model = importlib.import_module(EXPORTERS[kind]).export_model(tensors, meta)
    return role, model, {"trained_with": meta.get("config", {}), "step": meta["step"]}


def stage_run(run_dir: str | Path, repo_id: str, out: str | Path) -> Path:
    """Write the folder that `push` uploads: model files, manifest, config, sample grid and a model card."""
    run_dir, out = Path(run_dir), Path(out)
    role, model, notes = export_run(run_dir)
    model.save_pretrained(out / role, **notes)
    (out / MANIFEST).write_text(json.dumps({"description": f"Latent Lab models from run {run_dir.name}",
                                            "models": {role: {"filename": role, "kind": model.kind}}}, indent=2))
    shutil.copy(run_dir / "config.yaml", out / "config.yaml")
    samples = sorted((run_dir / "samples").glob("*.png"))
    if samples:
        shutil.copy(samples[-1], out / "samples.png")
    metrics = {k: v for r in RunDir(run_dir).records() for k, v in r.items() if k != "time"}  # each one's last
    card = {"library_name": "latent-lab", "tags": ["latent-lab", model.kind, "synthfaces"], "license": "mit"}
    lines = ["---", yaml.safe_dump(card, sort_keys=False).strip(), "---", "",
             f"# {repo_id}", "", f"A Latent Lab {model.kind} ({role}) from run `{run_dir.name}`, "
             f"step {notes['step']}.", "",
             "Load it with `core.hub.load('hf:" + repo_id + "', '" + role + "')` in Latent Lab.", ""]
    if samples:
        lines += ["![samples](samples.png)", ""]
    if metrics:
        lines += ["## Last logged metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in sorted(metrics.items()) if isinstance(v, (int, float))]
        lines.append("")
    lines += ["## Training config", "", "```yaml", (run_dir / "config.yaml").read_text().strip(), "```", ""]
    (out / "README.md").write_text("\n".join(lines))
    return out


def push(run_dir: str | Path, repo_id: str, private: bool = False, api: Any = None) -> str:
    """Stage a run and upload it to `repo_id`; returns the commit id (pin it as hf:repo@commit)."""
    from huggingface_hub import HfApi
    api = api or HfApi(endpoint=os.environ.get("HF_ENDPOINT"))
    with tempfile.TemporaryDirectory() as tmp:
        stage_run(run_dir, repo_id, tmp)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=tmp, repo_id=repo_id,
                                 commit_message=f"Latent Lab: publish {Path(run_dir).name}")
    return getattr(info, "oid", None) or str(info)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.publish", description="Publish a run's model to the Hub.")
    p.add_argument("--run", required=True, help="the run folder, e.g. runs/distill_synthfaces64")
    p.add_argument("--repo", required=True, help="owner/name on the Hub")
    p.add_argument("--private", action="store_true")
    args = p.parse_args(argv)
    try:
        commit = push(args.run, args.repo, args.private)
    except (HubError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"pushed {args.run} to {args.repo}; load it pinned as hf:{args.repo}@{commit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
