"""Training the product segmenter (vibe.locate.segment) on a catalogue's studio shots: each product, cut out by its
white backdrop, pasted on other backdrops (vibe.train.composite); the mask is what the network learns to find."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..catalog.reader import load_catalog
from ..config import CatalogConfig
from ..errors import VibeError
from ..locate.segment import CONFIG_FILE, WEIGHTS_FILE, SegmenterConfig, SegNet
from ..models.backbone import bf16_native
from ..util.progress import Progress, silent
from .composite import busy_scene
from .data import decode_framed
from .saving import save_trained


@torch.no_grad()
def _iou(net: SegNet, scene: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean mask IoU of `net` on (photos, masks)."""
    net.eval()
    y, mask = scene
    pred, truth = net(y.mul(2.0).sub(1.0)) > 0, mask > 0.5
    return float(((pred & truth).sum((1, 2, 3)) / (pred | truth).sum((1, 2, 3)).clamp(min=1)).float().mean())


def _loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * mask).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + mask.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, mask) + dice.mean()


def train_segmenter(catalog: CatalogConfig, out_dir: Path, cfg: SegmenterConfig = SegmenterConfig(),
                    progress: Progress = silent, log=lambda line: None, exclude_ids: set[int] = frozenset()) -> dict:
    """Train the segmenter on a catalogue's studio shots (their white backdrop gives the mask) and save it to `out_dir`.
    The report is the mean IoU on composites of photos held out of training."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    cat = load_catalog(catalog)
    for line in cat.report.lines():
        log(line)
    left_out = cat.items["id"].isin(list(exclude_ids))
    if left_out.any():
        log(f"  left out {int(left_out.sum())} excluded items")
    items = cat.items[~left_out].reset_index(drop=True)
    pixels, masks, ok = decode_framed([cat.root / p for p in items["path"]], cfg.side, True, progress)
    if len(ok) < 50:
        raise VibeError(f"the segmenter needs at least 50 readable studio photos; {catalog.root} has {len(ok)}.")
    x_all = torch.from_numpy(pixels[ok]).permute(0, 3, 1, 2).contiguous()
    a_all = torch.from_numpy(masks[ok])[:, None].contiguous()
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(x_all), generator=gen)
    n_held = max(16, int(len(order) * cfg.report_fraction))
    held, fit = order[:n_held], order[n_held:]
    net = SegNet(cfg.width)
    # the report's composites (photos held out of training), made once: the untrained net and the trained one see the same
    scene = busy_scene(x_all[held].float().div_(255.0), a_all[held].float().div_(255.0),
                       torch.Generator().manual_seed(cfg.seed + 1))
    untrained_iou = _iou(net, scene)
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
            y, mask = busy_scene(x_all[idx].float().div_(255.0), a_all[idx].float().div_(255.0), gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logits = net(y.mul(2.0).sub(1.0)).float()
            loss = _loss(logits, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        progress("train segmenter", epoch + 1, cfg.epochs)
    net.eval()
    trained_iou = _iou(net, scene)
    report = {"n_train": int(len(fit)), "n_report": int(len(held)), "epochs": cfg.epochs,
              "report_iou": round(trained_iou, 4), "untrained_iou": round(untrained_iou, 4),
              "train_seconds": round(time.perf_counter() - t_start, 1)}
    save_trained(out_dir, net, "vibe-segmenter", WEIGHTS_FILE, CONFIG_FILE, cfg, cat.root, catalog, len(exclude_ids), report,
                 "the segmenter")
    return report


