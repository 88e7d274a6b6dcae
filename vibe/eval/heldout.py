"""Held-out query photos for evaluation: kinds of photo, and real-photo backdrops, that no training path makes or sees.
No module under vibe.train (nor vibe.eval.reshoot) may import this one, so a score on these photos stays a held-out score."""
from __future__ import annotations

import functools
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from ..config import HELDOUT_KINDS
from ..errors import VibeError
from ..locate.framing import studio_mask

KINDS: dict[str, str] = {
    "real_backdrop": "the product cut out and placed (25-70 % of the frame's side) on a crop of a real photo (a table, a "
                     "wall, the ground...), with a soft contact shadow and the photo's light",
    "page_screenshot": "a competitor's product page: a header bar, the product photo as a large image on the left (35-55 % "
                       "of the page width, on its white or on a light card), title, price and description drawn in a real "
                       "font, an 'Add to cart' button, and a row of 3-4 thumbnails of other catalogue products below",
    "phone_shot": "the product on an unevenly lit plain surface (a colour gradient and a light falloff), rotated 5-20 "
                  "degrees, tilted in perspective, with vignette, sensor noise, mild blur and JPEG quality 70-90",
    "white_balance": "the catalogue photo itself (enlarged to 480-720 px) under a warm or a cool white balance: red up "
                     "and blue down by 8-18 % (or the reverse), a mild tone curve",
}
assert tuple(KINDS) == HELDOUT_KINDS, "vibe.config.HELDOUT_KINDS names the kinds of KINDS, in order"
VERSION = "heldout-1"  # part of the cache key of a held-out photo: change it when a kind changes
PARTS = ("calibrate", "score")
# scikit-image's sample photos, split so that a calibration set and the scored set never share a backdrop; the
# motorcycle stereo pair is nearly one photo twice, so it stays in one part
PHOTOS: dict[str, tuple[str, ...]] = {
    "calibrate": ("grass.png", "rocket.jpg", "camera.png", "coins.png", "hubble_deep_field.jpg"),
    "score": ("coffee.png", "brick.png", "gravel.png", "chelsea.png", "motorcycle_left.png", "motorcycle_right.png",
              "astronaut.png"),
}
WORK_SIDE = 300  # catalogue photos (~60x80) are enlarged to this first: a query photo is a larger photo of the product
VISIBLE = 0.5  # a pixel counts in a product's box when at least half of it is that product
MIN_INSIDE, MAX_HIDDEN = 0.6, 0.5  # a scene's product keeps this share inside the frame, and loses at most this to others
SURFACES = [(236, 230, 218), (205, 190, 170), (176, 148, 118), (226, 226, 229), (150, 155, 160), (92, 86, 80),
            (200, 210, 222), (241, 240, 234), (120, 132, 120)]  # paper, wood, grey desk, bedsheet, dark table...
SHOPS = ("NORTHWIND", "Atelier Nova", "urban thread", "MODA+", "Kestrel & Co", "loomly", "THE DRAWER")
ADJECTIVES = ("Classic", "Essential", "Relaxed", "Slim Fit", "Vintage", "Everyday", "Premium", "Signature", "Organic")
NOUNS = ("Tee", "Shirt", "Sneakers", "Dress", "Tote Bag", "Watch", "Jacket", "Kurta", "Jeans", "Heels", "Cap")
PHRASES = ("Soft cotton blend.", "A relaxed fit for everyday wear.", "Breathable, lightweight fabric.", "Machine washable.",
           "Tailored cut with durable stitching.", "A versatile piece for work, weekends and travel.", "Made to last.",
           "Model is 180 cm and wears size M.", "Free returns within 30 days.", "Ships in 2-3 business days.")


@dataclass(frozen=True)
class HeldoutPhoto:
    """One held-out query photo and where every product in it is."""

    image: Image.Image  # RGB
    boxes: list[tuple[int, int, int, int]]  # (left, top, right, bottom) of every product in the photo
    target: int  # index into boxes of the product that was searched for
    kind: str


