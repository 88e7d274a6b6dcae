"""Product framing: find the product against a plain background of any colour, crop to it and re-centre it on white,
the way catalogue photos are shot. Applied to catalogue photos and to queries alike; a photo is left alone when unsure."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

VERSION = "frame-2"  # part of every backbone fingerprint that frames: change it when the rule changes
ANALYSIS_SIDE = 192  # the mask is found on a copy 192-383 px large: cheap, and enough for a bounding box
BORDER = 0.04  # the outer ring (share of the side) whose colour says what the background is
PLAIN_BORDER = 0.85  # share of that ring close to its median colour for the background to count as plain
TOLERANCE = 32.0  # RGB distance to the background colour under which a pixel is background
MIN_AREA, MAX_AREA = 0.03, 0.97  # a product smaller or larger than this share of the photo: not sure, leave it
MARGIN = 0.04  # white margin around the product, as the catalogue photos have


@dataclass(frozen=True)
class Framing:
    """What framing did to one photo."""

    applied: bool
    reason: str  # why it was applied or left alone
    background: tuple[int, int, int] | None = None
    box: tuple[int, int, int, int] | None = None  # left, top, right, bottom in the input photo


def distance_to(arr: np.ndarray, colour) -> np.ndarray:
    """Euclidean RGB distance of every pixel to `colour` (float32, 0..441)."""
    diff = arr.astype(np.float32) - np.asarray(colour, dtype=np.float32)
    return np.sqrt((diff * diff).sum(axis=-1))


def close_to(arr: np.ndarray, colour, tolerance: float) -> np.ndarray:
    """distance_to(arr, colour) < tolerance, without the square root (the same pixels: it is monotonic)."""
    diff = arr.astype(np.float32) - np.asarray(colour, dtype=np.float32)
    return np.einsum("...k,...k->...", diff, diff) < np.float32(tolerance) * np.float32(tolerance)


def background_mask(arr: np.ndarray, colour, tolerance: float = TOLERANCE) -> np.ndarray:
    """Pixels close to `colour` and connected to the photo's border (4-connected): the backdrop, not a white collar
    inside a shirt."""
    import cv2

    count, labels = cv2.connectedComponents(close_to(arr, colour, tolerance).astype(np.uint8), connectivity=4)
    on_edge = np.zeros(count, dtype=bool)
    on_edge[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    on_edge[0] = False  # label 0: the pixels that are not close
    return on_edge[labels]


def opened(mask: np.ndarray) -> np.ndarray:
    """A binary opening by the 3x3 cross, nothing outside the mask (specks and one-pixel threads go)."""
    import cv2

    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, cross, borderType=cv2.BORDER_CONSTANT,
                            borderValue=0) > 0


STUDIO_TOLERANCE = 24.0  # a catalogue photo's white studio backdrop: pixels this close to white, connected to the border


def studio_mask(arr: np.ndarray) -> np.ndarray:
    """The product of a catalogue studio shot (uint8 RGB): everything but its white backdrop. The one cut-out rule
    that training composites, re-shot photos and vibe-mini's masks share."""
    return ~background_mask(arr, (255, 255, 255), tolerance=STUDIO_TOLERANCE)


def cutout(image: Image.Image) -> Image.Image:
    """A studio shot's product as RGBA, cropped to it: the white backdrop transparent, its edge feathered."""
    alpha = Image.fromarray((studio_mask(np.asarray(image, dtype=np.uint8)) * 255).astype(np.uint8))
    alpha = alpha.filter(ImageFilter.GaussianBlur(1.0))
    out = image.convert("RGBA")
    out.putalpha(alpha)
    return out.crop(alpha.getbbox() or (0, 0, *image.size))


def mask_box(mask: np.ndarray, size: tuple[int, int], pad: int = 1) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The box of a boolean mask: (in the mask's pixels, widened by `pad` on each side so faint edges stay in; and in a
    photo of `size` (w, h) that the mask covers). The one mask-to-box rule of framing, the segmenter and proposals."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    small = (max(0, cols[0] - pad), max(0, rows[0] - pad), min(w, cols[-1] + 1 + pad), min(h, rows[-1] + 1 + pad))
    sx, sy = size[0] / w, size[1] / h
    return small, tuple(int(round(v * s)) for v, s in zip(small, (sx, sy, sx, sy)))


