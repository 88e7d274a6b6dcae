"""Product segmentation for the photos framing leaves alone (a busy backdrop: a table, a bed, a shop): a small U-Net
(trained by vibe.train.segmenter on the catalogue's own studio shots pasted on other backdrops) finds the product's
mask, and the query is also searched as that cut-out, re-centred on white."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torch import nn

from ..config import REPO_ROOT
from ..util.checkpoint import load_trained
from .framing import mask_box, on_white, reduced

CONFIG_FILE = "segmenter.json"
WEIGHTS_FILE = "model.safetensors"
DEFAULT = REPO_ROOT / "checkpoints" / "segmenter"
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


def load_segmenter(folder: Path = DEFAULT) -> "Segmenter | None":
    """The shipped segmenter (or the one in `folder`); None when there is none (query views are then the whole photo
    and its crops)."""
    return Segmenter(folder) if (Path(folder) / CONFIG_FILE).exists() else None


class Segmenter:
    """A trained SegNet: `mask(image)` -> the product's probability per pixel of a side x side copy."""

    def __init__(self, folder: Path = DEFAULT):
        self.cfg, self.net, self.digest = load_trained(folder, CONFIG_FILE, WEIGHTS_FILE, SegmenterConfig,
                                                       lambda cfg: SegNet(cfg.width), "segmenter", "train-segmenter")

    @torch.inference_mode()
    def mask(self, image: Image.Image) -> np.ndarray:
        s = self.cfg.side
        arr = np.asarray(reduced(image, s).resize((s, s), Image.BILINEAR), dtype=np.float32) / 127.5 - 1.0
        return torch.sigmoid(self.net(torch.from_numpy(arr).permute(2, 0, 1)[None]))[0, 0].numpy()

    def view(self, image: Image.Image, side: int | None = None, cut=None) -> Image.Image | None:
        """The product cut out and re-centred on white (as framing does on a plain backdrop), or None when the mask
        does not look like one product. `side`: as in vibe.locate.framing.frame_product; `cut`: `cut_out(image)`
        when the caller has it already."""
        cut = cut or self.cut_out(image)
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
        small_box, box = mask_box(keep, image.size)
        alpha = np.where(ndimage.binary_dilation(keep, iterations=1), prob, 0.0)
        left, top, right, bottom = small_box
        return alpha[top:bottom, left:right], box