def heldout_photo(photo: Image.Image, kind: str, seed: int, key: int, others: Sequence[Image.Image] = (),
                  part: str = "score") -> HeldoutPhoto:
    """A held-out query photo of `kind` made from an item's catalogue photo, deterministic for (seed, key, kind, part).
    `others`: other catalogue photos (the distractor thumbnails of a page screenshot, which needs at least 3)."""
    if kind not in KINDS:
        raise ValueError(f"unknown held-out kind {kind!r}; the kinds are {', '.join(KINDS)}")
    rng = _rng(seed, key, kind, part)
    make = {"real_backdrop": _real_backdrop, "page_screenshot": _page_screenshot, "phone_shot": _phone_shot,
            "white_balance": _white_balance}[kind]
    image, boxes = make(photo.convert("RGB"), rng, part, others)
    return HeldoutPhoto(image, boxes, 0, kind)


def scene(products: Sequence[Image.Image], seed: int, key: int, part: str = "score") -> HeldoutPhoto:
    """A real-photo backdrop with 1-5 products, each 10-90 % of the frame's side, placed at random: a later one may hide
    part of an earlier one (at most half) and the frame may cut one off (at least 60 % stays inside). A product that
    finds no such place is left out. boxes: the visible extent of each product placed, in order; target = 0."""
    if not 1 <= len(products) <= 5:
        raise ValueError(f"a scene holds 1-5 products, not {len(products)}")
    rng = _rng(seed, key, "scene", part)
    size = _frame_size(rng)
    frame = _backdrop(rng, part, size)
    light = _light(frame)
    visible: list[np.ndarray] = []
    shown: list[float] = []  # each product's in-frame area when it was placed
    for i, photo in enumerate(products):
        cut = _cutout(photo.convert("RGB"))
        for _ in range(30):
            product = _scaled(cut, rng.uniform(0.1, 0.9), size)
            xy = _spot(product, size, rng, inside=MIN_INSIDE ** 0.5)
            a = _alpha(_layer(product, xy, size))
            full = np.asarray(product.getchannel("A"), dtype=np.float32).sum() / 255
            if a.sum() >= MIN_INSIDE * full and all(
                    (v * (1 - a)).sum() >= (1 - MAX_HIDDEN) * s for v, s in zip(visible, shown)):
                break
        else:
            if i:
                continue
            product = _scaled(cut, rng.uniform(0.1, 0.9), size)  # the target always makes it in, whole
            xy = _spot(product, size, rng, inside=1.0)
        a = _put(frame, product, xy, rng, light)
        visible = [v * (1 - a) for v in visible] + [a]
        shown.append(float(a.sum()))
    return HeldoutPhoto(_image(frame), [_box(v) for v in visible], 0, "scene")


def real_photos(part: str) -> list[Image.Image]:
    """The part's real backdrop photos (RGB), read once from scikit-image's data folder."""
    return list(_load_photos(part))


@functools.cache
def _load_photos(part: str) -> tuple[Image.Image, ...]:
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; the parts are {', '.join(PARTS)}")
    spec = importlib.util.find_spec("skimage")  # its files only: importing skimage takes seconds
    if spec is None or not spec.submodule_search_locations:
        raise VibeError("the held-out real-photo backdrops come from scikit-image: pip install -r requirements.txt")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    missing = [name for name in PHOTOS[part] if not (folder / name).is_file()]
    if missing:
        raise VibeError(f"scikit-image's data folder {folder} lacks the held-out backdrops {', '.join(missing)}: "
                        "pip install -r requirements.txt")
    return tuple(Image.open(folder / name).convert("RGB") for name in PHOTOS[part])


def _rng(seed: int, key: int, kind: str, part: str) -> np.random.Generator:
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; the parts are {', '.join(PARTS)}")
    return np.random.default_rng([int(seed) % 2 ** 32, int(key) % 2 ** 32, [*KINDS, "scene"].index(kind),
                                  PARTS.index(part)])


def _frame_size(rng: np.random.Generator) -> tuple[int, int]:
    w, h = [(3, 4), (1, 1), (4, 3), (9, 16), (16, 9), (2, 3)][int(rng.integers(0, 6))]
    side = int(rng.integers(480, 901))
    return (side, round(side * h / w)) if w >= h else (round(side * w / h), side)


