"""Load a CLIP-style image encoder (fashion-clip, any HF CLIP id, a local folder, tiny-random) and embed images with it."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from .errors import VibeError
from .images import ImageSource, load_image
from .progress import Progress, silent

FASHION_CLIP_ID = "patrickjohncyh/fashion-clip"
ALIASES = {"fashion-clip": FASHION_CLIP_ID}


def l2_normalize(x: np.ndarray | torch.Tensor):
    """The one place vectors are L2-normalised (float32)."""
    if isinstance(x, torch.Tensor):
        return torch.nn.functional.normalize(x.float(), dim=-1)
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


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


def weights_digest(module: torch.nn.Module) -> str:
    """A hash of every parameter and buffer, so two checkpoints with one name still differ."""
    h = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


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


class Encoder:
    """An image encoder: `Encoder("fashion-clip").encode_images(paths_or_pil_images)` -> (n, dim) float32, L2-normalised."""

    def __init__(self, name: str = "fashion-clip", *, parts: BackboneParts | None = None, precision: str = "auto"):
        if parts is None:
            from .registry import load_parts

            parts = load_parts(name)
        self.name, self.kind, self.source, self.description = parts.name, parts.kind, parts.source, parts.description
        self.note = parts.note
        self.model, self._forward, self.preprocess, self.dim = parts.model.eval(), parts.forward, parts.preprocess, parts.dim
        ident = {"kind": parts.kind, "config": parts.config, "preprocess": parts.preprocess.to_dict(),
                 "weights": weights_digest(parts.model)}
        self.fingerprint = hashlib.blake2b(json.dumps(ident, sort_keys=True).encode(), digest_size=12).hexdigest()
        self.precision, self.precision_cosine = "fp32", 1.0
        self.precision = self._choose_precision(precision)

    def _choose_precision(self, requested: str) -> str:
        """bf16 autocast (the fast CPU path) where the CPU runs it natively and it keeps cosine >= 0.99 to fp32."""
        if requested not in ("auto", "fp32", "bf16"):
            raise VibeError(f"precision must be auto, fp32 or bf16, not {requested!r}.")
        # vibe-mini and the test backbone are cheap already; their embeddings stay exactly fp32
        if requested == "fp32" or (requested == "auto" and self.kind != "clip") or not bf16_native():
            return "fp32"
        crop = getattr(self.preprocess, "crop", 224)
        probe = torch.rand(4, 3, crop, crop, generator=torch.Generator().manual_seed(0)) * 4 - 2
        exact = self.embed_pixels(probe)
        self.precision = "bf16"
        self.precision_cosine = float((self.embed_pixels(probe) * exact).sum(axis=1).min())
        return "bf16" if self.precision_cosine >= 0.99 else "fp32"

    def info(self) -> dict:
        """What goes into every manifest built from this encoder."""
        return {"name": self.name, "kind": self.kind, "source": self.source, "description": self.description,
                "fingerprint": self.fingerprint, "dim": self.dim, "precision": self.precision}

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self._forward(pixels)
        return l2_normalize(out).numpy()

    def encode_images(self, images: Sequence[ImageSource], batch_size: int = 32, progress: Progress = silent,
                      on_error: Callable[[int, Exception], None] | None = None,
                      names: Sequence[str] | None = None) -> np.ndarray:
        """Embed images (paths, bytes or PIL images). A bad image raises, unless `on_error(i, err)` is given: then its row is NaN."""
        out = np.full((len(images), self.dim), np.nan, dtype=np.float32)
        for start, pixels, ok in self.iter_batches(images, batch_size, on_error, names):
            if ok:
                out[[start + i for i in ok]] = self.embed_pixels(pixels)
            progress("embed", min(start + batch_size, len(images)), len(images))
        return out

    def iter_batches(self, images: Sequence[ImageSource], batch_size: int, on_error=None,
                     names: Sequence[str] | None = None) -> Iterable[tuple[int, torch.Tensor | None, list[int]]]:
        """Decode + preprocess the next batch on a worker thread while the current one runs through the model."""

        def prepare(start: int):
            tensors, ok = [], []
            for i, src in enumerate(images[start:start + batch_size]):
                try:
                    tensors.append(self.preprocess(load_image(src, names[start + i] if names else None)))
                    ok.append(i)
                except VibeError as e:
                    if on_error is None:
                        raise
                    on_error(start + i, e)
            return start, (torch.stack(tensors) if tensors else None), ok

        starts = list(range(0, len(images), batch_size))
        # two batches ahead: decoding releases the GIL, and measured here it hides better than one worker or none
        workers = max(1, min(4, os.cpu_count() or 2))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = [pool.submit(prepare, s) for s in starts[:workers]]
            for n in range(len(starts)):
                yield pending[n].result()
                pending[n] = None
                if n + workers < len(starts):
                    pending.append(pool.submit(prepare, starts[n + workers]))

    def encode_image(self, image: ImageSource, name: str | None = None) -> np.ndarray:
        """Embed one image; raises ImageError with a clear message when it is not a usable image."""
        return self.embed_pixels(self.preprocess(load_image(image, name))[None])[0]
