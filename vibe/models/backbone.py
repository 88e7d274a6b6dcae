"""What a backbone is made of: the model, its forward pass and preprocessing, and how to tell two backbones apart."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class Preprocess:
    """CLIP preprocessing (resize shortest edge, centre crop, normalise), read from the model's own processor config."""

    size: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = Image.BICUBIC

    def __call__(self, image: Image.Image) -> torch.Tensor:
        w, h = image.size
        # the long side is floored, as transformers' get_resize_output_image_size does
        nw, nh = (self.size, int(self.size * h / w)) if w <= h else (int(self.size * w / h), self.size)
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), resample=self.resample)
        left, top = (nw - self.crop) // 2, (nh - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        arr = np.asarray(image, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())

    def to_dict(self) -> dict:
        return {"size": self.size, "crop": self.crop, "mean": list(self.mean), "std": list(self.std), "resample": int(self.resample)}

    @classmethod
    def from_processor_config(cls, cfg: dict) -> "Preprocess":
        size = cfg.get("size", {"shortest_edge": 224})
        size = size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else int(size)
        crop = cfg.get("crop_size", size)
        crop = crop.get("height", size) if isinstance(crop, dict) else int(crop)
        return cls(size=int(size), crop=int(crop), mean=tuple(cfg.get("image_mean", (0.48145466, 0.4578275, 0.40821073))),
                   std=tuple(cfg.get("image_std", (0.26862954, 0.26130258, 0.27577711))), resample=int(cfg.get("resample", 3)))


def bf16_native() -> bool:
    """Whether this CPU has native bf16 (AVX512-BF16 or AMX): there bf16 autocast is about twice as fast as fp32."""
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


@dataclass(frozen=True)
class BackboneParts:
    """What a backbone loader returns: the model, how to run it, and what it is."""

    name: str  # what the user asked for: fashion-clip, tiny-random, a path...
    kind: str  # clip | vibe-mini | tiny-random
    source: str  # the HF id or folder the weights came from
    description: str  # shown on every page and command
    model: torch.nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # pixels -> unnormalised (n, dim)
    preprocess: Callable[[Image.Image], torch.Tensor]  # with a to_dict() for the fingerprint
    dim: int
    config: dict  # architecture config, part of the fingerprint
    note: str = ""  # a warning the user should see (e.g. why `auto` fell back to vibe-mini)
    framing: bool = True  # crop photos to the product on white before preprocessing (vibe.locate.framing), index and query alike
    text: Callable[[list[str]], torch.Tensor] | None = None  # a CLIP text tower: texts -> unnormalised (n, dim)
