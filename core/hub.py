"""Named model sets, and checkpoints from and to the Hugging Face Hub.

A model set maps roles (generator, analyzer, ...) to checkpoints in our one format (`<stem>.safetensors` + `.json`).
A checkpoint resolves from, in order: `checkpoints/` in this repository, the local Hugging Face cache, then
`hf_hub_download` at the pinned revision (skipped when HF_HUB_OFFLINE is set). Every file is opened and checked
before it is returned, so a corrupt download fails here with a message that says what to do.

    embedded               SynthFaces models shipped in checkpoints/ (offline, CPU)
    ffhq                   official StyleGAN3-T FFHQ 1024 weights, converted to safetensors (see README)
    hf:owner/name[@rev]    a repository written by `python -m core.hub push`

    python -m core.hub push --run runs/NAME --repo user/name [--private]
    python -m core.hub list
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

from core.checkpoints import CHECKPOINT_DIR, CheckpointError, load_checkpoint, save_checkpoint

MANIFEST = "latent_lab.json"
FFHQ_REPO_ENV = "LATENT_LAB_FFHQ_REPO"
FFHQ_NAME = "stylegan3-t-ffhq-1024x1024"


class HubError(RuntimeError):
    """A model set or checkpoint could not be resolved; the message says why and what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: its local name in checkpoints/, and where on the Hub it lives (if anywhere)."""

    name: str
    kind: str
    repo_id: Optional[str] = None
    filename: Optional[str] = None  # stem inside the repo; <filename>.safetensors and <filename>.json
    revision: str = "main"


@dataclass(frozen=True)
class ModelSet:
    name: str
    description: str
    models: dict[str, Checkpoint] = field(default_factory=dict)


def _ffhq() -> ModelSet:
    repo, _, revision = os.environ.get(FFHQ_REPO_ENV, "").partition("@")
    return ModelSet("ffhq", "official StyleGAN3-T FFHQ 1024 generator (converted to safetensors); InsightFace for "
                            "faces", {"generator": Checkpoint(FFHQ_NAME, "stylegan3", repo or None, FFHQ_NAME,
                                                              revision or "main")})


EMBEDDED = ModelSet("embedded", "SynthFaces models shipped in checkpoints/ (offline, CPU)", {
    "generator": Checkpoint("synthfaces_stylegan3", "stylegan3"),
    "analyzer": Checkpoint("synthfaces_analyzer", "face_analyzer"),
    "vae": Checkpoint("synthfaces_vae", "vae"),
    "nice": Checkpoint("synthfaces_nice", "nice"),
})


def model_set_names() -> list[str]:
    return ["embedded", "ffhq", "hf:owner/name[@revision]"]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_kwargs() -> dict[str, Any]:
    """Endpoint and cache read at call time (huggingface_hub reads them only once, at import)."""
    cache = os.environ.get("HF_HUB_CACHE") or (Path(os.environ["HF_HOME"]) / "hub" if "HF_HOME" in os.environ
                                               else None)
    return {"endpoint": os.environ.get("HF_ENDPOINT"), "cache_dir": str(cache) if cache else None}


def _download(repo_id: str, filename: str, revision: str, local_only: bool, force: bool = False) -> Path:
    from huggingface_hub import hf_hub_download
    return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=local_only,
                                force_download=force, **_hub_kwargs()))


def _fetch_pair(ckpt: Checkpoint, local_only: bool, force: bool = False) -> Path:
    path = _download(ckpt.repo_id, f"{ckpt.filename}.safetensors", ckpt.revision, local_only, force)
    _download(ckpt.repo_id, f"{ckpt.filename}.json", ckpt.revision, local_only, force)
    return path


def _checked(path: Path, ckpt: Checkpoint) -> Path:
    """Open the checkpoint (catches truncation and corruption) and check its kind; returns the path."""
    _, config = load_checkpoint(path)
    if config.get("kind") != ckpt.kind:
        raise CheckpointError(f"{path} holds a {config.get('kind')!r} model, not the {ckpt.kind!r} expected")
    return path


def resolve(ckpt: Checkpoint, local_dir: Path = CHECKPOINT_DIR) -> Path:
    """Path of a checked .safetensors for `ckpt`: checkpoints/, then the HF cache, then a download."""
    local = local_dir / f"{ckpt.name}.safetensors"
    if local.is_file():
        return _checked(local, ckpt)
    if not ckpt.repo_id:
        hint = (f"convert the official pickle: python -m core.stylegan3.convert NETWORK.pkl {local_dir} --name "
                f"{ckpt.name}, or set {FFHQ_REPO_ENV}=owner/name@revision to a Hub repo that holds it"
                if ckpt.name == FFHQ_NAME else "it is not published on the Hub; train it or restore the file")
        raise HubError(f"{ckpt.name} is not in {local_dir}: {hint}")
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    where = f"{ckpt.repo_id}@{ckpt.revision} ({ckpt.filename}.safetensors)"
    try:
        path = _fetch_pair(ckpt, local_only=True)
        return _checked(path, ckpt)
    except LocalEntryNotFoundError:
        if _env_flag("HF_HUB_OFFLINE"):
            raise HubError(f"{where} is neither in {local_dir} nor in the Hugging Face cache, and HF_HUB_OFFLINE is "
                           f"set: run once with internet (unset HF_HUB_OFFLINE) or copy the files into {local_dir}"
                           ) from None
    except CheckpointError:
        pass  # a corrupt cached copy: download it again below
    try:
        path = _fetch_pair(ckpt, local_only=False, force=True)
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise HubError(f"{where} does not exist on the Hub ({type(e).__name__}); check the repo id, revision "
                       f"and file name") from e
    except Exception as e:  # network errors (the HTTP client's own types), transfers that could not resume
        raise HubError(f"downloading {where} failed: {type(e).__name__}: {e}. Check the connection (HF_ENDPOINT="
                       f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) and try again") from e
    try:
        return _checked(path, ckpt)
    except CheckpointError as e:
        raise HubError(f"the download of {where} is corrupt: {e}. Delete {path.parent} from the cache and try "
                       f"again; if it persists the file on the Hub is damaged") from e


def _user_set(spec: str) -> ModelSet:
    repo, _, revision = spec[3:].partition("@")
    if repo.count("/") != 1:
        raise HubError(f"{spec!r}: a Hub model set is written hf:owner/name or hf:owner/name@revision")
    revision = revision or "main"
    path = _fetch_manifest(repo, revision)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HubError(f"{repo}@{revision}: {MANIFEST} is not valid JSON ({e})") from e
    # Pin every file to the commit the manifest came from (its snapshot folder), so the set stays consistent.
    commit = path.parent.name
    models = {role: Checkpoint(f"{repo.replace('/', '--')}--{entry['filename']}", entry["kind"], repo,
                               entry["filename"], commit)
              for role, entry in manifest.get("models", {}).items()}
    return ModelSet(spec, manifest.get("description", f"models from {repo}"), models)


def _fetch_manifest(repo: str, revision: str) -> Path:
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    try:
        return _download(repo, MANIFEST, revision, local_only=True)
    except LocalEntryNotFoundError:
        if _env_flag("HF_HUB_OFFLINE"):
            raise HubError(f"hf:{repo}@{revision} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: run "
                           f"once with internet") from None
    try:
        return _download(repo, MANIFEST, revision, local_only=False)
    except RevisionNotFoundError as e:
        raise HubError(f"hf:{repo}@{revision}: that revision does not exist in {repo}") from e
    except (RepositoryNotFoundError, EntryNotFoundError) as e:
        raise HubError(f"hf:{repo}@{revision} does not exist or is not a Latent Lab model repository (no "
                       f"{MANIFEST}): {type(e).__name__}") from e
    except Exception as e:  # network errors, in the HTTP client's own types
        raise HubError(f"could not reach the Hub for hf:{repo}@{revision}: {type(e).__name__}: {e}") from e


def model_set(name: str) -> ModelSet:
    """The model set called `name`: 'embedded', 'ffhq' or 'hf:owner/name[@revision]'."""
    if name == "embedded":
        return EMBEDDED
    if name == "ffhq":
        return _ffhq()
    if name.startswith("hf:"):
        return _user_set(name)
    raise HubError(f"unknown model set {name!r}; known: {', '.join(model_set_names())}")


def load(set_name: str, role: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the model playing `role` in a model set, shapes checked (e.g. load('embedded', 'generator'))."""
    models = model_set(set_name).models
    if role not in models:
        raise HubError(f"model set {set_name!r} has no {role!r}; it has: {', '.join(models) or 'nothing'}")
    ckpt = models[role]
    path = resolve(ckpt)
    if ckpt.kind == "stylegan3":
        from core.stylegan3 import Generator
        return Generator.from_pretrained(path, device=device)
    if ckpt.kind == "face_analyzer":
        from core.analysis import FaceAnalyzer
        return FaceAnalyzer.from_pretrained(path, device=device)
    if ckpt.kind == "vae":
        from core.vae import VAE
        return VAE.from_pretrained(path, device=device)
    if ckpt.kind == "nice":
        from core.nice import NICE
        return NICE.from_pretrained(path, device=device)
    raise HubError(f"no loader for checkpoints of kind {ckpt.kind!r}")


