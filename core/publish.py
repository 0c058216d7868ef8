"""Publish to the Hugging Face Hub through its upload API (never git): a run's model, a whole model set, or the app.

    python -m core.publish run --run runs/NAME --repo owner/name [--private]
    python -m core.publish set [--set embedded] --repo owner/name [--private]
    python -m core.publish space --space owner/name [--models owner/name-models[@rev]] [--hardware t4-small]
                                 [--dry-run]

`run`: the run's newest checkpoint becomes its deployable model (each loop's `export_model`), uploaded beside
`latent_lab.json` (the manifest that makes the repository a model set: `--models hf:owner/name@<commit>`), the
run's config, its latest sample grid and a model card. `set`: every role of a model set, one manifest, one model
card. `space`: publishes the set (or checks the given pinned one), uploads the app without its checkpoints to a
Gradio Space, and only then points the Space at the set's commit (`LATENT_LAB_MODELS=hf:owner/name@<commit>`), so a
Space never points at a half-published set. The Hub stores large files itself (LFS or Xet). This module sits above
training and the hub; nothing below imports it.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from core.checkpoints import CheckpointError
from core import hub
from core.hub import MANIFEST, HubError
from core.train.rundir import RunDir

# run checkpoint kind -> the training module whose export_model(tensors, meta) gives (role, model)
EXPORTERS = {"gan_training": "core.train.gan", "distill_training": "core.train.distill",
             "analyzer_training": "core.train.analyzer", "nice_training": "core.train.nice",
             "vae_training": "core.train.vae", "encoder_training": "core.train.encoder"}


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


ROOT = Path(__file__).resolve().parent.parent
MAX_FILE = 10 * 1024 * 1024  # what the Hub takes as a plain file; the app's files stay under it
SPACE_PARTS = ("app.py", "README.md", "requirements.txt", "pyproject.toml", "apps", "core", "configs", "docs",
               "examples")  # what a Space needs to run the suite (no tests, benchmarks or tools)
HEAVY = (".safetensors", ".pkl", ".onnx", ".pt", ".pth", ".bin")  # weights travel in the model repository
ATTEMPTS = 3  # an upload that fails (a dropped connection, a 5xx) is tried again this many times in all


def api_for(api: Any = None) -> Any:
    """The HfApi to publish with (HF_ENDPOINT is read at call time)."""
    from huggingface_hub import HfApi
    return api or HfApi(endpoint=os.environ.get("HF_ENDPOINT"))


def require_token(api: Any) -> None:
    """Refuse, before any upload, to publish without a Hugging Face token."""
    from huggingface_hub import get_token
    if not (getattr(api, "token", None) or get_token()):
        raise HubError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN to a token with write "
                       "access (https://huggingface.co/settings/tokens)")


def retried(what: str, call: Callable[[], Any], attempts: int = ATTEMPTS) -> Any:
    """`call()`, tried again on a failed transfer (a dropped connection, a server error); a refusal that will not
    change (a repository that does not exist, no access) is not retried."""
    from huggingface_hub.errors import HfHubHTTPError
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (HfHubHTTPError, OSError, RuntimeError, ValueError) as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if attempt == attempts or (status is not None and status < 500 and status != 429):
                raise HubError(f"{what} failed after {attempt} attempt(s): {type(e).__name__}: "
                               f"{str(e).splitlines()[0][:300]}") from e
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def upload(api: Any, folder: Path, repo_id: str, repo_type: str, message: str) -> str:
    """Upload a staged folder as one commit (retried); returns the commit id."""
    info = retried(f"uploading to {repo_type} {repo_id}", lambda: api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message=message))
    return getattr(info, "oid", None) or str(info)


def push(run_dir: str | Path, repo_id: str, private: bool = False, api: Any = None) -> str:
    """Stage a run and upload it to `repo_id`; returns the commit id (pin it as hf:repo@commit)."""
    api = api_for(api)
    with tempfile.TemporaryDirectory() as tmp:
        stage_run(run_dir, repo_id, tmp)
        retried(f"creating {repo_id}", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
        return upload(api, Path(tmp), repo_id, "model", f"Latent Lab: publish {Path(run_dir).name}")


def stage_set(set_name: str, repo_id: str, out: str | Path) -> Path:
    """Write the folder of a whole model set: every role's checkpoint as `<role>.safetensors` + `.json`, the
    manifest naming them, and a model card listing the roles."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_set = hub.model_set(set_name)
    entries, rows = {}, []
    for role, ckpt in model_set.models.items():
        path = hub.resolve(ckpt)
        for suffix in (".safetensors", ".json"):
            shutil.copy(path.with_suffix(suffix), out / f"{role}{suffix}")
        entries[role] = {"filename": role, "kind": ckpt.kind}
        rows.append(f"| {role} | {ckpt.kind} | {path.stat().st_size / 1e6:.1f} MB |")
    (out / MANIFEST).write_text(json.dumps({"description": f"Latent Lab model set '{set_name}': "
                                                           f"{model_set.description}", "models": entries}, indent=2))
    card = {"library_name": "latent-lab", "tags": ["latent-lab", "model-set"], "license": "mit"}
    (out / "README.md").write_text("\n".join([
        "---", yaml.safe_dump(card, sort_keys=False).strip(), "---", "", f"# {repo_id}", "",
        f"The Latent Lab model set `{set_name}` ({model_set.description}): one manifest (`{MANIFEST}`) naming "
        f"every role. Serve it with `python app.py --models hf:{repo_id}@<commit>`.", "",
        "| role | kind | size |", "|---|---|---:|", *rows, ""]))
    return out


