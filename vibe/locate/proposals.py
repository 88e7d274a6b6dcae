"""Product proposals: every product in a photo as a box with a score, from a small centre-point detector (trained by
vibe.train.proposals on the catalogue's own cut-outs pasted on many kinds of backdrop), best first."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..config import REPO_ROOT, _check
from ..util.checkpoint import load_trained
from ..util.files import atomic_path, cache_root
from .boxes import iou

CONFIG_FILE = "proposals.json"
WEIGHTS_FILE = "model.safetensors"
DEFAULT = REPO_ROOT / "checkpoints" / "proposals"
STRIDE = 4  # the heat map is a quarter of the input side
READING = "flip"  # how a photo is read (FlipAveraged): in the exported graph's name and the digest of the boxes
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and training recipe of the proposal detector."""

    side: int = 128  # the photo is letterboxed to side x side: products of 10 % of the frame are still 13 px
    width: int = 16
    epochs: int = 24
    batch_size: int = 48
    lr: float = 3e-3
    weight_decay: float = 1e-4
    min_score: float = 0.15  # a peak below this is no product (calibrate part: 0.25 found 0.52, 0.15 found 0.55)
    max_products: int = 6
    report_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self):
        _check(self.side >= 64 and self.side % 16 == 0, "the detector's side must be a multiple of 16 from 64 up (the "
               f"net halves it four times), not {self.side}.")


@dataclass(frozen=True)
class Proposal:
    """One product found in a photo: its box (left, top, right, bottom, in the photo's pixels) and how sure."""

    box: tuple[int, int, int, int]
    score: float