def _enlarge(photo: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    s = side / max(photo.size)
    return photo.resize((max(1, round(photo.width * s)), max(1, round(photo.height * s))), Image.BICUBIC)


def _mask(photo: Image.Image) -> Image.Image:
    """The studio shot's product as an L mask; a photo with no white backdrop is all product."""
    mask = studio_mask(np.asarray(photo, dtype=np.uint8))
    return Image.fromarray(mask.astype(np.uint8) * 255 if mask.any() else np.full(mask.shape, 255, np.uint8))


def _cutout(photo: Image.Image) -> Image.Image:
    """The product as RGBA, cropped to it. The edge is eroded a pixel first: the enlarged photo's light fringe there is
    backdrop, and would show as a halo on a dark surface."""
    photo = _enlarge(photo)
    alpha = _mask(photo).filter(ImageFilter.MinFilter(3)).filter(ImageFilter.GaussianBlur(0.8))
    out = photo.convert("RGBA")
    out.putalpha(alpha)
    return out.crop(alpha.getbbox() or (0, 0, *photo.size))


def _scaled(product: Image.Image, share: float, size: tuple[int, int]) -> Image.Image:
    s = share * min(size[0] / product.width, size[1] / product.height)
    return product.resize((max(1, round(product.width * s)), max(1, round(product.height * s))), Image.BICUBIC)


def _spot(product: Image.Image, size: tuple[int, int], rng: np.random.Generator, inside: float) -> tuple[int, int]:
    """A random top-left corner that keeps at least `inside` of the product's width and height in the frame."""
    out = [product.width * (1 - inside), product.height * (1 - inside)]
    return (int(rng.integers(-out[0], size[0] - product.width + out[0] + 1)),
            int(rng.integers(-out[1], size[1] - product.height + out[1] + 1)))


def _layer(product: Image.Image, xy: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    out = Image.new("RGBA", size, (0, 0, 0, 0))
    out.paste(product, xy)
    return out


def _alpha(layer: Image.Image) -> np.ndarray:
    return np.asarray(layer.getchannel("A"), dtype=np.float32) / 255


def _box(alpha: np.ndarray, at: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
    """The extent of a product's alpha (its pixels at least half product), shifted by `at`."""
    rows, cols = np.flatnonzero((alpha >= VISIBLE).any(axis=1)), np.flatnonzero((alpha >= VISIBLE).any(axis=0))
    return int(cols[0]) + at[0], int(rows[0]) + at[1], int(cols[-1]) + 1 + at[0], int(rows[-1]) + 1 + at[1]


def _image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def _light(frame: np.ndarray) -> np.ndarray:
    """Per-pixel, per-channel gains that give a pasted product the backdrop's light: its colour cast, its brightness
    and how they vary across the frame (a very coarse copy of the backdrop), softened so the product keeps its colour."""
    h, w = frame.shape[:2]
    coarse = np.asarray(_image(frame).resize((6, 6), Image.BOX).resize((w, h), Image.BILINEAR), np.float32) / 255
    mean = max(float(coarse.mean()), 1e-3)
    return (np.maximum(coarse, 1e-3) / mean) ** 0.3 * np.clip(mean / 0.6, 0.55, 1.15) ** 0.4


def _put(frame: np.ndarray, product: Image.Image, xy: tuple[int, int], rng: np.random.Generator,
         light: np.ndarray | None) -> np.ndarray:
    """Paste an RGBA product into `frame` (float RGB, in place) over a soft shadow; returns its alpha in the frame."""
    size = frame.shape[1], frame.shape[0]
    layer = _layer(product, xy, size)
    a = _alpha(layer)
    reach = max(product.size)
    offset = (xy[0] + round(rng.uniform(-0.03, 0.03) * reach), xy[1] + round(rng.uniform(0.01, 0.04) * reach))
    shadow = _layer(product, offset, size).getchannel("A").filter(ImageFilter.GaussianBlur(2 + 0.03 * reach))
    frame *= 1 - rng.uniform(0.3, 0.55) * (np.asarray(shadow, np.float32) / 255)[..., None]
    rgb = np.asarray(layer.convert("RGB"), np.float32) * (1 if light is None else light)
    frame[:] = frame * (1 - a[..., None]) + rgb * a[..., None]
    return a


def _backdrop(rng: np.random.Generator, part: str, size: tuple[int, int]) -> np.ndarray:
    """A random crop (at least 40 % of each side, at the frame's aspect) of one of the part's photos, maybe mirrored."""
    photos = _load_photos(part)
    photo = _pick(rng, photos)
    pw, ph = photo.size
    aspect = size[0] / size[1]
    cw, ch = (ph * aspect, ph) if pw / ph > aspect else (pw, pw / aspect)
    s = rng.uniform(min(1.0, max(0.4 * pw / cw, 0.4 * ph / ch)), 1.0)
    cw, ch = cw * s, ch * s
    x, y = rng.uniform(0, pw - cw), rng.uniform(0, ph - ch)
    crop = photo.resize(size, Image.BICUBIC, box=(x, y, x + cw, y + ch))
    return np.asarray(crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop, np.float32)


def _real_backdrop(photo, rng, part, others):
    size = _frame_size(rng)
    frame = _backdrop(rng, part, size)
    product = _scaled(_cutout(photo), rng.uniform(0.25, 0.7), size)
    a = _put(frame, product, _spot(product, size, rng, inside=1.0), rng, _light(frame))
    return _image(frame), [_box(a)]


def _perspective(quad: np.ndarray, size: tuple[int, int]) -> list[float]:
    """Image.transform's PERSPECTIVE data mapping the output frame's corners onto `quad` (4x2, in the input)."""
    w, h = size
    rows = []
    for (x, y), (u, v) in zip([(0, 0), (w, 0), (w, h), (0, h)], quad):
        rows += [[x, y, 1, 0, 0, 0, -x * u, -y * u], [0, 0, 0, x, y, 1, -x * v, -y * v]]
    return np.linalg.solve(np.array(rows, float), quad.reshape(-1).astype(float)).tolist()


def _phone_shot(photo, rng, part, others):
    size = w, h = _frame_size(rng)
    side = int(1.6 * max(size))  # a canvas the rotated, tilted frame fits in, corners and all
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    top = np.array(_pick(rng, SURFACES), np.float32)
    bottom = np.clip(top + rng.normal(0, 14, 3), 0, 255) * rng.uniform(0.75, 1.0)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle) + 0.5, 0, 1)[..., None]
    canvas = top * (1 - t) + bottom * t
    product = _scaled(_cutout(photo), rng.uniform(0.35, 0.6), size)
    centre = side / 2 + rng.uniform(-0.1, 0.1, 2) * size
    xy = (round(centre[0] - product.width / 2), round(centre[1] - product.height / 2))
    a = _put(canvas, product, xy, rng, None)
    lx, ly = rng.uniform(0.2, 0.8, 2)  # a window or a lamp off to one side: light falls off across the shot
    canvas *= (1 - rng.uniform(0.25, 0.5) * np.clip(((xx - lx) ** 2 + (yy - ly) ** 2) / 0.5, 0, 1))[..., None]
    theta = np.radians(rng.uniform(5, 20) * rng.choice([-1, 1]))
    corners = np.array([(-w, -h), (w, -h), (w, h), (-w, h)], float) / 2
    keystone = rng.uniform(0.04, 0.12) * rng.choice([-1, 1])  # the phone held tilted: one edge nearer than the other
    corners[:2, 0] *= 1 - keystone
    corners[2:, 0] *= 1 + keystone
    corners += rng.uniform(-0.03, 0.03, (4, 2)) * size
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    quad = corners @ rot.T + side / 2
    data = _perspective(quad, size)
    image = _image(canvas).transform(size, Image.PERSPECTIVE, data, Image.BICUBIC)
    mask = Image.fromarray((a * 255).astype(np.uint8)).transform(size, Image.PERSPECTIVE, data, Image.BILINEAR)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5
    arr = np.asarray(image, np.float32) * (1 - rng.uniform(0.15, 0.35) * r2)[..., None]
    arr += rng.normal(0, rng.uniform(2, 6), arr.shape) + rng.normal(0, 2, (h, w, 1))  # chroma and luma noise
    image = _image(arr).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=int(rng.integers(70, 91)))
    return Image.open(buf).convert("RGB"), [_box(np.asarray(mask, np.float32) / 255)]


