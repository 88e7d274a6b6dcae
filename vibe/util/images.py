"""Decode any user image safely into an RGB PIL image: size-checked before decoding, first frame, alpha on white, EXIF orientation."""
from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, TypeVar, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import VibeError

ImageSource = Union[str, Path, bytes, BinaryIO, Image.Image]
# 40 MP: far above any product photo, far below a decompression bomb (~0.12 GB of RGB).
MAX_PIXELS = 40_000_000
MIN_SIDE = 16  # a smaller image (an icon, a tracking pixel) shows no product: searching it would return noise
# the photo files every upload and batch accepts (what PIL decodes here), named once for the uploaders and the messages
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
PHOTO_TYPES = tuple(s[1:] for s in PHOTO_SUFFIXES)  # as file uploaders take them
PHOTO_FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"


class ImageError(VibeError):
    """An input that is not a usable image."""


def read_bytes(source: str | Path | bytes | BinaryIO) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, Path)):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{source}: no such file.") from None
        except IsADirectoryError:
            raise ImageError(f"{source} is a folder, not an image file.") from None
        except OSError as e:
            raise ImageError(f"{source}: cannot be read ({e.strerror or e}).") from None
    return source.read()


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits by the image's own range, not by clipping.
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def load_image(source: ImageSource, name: str | None = None, max_side: int | None = None) -> Image.Image:
    """Return an RGB image, or raise ImageError with one sentence saying what is wrong.
    `max_side`: a JPEG is decoded at a reduced scale (1/2, 1/4, 1/8) as long as both sides stay at least this large:
    a phone photo meant for a 224-px model decodes several times faster, with the detail the model can use. The
    image's info["scale"] is then the photo's pixels per decoded pixel (1.0 otherwise)."""
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    label = name or (str(source) if isinstance(source, (str, Path)) else "the upload")
    data = read_bytes(source)
    if not data:
        raise ImageError(f"{label} is an empty file (0 bytes), not an image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(f"{label} is {im.width}x{im.height} pixels, over the {MAX_PIXELS // 1_000_000} MP limit: resize it first.")
            if min(im.size) < MIN_SIDE:
                raise ImageError(f"{label} is {im.width}x{im.height} pixels, too small to show a product: use a photo at "
                                 f"least {MIN_SIDE} pixels on each side.")
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animated GIF/WebP: the first frame
            full = im.width
            if max_side and im.format == "JPEG" and min(im.size) > 2 * max_side:
                im.draft(im.mode, (max_side, max_side))
            im.load()
            factor = full / im.width  # a reduced decode: boxes the user gives or sees are in the photo's own pixels
            ImageOps.exif_transpose(im, in_place=True)  # a photo that needs no turn is not copied
            # nor one decoded as RGB already (a JPEG, most PNGs): a plain image over the same pixels, without the file
            # reader's state (a WebP decoder, an animated PNG's bytes)
            im = im._new(im.im) if im.mode == "RGB" else _to_rgb(im)
            im.info["scale"] = factor
            return im
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label} declares a huge size (a decompression bomb?); it was not decoded.") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image: use a {PHOTO_FORMATS} photo.") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageError(f"{label} is damaged or truncated and cannot be decoded: save or export it again "
                         f"({PHOTO_FORMATS}).") from None


T = TypeVar("T")


def map_photos(fn: Callable[[Image.Image], T], paths: Iterable[Path], workers: int = 2) -> list[T | None]:
    """fn(photo) for each file's photo, on a few threads (PIL decodes without the GIL); None where the file cannot be
    read or fn fails on it (the build reports unreadable photos elsewhere)."""
    def one(path):
        try:
            return fn(load_image(path))
        except Exception:  # noqa: BLE001 - one bad photo must not stop the others
            return None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, paths))