def _border(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    b = max(1, int(round(min(h, w) * BORDER)))
    return np.concatenate([arr[:b].reshape(-1, 3), arr[-b:].reshape(-1, 3), arr[:, :b].reshape(-1, 3), arr[:, -b:].reshape(-1, 3)])


def reduced(image: Image.Image, side: int) -> Image.Image:
    """`image` box-reduced by the largest whole factor that keeps its long side at least `side` (so under twice `side`):
    on a 1,000 px photo a fifth of what a bilinear resize costs."""
    factor = max(image.size) // side
    return image.reduce(factor) if factor >= 2 else image


def _find(image: Image.Image) -> tuple[Framing, np.ndarray | None, tuple[int, int, int, int] | None]:
    """find_product, with the product mask on the analysis copy and the box in its pixels (for recolouring)."""
    small = reduced(image, ANALYSIS_SIDE)
    arr = np.asarray(small, dtype=np.uint8)
    ring = _border(arr)
    colour = np.median(ring, axis=0)
    plain = float(close_to(ring, colour, TOLERANCE).mean())
    if plain < PLAIN_BORDER:
        return Framing(False, f"busy or cut-off background ({plain:.0%} of the border is one colour)"), None, None
    product = ~background_mask(arr, colour)
    fg = opened(product) if min(product.shape) > 16 else product  # specks are not the product
    area = float(fg.mean())
    if not MIN_AREA <= area <= MAX_AREA:
        return Framing(False, f"no clear product ({area:.0%} of the photo differs from the background)"), None, None
    small_box, box = mask_box(fg, image.size)  # one analysis pixel more on each side: faint edges stay in the crop
    return Framing(True, "plain background", tuple(int(c) for c in colour), box), product, small_box


def find_product(image: Image.Image) -> Framing:
    """Where the product is, if the photo has a plain backdrop; `applied=False` with the reason otherwise."""
    return _find(image)[0]


def frame_product(image: Image.Image, side: int | None = None) -> tuple[Image.Image, Framing]:
    """The product cropped from its plain backdrop (any colour), on white, with a small margin; or the photo as it was.
    `side`: the long side the caller needs (the encoder: twice its input side); a crop over twice that is box-reduced
    first, since the model's input is smaller still (recolouring a 1,000 px crop cost three times the rest)."""
    found, product, small_box = _find(image)
    if not found.applied:
        return image, found
    crop = image.crop(found.box)
    if side:
        crop = reduced(crop, side)
    alpha = None
    if distance_to(np.asarray([found.background]), (255, 255, 255))[0] > TOLERANCE / 2:
        # a coloured backdrop becomes white, through the product mask found above
        left, top, right, bottom = small_box
        alpha = product[top:bottom, left:right]
    return on_white(crop, alpha), found


def on_white(crop: Image.Image, alpha: np.ndarray | None = None) -> Image.Image:
    """`crop` re-centred on white with the catalogue's margin. `alpha`: the product's mask over the crop (0..1, any
    resolution; scaling it up feathers its edge): what is not product becomes white as well."""
    mask = None
    if alpha is not None:
        mask = Image.fromarray((np.asarray(alpha, np.float32) * 255).round().astype(np.uint8)).resize(crop.size, Image.BILINEAR)
    w, h = crop.size
    pad = int(round(max(w, h) * MARGIN))
    out = Image.new("RGB", (w + 2 * pad, h + 2 * pad), (255, 255, 255))
    out.paste(crop, (pad, pad), mask)
    return out


def crops(image: Image.Image, scale: float = 0.7, grid: int = 3) -> list[Image.Image]:
    """grid x grid windows of `scale` of each side, corner to corner: where framing cannot isolate the product (a busy
    backdrop), one of them holds it with less of the backdrop around it."""
    w, h = image.size
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    steps = np.linspace(0.0, 1.0, grid)
    return [image.crop((round((w - cw) * fx), round((h - ch) * fy), round((w - cw) * fx) + cw, round((h - ch) * fy) + ch))
            for fy in steps for fx in steps]
