"""vibe-mini: a compact CNN image encoder the project trains itself on a labelled catalogue, on the CPU, in minutes."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import augment
from .catalog import load_catalog
from .config import HEADS, OTHER, CatalogConfig
from .errors import VibeError
from .framing import background_mask, frame_product
from .fsutil import atomic_folder, load_module, save_module, write_json
from .heads import build_vocabularies, encode_labels, stratified_split
from .images import load_image
from .parts import bf16_native
from .progress import Progress, silent

CONFIG_FILE = "vibe-mini.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class MiniConfig:
    """Architecture and training recipe of vibe-mini."""

    resolution: int = 80  # small product shots: 80 px keeps what matters at an eighth of 224 px's cost (64 px lost ~1 pt)
    width: int = 32
    dim: int = 512
    epochs: int = 36  # ~17 min here with the two views: under the 20-minute budget for the shipped checkpoint
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    min_class_count: int = 10
    report_fraction: float = 0.05  # held out of training, for the report
    bf16: bool = True  # autocast where the CPU has native bf16 (about 2x here); fp32 elsewhere
    framing: bool = True  # photos cropped to the product on white (vibe.framing) in training and at embedding time
    reshoot: bool = True  # a second, re-shot view of every photo (vibe.augment), with the attribute losses too
    reshoot_label_weight: float = 0.3  # weight of the attribute losses on the re-shot view (1.0 cost ~1 pt item_type)
    instance_weight: float = 1.0  # pulls a photo's two views together against the batch's other photos (InfoNCE)
    temperature: float = 0.1
    class_weight: float = 1.0  # pulls photos of the same item type and colour together (supervised contrastive)
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
        return torch.from_numpy(_to_array(image, self.resolution).copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)

    def to_dict(self) -> dict:
        return {"type": "square-pad-white", "resolution": self.resolution}


def _to_array(image: Image.Image, r: int) -> np.ndarray:
    w, h = image.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image = canvas
    return np.asarray(image.resize((r, r), Image.BILINEAR, reducing_gap=2.0), dtype=np.uint8)


def _decode_all(paths: list[Path], r: int, framing: bool, progress: Progress) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Every photo framed (as at embedding time) on a white r x r square, and its product mask (for re-shot views)."""
    out = np.zeros((len(paths), r, r, 3), dtype=np.uint8)
    masks = np.zeros((len(paths), r, r), dtype=np.uint8)
    ok = []

    def one(i: int):
        try:
            image = load_image(paths[i])
            out[i] = _to_array(frame_product(image, 2 * r)[0] if framing else image, r)  # as Encoder.frame_side
            masks[i] = ~background_mask(out[i], (255, 255, 255), tolerance=24) * 255
            return i
        except VibeError:
            return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        for n, i in enumerate(pool.map(one, range(len(paths))), 1):
            if i is not None:
                ok.append(i)
            if n % 256 == 0 or n == len(paths):
                progress("decode", n, len(paths))
    return out, masks, ok


