"""Reading images from disk or bytes into uint8 arrays, with one clear error for every bad file."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import BadImageError
from ..fileio import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 25_000_000

# Pillow's own bomb check warns at 89M pixels; we apply our limit ourselves, before decoding.
Image.MAX_IMAGE_PIXELS = None


@dataclass
class DecodedImage:
    """An image as the models see it (`rgb`, uint8 HxWx3) plus what is needed to write it back as it came."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None  # uint8 HxW, when the input had an alpha channel
    grayscale: bool = False  # the input had a single luminance channel
    high_bit_depth: bool = False  # the input had more than 8 bits per channel (output is 8-bit)


def to_float(x):
    """uint8 pixel values -> float32 in [0, 1] (x / 255), same shape; a numpy array or a torch tensor. The one
    conversion from 8-bit images to model inputs (training pairs, inference, export checks)."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) / np.float32(255)
    return x.float().div_(255)


def to_uint8(x):
    """Float values in [0, 1] -> uint8, clipped and rounded to the nearest step (ties to even), same shape; a numpy
    array or a torch tensor. The one conversion from model outputs to 8-bit images."""
    if isinstance(x, np.ndarray):
        y = np.multiply(x, np.float32(255), dtype=np.float32)
        np.clip(y, 0, 255, out=y)
        return np.rint(y, out=y).astype(np.uint8)
    import torch

    return x.clamp(0, 1).mul(255).round_().to(torch.uint8)


def rgb_to_batch(rgb: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """uint8 HxWx3 -> float32 (1, 3, H, W) in [0, 1]: the values of `to_float(rgb.transpose(2, 0, 1)[None])`.
    Planar by default, converted plane by plane (OpenCV splits the channels: numpy reading the interleaved bytes
    with a stride takes several times as long at 1280x720); `channels_last`: the same shape over memory laid out
    HxWx3, as PyTorch's channels-last convolutions read it (no reordering at all)."""
    h, w = rgb.shape[:2]
    if channels_last:
        out = np.empty((1, h, w, 3), dtype=np.float32)
        np.divide(rgb, np.float32(255), out=out[0], dtype=np.float32)
        return out.transpose(0, 3, 1, 2)
    import cv2

    out = np.empty((1, 3, h, w), dtype=np.float32)
    planes = cv2.split(rgb if rgb.strides[1:] == (3, 1) else np.ascontiguousarray(rgb))
    for c, plane in enumerate(planes):
        np.divide(plane, np.float32(255), out=out[0, c], dtype=np.float32)
    return out


