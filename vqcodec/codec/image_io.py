"""Reading and writing images: mode conversion rules, EXIF orientation, size limits, atomic writes.

Conversion rule for inputs (documented in the README):
- RGB: as is. L / 1: grey replicated to RGB. P: expanded through its palette.
- RGBA / LA / PA / P with transparency: alpha dropped (with a warning), colour kept as stored.
- I;16 and I: 16-bit values scaled to 8 bits (round(v / 257), clipped to 0..255).
- CMYK / YCbCr / LAB / HSV: converted to RGB by Pillow. F (float) is refused.
- EXIF orientation is applied. Animated images: the first frame, with a warning.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

# 67 megapixels (8192×8192): large images are processed in tiles (docs/tiling.md), so memory grows by
# about 20 bytes per pixel, not gigabytes per megapixel. Pillow refuses files over 89.5 megapixels anyway.
DEFAULT_MAX_PIXELS = 1 << 26
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


class ImageWarning(UserWarning):
    """A lossy but legal conversion of an input image (alpha dropped, first frame only…)."""


def to_rgb(im: Image.Image) -> Image.Image:
    """Apply the documented mode conversion rule; returns an RGB image."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        warnings.warn(f"{mode} image: alpha channel dropped", ImageWarning, stacklevel=3)
        return im.convert("RGBA").convert("RGB") if mode.startswith("P") else im.convert("RGB")
    if mode.startswith("I"):
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        raise ImageError("floating-point (mode F) images are not supported; convert to 8- or 16-bit first")
    return im.convert("RGB")


def load_image(source: str | Path | BinaryIO | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image as RGB, refusing anything over ``max_pixels``."""
    name = str(source) if isinstance(source, (str, Path)) else "<input>"
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(source)
        w, h = im.size
        if w < 1 or h < 1:
            raise ImageError(f"{name}: empty image ({w}x{h})")
        if w * h > max_pixels:
            raise ImageError(f"{name}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels")
        if getattr(im, "n_frames", 1) > 1:
            warnings.warn(f"{name}: animated image, only the first frame is encoded", ImageWarning, stacklevel=2)
        im.seek(0)
        im.load()
        im = ImageOps.exif_transpose(im)
        return to_rgb(im)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: cannot decode image ({exc})") from None


ImageLike = Image.Image | np.ndarray | str | Path


def as_rgb_array(image: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image (PIL, ``uint8 [H,W,3]`` array, or a path to load) → ``uint8 [H,W,3]``."""
    if isinstance(image, (str, Path)):
        image = load_image(image, max_pixels)
    arr = np.array(to_rgb(image)) if isinstance(image, Image.Image) else np.asarray(image)  # PIL: a writable copy
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageError(f"expected an RGB uint8 array [H,W,3], got {arr.dtype} {arr.shape}")
    return arr


def check_encodable(width: int, height: int, factor: int, max_pixels: int, max_grid_side: int) -> None:
    """Refuse an image whose padded size exceeds ``max_pixels`` or whose grid the format cannot hold."""
    grid_h, grid_w = -(-height // factor), -(-width // factor)
    if grid_h * grid_w * factor**2 > max_pixels:
        raise ImageError(
            f"{width}x{height} image ({grid_w * factor}x{grid_h * factor} once padded to the model's "
            f"{factor}-pixel grid) exceeds the limit of {max_pixels} pixels"
        )
    if max(grid_h, grid_w) > max_grid_side:
        raise ImageError(f"{width}x{height} image: a side longer than {max_grid_side * factor} pixels does not fit the format")


def resample(image: Image.Image | np.ndarray, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to ``size`` (width, height) with Lanczos: the one resampler of coded sizes."""
    image = image if isinstance(image, Image.Image) else Image.fromarray(image, "RGB")
    return image if image.size == tuple(size) else image.resize(tuple(size), Image.LANCZOS)


def to_uint8(image: torch.Tensor, out: np.ndarray | None = None, rows: int = 256) -> np.ndarray:
    """``[3,H,W]`` in [0, 1] → ``uint8 [H,W,3]`` (rounded to the nearest 8-bit value), into ``out``
    when given, converted ``rows`` at a time so a large image needs no full-size float temporaries."""
    out = np.empty((*image.shape[1:], 3), dtype=np.uint8) if out is None else out
    for top in range(0, out.shape[0], rows):
        strip = image[:, top : top + rows].permute(1, 2, 0).numpy()
        out[top : top + rows] = (strip * 255.0).round().clip(0, 255).astype(np.uint8)
    return out


def tensor_to_image(image: torch.Tensor) -> Image.Image:
    """``[3,H,W]`` in [0, 1] → RGB PIL image (see :func:`to_uint8`)."""
    return Image.fromarray(to_uint8(image), "RGB")


def image_to_uint8_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """An RGB image (PIL or ``uint8 [H,W,3]``) → ``uint8 [1,3,H,W]``: a quarter of the float
    tensor's memory, for a runner that converts it a tile at a time."""
    arr = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(2, 0, 1)[None]


def as_float(images: torch.Tensor) -> torch.Tensor:
    """Image tensors as float32 in [0,1]: uint8 ones divided by 255 in place (one float copy)."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.to(torch.float32)


def image_to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """An RGB image (PIL or ``uint8 [H,W,3]``) → ``float32 [1,3,H,W]`` in [0, 1]."""
    return as_float(image_to_uint8_tensor(image))


def encode_image_file(im: Image.Image, path: str | Path) -> bytes:
    """Encode ``im`` in the format the output name asks for (PNG when unknown)."""
    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext, "PNG")
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (KeyError, OSError, ValueError) as exc:
        raise ImageError(f"cannot write {ext or 'this'} format: {exc}") from None
    return buf.getvalue()
