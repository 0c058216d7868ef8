"""Named model sets: which checkpoint plays which role, and where it comes from (this module only loads).

A model set maps roles (generator, analyzer, ...) to checkpoints in our one format (`<stem>.safetensors` + `.json`).
A checkpoint resolves from, in order: `checkpoints/` in this repository, the local Hugging Face cache, then
`hf_hub_download` at the pinned revision (skipped when HF_HUB_OFFLINE is set). `load` is one registry look-up
(`core.checkpoints.load_pretrained`), which reads the file once and verifies its hash, names, shapes and dtypes;
a corrupt cached copy is downloaded again, and a corrupt download fails with a message that says what to do.

    embedded               SynthFaces models shipped in checkpoints/ (offline, CPU)
    ffhq                   official StyleGAN3-T FFHQ 1024 weights, converted to safetensors (see README)
    hf:owner/name[@rev]    a repository written by `python -m core.publish`
    <folder>               a folder holding latent_lab.json and its files (what `python -m core.build` writes)

    python -m core.hub list
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from core.checkpoints import CHECKPOINT_DIR, CheckpointError, CorruptCheckpointError, load_pretrained

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
    local: Optional[str] = None  # a set folder's own file (its .safetensors), used as it is


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
    "directions": Checkpoint("synthfaces_stylegan3_directions", "directions"),
    "analyzer": Checkpoint("synthfaces_analyzer", "face_analyzer"),
    "vae": Checkpoint("synthfaces_vae", "vae"),
    "ae": Checkpoint("synthfaces_ae", "vae"),
    "feature_vae": Checkpoint("synthfaces_feature_vae", "vae"),
    "feature_ae": Checkpoint("synthfaces_feature_ae", "vae"),
    "guided_vae": Checkpoint("synthfaces_guided_vae", "vae"),
    "nice": Checkpoint("synthfaces_nice", "nice"),
    "encoder": Checkpoint("synthfaces_encoder", "encoder"),
})


def model_set_names() -> list[str]:
    return ["embedded", "ffhq", "hf:owner/name[@revision]", "a folder holding latent_lab.json"]


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


def resolve(ckpt: Checkpoint, local_dir: Path = CHECKPOINT_DIR) -> Path:
    """Path of the .safetensors for `ckpt` (its .json beside it): checkpoints/, then the HF cache, then a download.
    Nothing is verified here; `load` verifies as it reads."""
    if ckpt.local:
        if not Path(ckpt.local).is_file():
            raise HubError(f"{ckpt.local} is missing from its model set folder; rebuild the set (python -m core.build)")
        return Path(ckpt.local)
    local = local_dir / f"{ckpt.name}.safetensors"
    if local.is_file():
        return local
    if not ckpt.repo_id:
        hint = (f"convert the official pickle: python -m core.stylegan3.convert NETWORK.pkl {local_dir} --name "
                f"{ckpt.name}, or set {FFHQ_REPO_ENV}=owner/name@revision to a Hub repo that holds it"
                if ckpt.name == FFHQ_NAME else "it is not published on the Hub; train it or restore the file")
        raise HubError(f"{ckpt.name} is not in {local_dir}: {hint}")
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    converted = _converted_path(ckpt)
    if converted.is_file():
        return converted
    try:
        return _fetch_pair(ckpt, local_only=True)
    except LocalEntryNotFoundError:
        if _env_flag("HF_HUB_OFFLINE"):
            raise HubError(f"{_where(ckpt)} is neither in {local_dir} nor in the Hugging Face cache, and "
                           f"HF_HUB_OFFLINE is set: run once with internet (unset HF_HUB_OFFLINE) or copy the files "
                           f"into {local_dir}") from None
    try:
        return _download_again(ckpt)
    except HubError as e:
        if not isinstance(e.__cause__, EntryNotFoundError):
            raise
    return _convert_official(ckpt, converted)  # the repository holds NVIDIA's pickle, not our safetensors


def _converted_path(ckpt: Checkpoint) -> Path:
    """Where the safetensors converted from a repository's official pickle are cached."""
    cache = _hub_kwargs()["cache_dir"] or str(Path.home() / ".cache" / "huggingface" / "hub")
    return (Path(cache) / "latent_lab_converted" / f"{ckpt.repo_id.replace('/', '--')}" / ckpt.revision
            / f"{ckpt.filename}.safetensors")


