"""The image encoder: a backbone (vibe.models.registry) on its runtime, turning images into L2-normalised float32
embeddings."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..config import SAMPLE_DATA, default_backbone
from ..errors import VibeError
from ..locate.framing import VERSION as FRAMING_VERSION
from ..locate.framing import Framing, frame_product
from ..util.checkpoint import weights_digest
from ..util.images import ImageSource, load_image
from ..util.progress import Progress, silent
from ..util.vectors import l2_normalize
from .backbone import BackboneParts
from .registry import load_parts
from .runtime import ONNX, RuntimeChoice, choose, onnx_path, ort_forward, torch_forward


def _digest(obj: dict) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=12).hexdigest()


class Encoder:
    """An image encoder: `Encoder().encode_images(paths_or_pil_images)` -> (n, dim) float32, L2-normalised.
    The default name is the project's default backbone (`auto`: FashionCLIP when it can be loaded, else vibe-mini)."""

    def __init__(self, name: str | None = None, *, parts: BackboneParts | None = None, precision: str = "auto",
                 framing: bool | None = None):
        if parts is None:
            parts = load_parts(name or default_backbone())
        self.name, self.kind, self.source, self.description = parts.name, parts.kind, parts.source, parts.description
        self.note = parts.note
        self.model, self._forward, self.preprocess, self.dim = parts.model.eval(), parts.forward, parts.preprocess, parts.dim
        self.framing = parts.framing if framing is None else framing
        self._text = parts.text
        self._set_sides()
        model = {"kind": parts.kind, "config": parts.config, "weights": weights_digest(parts.model)}
        ident = {**model, "preprocess": parts.preprocess.to_dict(), "framing": FRAMING_VERSION if self.framing else None,
                 "decode_side": self.decode_side}
        self.fingerprint = _digest(ident)
        self._model_key = _digest(model)  # the network alone: what a runtime's compiled model is cached under
        self.runtime = self._choose_runtime(precision)
        self.precision = self.runtime.name

    def _set_sides(self) -> None:
        # big JPEGs are decoded at a reduced scale, still at least 4x the model's input side (framing crops into it)
        self.input_side = int(getattr(self.preprocess, "crop", getattr(self.preprocess, "resolution", 224)))
        self.decode_side = 4 * self.input_side
        self.frame_side = 2 * self.input_side  # framing box-reduces a crop twice this large or more: the model sees input_side

    def worker_spec(self) -> dict | None:
        """What an embedding worker (vibe.build.ray_engine) needs to run this encoder without loading the backbone: when it
        runs on the int8 ONNX model, everything but the network, and that model's bytes. Loading and hashing a CLIP
        (transformers' import, its weights) took each worker 7 s; this, under one. None on torch runtimes."""
        if self.precision not in ONNX:
            return None
        return {"info": self.info(), "note": self.note, "preprocess": self.preprocess, "model_key": self._model_key,
                "onnx": onnx_path(self._model_key, self.precision).read_bytes()}

    @classmethod
    def from_worker_spec(cls, spec: dict) -> "Encoder":
        """The encoder `worker_spec` describes: the same preprocessing, framing, fingerprint and int8 model; no torch
        network (encode_text and the fp32/bf16 runtimes are not available)."""
        info, enc = spec["info"], cls.__new__(cls)
        enc.name, enc.kind, enc.source, enc.description, enc.note = (info["name"], info["kind"], info["source"],
                                                                     info["description"], spec["note"])
        enc.model = enc._forward = enc._text = None
        enc.preprocess, enc.dim, enc.framing = spec["preprocess"], int(info["dim"]), bool(info["framing"])
        enc._set_sides()
        enc.fingerprint, enc._model_key = info["fingerprint"], spec["model_key"]
        enc.runtime, enc.precision = RuntimeChoice(**info["runtime"]), info["precision"]
        enc._run = ort_forward(spec["onnx"], per_image=ONNX[enc.precision][1])
        return enc

    def _choose_runtime(self, requested: str) -> RuntimeChoice:
        """A real CLIP runs on the fastest runtime this CPU has that keeps cosine >= 0.99 to fp32 (vibe.models.runtime); vibe-mini
        and the test backbone are cheap already, and their embeddings stay exactly fp32."""
        if self.kind != "clip" and requested == "auto":
            requested = "fp32"
        if requested == "fp32":
            self._run = torch_forward(self._forward, bf16=False)
            return RuntimeChoice("fp32", "asked for" if self.kind == "clip" else "a small backbone: exact fp32", 1.0, 1.0, {})
        photos = self._probe_photos() if requested in ("auto", "int8-static") else None
        choice, self._run = choose(self.model, self._forward, self.input_side, self._model_key, requested, photos)
        return choice

    def _probe_photos(self, n: int = 48) -> torch.Tensor | None:
        """Real photos as this encoder prepares them (the shipped sample's first n): what the runtime probe times and
        checks every candidate on, and what int8-static measures its activation ranges on. None without the sample."""
        paths = sorted((SAMPLE_DATA / "images").glob("*.jpg"))[:n]
        if len(paths) < n:
            return None
        return torch.stack([self.prepare(load_image(p, max_side=self.decode_side)) for p in paths])

    def info(self) -> dict:
        """What goes into every manifest built from this encoder."""
        return {"name": self.name, "kind": self.kind, "source": self.source, "description": self.description,
                "fingerprint": self.fingerprint, "dim": self.dim, "precision": self.precision, "runtime": self.runtime.to_dict(),
                "framing": self.framing}

    def encode_query(self, image: ImageSource, name: str | None = None) -> tuple[np.ndarray, Framing | None]:
        """(views, dim) L2-normalised embeddings of a query photo, as retrieval searches it (its views come from
        vibe.locate.query), and what framing found. A convenience of the Python API: retrieval itself calls the
        locator once and keeps the views to show."""
        from ..locate.query import Locator

        found = Locator.for_encoder(self).views(load_image(image, name, self.decode_side))
        return self.encode_views(found.views), found.framing

    def encode_views(self, views: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embed images that are already framed or cropped (query views): preprocessing only, no framing again. One
        batch's input at a time: an evaluation or a build calibrates on thousands of views."""
        out = [self.embed_pixels(self.pixels(views[s:s + batch_size])) for s in range(0, len(views), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def pixels(self, views: Sequence[Image.Image]) -> torch.Tensor:
        """Query views as the model's input, (n, 3, side, side). Made where the views are made (a request's or a batch
        reader's thread), so that the thread running the model does nothing else."""
        if not len(views):
            return torch.zeros((0, 3, self.input_side, self.input_side))
        return torch.stack([self.preprocess(v) for v in views])

    def embed_many(self, pixels: torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """embed_pixels over any number of inputs, `batch_size` at a time."""
        out = [self.embed_pixels(pixels[s:s + batch_size]) for s in range(0, len(pixels), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @property
    def has_text(self) -> bool:
        """Whether this backbone has a text tower (a CLIP with its tokenizer): word search then also ranks by it."""
        return self._text is not None

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) L2-normalised text embeddings, in the image embeddings' space."""
        if self._text is None:
            raise VibeError(f"{self.description} has no text tower: search by words uses the attribute heads only.")
        return l2_normalize(self._text(list(texts))).numpy()

    def catalogue_view(self, image: Image.Image) -> Image.Image:
        """What a catalogue photo is embedded as: framed on white when this backbone frames (queries: vibe.locate.query)."""
        return frame_product(image, self.frame_side)[0] if self.framing else image

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """A decoded RGB image -> the model's input for a catalogue photo: its catalogue view, preprocessed."""
        return self.preprocess(self.catalogue_view(image))

    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return l2_normalize(self._run(pixels))

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
                    tensors.append(self.prepare(load_image(src, names[start + i] if names else None, self.decode_side)))
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
        return self.embed_pixels(self.prepare(load_image(image, name, self.decode_side))[None])[0]