def _block(cin: int, cout: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ProposalNet(nn.Module):
    """Down to 1/16 of the side (what is one product needs most of the frame), back up to 1/4 with skips; per cell of
    the 1/4 map: a centre heat (is a product centred here), the box's size and the centre's sub-cell offset."""

    def __init__(self, width: int = 24):
        super().__init__()
        w = width
        self.down = nn.ModuleList([_block(3, w, 2), _block(w, 2 * w, 2), _block(2 * w, 3 * w, 2), _block(3 * w, 4 * w, 2)])
        self.up = nn.ModuleList([_block(7 * w, 3 * w), _block(5 * w, 2 * w)])
        self.heat, self.size, self.offset = nn.Conv2d(2 * w, 1, 1), nn.Conv2d(2 * w, 2, 1), nn.Conv2d(2 * w, 2, 1)
        nn.init.constant_(self.heat.bias, -2.2)  # start near "no product anywhere": the focal loss expects it

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, (skips[2], skips[1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1))
        return self.heat(x), self.size(x), self.offset(x)


class FlipAveraged(nn.Module):
    """The net's maps of a photo averaged with those of its mirror image (test-time flipping, as CenterNet does): on
    the held-out calibrate part (300 photos a kind) a tried proposal held a real backdrop's product 0.567 -> 0.603 of
    the time and a page's own product came first 0.920 -> 0.960, scenes' proposal recall 0.649 -> 0.656, for a second
    pass of about 1 ms. The proposals of a mirrored photo are then the mirror of the photo's."""

    def __init__(self, net: ProposalNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        heat, size, offset = self.net(torch.cat([x, x.flip(-1)]))
        mirrored = [m[n:].flip(-1) for m in (heat, size, offset)]
        # a centre at (cell + offset) in the mirror is at (cell + 1 - offset) here, along x
        offset_x = (offset[:n, 0] + 1 - mirrored[2][:, 0]) / 2
        offset_y = (offset[:n, 1] + mirrored[2][:, 1]) / 2
        return (heat[:n] + mirrored[0]) / 2, (size[:n] + mirrored[1]) / 2, torch.stack([offset_x, offset_y], 1)


def letterbox(image: Image.Image, side: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The photo scaled to fit side x side, centred on mid-grey: (uint8 array, scale, (left, top) offset)."""
    scale = side / max(image.size)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    small = image.resize((w, h), Image.BILINEAR, reducing_gap=2.0)
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    left, top = (side - w) // 2, (side - h) // 2
    canvas.paste(small, (left, top))
    return np.asarray(canvas), scale, (left, top)


def to_input(arr: np.ndarray) -> torch.Tensor:
    """uint8 HWC (or NHWC) -> float NCHW in [-1, 1]."""
    x = torch.from_numpy(np.array(arr)).float().div_(127.5).sub_(1.0)
    return x.permute(2, 0, 1)[None] if x.ndim == 3 else x.permute(0, 3, 1, 2)


def decode(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, side: int, min_score: float,
           top: int) -> list[tuple[float, float, float, float, float]]:
    """(x0, y0, x1, y1, score) in input pixels for one photo's maps: local maxima of the heat over min_score, best first."""
    prob = torch.sigmoid(heat[0, 0])
    peaks = (prob == F.max_pool2d(prob[None, None], 3, 1, 1)[0, 0]) & (prob >= min_score)
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    order = torch.argsort(prob[ys, xs], descending=True)[:top]
    out = []
    for y, x in zip(ys[order].tolist(), xs[order].tolist()):
        cx = (x + float(offset[0, 0, y, x])) * STRIDE
        cy = (y + float(offset[0, 1, y, x])) * STRIDE
        w, h = (float(torch.exp(size[0, i, y, x])) * STRIDE for i in (0, 1))
        out.append((max(0.0, cx - w / 2), max(0.0, cy - h / 2), min(side, cx + w / 2), min(side, cy + h / 2),
                    float(prob[y, x])))
    return out


def rank(proposals: list[Proposal], size: tuple[int, int]) -> list[Proposal]:
    """Best first: the detector's score, times the square root of the box's share of the photo. The product a photo
    is about is the prominent one (a page's main photo over the thumbnails beside it); a small confident box still
    beats a large doubtful one."""
    area = float(size[0] * size[1]) or 1.0

    def prominence(p: Proposal) -> float:
        return p.score * np.sqrt(max(1.0, (p.box[2] - p.box[0]) * (p.box[3] - p.box[1])) / area)

    return sorted(proposals, key=prominence, reverse=True)


def onnx_session(net: nn.Module, side: int, weights: str):
    """`net` (FlipAveraged) on ONNX Runtime, one thread (a query's other work runs beside it): a 128-px photo and its
    mirror in about 2.4 ms instead of eager torch's 4.1 (its per-layer overhead on a net this small; one photo 1.0 ms,
    AVX512-VNNI AMD EPYC). Exported once per weights and side into the cache (vibe.util.files.cache_root); None where
    ONNX Runtime or the export is unavailable: torch runs it then."""
    try:
        import onnxruntime as ort

        path = cache_root() / "proposals" / f"{weights}-{side}-{READING}.onnx"
        if not path.is_file():
            with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter's notes; the graph has no data-dependent control
                torch.onnx.export(net, (torch.zeros(1, 3, side, side),), str(tmp), input_names=["x"],
                                  output_names=["heat", "size", "offset"], opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # a net this small: no arena to grow under concurrent requests
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - any failure leaves the exact torch path, which always works
        log.info("proposal detector runs on torch (ONNX Runtime unavailable: %s)", e)
        return None


class Detector:
    """A trained ProposalNet: `propose(photo)` -> every product found, best first (see `rank`)."""

    def __init__(self, folder: Path = DEFAULT, onnx: bool = True):
        self.cfg, self.net, weights = load_trained(folder, CONFIG_FILE, WEIGHTS_FILE, DetectorConfig,
                                                   lambda cfg: ProposalNet(cfg.width), "proposal detector",
                                                   "train-proposals")
        self.maps_of = FlipAveraged(self.net).eval()
        # the boxes depend on the decoding too: a cached query view made under another threshold is not reused
        self.digest = f"{weights}-s{self.cfg.min_score:g}-n{self.cfg.max_products}-{READING}"
        self.session = onnx_session(self.maps_of, self.cfg.side, weights) if onnx else None

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (heat, size, offset) maps of one letterboxed photo (FlipAveraged), on ONNX Runtime when it is there."""
        if self.session is None:
            return self.maps_of(x)
        return tuple(torch.from_numpy(m) for m in self.session.run(None, {"x": x.numpy()}))

    @torch.inference_mode()
    def propose(self, image: Image.Image) -> list[Proposal]:
        arr, scale, (left, top) = letterbox(image, self.cfg.side)
        found = decode(*self.maps(to_input(arr)), self.cfg.side, self.cfg.min_score, 3 * self.cfg.max_products)
        kept: list[Proposal] = []
        for x0, y0, x1, y1, score in found:
            box = (int(round((x0 - left) / scale)), int(round((y0 - top) / scale)),
                   int(round((x1 - left) / scale)), int(round((y1 - top) / scale)))
            box = (max(0, box[0]), max(0, box[1]), min(image.width, box[2]), min(image.height, box[3]))
            if box[2] - box[0] < 4 or box[3] - box[1] < 4 or any(iou(box, k.box) > 0.6 for k in kept):
                continue  # a sliver, or the same product found twice
            kept.append(Proposal(box, score))
        return rank(kept, image.size)[: self.cfg.max_products]


def load_detector(folder: Path = DEFAULT) -> Detector | None:
    """The shipped proposal detector (or the one in `folder`); None when there is none."""
    return Detector(folder) if (Path(folder) / CONFIG_FILE).exists() else None
