"""Product segmentation for the photos framing leaves alone (a busy backdrop: a table, a bed, a shop): a small U-Net
trained on the catalogue's own studio shots, each cut out by its white backdrop and pasted on other backdrops. At query
time it finds the product's mask, and the query is also searched as that cut-out, re-centred on white."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torch import nn

from . import augment
from .catalog import load_catalog
from .config import CatalogConfig
from .errors import VibeError
from .framing import on_white, reduced
from .fsutil import atomic_folder, load_module, save_module, write_json
from .parts import bf16_native, weights_digest
from .progress import Progress, silent

CONFIG_FILE = "segmenter.json"
WEIGHTS_FILE = "model.safetensors"
DEFAULT = Path(__file__).resolve().parent.parent / "checkpoints" / "segmenter"
MIN_AREA, MAX_AREA = 0.04, 0.9  # a mask smaller or larger than this share of the photo is not a product: no cut-out
MIN_CONFIDENCE = 0.75  # mean probability inside the mask under which the cut-out is not offered


@dataclass(frozen=True)
class SegmenterConfig:
    side: int = 64  # the photo is squashed to side x side: a mask for a crop box and an alpha, not for a print
    width: int = 16
    epochs: int = 14
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    report_fraction: float = 0.05
    bf16: bool = True
    seed: int = 0


def _block(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """A four-level U-Net: down to 1/8 of the side (which object is the product needs the whole frame), back up with skips."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.down = nn.ModuleList([_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w)])
        self.up = nn.ModuleList([_block(12 * w, 4 * w), _block(6 * w, 2 * w), _block(3 * w, w)])
        self.out = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1))
        return self.out(x)


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


