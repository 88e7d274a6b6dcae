"""Batch augmentations for training vibe-mini, on tensors: the product cut out and re-shot (scaled, moved, rotated, on a
white, tinted or busy backdrop, relit, blurred, downscaled, noisy). No hue change: colour is a label."""
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


def reshoot(x: torch.Tensor, alpha: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A re-shot view of each product photo. x: (n, 3, r, r) in [0, 1] on white; alpha: (n, 1, r, r) product mask."""
    n, _, r, _ = x.shape
    product, mask = place(x, alpha, gen)
    # backdrop: white, a plain tint, or busy (another photo of the batch, blurred and recoloured, with noise)
    kind = torch.rand(n, generator=gen)
    tint = _u(n * 3, 0.15, 0.97, gen).view(n, 3, 1, 1)
    other = x.roll(int(torch.randint(1, max(2, n), (1,), generator=gen)), 0)
    other = F.interpolate(other, scale_factor=float(_u(1, 1.2, 2.5, gen)), mode="bilinear", align_corners=False)[:, :, :r, :r]
    busy = _blur(0.6 * other + 0.4 * tint, float(_u(1, 0.6, 1.6, gen))) + 0.06 * torch.randn(n, 3, r, r, generator=gen)
    backdrop = torch.where((kind < 0.25)[:, None, None, None], torch.ones_like(x),
                           torch.where((kind < 0.55)[:, None, None, None], tint.expand_as(x), busy))
    y = mask * product + (1 - mask) * backdrop
    # light: brightness and contrast; then optics: blur, low resolution, sensor noise
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * _u(n, 0.7, 1.3, gen).view(n, 1, 1, 1) + mean) * _u(n, 0.7, 1.3, gen).view(n, 1, 1, 1)
    y = torch.where(_p(n, 0.25, gen)[:, None, None, None], _blur(y, 1.0), y)
    small = F.interpolate(F.interpolate(y, scale_factor=float(_u(1, 0.35, 0.7, gen)), mode="bilinear", align_corners=False),
                          size=(r, r), mode="bilinear", align_corners=False)
    y = torch.where(_p(n, 0.25, gen)[:, None, None, None], small, y)
    y = y + torch.where(_p(n, 0.25, gen), _u(n, 0.01, 0.05, gen), torch.zeros(n)).view(n, 1, 1, 1) * torch.randn(y.shape, generator=gen)
    return y.clamp(0, 1)
