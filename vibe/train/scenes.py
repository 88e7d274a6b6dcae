"""Training scenes for the proposal detector, on batches of tensors: one to five catalogue products (cut out, or as
whole photos on their white backdrop) scaled to 10-90 % of the frame, overlapping or cut off at its edge, on many
kinds of backdrop (with things that are not products on them): plain and gradient, noise, fabric (stripes, checks,
weave), wood grain, bricks and tiles, the real photos that ship with scikit-learn, "dead leaves" (many overlapping
shapes filled with real textures: a room, a shelf, a crowd of things), close-ups of the catalogue's own fabrics and
surfaces, product pages (text bars, buttons, thumbnails) and white studio flat-lays. The boxes are the visible
extent of each product; most scenes are not square and come letterboxed on grey, as the detector sees photos. The
evaluation's held-out kinds (vibe.eval.heldout) are made elsewhere, of other backdrops."""
from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from .composite import paste

FAMILIES = ("plain", "noise", "fabric", "wood", "tiles", "photo", "page", "studio", "leaves", "closeup")
FAMILY_WEIGHTS = torch.tensor([0.06, 0.06, 0.08, 0.06, 0.06, 0.26, 0.1, 0.08, 0.14, 0.1])


def _u(lo: float, hi: float, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(*shape or (1,), generator=gen)


def _colour(gen: torch.Generator) -> torch.Tensor:
    return torch.rand(3, 1, 1, generator=gen)


def _grid(s: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")


def _noise(s: int, gen: torch.Generator, octaves=(4, 8, 16, 32)) -> torch.Tensor:
    """Value noise in [0, 1], several octaves: blotches, stains, textured walls."""
    out = torch.zeros(1, 1, s, s)
    for i, o in enumerate(octaves):
        out += F.interpolate(torch.rand(1, 1, o, o, generator=gen), size=(s, s), mode="bicubic", align_corners=False) / 2 ** i
    out = out[0]
    return (out - out.min()) / (out.max() - out.min() + 1e-6)


def _plain(s, gen):
    yy, xx = _grid(s)
    angle = float(_u(0, math.pi, gen))
    t = (xx * math.cos(angle) + yy * math.sin(angle))[None]
    t = (t - t.min()) / (t.max() - t.min() + 1e-6) * float(_u(0, 1, gen))
    return torch.lerp(_colour(gen).expand(3, s, s), _colour(gen).expand(3, s, s), t)


def _noisy(s, gen):
    return torch.lerp(_colour(gen).expand(3, s, s), _colour(gen).expand(3, s, s), _noise(s, gen))


def _fabric(s, gen):
    yy, xx = _grid(s)
    angle, freq = float(_u(0, math.pi, gen)), float(_u(4, 24, gen))
    u, v = xx * math.cos(angle) + yy * math.sin(angle), yy * math.cos(angle) - xx * math.sin(angle)
    a, b, c = _colour(gen), _colour(gen), _colour(gen)
    kind = int(torch.randint(0, 3, (1,), generator=gen))
    if kind == 0:  # stripes
        pattern = (torch.sin(2 * math.pi * freq * u) > 0).float()[None]
        out = torch.lerp(a.expand(3, s, s), b.expand(3, s, s), pattern)
    elif kind == 1:  # checks / plaid: two sets of bands, mixed
        bands = (torch.sin(2 * math.pi * freq * u) > 0.3).float()[None], (torch.sin(2 * math.pi * freq * v) > 0.3).float()[None]
        out = a * (1 - bands[0]) * (1 - bands[1]) + b * bands[0] * (1 - bands[1]) + c * bands[1]
    else:  # a plain cloth
        out = a.expand(3, s, s).clone()
    weave = torch.sin(2 * math.pi * 60 * xx) * torch.sin(2 * math.pi * 60 * yy)  # the thread's fine texture
    return (out * (1 + 0.08 * weave[None]) + 0.05 * (_noise(s, gen, (16, 32, 64)) - 0.5)).clamp(0, 1)


def _wood(s, gen):
    yy, xx = _grid(s)
    cx, cy = float(_u(-1, 2, gen)), float(_u(-3, 4, gen))
    warp = _noise(s, gen, (4, 8))[0] * float(_u(0.05, 0.3, gen))
    r = torch.sqrt((xx - cx) ** 2 + 0.05 * (yy - cy) ** 2) + warp
    grain = torch.frac(r * float(_u(8, 30, gen)))[None] ** 2
    light, dark = torch.tensor([0.78, 0.6, 0.42]).view(3, 1, 1), torch.tensor([0.45, 0.3, 0.18]).view(3, 1, 1)
    tone = float(_u(0.6, 1.2, gen))
    return (torch.lerp(light, dark, grain) * tone).clamp(0, 1)


@cache
def _sample_photos() -> tuple[torch.Tensor, ...]:
    """scikit-learn's two sample photos (a temple in China, a flower): real photographs, shipped with a dependency."""
    from sklearn.datasets import load_sample_images

    return tuple(torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in load_sample_images().images)


def _photo_crop(s: int, gen: torch.Generator) -> torch.Tensor:
    photo = _sample_photos()[int(torch.randint(0, 2, (1,), generator=gen))]
    _, h, w = photo.shape
    side = int(min(h, w) * float(_u(0.15, 1.0, gen)))
    y, x = int(torch.randint(0, h - side + 1, (1,), generator=gen)), int(torch.randint(0, w - side + 1, (1,), generator=gen))
    crop = F.interpolate(photo[None, :, y:y + side, x:x + side], size=(s, s), mode="bilinear", align_corners=False)[0]
    crop = torch.rot90(crop, int(torch.randint(0, 4, (1,), generator=gen)), (1, 2))
    crop = crop.flip(2) if torch.rand(1, generator=gen) < 0.5 else crop
    if torch.rand(1, generator=gen) < 0.3:  # many real rooms, walls and floors photograph grey
        crop = crop.mean(0, keepdim=True).expand(3, s, s)
    return (crop * _u(0.7, 1.3, gen, 3, 1, 1)).clamp(0, 1)


def _photo(s, gen):
    """Real photographs: one crop of scikit-learn's two photos, or a mosaic of up to four (a room is many surfaces)."""
    out = _photo_crop(s, gen)
    if torch.rand(1, generator=gen) < 0.5:
        cut_x, cut_y = int(_u(0.2, 0.8, gen) * s), int(_u(0.2, 0.8, gen) * s)
        for ys, xs in ((slice(0, cut_y), slice(cut_x, s)), (slice(cut_y, s), slice(0, cut_x)), (slice(cut_y, s), slice(cut_x, s))):
            if torch.rand(1, generator=gen) < 0.7:
                out[:, ys, xs] = _photo_crop(s, gen)[:, ys, xs]
    return out


def _page(s, gen):
    page = torch.ones(3, s, s) * float(_u(0.9, 1.0, gen))
    header = int(_u(0.05, 0.14, gen) * s)
    page[:, :header] = _colour(gen)
    for _ in range(int(torch.randint(4, 14, (1,), generator=gen))):  # text lines and buttons
        y, x = int(_u(0, 0.95, gen) * s), int(_u(0, 0.8, gen) * s)
        h = max(1, int(_u(0.01, 0.05, gen) * s))
        w = int(_u(0.1, 0.6, gen) * s)
        shade = _colour(gen) if torch.rand(1, generator=gen) < 0.3 else torch.full((3, 1, 1), float(_u(0.1, 0.6, gen)))
        page[:, y:y + h, x:x + w] = shade
    return page


def _tiles(s, gen):
    """Bricks, tiles, planks: rows of blocks with joints, each block its own shade (a wall, a floor)."""
    rows = int(_u(3, 14, gen))
    cols = int(_u(1, 8, gen))
    yy, xx = _grid(s)
    r = torch.floor(yy * rows)
    offset = (r % 2) * 0.5 * float(torch.rand(1, generator=gen) < 0.6)  # brick bond
    c = torch.floor(xx * cols + offset)
    joint = ((torch.frac(yy * rows) < 0.08) | (torch.frac(xx * cols + offset) < 0.08 / max(1, cols / rows)))
    shade = torch.rand(64, 64, generator=gen)[(r % 64).long(), (c % 64).long()]
    base, spread = _colour(gen), float(_u(0.05, 0.35, gen))
    out = base * (1 - spread / 2 + spread * shade)[None]
    out = torch.where(joint[None], _colour(gen) * 0.5 + 0.4, out) + 0.06 * (_noise(s, gen, (16, 32, 64)) - 0.5)
    return out.clamp(0, 1)


def _studio(s, gen):
    return torch.ones(3, s, s) * float(_u(0.93, 1.0, gen))


def _closeup(s: int, gen: torch.Generator, x: torch.Tensor, alpha: torch.Tensor, bbox: torch.Tensor) -> torch.Tensor:
    """A close-up of a catalogue product's surface (a knit, a print, leather, skin) filling the frame: real photographed
    texture, and no whole product in it (no outline to find)."""
    k = int(torch.randint(0, len(x), (1,), generator=gen))
    x0, y0, x1, y1 = bbox[k].tolist()
    side = max(4, int(min(x1 - x0, y1 - y0) * float(_u(0.25, 0.5, gen))))
    for _ in range(8):  # a window that is mostly product, not its white backdrop
        left, top = int(_u(x0, max(x0, x1 - side), gen)), int(_u(y0, max(y0, y1 - side), gen))
        if alpha[k, 0, top:top + side, left:left + side].mean() > 0.9:
            break
    window = x[k:k + 1, :, top:top + side, left:left + side]
    crop = F.interpolate(window, size=(s, s), mode="bicubic", align_corners=False)[0]
    return torch.rot90(crop, int(torch.randint(0, 4, (1,), generator=gen)), (1, 2)).clamp(0, 1)


def _leaves(s: int, gen: torch.Generator, x: torch.Tensor, alpha: torch.Tensor, bbox: torch.Tensor) -> torch.Tensor:
    """The dead-leaves model of natural images: many shapes of every size (few large, many small) overlapping, each
    filled with a flat shaded colour, a real photo or a close-up of a surface. The statistics of a cluttered room
    without any of its objects being a product."""
    img = _photo_crop(s, gen) if torch.rand(1, generator=gen) < 0.5 else _noisy(s, gen)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    for _ in range(int(torch.randint(20, 60, (1,), generator=gen))):
        r = math.exp(float(_u(math.log(0.03), math.log(0.45), gen))) * 2
        cx, cy = float(_u(-1.1, 1.1, gen)), float(_u(-1.1, 1.1, gen))
        angle, aspect, power = float(_u(0, math.pi, gen)), float(_u(0.4, 1.0, gen)), float(_u(1.2, 5.0, gen))
        u = ((xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)) / r
        v = ((yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)) / (r * aspect)
        mask = (u.abs() ** power + v.abs() ** power) < 1
        if not mask.any():
            continue
        kind = float(torch.rand(1, generator=gen))
        fill = _colour(gen).expand(3, s, s) * (1 + 0.3 * u.clamp(-1, 1))[None] if kind < 0.4 else \
            _photo_crop(s, gen) if kind < 0.7 else _closeup(s, gen, x, alpha, bbox)
        img = torch.where(mask[None], fill, img)
    return F.avg_pool2d(F.pad(img[None], (1, 1, 1, 1), mode="replicate"), 3, 1)[0].clamp(0, 1)


TEXTURED = {"leaves": _leaves, "closeup": _closeup}  # backdrops made with the scene's catalogue photos
BACKDROPS = {"plain": _plain, "noise": _noisy, "fabric": _fabric, "wood": _wood, "tiles": _tiles, "photo": _photo,
             "page": _page, "studio": _studio}


def _clutter(s: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """A thing that is not a product, to be learned as backdrop: a blob cut out of a real photo, a shaded ellipse or
    polygon (a cup, a wheel, a box), or a rectangular photo (a poster, a screen). (patch, mask, left, top)."""
    w, h = (max(4, int(math.exp(float(_u(math.log(0.08), math.log(0.7), gen))) * s)) for _ in range(2))
    kind = int(torch.randint(0, 3, (1,), generator=gen))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    if kind == 0:  # a blob of a real photo
        patch = F.interpolate(_photo(max(w, h), gen)[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        wobble = F.interpolate(torch.rand(1, 1, 4, 4, generator=gen), size=(h, w), mode="bicubic", align_corners=False)[0, 0]
        mask = ((xx ** 2 + yy ** 2) < 0.55 + 0.5 * wobble).float()
    elif kind == 1:  # a shaded solid: ellipse or polygon-like (a superellipse)
        power = float(_u(1.5, 6.0, gen))
        mask = ((xx.abs() ** power + yy.abs() ** power) < 1).float()
        light = (1 - 0.5 * (xx * float(_u(-1, 1, gen)) + yy * float(_u(-1, 1, gen))).clamp(-1, 1) * 0.5)
        patch = (_colour(gen) * light[None]).clamp(0, 1) if torch.rand(1, generator=gen) < 0.6 else \
            _fabric(max(w, h), gen)[:, :h, :w] * light[None]
    else:  # a framed photo or a screen
        patch = _photo(max(w, h), gen)[:, :h, :w]
        mask = torch.ones(h, w)
    left, top = int(_u(-0.3 * w, s - 0.7 * w, gen)), int(_u(-0.3 * h, s - 0.7 * h, gen))
    return patch, mask[None], left, top


def _place(img: torch.Tensor, patch: torch.Tensor, cover: torch.Tensor, left: int, top: int):
    """Paste `patch` at (left, top), clipped to the frame; the slices pasted (or None when it falls outside)."""
    s = img.shape[-1]
    h, w = patch.shape[-2:]
    a0, b0, a1, b1 = max(0, left), max(0, top), min(s, left + w), min(s, top + h)
    if a1 <= a0 or b1 <= b0:
        return None
    inner = (slice(b0 - top, b1 - top), slice(a0 - left, a1 - left))
    img[:, b0:b1, a0:a1] = paste(img[:, b0:b1, a0:a1], patch[:, inner[0], inner[1]], cover[:, inner[0], inner[1]])
    return (slice(b0, b1), slice(a0, a1)), inner


def _lit(patch: torch.Tensor, mask: torch.Tensor, backdrop_mean: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A product in the scene's light: a shading across it and a little of the room's colour."""
    h, w = patch.shape[-2:]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    shade = 1 + float(_u(0, 0.25, gen)) * (xx * float(_u(-1, 1, gen)) + yy * float(_u(-1, 1, gen)))
    return torch.lerp(patch * shade[None] * float(_u(0.75, 1.1, gen)), backdrop_mean, float(_u(0, 0.2, gen))).clamp(0, 1)


def scene(x: torch.Tensor, alpha: torch.Tensor, bbox: torch.Tensor, gen: torch.Generator, s: int = 128,
          family: str | None = None) -> tuple[torch.Tensor, list[tuple[float, float, float, float]], str]:
    """One training photo (3, s, s) in [0, 1], the boxes of the products in it, and its backdrop family. x: (n, 3, r,
    r) catalogue photos on white in [0, 1]; alpha: (n, 1, r, r) their product masks; bbox: (n, 4) each product's box in
    its photo (x0, y0, x1, y1, pixels)."""
    # real photos most often: they are what shoppers' photos are made of, and the hardest to tell from a product
    family = family or FAMILIES[int(torch.multinomial(FAMILY_WEIGHTS, 1, generator=gen))]
    img = TEXTURED[family](s, gen, x, alpha, bbox) if family in TEXTURED else BACKDROPS[family](s, gen)
    if family != "studio":  # things that are not products: a detector must learn to leave them alone
        for _ in range(int(torch.randint(0, 7, (1,), generator=gen))):
            _place(img, *_clutter(s, gen))
    owner = torch.zeros(s, s, dtype=torch.long)  # which product each pixel shows (0: none)
    n_products = int(torch.multinomial(torch.tensor([0.3, 0.25, 0.2, 0.15, 0.1]), 1, generator=gen)) + 1
    tile_share = 0.75 if family in ("page", "studio") else 0.2  # on a page, products come as whole photos (thumbnails)
    room = img.mean((1, 2), keepdim=True)
    areas = []
    for j in range(1, n_products + 1):
        k = int(torch.randint(0, len(x), (1,), generator=gen))
        x0, y0, x1, y1 = bbox[k].tolist()
        tile = bool(torch.rand(1, generator=gen) < tile_share)
        # the product's long side: 10-90 % of the frame, small ones more often (log-uniform)
        long = math.exp(float(_u(math.log(0.1), math.log(0.9), gen))) * s
        src = (0, 0, x.shape[-1], x.shape[-2]) if tile else (x0, y0, x1, y1)
        scale = long / max(x1 - x0, y1 - y0)
        w, h = max(2, round((src[2] - src[0]) * scale)), max(2, round((src[3] - src[1]) * scale))
        patch = F.interpolate(x[k:k + 1, :, src[1]:src[3], src[0]:src[2]], size=(h, w), mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(alpha[k:k + 1, :, src[1]:src[3], src[0]:src[2]], size=(h, w), mode="bilinear", align_corners=False)[0]
        if torch.rand(1, generator=gen) < 0.5:
            patch, mask = patch.flip(2), mask.flip(2)
        if not tile and family not in ("studio", "page"):
            patch = _lit(patch, mask, room, gen)
        # anywhere, up to 40 % of it outside the frame
        left, top = int(_u(-0.4 * w, s - 0.6 * w, gen)), int(_u(-0.4 * h, s - 0.6 * h, gen))
        cover = torch.ones_like(mask) if tile else mask
        if not tile and torch.rand(1, generator=gen) < 0.5:  # a soft shadow under it, a little off
            shadow = F.avg_pool2d(F.pad(mask[None], (3, 3, 3, 3)), 7, 1)[0] * float(_u(0.2, 0.5, gen))
            _place(img, torch.zeros_like(patch), shadow, left + int(_u(-0.05, 0.08, gen) * w), top + int(_u(0, 0.08, gen) * h))
        placed = _place(img, patch, cover, left, top)
        if placed is None:
            continue
        (rows, cols), (inner_rows, inner_cols) = placed
        region = owner[rows, cols]
        region[cover[0, inner_rows, inner_cols] > 0.5] = 0  # what this one covers is no longer seen of the earlier ones
        region[mask[0, inner_rows, inner_cols] > 0.5] = j
        areas.append((j, float((mask[0] > 0.5).sum())))
    if torch.rand(1, generator=gen) < 0.6:  # a photo that is not square, letterboxed on grey as the detector sees it
        keep = int(_u(0.5, 1.0, gen) * s)
        start = int(_u(0, s - keep, gen))
        band = torch.full((3, s, s), 0.5)
        tall = bool(torch.rand(1, generator=gen) < 0.5)
        at = (s - keep) // 2
        if tall:
            band[:, :, at:at + keep] = img[:, :, start:start + keep]
            owner = torch.nn.functional.pad(owner[:, start:start + keep], (at, s - keep - at))
        else:
            band[:, at:at + keep] = img[:, start:start + keep]
            owner = torch.nn.functional.pad(owner[start:start + keep], (0, 0, at, s - keep - at))
        img = band
    boxes = []
    for j, area in areas:
        ys, xs = torch.nonzero(owner == j, as_tuple=True)
        if len(ys) >= max(4, 0.4 * area):  # a product mostly hidden or outside is not one to find
            boxes.append((float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))
    # the camera: light and colour, sometimes softness and noise
    mean = img.mean()
    img = ((img - mean) * float(_u(0.75, 1.25, gen)) + mean) * float(_u(0.75, 1.2, gen)) * _u(0.9, 1.1, gen, 3, 1, 1)
    if torch.rand(1, generator=gen) < 0.3:
        img = F.avg_pool2d(F.pad(img[None], (1, 1, 1, 1), mode="replicate"), 3, 1)[0]
    img = img + float(_u(0, 0.04, gen)) * torch.randn(img.shape, generator=gen)
    return img.clamp(0, 1), boxes, family
