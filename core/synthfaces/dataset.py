"""SynthFaces as data: an in-memory torch Dataset for training, and an exporter that writes PNGs plus labels."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from core.imaging import save_grid, to_pil
from core.synthfaces.factors import FACTOR_NAMES, FaceBatch
from core.synthfaces.render import LANDMARK_NAMES, render_faces

RENDER_CHUNK = 256


def iter_batches(identities: int, per_identity: int, resolution: int = 64, seed: int = 0, world_seed: int = 0,
                 chunk: int = RENDER_CHUNK, first_identity: int = 0, fast: bool = False) -> Iterator[FaceBatch]:
    """Render identities x per_identity faces (each identity's images consecutive), in chunks; deterministic."""
    if identities < 1 or per_identity < 1:
        raise ValueError("identities and per_identity must be >= 1")
    ids = torch.arange(first_identity, first_identity + identities).repeat_interleave(per_identity)
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        yield render_faces(part, seed=seed * 1_000_003 + start // chunk, resolution=resolution, world_seed=world_seed,
                           fast=fast)


class SynthFacesDataset(torch.utils.data.Dataset):
    """All images rendered once into memory: (image [3,R,R] in [0,1], identity, factors, landmarks)."""

    def __init__(self, identities: int, per_identity: int, resolution: int = 64, seed: int = 0,
                 world_seed: int = 0, first_identity: int = 0, fast: bool = False) -> None:
        batches = list(iter_batches(identities, per_identity, resolution, seed, world_seed,
                                    first_identity=first_identity, fast=fast))
        self.images = torch.cat([b.images for b in batches])
        self.identity = torch.cat([b.identity for b in batches])
        self.factors = torch.cat([b.factors for b in batches])
        self.landmarks = torch.cat([b.landmarks for b in batches])
        self.resolution = resolution

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "identity": self.identity[i], "factors": self.factors[i],
                "landmarks": self.landmarks[i]}


def export(out: str | Path, identities: int, per_identity: int, resolution: int = 64, seed: int = 0,
           world_seed: int = 0, progress: bool = True, fast: bool = False) -> Path:
    """Write `images/NNNNNNN.png` and `labels.jsonl` (file, identity, named factors, landmarks) under `out`."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    total = identities * per_identity
    index = 0
    with open(out / "labels.jsonl.tmp", "w") as labels, tqdm(total=total, disable=not progress, unit="img",
                                                            desc="SynthFaces") as bar:
        for batch in iter_batches(identities, per_identity, resolution, seed, world_seed, fast=fast):
            for k in range(batch.images.shape[0]):
                name = f"images/{index:07d}.png"
                to_pil(batch.images[k]).save(out / name)
                record = {"file": name, "identity": int(batch.identity[k]),
                          "factors": dict(zip(FACTOR_NAMES, [round(v, 6) for v in batch.factors[k].tolist()])),
                          "landmarks": [[round(x, 3), round(y, 3)] for x, y in batch.landmarks[k].tolist()]}
                labels.write(json.dumps(record) + "\n")
                index += 1
            bar.update(batch.images.shape[0])
    (out / "labels.jsonl.tmp").replace(out / "labels.jsonl")
    meta = {"resolution": resolution, "identities": identities, "per_identity": per_identity, "seed": seed,
            "world_seed": world_seed, "factor_names": list(FACTOR_NAMES), "landmark_names": list(LANDMARK_NAMES)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


def contact_sheet(path: str | Path, count: int = 48, nrow: int = 12, resolution: int = 64, seed: int = 0) -> Path:
    """A PNG grid of `count` different identities, to look at the world at a glance."""
    batch = render_faces(torch.arange(count), seed=seed, resolution=resolution)
    return save_grid(batch.images, path, nrow=nrow)