def _white_balance(photo, rng, part, others):
    photo = _enlarge(photo, int(rng.integers(480, 721)))
    box = _box(np.asarray(_mask(photo), np.float32) / 255)
    g = rng.uniform(0.08, 0.18)
    # warm (tungsten) or cool (shade, a blue sky); green a little down too, so white reads cream or sky blue, not
    # yellow or cyan
    gains = np.array([1 + g, 1 - g / 4 + rng.uniform(-0.01, 0.01), 1 - g])
    gains = gains if rng.random() < 0.5 else gains[::-1]
    arr = 255 * np.clip(np.asarray(photo, np.float32) * gains / 255, 0, 1) ** rng.uniform(0.85, 1.15)
    image = ImageEnhance.Contrast(_image(arr)).enhance(rng.uniform(0.92, 1.08))
    return image, [box]


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _card(photo: Image.Image, size: tuple[int, int], fill, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
    """A catalogue photo as a shop shows it: on its own white, fitted to the card, or cut out onto a light card."""
    photo = _enlarge(photo)
    card = Image.new("RGB", size, fill)
    if fill == (255, 255, 255):
        fitted = _scaled(photo, 1.0, size)
        mask = _mask(photo).resize(fitted.size, Image.BILINEAR)
    else:
        fitted = _scaled(_cutout(photo), rng.uniform(0.8, 0.92), size)
        mask = fitted.getchannel("A")
    xy = ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2)
    card.paste(fitted, xy, fitted if fitted.mode == "RGBA" else None)
    alpha = np.zeros(size[::-1], np.float32)
    alpha[xy[1]:xy[1] + fitted.height, xy[0]:xy[0] + fitted.width] = np.asarray(mask, np.float32) / 255
    return card, alpha