def composite(x: torch.Tensor, alpha: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training pairs: each product (x on white, alpha its mask) moved in frame and pasted on a backdrop (plain, a
    collage of other products cut out or as whole photos, stripes, another photo enlarged; sharp or soft), relit, with
    noise. (photo, mask)."""
    n, _, r, _ = x.shape
    product, mask = augment.place(x, alpha, gen, smaller=0.85, smallest=0.3)  # a product small in a busy frame too
    u = lambda lo, hi, k=n: lo + (hi - lo) * torch.rand(k, generator=gen)  # noqa: E731
    tint = u(0.1, 0.97, n * 3).view(n, 3, 1, 1).expand(n, 3, r, r)
    collage, tiles = tint.clone(), tint.clone()
    for _ in range(3):  # other products of the batch: cut out, or whole photos (white backdrop and all), layered
        k = int(torch.randint(1, max(2, n), (1,), generator=gen))
        other, other_mask = augment.place(x.roll(k, 0), alpha.roll(k, 0), gen)
        collage = other_mask * other + (1 - other_mask) * collage
        tile, footprint = augment.place(x.roll(k, 0), torch.ones_like(alpha), gen, smaller=1.0, smallest=0.3)
        tiles = footprint * tile + (1 - footprint) * tiles
    mix = u(0.0, 0.45).view(n, 1, 1, 1)
    collage, tiles = torch.lerp(collage, tint, mix), torch.lerp(tiles, tint, mix)
    scene = F.interpolate(x.roll(2, 0), scale_factor=float(u(1.5, 3.0, 1)), mode="bilinear", align_corners=False)[:, :, :r, :r]
    scene = torch.lerp(scene, tint, u(0.1, 0.5).view(n, 1, 1, 1))
    kind = torch.rand(n, generator=gen)[:, None, None, None]
    backdrop = torch.where(kind < 0.08, torch.ones_like(x), torch.where(kind < 0.2, tint, torch.where(
        kind < 0.5, collage, torch.where(kind < 0.75, tiles, torch.where(kind < 0.88, _stripes(n, r, gen), scene)))))
    soft = torch.rand(n, generator=gen)[:, None, None, None] < 0.5
    backdrop = torch.where(soft, augment._blur(backdrop, float(u(0.5, 1.5, 1))), backdrop)
    y = mask * product + (1 - mask) * backdrop
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * u(0.7, 1.3).view(n, 1, 1, 1) + mean) * u(0.7, 1.3).view(n, 1, 1, 1)
    y = y + u(0.0, 0.06).view(n, 1, 1, 1) * torch.randn(y.shape, generator=gen)
    return y.clamp(0, 1), mask


def _loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * mask).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + mask.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, mask) + dice.mean()


def train_segmenter(catalog: CatalogConfig, out_dir: Path, cfg: SegmenterConfig = SegmenterConfig(),
                    progress: Progress = silent, log=lambda line: None, exclude_ids: set[int] = frozenset()) -> dict:
    """Train the segmenter on a catalogue's studio shots (their white backdrop gives the mask) and save it to `out_dir`.
    The report is the mean IoU on composites of photos held out of training."""
    from .mini import _decode_all  # the same framed photos and masks vibe-mini trains on

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    cat = load_catalog(catalog)
    for line in cat.report.lines():
        log(line)
    left_out = cat.items["id"].isin(list(exclude_ids))
    if left_out.any():
        log(f"  left out {int(left_out.sum())} excluded items")
    items = cat.items[~left_out].reset_index(drop=True)
    pixels, masks, ok = _decode_all([cat.root / p for p in items["path"]], cfg.side, True, progress)
    if len(ok) < 50:
        raise VibeError(f"the segmenter needs at least 50 readable studio photos; {catalog.root} has {len(ok)}.")
    x_all = torch.from_numpy(pixels[ok]).permute(0, 3, 1, 2).contiguous()
    a_all = torch.from_numpy(masks[ok])[:, None].contiguous()
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(x_all), generator=gen)
    n_held = max(16, int(len(order) * cfg.report_fraction))
    held, fit = order[:n_held], order[n_held:]
    net = SegNet(cfg.width)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(fit) / cfg.batch_size)
    # (at least 10 steps: a one-cycle schedule needs a warm-up step and a decay step)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 10), pct_start=0.2)
    use_bf16 = cfg.bf16 and bf16_native()
    for epoch in range(cfg.epochs):
        net.train()
        perm = fit[torch.randperm(len(fit), generator=gen)]
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            y, mask = composite(x_all[idx].float().div_(255.0), a_all[idx].float().div_(255.0), gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logits = net(y.mul(2.0).sub(1.0)).float()
            loss = _loss(logits, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        progress("train segmenter", epoch + 1, cfg.epochs)
    net.eval()
    report_gen = torch.Generator().manual_seed(cfg.seed + 1)
    with torch.no_grad():
        y, mask = composite(x_all[held].float().div_(255.0), a_all[held].float().div_(255.0), report_gen)
        pred = net(y.mul(2.0).sub(1.0)) > 0
        truth = mask > 0.5
        iou = ((pred & truth).sum((1, 2, 3)) / (pred | truth).sum((1, 2, 3)).clamp(min=1)).float()
    report = {"n_train": int(len(fit)), "n_report": int(len(held)), "epochs": cfg.epochs,
              "report_iou": round(float(iou.mean()), 4), "train_seconds": round(time.perf_counter() - t_start, 1)}
    try:
        with atomic_folder(out_dir) as staging:
            save_module(staging / WEIGHTS_FILE, net, {"format": "vibe-segmenter-1"})
            write_json(staging / CONFIG_FILE, {
                "kind": "vibe-segmenter", "config": asdict(cfg), "trained_on": str(cat.root), "subset": catalog.subset,
                "holdout_fraction": catalog.holdout_fraction, "excluded_items": len(exclude_ids), "report": report,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    except OSError as e:
        raise VibeError(f"Could not save the segmenter to {out_dir} ({e.strerror or e}); what was there before is "
                        "untouched. Free disk space (or fix permissions) and train again.") from None
    return report


def load_segmenter(folder: Path = DEFAULT) -> "Segmenter | None":
    """The shipped segmenter (or the one in `folder`); None when there is none (query views are then the whole photo
    and its crops)."""
    return Segmenter(folder) if (Path(folder) / CONFIG_FILE).exists() else None


class Segmenter:
    """A trained SegNet: `mask(image)` -> the product's probability per pixel of a side x side copy."""

    def __init__(self, folder: Path = DEFAULT):
        folder = Path(folder)
        fix = "train one with `python -m vibe train-segmenter --data DIR`"
        try:
            meta = json.loads((folder / CONFIG_FILE).read_text())
            self.cfg = SegmenterConfig(**meta["config"])
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise VibeError(f"{folder} is not a usable segmenter ({CONFIG_FILE}: {type(e).__name__}); {fix}.") from None
        self.net = load_module(folder / WEIGHTS_FILE, lambda m: SegNet(self.cfg.width), "segmenter", fix).eval()
        self.digest = weights_digest(self.net)[:12]

    @torch.inference_mode()
    def mask(self, image: Image.Image) -> np.ndarray:
        s = self.cfg.side
        arr = np.asarray(reduced(image, s).resize((s, s), Image.BILINEAR), dtype=np.float32) / 127.5 - 1.0
        return torch.sigmoid(self.net(torch.from_numpy(arr).permute(2, 0, 1)[None]))[0, 0].numpy()

    def view(self, image: Image.Image, side: int | None = None) -> Image.Image | None:
        """The product cut out and re-centred on white (as framing does on a plain backdrop), or None when the mask
        does not look like one product. `side`: as in vibe.framing.frame_product."""
        cut = self.cut_out(image)
        if cut is None:
            return None
        alpha, box = cut
        crop = image.crop(box)
        return on_white(reduced(crop, side) if side else crop, alpha)

    def cut_out(self, image: Image.Image) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """(alpha over the box, at the mask's resolution; box in the photo) of the product, or None when the mask does
        not look like one product (too small, too large, not confident)."""
        prob = self.mask(image)
        labels, n = ndimage.label(prob > 0.5)
        if not n:
            return None
        sizes = ndimage.sum_labels(np.ones_like(prob), labels, index=np.arange(1, n + 1))
        keep = labels == 1 + int(np.argmax(sizes))
        if not MIN_AREA <= keep.mean() <= MAX_AREA or prob[keep].mean() < MIN_CONFIDENCE:
            return None
        rows, cols = np.flatnonzero(keep.any(1)), np.flatnonzero(keep.any(0))
        s = self.cfg.side
        small_box = (max(0, cols[0] - 1), max(0, rows[0] - 1), min(s, cols[-1] + 2), min(s, rows[-1] + 2))
        sx, sy = image.width / s, image.height / s
        box = tuple(int(round(v * f)) for v, f in zip(small_box, (sx, sy, sx, sy)))
        alpha = np.where(ndimage.binary_dilation(keep, iterations=1), prob, 0.0)
        left, top, right, bottom = small_box
        return alpha[top:bottom, left:right], box