@functools.lru_cache(maxsize=16)
def _load_frozen(set_name: str, role: str, device: str) -> torch.nn.Module:
    return load(set_name, role, device).requires_grad_(False).eval()


def load_frozen(set_name: str, role: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """`load`, frozen and shared: the apps of one suite get the same module for a (set, role, device), so the
    generator is read and held once. Never train what this returns; `load` gives a private copy."""
    return _load_frozen(set_name, role, str(torch.device(device)))


# ---- publishing -------------------------------------------------------------------------------------------------

def export_run(run_dir: str | Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(role, tensors, config) of the deployable model in a run's newest checkpoint."""
    from core.train.rundir import RunDir
    run = RunDir(run_dir)
    latest = run.latest()
    if latest is None:
        raise HubError(f"{run.path} has no checkpoint to publish")
    tensors, meta = latest
    kind, cfg = meta.get("kind"), meta.get("config", {})
    if kind == "gan_training":
        from core.train.gan import GanConfig
        gan = GanConfig(**cfg)
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("G_ema.")}
        return "generator", state, {"kind": "stylegan3", "init_kwargs": gan.generator_kwargs(), "trained_with": cfg,
                                    "step": meta["step"]}
    if kind == "analyzer_training":
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        init = {k: cfg[k] for k in ("resolution", "width", "embed_dim", "hidden")}
        init["landmark_stride"] = cfg.get("landmark_stride", 4)  # runs from before the refinement stage are 4
        return "analyzer", state, {"kind": "face_analyzer", "init_kwargs": init, "trained_with": cfg,
                                   "step": meta["step"]}
    if kind == "nice_training":
        state = {k[5:]: v for k, v in tensors.items() if k.startswith("nice.")}
        init = dict(dim=int(state["log_scale"].numel()), **{k: cfg[k] for k in ("id_dim", "layers", "hidden", "depth")})
        return "nice", state, {"kind": "nice", "init_kwargs": init, "generator": cfg.get("generator"),
                               "trained_with": cfg, "step": meta["step"]}
    raise HubError(f"{run.path}: checkpoints of kind {kind!r} cannot be published yet")


def _last_metrics(run_dir: Path) -> dict[str, float]:
    merged: dict[str, float] = {}
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            merged.update(json.loads(line))
        except json.JSONDecodeError:
            continue
    return {k: v for k, v in merged.items() if k not in ("time",)}


def stage_run(run_dir: str | Path, repo_id: str, out: str | Path) -> Path:
    """Write the folder that `push` uploads: model files, manifest, config, sample grid and a model card."""
    run_dir, out = Path(run_dir), Path(out)
    role, tensors, config = export_run(run_dir)
    save_checkpoint(out / f"{role}.safetensors", tensors, config)
    (out / MANIFEST).write_text(json.dumps({"description": f"Latent Lab models from run {run_dir.name}",
                                            "models": {role: {"filename": role, "kind": config["kind"]}}}, indent=2))
    shutil.copy(run_dir / "config.yaml", out / "config.yaml")
    samples = sorted((run_dir / "samples").glob("*.png"))
    if samples:
        shutil.copy(samples[-1], out / "samples.png")
    metrics = _last_metrics(run_dir)
    card = {"library_name": "latent-lab", "tags": ["latent-lab", config["kind"], "synthfaces"], "license": "mit"}
    lines = ["---", yaml.safe_dump(card, sort_keys=False).strip(), "---", "",
             f"# {repo_id}", "", f"A Latent Lab {config['kind']} ({role}) from run `{run_dir.name}`, "
             f"step {config['step']}.", "",
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
    p = argparse.ArgumentParser(prog="python -m core.hub", description="Latent Lab model sets and the HF Hub.")
    sub = p.add_subparsers(dest="command", required=True)
    push_p = sub.add_parser("push", help="publish a run's model with a model card")
    push_p.add_argument("--run", required=True)
    push_p.add_argument("--repo", required=True)
    push_p.add_argument("--private", action="store_true")
    sub.add_parser("list", help="the named model sets")
    args = p.parse_args(argv)
    try:
        if args.command == "list":
            for name in ("embedded", "ffhq"):
                s = model_set(name)
                print(f"{name:<10} {s.description}")
                for role, c in s.models.items():
                    print(f"  {role:<10} {c.name} ({c.kind})" + (f" <- {c.repo_id}@{c.revision}" if c.repo_id else ""))
            print("hf:owner/name[@revision]   a repository written by `python -m core.hub push`")
            return 0
        commit = push(args.run, args.repo, args.private)
        print(f"pushed {args.run} to {args.repo}; load it pinned as hf:{args.repo}@{commit}")
        return 0
    except (HubError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