def _convert_official(ckpt: Checkpoint, out: Path) -> Path:
    """Download `<filename>.pkl` (NVIDIA's network pickle) and convert it once with the restricted converter."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    from core.stylegan3.convert import UnsafePickleError, convert_pickle
    try:
        pkl = _download(ckpt.repo_id, f"{ckpt.filename}.pkl", ckpt.revision, local_only=False)
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise HubError(f"{ckpt.repo_id}@{ckpt.revision} holds neither {ckpt.filename}.safetensors (converted) nor "
                       f"{ckpt.filename}.pkl (NVIDIA's pickle) ({type(e).__name__})") from e
    except Exception as e:  # network errors, in the HTTP client's own types
        raise HubError(f"downloading {ckpt.repo_id}@{ckpt.revision} ({ckpt.filename}.pkl) failed: "
                       f"{type(e).__name__}: {e}") from e
    try:
        return convert_pickle(pkl, out.parent, name=ckpt.filename)
    except (CheckpointError, UnsafePickleError) as e:
        raise HubError(f"{ckpt.repo_id}@{ckpt.revision}: {ckpt.filename}.pkl cannot be converted: {e}") from e


def _where(ckpt: Checkpoint) -> str:
    return f"{ckpt.repo_id}@{ckpt.revision} ({ckpt.filename}.safetensors)"


def _download_again(ckpt: Checkpoint) -> Path:
    """Download a checkpoint's files, replacing any cached copy."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    try:
        return _fetch_pair(ckpt, local_only=False, force=True)
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise HubError(f"{_where(ckpt)} does not exist on the Hub ({type(e).__name__}); check the repo id, "
                       f"revision and file name") from e
    except Exception as e:  # network errors (the HTTP client's own types), transfers that could not resume
        raise HubError(f"downloading {_where(ckpt)} failed: {type(e).__name__}: {e}. Check the connection "
                       f"(HF_ENDPOINT={os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) and try again"
                       ) from e


