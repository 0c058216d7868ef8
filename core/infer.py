"""Identity-disentanglement inference over folders, in the three modes its authors ship:

    python -m core.infer dirs  --id-dir A --attr-dir B --out OUT [--models embedded]   # every identity x attribute
    python -m core.infer pairs --id-dir A --attr-dir B --out OUT      # A/x.png with B/x.png, matched by file name
    python -m core.infer interpolate --input-dir P --out OUT          # P/<case>/id.* and P/<case>/attr.*

Every picture is projected into the generator's W (real photos are detected and aligned first for real model
sets), then mixed through the model set's NICE: the identity of the identity image on the attributes of the
attribute image. Results are PNGs, a grid PNG (dirs), GIF and MP4 strips (interpolate), and an index.html that
shows them with the pictures that were skipped and why (unreadable, no face, no match).
"""
from __future__ import annotations

import argparse
import html
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from core.exports import save_video
from core.imaging import ImageInputError, save_grid

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class InferenceError(ValueError):
    """A folder or a mode cannot be used; the message says what is wrong."""


def images_in(folder: str | Path, what: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InferenceError(f"{what} {folder} is not a folder")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InferenceError(f"{what} {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


@dataclass
class Report:
    """What a run wrote and what it skipped."""

    outputs: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (input, why)


class FolderInference:
    """A face mixer that projects pictures (each once) and writes mixes."""

    def __init__(self, mixer, steps: int = 60, progress: bool = True) -> None:
        self.mixer, self.steps, self.progress = mixer, steps, progress
        self._w: dict[Path, torch.Tensor] = {}

    def w(self, path: Path, report: Report) -> Optional[torch.Tensor]:
        """The picture's w, or None (and a note in the report) when it cannot be used."""
        if path not in self._w:
            try:
                self._w[path] = self.mixer.project(self.mixer.photo(path), steps=self.steps).w
            except ImageInputError as e:
                report.skipped.append((path, str(e)))
                return None
        return self._w[path]

    def _bar(self, items: list, desc: str):
        return tqdm(items, desc=desc, disable=not self.progress)

    def dirs(self, id_dir: str | Path, attr_dir: str | Path, out: Path) -> Report:
        """Every identity image on every attribute image: one PNG each, and a grid with the donors on its edges."""
        ids, attrs = images_in(id_dir, "identity folder"), images_in(attr_dir, "attribute folder")
        report = Report()
        w_ids = {p: self.w(p, report) for p in self._bar(ids, "projecting identities")}
        w_attrs = {p: self.w(p, report) for p in self._bar(attrs, "projecting attributes")}
        ids, attrs = [p for p in ids if w_ids[p] is not None], [p for p in attrs if w_attrs[p] is not None]
        if not ids or not attrs:
            raise InferenceError("no usable identity or attribute image (see the skipped list)")
        blank = torch.ones(3, self.mixer.uploads.resolution, self.mixer.uploads.resolution)
        rows = [torch.stack([blank, *self.mixer.render(torch.cat([w_attrs[p] for p in attrs]))])]
        for i in self._bar(ids, "mixing"):
            mixes = self.mixer.render(self.mixer.mix(w_ids[i].expand(len(attrs), -1), torch.cat(
                [w_attrs[p] for p in attrs])))
            for a, image in zip(attrs, mixes):
                path = save_grid(image[None], out / f"{i.stem}__{a.stem}.png", 1, pad=0)
                report.outputs.append((f"identity {i.name} on attributes {a.name}", path))
            rows.append(torch.cat([self.mixer.render(w_ids[i]), mixes]))
        grid = save_grid(torch.cat(rows), out / "grid.png", len(attrs) + 1)
        report.outputs.insert(0, ("grid: identities (rows) on attributes (columns)", grid))
        return report

    def pairs(self, id_dir: str | Path, attr_dir: str | Path, out: Path) -> Report:
        """Each identity image with the attribute image of the same file name (any image suffix)."""
        ids = {p.stem: p for p in images_in(id_dir, "identity folder")}
        attrs = {p.stem: p for p in images_in(attr_dir, "attribute folder")}
        report = Report()
        for stem in sorted(set(ids) ^ set(attrs)):
            only = ids.get(stem) or attrs.get(stem)
            report.skipped.append((only, f"no image named {stem}.* in the other folder"))
        for stem in self._bar(sorted(set(ids) & set(attrs)), "pairs"):
            w_i, w_a = self.w(ids[stem], report), self.w(attrs[stem], report)
            if w_i is None or w_a is None:
                continue
            images = self.mixer.render(torch.cat([w_i, w_a, self.mixer.mix(w_i, w_a)]))
            report.outputs.append((f"{stem}: identity, attributes, mix", save_grid(images, out / f"{stem}.png", 3)))
        return report

    def interpolate(self, input_dir: str | Path, out: Path, steps: int = 8) -> Report:
        """For each case folder holding an `id` and an `attr` image: identity-only and attribute-only strips (PNG,
        GIF and MP4)."""
        folder = Path(input_dir)
        if not folder.is_dir():
            raise InferenceError(f"input folder {folder} is not a folder")
        cases = sorted(p for p in folder.iterdir() if p.is_dir())
        if not cases:
            raise InferenceError(f"{folder} holds no case folders (each with an id.* and an attr.* image)")
        report = Report()
        for case in self._bar(cases, "interpolating"):
            found = {p.stem: p for p in case.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
            if "id" not in found or "attr" not in found:
                report.skipped.append((case, "needs an id.* and an attr.* image"))
                continue
            w_i, w_a = self.w(found["id"], report), self.w(found["attr"], report)
            if w_i is None or w_a is None:
                continue
            for part in ("identity", "attributes"):
                images, _ = self.mixer.strip(w_i, w_a, part, steps)
                strip = save_grid(images, out / f"{case.name}_{part}.png", steps)
                save_video(images, out / f"{case.name}_{part}.gif", fps=6, bounce=True)
                save_video(images, out / f"{case.name}_{part}.mp4", fps=6, bounce=True)
                report.outputs.append((f"{case.name}: {part} moves from id to attr (also .gif, .mp4)", strip))
        return report


def write_index(report: Report, out: Path, title: str) -> Path:
    """An index.html beside the results: each output with its caption, then what was skipped and why."""
    rows = [f'<figure><img src="{html.escape(p.name)}" style="image-rendering:pixelated;max-width:100%">'
            f"<figcaption>{html.escape(c)}</figcaption></figure>" for c, p in report.outputs]
    skipped = [f"<li>{html.escape(str(p))}: {html.escape(why)}</li>" for p, why in report.skipped]
    body = (f"<h1>{html.escape(title)}</h1>" + "".join(rows)
            + (f"<h2>Skipped ({len(skipped)})</h2><ul>{''.join(skipped)}</ul>" if skipped else ""))
    path = out / "index.html"
    path.write_text(f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>{body}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    from core.checkpoints import CheckpointError
    from core.hub import HubError
    from core.mixing import FaceMixer
    p = argparse.ArgumentParser(prog="python -m core.infer", description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["dirs", "pairs", "interpolate"])
    p.add_argument("--models", default="embedded")
    p.add_argument("--device", default="cpu")
    p.add_argument("--id-dir")
    p.add_argument("--attr-dir")
    p.add_argument("--input-dir")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=60, help="projection steps per picture")
    p.add_argument("--frames", type=int, default=8, help="interpolation steps")
    args = p.parse_args(argv)
    needs = ["input_dir"] if args.mode == "interpolate" else ["id_dir", "attr_dir"]
    missing = [f"--{n.replace('_', '-')}" for n in needs if not getattr(args, n)]
    if missing:
        p.error(f"{args.mode} needs {' and '.join(missing)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        run = FolderInference(FaceMixer.load(args.models, args.device), steps=args.steps)
        if args.mode == "dirs":
            report = run.dirs(args.id_dir, args.attr_dir, out)
        elif args.mode == "pairs":
            report = run.pairs(args.id_dir, args.attr_dir, out)
        else:
            report = run.interpolate(args.input_dir, out, args.frames)
    except (InferenceError, HubError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    index = write_index(report, out, f"Latent Lab: {args.mode} ({args.models})")
    for path, why in report.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(f"wrote {len(report.outputs)} results and {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
