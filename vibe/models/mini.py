"""vibe-mini, the project's own offline encoder: a compact CNN, its preprocessing, its recipe and how a checkpoint
loads (training: vibe.train.mini)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import VibeError
from ..util.checkpoint import load_module

CONFIG_FILE = "vibe-mini.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class MiniConfig:
    """Architecture and training recipe of vibe-mini."""

    resolution: int = 80  # small product shots: 80 px keeps what matters at an eighth of 224 px's cost (64 px lost ~1 pt)
    width: int = 32
    dim: int = 512
    epochs: int = 48  # v3: 12 min with native bf16 on 2 cores (v2's 36 took 22 min on a slower machine; 70 gave no more)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    min_class_count: int = 10
    report_fraction: float = 0.05  # held out of training, for the report
    bf16: bool = True  # autocast where the CPU has native bf16 (about 2x here); fp32 elsewhere
    framing: bool = True  # photos cropped to the product on white (vibe.locate.framing) in training and at embedding time
    reshoot: bool = True  # a second, re-shot view of every photo (vibe.train.composite), with the attribute losses too
    reshoot_label_weight: float = 0.3  # weight of the attribute losses on the re-shot view (1.0 cost ~1 pt item_type)
    instance_weight: float = 1.0  # pulls a photo's two views together against the batch's other photos (InfoNCE)
    temperature: float = 0.1
    class_weight: float = 1.0  # pulls photos of the same item type, colour and gender together (supervised contrastive)
    # the labels whose combination makes a class of that term; v2's (item type, colour) pulled men's and women's black
    # T-shirts together and cost the gender head (v3 with gender: 0.861 against 0.852 on unseen photos)
    class_heads: tuple[str, ...] = ("item_type", "colour", "gender")
    perspective: float = 0.08  # half the re-shot views tilted: corners moved by up to this share of the side (v3 on)
    cast: float = 0.08  # half the re-shot views under a white balance: channel gains within 1 +- this (v3 on)
    seed: int = 0


def _block(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MiniNet(nn.Module):
    """Stride-2 stem, three stride-2 stages, 1x1 to 512, global pooling, a linear embedding layer."""

    def __init__(self, width: int = 32, dim: int = 512):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 8 * w, 2),
            nn.Conv2d(8 * w, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x))


@dataclass(frozen=True)
class SquarePreprocess:
    """Pad to a white square (product shots stay whole), resize, scale to [-1, 1]."""

    resolution: int

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(to_square_array(image, self.resolution).copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)

    def to_dict(self) -> dict:
        return {"type": "square-pad-white", "resolution": self.resolution}


def to_square_array(image: Image.Image, r: int) -> np.ndarray:
    w, h = image.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image = canvas
    return np.asarray(image.resize((r, r), Image.BILINEAR, reducing_gap=2.0), dtype=np.uint8)


def load_mini(folder: Path) -> tuple[MiniNet, SquarePreprocess, dict]:
    """Load a vibe-mini folder (safetensors: loading runs no code)."""
    folder = Path(folder)
    fix = "train one with `python -m vibe train-backbone --data DIR`"
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
        cfg = MiniConfig(**meta["config"])
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise VibeError(f"{folder} is not a usable vibe-mini checkpoint ({CONFIG_FILE}: {type(e).__name__}); {fix}.") from None
    net = load_module(folder / WEIGHTS_FILE, lambda meta: MiniNet(cfg.width, cfg.dim), "vibe-mini", fix)
    return net, SquarePreprocess(cfg.resolution), meta
