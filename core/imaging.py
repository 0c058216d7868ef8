"""Image grids and PNG output shared by the dataset tools, samplers, training loops and apps (torchvision grids;
files written atomically, so a reader never sees half a PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid as _torchvision_grid

from core.files import atomic_write


def make_grid(images: torch.Tensor, nrow: int, pad: int = 2, fill: float = 1.0) -> torch.Tensor:
    """Tile [N, 3, H, W] images in [0, 1] into one [3, rows*(H+pad)+pad, nrow*(W+pad)+pad] image."""
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {list(images.shape)}")
    return _torchvision_grid(images.detach().float().cpu(), nrow=nrow, padding=pad, pad_value=fill)


def to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] tensor in [0, 1] -> RGB PIL image."""
    array = (image.detach().clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def save_image(image: Image.Image, path: str | Path) -> Path:
    """Write a PIL image as PNG, atomically."""
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, pad: int = 2) -> Path:
    """Write a PNG contact sheet of [N, 3, H, W] images, atomically."""
    return save_image(to_pil(make_grid(images, nrow, pad)), path)


MAX_IMAGE_BYTES = 10 * 1024 * 1024  # files above this are refused before they are read
MAX_IMAGE_PIXELS = 25_000_000  # images above this are refused before they are decoded
MAX_IMAGE_SIDE = 8192


class ImageInputError(ValueError):
    """A picture cannot be used; the message says why in words a user understands."""


def read_image(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(RGB uint8 [H, W, 3], notes) of a picture file: its size checked before it is read and before it is decoded;
    transparency composited onto white (and said so)."""
    from PIL import UnidentifiedImageError
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageInputError(f"the file could not be read ({e})") from None
    if size > MAX_IMAGE_BYTES:
        raise ImageInputError(f"the file is too large ({size / 1e6:.1f} MB); use one of at most "
                              f"{MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS or max(w, h) > MAX_IMAGE_SIDE:
                raise ImageInputError(f"the image is too large ({w} x {h} pixels); use one of at most "
                                      f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels and {MAX_IMAGE_SIDE} px a side")
            if min(w, h) < 16:
                raise ImageInputError(f"the image is too small ({w} x {h} pixels) to hold a face")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
                notes.append("its transparent parts were filled with white")
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float grey: RGB conversion would clip
                array = _grey_to_rgb(np.asarray(im), im.mode)
                notes.append(f"it was a {'floating-point' if im.mode == 'F' else '16-bit'} grey image, scaled to 8 "
                             f"bits")
            else:
                array = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except ImageInputError:
        raise
    except Image.DecompressionBombError:
        raise ImageInputError("the image declares far too many pixels (a decompression bomb guard stopped it); use "
                              f"one of at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels") from None
    except UnidentifiedImageError:
        raise ImageInputError("the file is not an image this app can read (use PNG, JPEG or WebP)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageInputError(f"the image could not be decoded ({e}); it may be truncated or corrupt") from None
    return array, notes


def _grey_to_rgb(values: np.ndarray, mode: str) -> np.ndarray:
    """Grey pixels of a wide mode as RGB uint8 over their range: 0..65535 for integer modes (16-bit PNG, TIFF),
    0..1 for floats (or 0..255 when they exceed 1)."""
    values = values.astype(np.float64)
    if mode == "F":
        top = 1.0 if np.nanmax(values, initial=0.0) <= 1.0 else 255.0
    else:
        top = 65535.0
    grey = np.nan_to_num(values / top * 255.0).clip(0, 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)