def train_mini(catalog: CatalogConfig, out_dir: Path, cfg: MiniConfig = MiniConfig(), progress: Progress = silent,
               log=lambda line: None, exclude_ids: set[int] = frozenset(), excluded_from: list[str] = ()) -> dict:
    """Train vibe-mini on a labelled catalogue and save it (safetensors + a JSON config) to `out_dir`. Returns the report.
    Each photo is seen as a catalogue view and as a re-shot view; both carry the five attribute losses, and an instance
    term pulls the two views of one photo together. Items whose id is in `exclude_ids` are never seen."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    cat = load_catalog(catalog)
    for line in cat.report.lines():
        log(line)
    if exclude_ids:
        left_out = cat.items["id"].isin(list(exclude_ids))
        log(f"  left out {int(left_out.sum())} items that are in {', '.join(excluded_from) or 'the excluded catalogues'}")
        cat.items = cat.items[~left_out].reset_index(drop=True)
    paths = [cat.root / p for p in cat.items["path"]]
    pixels, masks, ok = _decode_all(paths, cfg.resolution, cfg.framing, progress)
    items = cat.items.iloc[ok].reset_index(drop=True)
    pixels, masks = pixels[ok], masks[ok]
    if len(items) < 50:
        raise VibeError(f"vibe-mini needs at least 50 readable labelled images; {catalog.root} has {len(items)}.")
    vocabs = build_vocabularies(items, cfg.min_class_count)
    codes = encode_labels(items, vocabs)
    fit, held = stratified_split(codes["item_type"], cfg.report_fraction, cfg.seed)
    x_all = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # uint8, NCHW
    a_all = torch.from_numpy(masks)[:, None].contiguous()
    y_all = {h: torch.from_numpy(c) for h, c in codes.items()}
    # one class per (item type, colour) for the class term; -1 when either is missing or a merged rare class
    n_colours = len(vocabs["colour"])
    other_type = vocabs["item_type"].index(OTHER) if OTHER in vocabs["item_type"] else -2
    joint = torch.where((y_all["item_type"] >= 0) & (y_all["colour"] >= 0) & (y_all["item_type"] != other_type),
                        y_all["item_type"] * n_colours + y_all["colour"], torch.full_like(y_all["item_type"], -1))

    net = MiniNet(cfg.width, cfg.dim)
    heads = nn.ModuleDict({h: nn.Linear(cfg.dim, len(v)) for h, v in vocabs.items()})
    params = list(net.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(fit) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    use_bf16 = cfg.bf16 and bf16_native()
    gen = torch.Generator().manual_seed(cfg.seed)
    scale = 16.0  # heads see L2-normalised embeddings (times a temperature), exactly what the linear probe later sees

    for epoch in range(cfg.epochs):
        net.train(), heads.train()
        order = torch.from_numpy(fit)[torch.randperm(len(fit), generator=gen)]
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            x = x_all[idx].float().div_(255.0)
            views = [augment.light(x, gen)]
            if cfg.reshoot:
                views.append(augment.reshoot(x, a_all[idx].float().div_(255.0), gen))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                z = nn.functional.normalize(net(torch.cat(views).mul_(2.0).sub_(1.0)).float(), dim=-1)
            weight = torch.cat([torch.ones(len(idx)), torch.full((len(idx) * (len(views) - 1),), cfg.reshoot_label_weight)])
            loss = sum((nn.functional.cross_entropy(layer(z * scale), y_all[h][idx].repeat(len(views)), ignore_index=-1,
                                                    label_smoothing=cfg.label_smoothing, reduction="none") * weight).sum()
                       / weight[y_all[h][idx].repeat(len(views)) >= 0].sum().clamp(min=1) for h, layer in heads.items())
            if len(views) == 2 and cfg.instance_weight:
                za, zb = z[: len(idx)], z[len(idx):]
                sim = za @ zb.T / cfg.temperature
                target = torch.arange(len(idx))
                loss = loss + cfg.instance_weight * 0.5 * (nn.functional.cross_entropy(sim, target)
                                                           + nn.functional.cross_entropy(sim.T, target))
            if cfg.class_weight:
                loss = loss + cfg.class_weight * _class_term(z, joint[idx].repeat(len(views)), cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        progress("train vibe-mini", epoch + 1, cfg.epochs)

    net.eval(), heads.eval()

    def logits(x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = nn.functional.normalize(net(x).float(), dim=-1) * scale
        return {h: layer(z) for h, layer in heads.items()}

    report = {"n_train": int(len(fit)), "n_report": int(len(held)), "epochs": cfg.epochs, "bf16": use_bf16,
              "accuracy": _accuracy(logits, x_all[held], {h: t[held] for h, t in y_all.items()})}
    report["train_seconds"] = round(time.perf_counter() - t_start, 1)
    save_mini(out_dir, net, cfg, {
        "trained_on": str(cat.root), "subset": catalog.subset, "holdout_fraction": catalog.holdout_fraction,
        "excluded": {"catalogues": list(excluded_from), "items": len(exclude_ids)},
        "vocabs": vocabs, "report": report, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return report


def _class_term(z: torch.Tensor, classes: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss: every other view of the same class is a positive, the rest of the batch negatives."""
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool)
    pos = (classes[:, None] == classes[None, :]) & (classes[:, None] >= 0) & ~eye
    has = pos.any(1)
    if not has.any():
        return z.sum() * 0.0
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits.log_softmax(1).masked_fill(eye, 0.0)
    return (-(log_prob * pos).sum(1)[has] / pos.sum(1)[has]).mean()


@torch.no_grad()
def _accuracy(logits, x: torch.Tensor, y: dict[str, torch.Tensor]) -> dict[str, float]:
    preds = {h: [] for h in HEADS}
    for start in range(0, len(x), 512):
        out = logits(x[start:start + 512].float().div_(127.5).sub_(1.0))  # the catalogue view, as embedded
        for h in HEADS:
            preds[h].append(out[h].argmax(1))
    acc = {}
    for h in HEADS:
        p, t = torch.cat(preds[h]), y[h]
        known = t >= 0
        acc[h] = round(float((p[known] == t[known]).float().mean()), 4)
    return acc


def save_mini(out_dir: Path, net: MiniNet, cfg: MiniConfig, info: dict) -> None:
    """Weights and config are written together into a staging folder that then takes `out_dir`'s place."""
    try:
        with atomic_folder(out_dir) as staging:
            save_module(staging / WEIGHTS_FILE, net, {"format": "vibe-mini-1"})
            write_json(staging / CONFIG_FILE, {"kind": "vibe-mini", "config": asdict(cfg), **info})
    except OSError as e:
        raise VibeError(f"Could not save vibe-mini to {out_dir} ({e.strerror or e}); what was there before is untouched. "
                        "Free disk space (or fix permissions) and train again.") from None


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
