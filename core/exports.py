"""Exports: an MP4 or GIF of frames (a slider sweep, an interpolation strip), a zip of images, a grid as one PNG.

    python -m core.exports sweep --direction smile --seed 3 --out smile.mp4 [--frames 24] [--models embedded]

MP4s are written by OpenCV's VideoWriter (mp4v), GIFs by Pillow; frames are [N, 3, H, W] tensors in [0, 1] or
uint8 HxWx3 arrays, enlarged by a whole factor to at least `min_side` pixels so small faces stay visible.
"""
from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from core.files import atomic_write

VIDEO_SUFFIXES = (".mp4", ".gif")


def frames_uint8(frames: torch.Tensor | Sequence[np.ndarray], min_side: int = 256) -> list[np.ndarray]:
    """Frames as uint8 HxWx3 arrays, enlarged by a whole factor (nearest neighbour) to at least min_side."""
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [N, 3, H, W], got {list(frames.shape)}")
        frames = [(f.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
                  for f in frames]
    out = [np.asarray(f, dtype=np.uint8) for f in frames]
    if not out:
        raise ValueError("no frames to write")
    k = max(1, -(-min_side // out[0].shape[0]))
    return [f.repeat(k, axis=0).repeat(k, axis=1) for f in out]


def video_path(path: str | Path) -> Path:
    """`path` if it names a video this module writes, else a ValueError (checked before any frame is drawn)."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"a video is written as {' or '.join(VIDEO_SUFFIXES)}, not {path.suffix!r}")
    return path


def save_video(frames: torch.Tensor | Sequence[np.ndarray], path: str | Path, fps: float = 12.0,
               min_side: int = 256, bounce: bool = False) -> Path:
    """Write frames as .mp4 (OpenCV) or .gif (Pillow, looping); `bounce` appends the frames backwards."""
    import cv2
    path = video_path(path)
    images = frames_uint8(frames, min_side)
    if bounce:
        images = images + images[-2:0:-1]
    h, w = images[0].shape[:2]

    def write(tmp: str) -> None:
        if path.suffix.lower() == ".gif":
            first, *rest = [Image.fromarray(f) for f in images]
            first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)
            return
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError("OpenCV could not open an MP4 writer (no mp4v encoder in this build)")
        for f in images:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()

    return atomic_write(path, write, suffix=path.suffix)


def zip_images(images: dict[str, torch.Tensor | np.ndarray], path: str | Path) -> Path:
    """A zip of PNGs, one per named image ([3, H, W] tensor in [0, 1] or uint8 HxWx3 array)."""
    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name, image in images.items():
                buf = io.BytesIO()
                Image.fromarray(frames_uint8(image[None] if isinstance(image, torch.Tensor) else [image],
                                             min_side=1)[0]).save(buf, format="PNG")
                z.writestr(name if name.endswith(".png") else f"{name}.png", buf.getvalue())
    return atomic_write(path, write)


def sweep(editor, name: str, seed: int, psi: float = 0.7, frames: int = 24, limit: float = 3.0) -> torch.Tensor:
    """Faces along one slider direction from -limit to +limit: [frames, 3, H, W]."""
    if name not in editor.dirs:
        raise ValueError(f"unknown direction {name!r}; known: {', '.join(editor.dirs)}")
    if frames < 2:
        raise ValueError("a sweep needs at least two frames")
    return torch.stack([editor.image(seed, psi, {name: float(a)}) for a in torch.linspace(-limit, limit, frames)])


def main(argv: list[str] | None = None) -> int:
    from core.directions import Editor, editor_from
    from core.models import load_models
    p = argparse.ArgumentParser(prog="python -m core.exports", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="a video of one slider direction")
    s.add_argument("--direction", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--psi", type=float, default=0.7)
    s.add_argument("--frames", type=int, default=24)
    s.add_argument("--models", default="embedded")
    s.add_argument("--out", required=True, help="an .mp4 or .gif file")
    args = p.parse_args(argv)
    try:
        video_path(args.out)
        editor, _ = editor_from(load_models(args.models, Editor.ROLES, Editor.OPTIONAL))
        out = save_video(sweep(editor, args.direction, args.seed, args.psi, args.frames), args.out, bounce=True)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
