"""Training composites, on batches of tensors: each product (a studio shot and its mask) moved in frame and pasted on
another backdrop, relit, blurred, downscaled, noisy. vibe-mini's re-shot views and the segmenter's busy scenes are both
made here, through one `place` and one `paste`. No hue change: colour is a label."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _p(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def light(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The catalogue view: a random horizontal flip and a shift of up to 1/10 of the side on white. x in [0, 1]."""
    n, _, r, _ = x.shape
    x = torch.where(_p(n, 0.5, gen)[:, None, None, None], x.flip(3), x)
    pad = max(1, r // 10)
    padded = F.pad(x, (pad, pad, pad, pad), value=1.0)
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    return padded[:, :, dy:dy + r, dx:dx + r]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.arange(-2, 3, dtype=x.dtype)
    w = torch.exp(-(k ** 2) / (2 * sigma ** 2))
    w = (w / w.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), w.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), w.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def place(x: torch.Tensor, alpha: torch.Tensor, gen: torch.Generator, smaller: float = 0.6,
          smallest: float = 0.45) -> tuple[torch.Tensor, torch.Tensor]:
    """Each product moved in its frame (scaled, rotated, shifted, mirrored): (product pixels, product mask), both zero
    outside the product. x: (n, 3, r, r) in [0, 1] on white; alpha: (n, 1, r, r) product mask. A share `smaller` of
    the products is scaled by smallest..1, the rest by 1..1.35 (cropped in)."""
    n = len(x)
    # geometry: mostly smaller in frame, sometimes cropped in; a small rotation; anywhere in the frame; mirrored
    scale = torch.where(_p(n, smaller, gen), _u(n, smallest, 1.0, gen), _u(n, 1.0, 1.35, gen))
    angle = torch.where(_p(n, 0.7, gen), _u(n, -14, 14, gen), torch.zeros(n)) * math.pi / 180
    shift = (1 - scale).clamp(min=0.15)[:, None] * (2 * torch.rand(n, 2, generator=gen) - 1)
    flip = torch.where(_p(n, 0.5, gen), -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, -shift[:, 0] / scale], 1),
                         torch.stack([sin * flip, cos, -shift[:, 1] / scale], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    both = F.grid_sample(torch.cat([x, alpha], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return both[:, :3], both[:, 3:4]


def tilt(product: torch.Tensor, mask: torch.Tensor, gen: torch.Generator, most: float,
         p: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A share `p` of the products (zero outside their masks, as `place` gives them) seen a little off-axis: a
    homography that moves each corner of the frame by up to `most` of its side, as a phone held at an angle does."""
    n, _, r, _ = product.shape
    out = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]).expand(n, 4, 2)
    src = out + 2 * most * (2 * torch.rand(n, 4, 2, generator=gen) - 1)
    # the 8 unknowns of H (h33 = 1) that take each output corner (u, v) to its source corner (x, y)
    u, v, x, y = out[..., 0], out[..., 1], src[..., 0], src[..., 1]
    one, zero = torch.ones_like(u), torch.zeros_like(u)
    rows_x = torch.stack([u, v, one, zero, zero, zero, -u * x, -v * x], -1)
    rows_y = torch.stack([zero, zero, zero, u, v, one, -u * y, -v * y], -1)
    h = torch.linalg.solve(torch.cat([rows_x, rows_y], 1), torch.cat([x, y], 1))
    h = torch.cat([h, torch.ones(n, 1)], 1).view(n, 3, 3)
    base = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), [n, 1, r, r], align_corners=False)  # (n, r, r, 2) of (u, v)
    mapped = torch.einsum("nhwk,njk->nhwj", torch.cat([base, torch.ones(n, r, r, 1)], -1), h)
    grid = mapped[..., :2] / mapped[..., 2:].clamp(min=1e-3)
    both = F.grid_sample(torch.cat([product, mask], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    keep = _p(n, p, gen)[:, None, None, None]
    return torch.where(keep, both[:, :3], product), torch.where(keep, both[:, 3:], mask)


def white_balance(y: torch.Tensor, gen: torch.Generator, most: float, p: float = 0.5) -> torch.Tensor:
    """A share `p` of the photos under a camera's white balance a little off: each channel's gain within 1 +- `most`.
    Mild on purpose: at +-8 % a colour keeps its name (a label), a warm or cool cast no longer changes the embedding."""
    n = len(y)
    gains = torch.where(_p(n, p, gen)[:, None], _u(n * 3, 1 - most, 1 + most, gen).view(n, 3), torch.ones(n, 3))
    return y * gains.view(n, 3, 1, 1)


def reshoot(x: torch.Tensor, alpha: torch.Tensor, gen: torch.Generator, perspective: float = 0.0,
            cast: float = 0.0) -> torch.Tensor:
    """A re-shot view of each product photo. x: (n, 3, r, r) in [0, 1] on white; alpha: (n, 1, r, r) product mask.
    `perspective`: corners moved by up to this share of the side (`tilt`); `cast`: channel gains up to 1 +- this
    (`white_balance`); 0 leaves either out (and draws nothing for it, so a recipe without them is made as before)."""
    n, _, r, _ = x.shape
    product, mask = place(x, alpha, gen)
    if perspective:
        product, mask = tilt(product, mask, gen, perspective)
    # backdrop: white, a plain tint, or busy (another photo of the batch, blurred and recoloured, with noise)
    kind = torch.rand(n, generator=gen)
    tint = _u(n * 3, 0.15, 0.97, gen).view(n, 3, 1, 1)
    other = x.roll(int(torch.randint(1, max(2, n), (1,), generator=gen)), 0)
    other = F.interpolate(other, scale_factor=float(_u(1, 1.2, 2.5, gen)), mode="bilinear", align_corners=False)[:, :, :r, :r]
    busy = _blur(0.6 * other + 0.4 * tint, float(_u(1, 0.6, 1.6, gen))) + 0.06 * torch.randn(n, 3, r, r, generator=gen)
    backdrop = torch.where((kind < 0.25)[:, None, None, None], torch.ones_like(x),
                           torch.where((kind < 0.55)[:, None, None, None], tint.expand_as(x), busy))
    y = paste(backdrop, product, mask)
    # light: brightness and contrast; then optics: blur, low resolution, sensor noise
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * _u(n, 0.7, 1.3, gen).view(n, 1, 1, 1) + mean) * _u(n, 0.7, 1.3, gen).view(n, 1, 1, 1)
    if cast:
        y = white_balance(y, gen, cast)
    y = torch.where(_p(n, 0.25, gen)[:, None, None, None], _blur(y, 1.0), y)
    small = F.interpolate(F.interpolate(y, scale_factor=float(_u(1, 0.35, 0.7, gen)), mode="bilinear", align_corners=False),
                          size=(r, r), mode="bilinear", align_corners=False)
    y = torch.where(_p(n, 0.25, gen)[:, None, None, None], small, y)
    y = y + torch.where(_p(n, 0.25, gen), _u(n, 0.01, 0.05, gen), torch.zeros(n)).view(n, 1, 1, 1) * torch.randn(y.shape, generator=gen)
    return y.clamp(0, 1)


def paste(backdrop: torch.Tensor, product: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The products (zero outside their masks, as `place` gives them) over the backdrops."""
    return mask * product + (1 - mask) * backdrop


def _stripes(n: int, r: int, gen: torch.Generator) -> torch.Tensor:
    """Sharp two-colour stripes or checks at random angles and frequencies: a busy backdrop that is not a photo."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, r), torch.linspace(0, 1, r), indexing="ij")
    angle = torch.rand(n, generator=gen)[:, None, None] * math.pi
    freq = 3 + 12 * torch.rand(n, generator=gen)[:, None, None]
    wave = torch.sin(2 * math.pi * freq * (xx * torch.cos(angle) + yy * torch.sin(angle)))
    checks = torch.rand(n, generator=gen)[:, None, None] < 0.3
    wave = torch.where(checks, wave * torch.sin(2 * math.pi * freq * (yy * torch.cos(angle) - xx * torch.sin(angle))), wave)
    a, b = torch.rand(n, 3, 1, 1, generator=gen), torch.rand(n, 3, 1, 1, generator=gen)
    return torch.where((wave > 0)[:, None], a, b)


def busy_scene(x: torch.Tensor, alpha: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training pairs: each product (x on white, alpha its mask) moved in frame and pasted on a backdrop (plain, a
    collage of other products cut out or as whole photos, stripes, another photo enlarged; sharp or soft), relit, with
    noise. (photo, mask)."""
    n, _, r, _ = x.shape
    product, mask = place(x, alpha, gen, smaller=0.85, smallest=0.3)  # a product small in a busy frame too
    u = lambda lo, hi, k=n: lo + (hi - lo) * torch.rand(k, generator=gen)  # noqa: E731
    tint = u(0.1, 0.97, n * 3).view(n, 3, 1, 1).expand(n, 3, r, r)
    collage, tiles = tint.clone(), tint.clone()
    for _ in range(3):  # other products of the batch: cut out, or whole photos (white backdrop and all), layered
        k = int(torch.randint(1, max(2, n), (1,), generator=gen))
        other, other_mask = place(x.roll(k, 0), alpha.roll(k, 0), gen)
        collage = other_mask * other + (1 - other_mask) * collage
        tile, footprint = place(x.roll(k, 0), torch.ones_like(alpha), gen, smaller=1.0, smallest=0.3)
        tiles = footprint * tile + (1 - footprint) * tiles
    mix = u(0.0, 0.45).view(n, 1, 1, 1)
    collage, tiles = torch.lerp(collage, tint, mix), torch.lerp(tiles, tint, mix)
    scene = F.interpolate(x.roll(2, 0), scale_factor=float(u(1.5, 3.0, 1)), mode="bilinear", align_corners=False)[:, :, :r, :r]
    scene = torch.lerp(scene, tint, u(0.1, 0.5).view(n, 1, 1, 1))
    kind = torch.rand(n, generator=gen)[:, None, None, None]
    backdrop = torch.where(kind < 0.08, torch.ones_like(x), torch.where(kind < 0.2, tint, torch.where(
        kind < 0.5, collage, torch.where(kind < 0.75, tiles, torch.where(kind < 0.88, _stripes(n, r, gen), scene)))))
    soft = torch.rand(n, generator=gen)[:, None, None, None] < 0.5
    backdrop = torch.where(soft, _blur(backdrop, float(u(0.5, 1.5, 1))), backdrop)
    y = paste(backdrop, product, mask)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * u(0.7, 1.3).view(n, 1, 1, 1) + mean) * u(0.7, 1.3).view(n, 1, 1, 1)
    y = y + u(0.0, 0.06).view(n, 1, 1, 1) * torch.randn(y.shape, generator=gen)
    return y.clamp(0, 1), mask