def publish_set(set_name: str, repo_id: str, private: bool = False, api: Any = None) -> str:
    """Upload every role of a model set to one model repository; returns the commit id."""
    api = api_for(api)
    require_token(api)
    with tempfile.TemporaryDirectory() as tmp:
        stage_set(set_name, repo_id, tmp)
        retried(f"creating {repo_id}", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
        return upload(api, Path(tmp), repo_id, "model", f"Latent Lab: model set {set_name}")


def app_files(root: Path = ROOT) -> list[Path]:
    """The files a Space needs, relative to `root`: the code, configs, README (with its Space header),
    requirements, docs and the example run, without weights, caches or anything over MAX_FILE."""
    out = []
    for part in SPACE_PARTS:
        base = root / part
        for path in ([base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []):
            rel = path.relative_to(root)
            if (path.is_file() and path.suffix not in HEAVY + (".pyc", ".pyi") and "checkpoints" not in rel.parts
                    and "__pycache__" not in rel.parts and path.stat().st_size <= MAX_FILE):
                out.append(rel)
    return out


def stage_app(out: Path, root: Path = ROOT) -> Path:
    for rel in app_files(root):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, out / rel)
    return out


def split_pin(spec: str) -> tuple[str, Optional[str]]:
    repo, _, revision = spec.removeprefix("hf:").partition("@")
    return repo, revision or None


def publish_space(space: str, models: Optional[str] = None, set_name: str = "embedded", hardware: Optional[str] = None,
                  private: bool = False, api: Any = None, root: Path = ROOT) -> dict[str, str]:
    """Publish the model set (or check the pinned one given as owner/name@rev), upload the app to a Gradio Space,
    then set its LATENT_LAB_MODELS to the set's commit (and request `hardware`). Returns what was published."""
    api = api_for(api)
    require_token(api)
    models_repo, revision = split_pin(models or f"{space}-models")
    if revision:  # an existing set, pinned: it must be there, manifest and all
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
        try:
            info = api.model_info(models_repo, revision=revision)
        except RevisionNotFoundError:
            raise HubError(f"{models_repo} has no revision {revision!r}: give a commit, branch or tag that exists, "
                           f"or leave out @revision to publish the {set_name} set there") from None
        except RepositoryNotFoundError:
            raise HubError(f"model repository {models_repo} does not exist (or is private to another account)"
                           ) from None
        if MANIFEST not in {s.rfilename for s in info.siblings or []}:
            raise HubError(f"{models_repo}@{revision} holds no {MANIFEST}: it is not a Latent Lab model set")
        commit = info.sha or revision
    else:
        commit = publish_set(set_name, models_repo, private, api)
    retried(f"creating Space {space}", lambda: api.create_repo(space, repo_type="space", space_sdk="gradio",
                                                                private=private, exist_ok=True))
    sdk = api.space_info(space).sdk
    if sdk != "gradio":
        raise HubError(f"Space {space} exists with the {sdk!r} SDK; Latent Lab is a gradio Space: pick another name "
                       f"or change that Space's SDK. Its model set was published and is not pointed at")
    with tempfile.TemporaryDirectory() as tmp:
        app_commit = upload(api, stage_app(Path(tmp), root), space, "space", "Latent Lab: the app")
    pointer = f"hf:{models_repo}@{commit}"
    retried(f"setting {space}'s LATENT_LAB_MODELS", lambda: api.add_space_variable(
        space, "LATENT_LAB_MODELS", pointer, description="the model set this Space serves (core.publish space)"))
    if hardware:
        retried(f"requesting {hardware} for {space}", lambda: api.request_space_hardware(space, hardware))
    return {"space": space, "space_commit": app_commit, "models": pointer}


def plan(space: str, models: Optional[str], set_name: str, root: Path = ROOT) -> str:
    """What `space` would upload, with sizes (the dry run)."""
    lines = [f"Space {space} (gradio), the app:"]
    total = 0
    for rel in app_files(root):
        size = (root / rel).stat().st_size
        total += size
        lines.append(f"  {size / 1024:10.1f} KiB  {rel}")
    lines.append(f"  {total / 1e6:10.2f} MB in {len(app_files(root))} files (nothing over {MAX_FILE // 2 ** 20} MiB, "
                 f"no weights)")
    repo, revision = split_pin(models or f"{space}-models")
    if revision:
        lines.append(f"model set: the existing {repo}@{revision} (checked, not uploaded)")
    else:
        lines.append(f"model repository {repo}, the '{set_name}' set:")
        total = 0
        for role, ckpt in hub.model_set(set_name).models.items():
            path = hub.resolve(ckpt)
            size = path.stat().st_size + path.with_suffix(".json").stat().st_size
            total += size
            lines.append(f"  {size / 1e6:10.2f} MB  {role} ({ckpt.kind})")
        lines.append(f"  {total / 1e6:10.2f} MB in all, plus {MANIFEST} and a model card")
    lines.append(f"then: LATENT_LAB_MODELS=hf:{repo}@<{'that' if revision else 'the new'} commit> on the Space")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.publish", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="a run's model, with a manifest and a model card")
    r.add_argument("--run", required=True, help="the run folder, e.g. runs/distill_synthfaces64")
    r.add_argument("--repo", required=True, help="owner/name on the Hub")
    s = sub.add_parser("set", help="every role of a model set, one manifest")
    s.add_argument("--set", default="embedded", dest="set_name")
    s.add_argument("--repo", required=True)
    sp = sub.add_parser("space", help="the app to a Gradio Space, pointed at its model set")
    sp.add_argument("--space", required=True, help="owner/name of the Space")
    sp.add_argument("--models", help="owner/name of the model repository (default <space>-models), or "
                                     "owner/name@rev to serve an existing set without publishing one")
    sp.add_argument("--set", default="embedded", dest="set_name", help="the model set to publish")
    sp.add_argument("--hardware", help="e.g. t4-small (the embedded set runs on the free cpu-basic)")
    sp.add_argument("--dry-run", action="store_true", help="print what would be uploaded, with sizes")
    for q in (r, s, sp):
        q.add_argument("--private", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.command == "run":
            commit = push(args.run, args.repo, args.private)
            print(f"pushed {args.run} to {args.repo}; load it pinned as hf:{args.repo}@{commit}")
        elif args.command == "set":
            commit = publish_set(args.set_name, args.repo, args.private)
            print(f"published the {args.set_name} set to {args.repo}; serve it as hf:{args.repo}@{commit}")
        elif args.dry_run:
            print(plan(args.space, args.models, args.set_name))
        else:
            done = publish_space(args.space, args.models, args.set_name, args.hardware, args.private)
            print(f"Space {done['space']} at {done['space_commit']}, serving {done['models']}")
    except (HubError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
