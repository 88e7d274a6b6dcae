"""Re-shot photos for evaluation: a catalogue photo changed the way a shopper's or a supplier's photo of the same item
differs from the studio shot. Each change is documented in CHANGES and is deterministic for (seed, item, change)."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from ..config import RESHOOT_CHANGES
from ..locate.framing import cutout
from ..util.files import content_hash
from ..util.images import load_image

CHANGES: dict[str, str] = {
    "crop": "a random window of 72-88 % of each side: part of the product may be cut off",
    "smaller": "the product at 40-65 % of the frame's side on white, anywhere in the frame",
    "tinted": "the product cut out of its white backdrop, at 55-85 % of the frame, on a plain tinted backdrop",
    "busy": "the product cut out, at 55-85 % of the frame, on a busy backdrop: a blurred, recoloured collage of other "
            "catalogue photos with noise",
    "rotate": "rotated by 6-12 degrees either way, corners filled white",
    "light": "brightness x0.7-0.85 or x1.15-1.3, contrast x0.7-1.3",
    "jpeg": "recompressed as JPEG at quality 15-35",
    "downscale": "shrunk to 35-50 % of its resolution",
    "mixed": "a window of 85-95 % of each side, a 3-6 degree rotation, a plain tinted backdrop, a brightness change and "
             "JPEG quality 35-60, together",
}
assert tuple(CHANGES) == RESHOOT_CHANGES, "vibe.config.RESHOOT_CHANGES names the changes of CHANGES, in order"
WORK_SIDE = 320  # a catalogue thumbnail is enlarged to this long side first: a re-shot photo is a larger photo
BACKDROPS = [(235, 226, 210), (222, 222, 222), (205, 215, 230), (240, 215, 215), (170, 170, 170), (120, 110, 100),
             (200, 225, 205), (60, 60, 70), (230, 230, 190), (150, 170, 190)]  # beige, greys, pastels, dark


def _rng(seed: int, key: int, change: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(key) & 0x7FFFFFFF, list(CHANGES).index(change)])


def _enlarge(image: Image.Image) -> Image.Image:
    scale = WORK_SIDE / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC) if scale > 1 else image


def _place(product: Image.Image, backdrop: Image.Image, share: float, rng: np.random.Generator) -> Image.Image:
    """Paste an RGBA product, scaled to `share` of the backdrop's side, at a random position."""
    scale = share * min(backdrop.width / product.width, backdrop.height / product.height)
    product = product.resize((max(1, round(product.width * scale)), max(1, round(product.height * scale))), Image.BICUBIC)
    x = int(rng.integers(0, backdrop.width - product.width + 1))
    y = int(rng.integers(0, backdrop.height - product.height + 1))
    out = backdrop.copy()
    out.paste(product, (x, y), product)
    return out


def _frame_size(image: Image.Image, rng: np.random.Generator) -> tuple[int, int]:
    aspect = [(3, 4), (1, 1), (4, 3)][int(rng.integers(0, 3))]
    side = max(image.size)
    return side * aspect[0] // max(aspect), side * aspect[1] // max(aspect)


def _busy(size: tuple[int, int], others: Sequence[Image.Image], rng: np.random.Generator) -> Image.Image:
    canvas = Image.new("RGB", size, tuple(int(c) for c in rng.integers(90, 230, 3)))
    if others:
        for _ in range(int(rng.integers(4, 8))):
            other = others[int(rng.integers(0, len(others)))]
            s = float(rng.uniform(0.35, 0.8)) * max(size) / max(other.size)
            tile = other.resize((max(1, round(other.width * s)), max(1, round(other.height * s))), Image.BILINEAR)
            canvas.paste(tile, (int(rng.integers(-tile.width // 2, size[0])), int(rng.integers(-tile.height // 2, size[1]))))
    tint = Image.new("RGB", size, tuple(int(c) for c in rng.integers(40, 220, 3)))
    canvas = Image.blend(canvas, tint, float(rng.uniform(0.15, 0.4))).filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 3.5))))
    noise = rng.normal(0, 12, (size[1], size[0], 1))
    return Image.fromarray(np.clip(np.asarray(canvas, np.float32) + noise, 0, 255).astype(np.uint8))


def _crop(image: Image.Image, lo: float, hi: float, rng: np.random.Generator) -> Image.Image:
    w, h = round(image.width * rng.uniform(lo, hi)), round(image.height * rng.uniform(lo, hi))
    x, y = int(rng.integers(0, image.width - w + 1)), int(rng.integers(0, image.height - h + 1))
    return image.crop((x, y, x + w, y + h))