def _manifest_entries(manifest: Any, where: str) -> dict[str, dict[str, str]]:
    """The role entries of a manifest, checked: each a filename and a kind (strings)."""
    entries = manifest.get("models") if isinstance(manifest, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise HubError(f"{where}: {MANIFEST} must hold a 'models' object mapping roles to "
                       f"{{\"filename\": ..., \"kind\": ...}}")
    bad = [role for role, e in entries.items() if not (isinstance(e, dict) and isinstance(e.get("filename"), str)
                                                       and isinstance(e.get("kind"), str))]
    if bad:
        raise HubError(f"{where}: {MANIFEST} entries need a 'filename' and a 'kind' (strings); these do "
                       f"not: {', '.join(map(str, bad))}")
    return entries


def _folder_set(folder: Path) -> ModelSet:
    """A set folder (python -m core.build writes one): its manifest's roles, read from the folder itself."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise HubError(f"{folder} holds no {MANIFEST}: not a model set folder (python -m core.build writes one)"
                       ) from None
    except json.JSONDecodeError as e:
        raise HubError(f"{folder}/{MANIFEST} is not valid JSON ({e})") from e
    entries = _manifest_entries(manifest, str(folder))
    models = {role: Checkpoint(f"{folder.name}--{e['filename']}", e["kind"],
                               local=str(folder.resolve() / f"{Path(e['filename']).name}.safetensors"))
              for role, e in entries.items()}
    return ModelSet(str(folder), str(manifest.get("description", f"models in {folder}")), models)


def _user_set(spec: str) -> ModelSet:
    repo, _, revision = spec[3:].partition("@")
    if repo.count("/") != 1:
        raise HubError(f"{spec!r}: a Hub model set is written hf:owner/name or hf:owner/name@revision")
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        raise HubError(f"{spec!r} is not a valid Hub repository id: {e}") from None
    revision = revision or "main"
    path = _fetch_manifest(repo, revision)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HubError(f"{repo}@{revision}: {MANIFEST} is not valid JSON ({e})") from e
    entries = _manifest_entries(manifest, f"{repo}@{revision}")
    # Pin every file to the commit the manifest came from (its snapshot folder), so the set stays consistent.
    commit = path.parent.name
    models = {role: Checkpoint(f"{repo.replace('/', '--')}--{e['filename']}", e["kind"], repo, e["filename"], commit)
              for role, e in entries.items()}
    return ModelSet(spec, str(manifest.get("description", f"models from {repo}")), models)


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


def fetch_set(spec: str) -> Path:
    """Bring a Hub model set (hf:owner/name@rev) into the Hugging Face cache at its pinned revision, once, with a
    message and a progress bar (a Space does this at start); a later start finds it there without the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    repo, _, revision = spec.removeprefix("hf:").partition("@")
    try:
        return Path(snapshot_download(repo, revision=revision or "main", local_files_only=True, **_hub_kwargs()))
    except LocalEntryNotFoundError:
        if _env_flag("HF_HUB_OFFLINE"):
            raise HubError(f"{spec} is not in the Hugging Face cache and HF_HUB_OFFLINE is set") from None
    print(f"Latent Lab: fetching the model set {spec} into the Hugging Face cache (the first start only)", flush=True)
    try:
        return Path(snapshot_download(repo, revision=revision or "main", **_hub_kwargs()))
    except Exception as e:  # network errors, a repository or revision that does not exist, in the client's types
        raise HubError(f"could not fetch the model set {spec}: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
                       ) from e


def model_set(name: str) -> ModelSet:
    """The model set called `name`: 'embedded', 'ffhq' or 'hf:owner/name[@revision]'."""
    if name == "embedded":
        return EMBEDDED
    if name == "ffhq":
        return _ffhq()
    if name.startswith("hf:"):
        return _user_set(name)
    if Path(name).is_dir():
        return _folder_set(Path(name))
    raise HubError(f"unknown model set {name!r}; known: {', '.join(model_set_names())}")


def load(set_name: str, role: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the model playing `role` in a model set, shapes checked (e.g. load('embedded', 'generator'))."""
    models = model_set(set_name).models
    if role not in models:
        raise HubError(f"model set {set_name!r} has no {role!r}; it has: {', '.join(models) or 'nothing'}")
    return load_model(models[role], device)


def load_model(ckpt: Checkpoint, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load one checkpoint of a model set: resolved (checkpoints/, the cache, the Hub), then read once and checked;
    a corrupt cached copy is downloaded again once."""
    path = resolve(ckpt)
    try:
        return load_pretrained(path, device, kind=ckpt.kind)[0]
    except CorruptCheckpointError:
        if not ckpt.repo_id or path.parent == CHECKPOINT_DIR:
            raise
    path = _download_again(ckpt)  # a cached copy damaged on disk, or a bad transfer: one fresh download
    try:
        return load_pretrained(path, device, kind=ckpt.kind)[0]
    except CorruptCheckpointError as e:
        raise HubError(f"the download of {_where(ckpt)} is corrupt: {e}. Delete {path.parent} from the cache and "
                       f"try again; if it persists the file on the Hub is damaged") from e


@functools.lru_cache(maxsize=16)
def _load_frozen(ckpt: Checkpoint, device: str) -> torch.nn.Module:
    return load_model(ckpt, device).requires_grad_(False).eval()


def load_frozen(ckpt: Checkpoint, device: str | torch.device = "cpu") -> torch.nn.Module:
    """`load_model`, frozen and shared: the pages of one suite get the same module for a (checkpoint, device), so
    the generator is read and held once. Never train what this returns; `load_model` gives a private copy."""
    return _load_frozen(ckpt, str(torch.device(device)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.hub", description="Latent Lab model sets.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the named model sets")
    p.parse_args(argv)
    try:
        for name in ("embedded", "ffhq"):
            s = model_set(name)
            print(f"{name:<10} {s.description}")
            for role, c in s.models.items():
                print(f"  {role:<10} {c.name} ({c.kind})" + (f" <- {c.repo_id}@{c.revision}" if c.repo_id else ""))
        print("hf:owner/name[@revision]   a repository written by `python -m core.publish`")
        return 0
    except (HubError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