def _wrap(draw: ImageDraw.ImageDraw, words: list[str], font, width: float) -> list[str]:
    lines = [""]
    for word in words:
        line = f"{lines[-1]} {word}".strip()
        if draw.textlength(line, font=font) <= width or not lines[-1]:
            lines[-1] = line
        else:
            lines.append(word)
    return lines


def _page_screenshot(photo, rng, part, others):
    if len(others) < 3:
        raise ValueError("a page screenshot needs at least 3 other catalogue photos for its distractor thumbnails")
    w = int(rng.integers(760, 901))
    margin, head, n = round(w * rng.uniform(0.03, 0.05)), round(w * rng.uniform(0.06, 0.085)), int(rng.integers(3, 5))
    aspect = photo.height / photo.width
    img_w = min(round(w * rng.uniform(0.35, 0.55)), round(520 / aspect))
    img_h, gap = round(img_w * aspect), margin // 2
    # thumbnails at most ~a third of the main photo's side: the searched-for product is the page's largest
    thumb_w = min(round(0.36 * img_w), (w - 2 * margin - (n - 1) * gap) // n)
    thumb_h, top = round(thumb_w * aspect), head + margin + 22
    row_top = top + img_h + margin + 30
    page = Image.new("RGB", (w, row_top + thumb_h + 40 + margin), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    _header(draw, w, head, margin, rng)
    fill = (255, 255, 255) if rng.random() < 0.5 else _pick(rng, [(244, 244, 244), (247, 242, 236), (240, 243, 247)])
    card, alpha = _card(photo, (img_w, img_h), fill, rng)
    page.paste(card, (margin, top))
    boxes = [_box(alpha, (margin, top))]
    _details(draw, margin * 2 + img_w, top, w - img_w - 3 * margin, top + img_h, rng)
    draw.text((margin, row_top - 26), "You may also like", font=_font(17), fill=(20, 20, 20))
    for i, j in enumerate(rng.choice(len(others), n, replace=False)):
        x = margin + i * (thumb_w + gap)
        card, alpha = _card(others[int(j)].convert("RGB"), (thumb_w, thumb_h), (255, 255, 255), rng)
        page.paste(card, (x, row_top))
        boxes.append(_box(alpha, (x, row_top)))
        draw.rectangle((x - 1, row_top - 1, x + thumb_w, row_top + thumb_h), outline=(225, 225, 225))
        draw.text((x, row_top + thumb_h + 6), _title(rng), font=_font(12), fill=(60, 60, 60))
        draw.text((x, row_top + thumb_h + 22), f"${rng.integers(12, 180)}.99", font=_font(12), fill=(20, 20, 20))
    return page, boxes


def _header(draw: ImageDraw.ImageDraw, w: int, head: int, margin: int, rng: np.random.Generator) -> None:
    dark = rng.random() < 0.6
    draw.rectangle((0, 0, w, head), fill=_pick(rng, [(22, 26, 36), (150, 28, 44), (20, 84, 96)]) if dark else
                   (246, 246, 246))
    ink, nav = ((255, 255, 255) if dark else (30, 30, 30)), _font(round(head * 0.24))
    draw.text((margin, head / 2), _pick(rng, SHOPS), font=_font(round(head * 0.42)), fill=ink, anchor="lm")
    x = w * 0.3
    for item in ("Women", "Men", "Kids", "Sale"):
        draw.text((x, head / 2), item, font=nav, fill=ink, anchor="lm")
        x += draw.textlength(item, font=nav) + w * 0.035
    draw.rounded_rectangle((w * 0.64, head * 0.28, w - margin, head * 0.72), radius=head * 0.2, fill=(255, 255, 255),
                           outline=(200, 200, 200))
    draw.text((w * 0.66, head / 2), "Search", font=nav, fill=(150, 150, 150), anchor="lm")
    draw.text((margin, head + margin * 0.6), "Home / Clothing / New in", font=_font(12), fill=(120, 120, 120))


def _details(draw: ImageDraw.ImageDraw, x: int, y: int, col: int, bottom: int, rng: np.random.Generator) -> None:
    """The column right of the product photo: brand, title, price, rating, sizes, the button, a description."""
    draw.text((x, y), _pick(rng, SHOPS).upper(), font=_font(13), fill=(110, 110, 110))
    big = _font(int(rng.integers(22, 30)))
    for line in _wrap(draw, _title(rng).split(), big, col):
        y += big.size + 6
        draw.text((x, y), line, font=big, fill=(20, 20, 20))
    price = f"${rng.integers(12, 180)}.{_pick(rng, ['00', '49', '95', '99'])}"
    draw.text((x, y + 40), price, font=big, fill=_pick(rng, [(180, 30, 40), (20, 20, 20)]))
    reviews = f"{rng.uniform(3.6, 4.9):.1f} out of 5  ({rng.integers(3, 900)} reviews)"
    draw.text((x, y + 84), reviews, font=_font(12), fill=(90, 90, 90))
    for i, size in enumerate(("XS", "S", "M", "L", "XL")):
        draw.rectangle((x + 42 * i, y + 110, x + 42 * i + 34, y + 136), outline=(170, 170, 170))
        draw.text((x + 42 * i + 17, y + 123), size, font=_font(12), fill=(40, 40, 40), anchor="mm")
    button = min(col, 240)
    draw.rounded_rectangle((x, y + 150, x + button, y + 192), radius=6,
                           fill=_pick(rng, [(255, 153, 0), (20, 20, 20), (0, 104, 190), (196, 40, 60)]))
    draw.text((x + button / 2, y + 171), "Add to cart", font=_font(17), fill=(255, 255, 255), anchor="mm")
    words = " ".join(rng.permutation(PHRASES)[:int(rng.integers(4, 8))]).split()
    for i, line in enumerate(_wrap(draw, words, _font(14), col)[:max(1, (bottom - y - 210) // 20)]):
        draw.text((x, y + 210 + 20 * i), line, font=_font(14), fill=(70, 70, 70))


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(0, len(options)))]


def _title(rng: np.random.Generator) -> str:
    return f"{_pick(rng, ADJECTIVES)} {_pick(rng, NOUNS)}"