def _light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    brightness = rng.uniform(0.7, 0.85) if rng.random() < 0.5 else rng.uniform(1.15, 1.3)
    image = ImageEnhance.Brightness(image).enhance(float(brightness))
    return ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.7, 1.3)))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def reshoot(image: Image.Image, change: str, seed: int = 0, key: int = 0, others: Sequence[Image.Image] = ()) -> Image.Image:
    """`image` (an RGB catalogue photo) changed by `change` (a key of CHANGES). The same (seed, key, change) gives the same
    photo; `others` (other catalogue photos) make the busy backdrops."""
    if change not in CHANGES:
        raise ValueError(f"change must be one of {', '.join(CHANGES)}")
    rng = _rng(seed, key, change)
    image = image.convert("RGB")
    if change == "downscale":
        s = float(rng.uniform(0.35, 0.5))
        return image.resize((max(8, round(image.width * s)), max(8, round(image.height * s))), Image.BILINEAR)
    if change == "jpeg":
        return _jpeg(image, int(rng.integers(15, 36)))
    big = _enlarge(image)
    if change == "crop":
        return _crop(big, 0.72, 0.88, rng)
    if change == "rotate":
        angle = float(rng.uniform(6, 12)) * (1 if rng.random() < 0.5 else -1)
        return big.rotate(angle, Image.BICUBIC, expand=False, fillcolor=(255, 255, 255))
    if change == "light":
        return _light(big, rng)
    size = _frame_size(big, rng)
    if change == "smaller":
        return _place(cutout(big), Image.new("RGB", size, (255, 255, 255)), float(rng.uniform(0.4, 0.65)), rng)
    if change == "tinted":
        backdrop = Image.new("RGB", size, BACKDROPS[int(rng.integers(0, len(BACKDROPS)))])
        return _place(cutout(big), backdrop, float(rng.uniform(0.55, 0.85)), rng)
    if change == "busy":
        return _place(cutout(big), _busy(size, others, rng), float(rng.uniform(0.55, 0.85)), rng)
    # mixed
    product = cutout(_crop(big, 0.85, 0.95, rng))
    product = product.rotate(float(rng.uniform(3, 6)) * (1 if rng.random() < 0.5 else -1), Image.BICUBIC, expand=True)
    shot = _place(product, Image.new("RGB", size, BACKDROPS[int(rng.integers(0, len(BACKDROPS)))]), float(rng.uniform(0.6, 0.85)), rng)
    return _jpeg(_light(shot, rng), int(rng.integers(35, 61)))


def reupload(image: Image.Image, seed: int = 0, key: int = 0) -> Image.Image:
    """The same photo uploaded again: resized to 60-90 % and recompressed as JPEG at quality 60-85. What the catalogue
    audit calls a duplicate (its threshold is calibrated on such copies)."""
    rng = np.random.default_rng([seed, int(key) & 0x7FFFFFFF, 99])
    scale = float(rng.uniform(0.6, 0.9))
    image = image.convert("RGB").resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))), Image.BICUBIC)
    return _jpeg(image, int(rng.integers(60, 86)))


def by_hash(ids: Sequence[int], salt: str) -> np.ndarray:
    """Positions of `ids` in a deterministic pseudo-random order (stable across rebuilds and machines)."""
    return np.argsort([content_hash(f"{salt}{int(i)}".encode()) for i in ids], kind="stable")


USES_BACKDROPS = ("busy",)  # the changes made of other catalogue photos: their cache keys name those photos


@dataclass(frozen=True)
class Backdrops:
    """The catalogue photos busy backdrops are made of: the photos, their item ids (a report records them, so its
    cases can be made again exactly) and a digest of their contents (part of a re-shot photo's cache key)."""

    photos: list[Image.Image]
    ids: list[int]
    digest: str


def backdrop_photos(items, root: Path, n: int = 32, ids: Sequence[int] | None = None) -> Backdrops:
    """The photos busy backdrops are made of: n training photos of the build in a fixed order, or the items `ids`
    (a report's own backdrops, to make its cases again)."""
    if ids is None:
        pool = np.flatnonzero((items["split"] == "train").to_numpy())
        chosen = pool[by_hash(items["id"].to_numpy()[pool], "backdrop")][:n]
    else:
        row_of = {int(i): r for r, i in enumerate(items["id"])}
        chosen = np.array([row_of[int(i)] for i in ids if int(i) in row_of], dtype=np.int64)
    chosen = [r for r in chosen if (Path(root) / items["path"].iat[r]).is_file()]
    return Backdrops(photos=[load_image(Path(root) / items["path"].iat[r]) for r in chosen],
                     ids=[int(items["id"].iat[r]) for r in chosen],
                     digest=content_hash(":".join(str(items["hash"].iat[r]) for r in chosen).encode())[:16])


def reshot_photo(case: dict, seed: int, backdrops: Backdrops) -> Image.Image:
    """A re-shot photo of a report's case ({"path", "change", "id"}), made again exactly (with the report's backdrops)."""
    return reshoot(load_image(case["path"]), case["change"], seed, int(case["id"]), backdrops.photos)