def batch_to_rgb(y: np.ndarray) -> np.ndarray:
    """float32 (1, 3, H, W) -> uint8 HxWx3: the values of `to_uint8(y[0].transpose(1, 2, 0))`, computed in place
    in `y` (which is overwritten). A planar `y` is interleaved by OpenCV; a `y` laid out HxWx3 in memory
    (channels last) is converted as it lies."""
    import cv2

    hwc = y[0].transpose(1, 2, 0)
    planar = not (hwc.flags.c_contiguous and y.dtype == np.float32)
    x = np.ascontiguousarray(y[0], dtype=np.float32) if planar else hwc
    np.multiply(x, np.float32(255), out=x)
    np.clip(x, 0, 255, out=x)
    np.rint(x, out=x)
    return cv2.merge(list(x.astype(np.uint8))) if planar else x.astype(np.uint8)


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    hi = 65535.0 if arr.max(initial=0) > 255 or arr.dtype.itemsize >= 2 else 255.0
    return (np.clip(arr.astype(np.float64) / hi, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def decode_image(source: str | os.PathLike | bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 name: str | None = None) -> DecodedImage:
    """Decode a file path or encoded bytes. Raises `BadImageError` with a one-line reason."""
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    try:
        if isinstance(source, bytes):
            if not source:
                raise BadImageError(f"{label}: empty file")
            fh = io.BytesIO(source)
        else:
            if os.path.getsize(source) == 0:
                raise BadImageError(f"{label}: empty file")
            fh = open(source, "rb")
        with fh, Image.open(fh) as im:
            if max_pixels and im.width * im.height > max_pixels:
                raise BadImageError(
                    f"{label}: {im.width}x{im.height} is {im.width * im.height / 1e6:.1f} megapixels, "
                    f"above the limit of {max_pixels / 1e6:.0f}")
            im = ImageOps.exif_transpose(im)
            im.load()
            return _from_pil(im)
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise BadImageError(f"{label}: is a directory") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{label}: not an image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImageError(f"{label}: corrupt or truncated image ({exc})") from None


def _from_pil(im: Image.Image) -> DecodedImage:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        g = (np.clip(arr.astype(np.float64) / hi, 0, 1) * 255 + 0.5).astype(np.uint8)
        return DecodedImage(np.repeat(g[..., None], 3, axis=2), grayscale=True, high_bit_depth=hi > 255)
    if mode == "F":
        g = _to_uint8(np.asarray(im, dtype=np.float32) / max(float(np.asarray(im).max(initial=1)), 1.0))
        return DecodedImage(np.repeat(g[..., None], 3, axis=2), grayscale=True, high_bit_depth=True)
    if mode in ("L", "1"):
        g = np.asarray(im.convert("L"))
        return DecodedImage(np.repeat(g[..., None], 3, axis=2), grayscale=True)
    if mode == "LA" or (mode == "P" and "transparency" in im.info) or mode in ("RGBA", "RGBa", "PA"):
        rgba = np.asarray(im.convert("RGBA"))
        gray = mode == "LA"
        return DecodedImage(np.ascontiguousarray(rgba[..., :3]), alpha=np.ascontiguousarray(rgba[..., 3]),
                            grayscale=gray)
    if mode in ("RGB;16", "RGB;16B") or (mode == "RGB" and np.asarray(im).dtype != np.uint8):
        return DecodedImage(_to_uint8(np.asarray(im)), high_bit_depth=True)
    return DecodedImage(np.asarray(im.convert("RGB")))


def _read_16bit_with_cv2(path: str | os.PathLike) -> DecodedImage | None:
    """Pillow reads 16-bit RGB PNG/TIFF as 8-bit with lost precision; OpenCV keeps all bits."""
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        return None
    arr8 = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if arr8.shape[2] == 4:
        return DecodedImage(np.ascontiguousarray(arr8[..., 2::-1]), alpha=np.ascontiguousarray(arr8[..., 3]),
                            high_bit_depth=True)
    return DecodedImage(np.ascontiguousarray(arr8[..., ::-1]), high_bit_depth=True)


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Read an image file with EXIF orientation applied. 16-bit colour files keep their precision."""
    decoded = decode_image(path, max_pixels)
    if not decoded.grayscale and str(path).lower().endswith((".png", ".tif", ".tiff")):
        with Image.open(path) as im:
            wide = im.mode in ("RGB;16", "RGBA;16", "I;16") or im.info.get("bits", 8) > 8 or \
                (im.format == "PNG" and im.mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16)
            orientation = im.getexif().get(0x0112, 1)
        if wide and orientation == 1:
            better = _read_16bit_with_cv2(path)
            if better is not None:
                return better
    return decoded


def _png_bit_depth(path: str | os.PathLike) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24] if len(head) >= 25 and head[:8] == b"\x89PNG\r\n\x1a\n" else 8


def read_rgb(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image file as uint8 HxWx3 RGB (alpha dropped, grayscale replicated)."""
    return read_image(path, max_pixels).rgb


def write_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
                grayscale: bool = False) -> None:
    """Write atomically (temporary file in the same folder, then rename): no half-written file on Ctrl-C."""
    path = Path(path)
    if grayscale:
        arr = np.asarray(Image.fromarray(rgb).convert("L"))
        im = Image.fromarray(arr, "L") if alpha is None else Image.fromarray(np.dstack([arr, alpha]), "LA")
    else:
        im = Image.fromarray(rgb, "RGB") if alpha is None else Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
           ".tiff": "TIFF"}.get(path.suffix.lower(), "PNG")
    if fmt in ("JPEG", "BMP") and im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt)
