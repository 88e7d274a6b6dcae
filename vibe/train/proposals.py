"""Training the proposal detector (vibe.locate.proposals) on scenes made of the catalogue's own products
(vibe.train.scenes): a focal loss on the centre heat, L1 on the box size and the centre's offset."""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..catalog.reader import load_catalog
from ..config import CatalogConfig
from ..errors import VibeError
from ..locate.proposals import CONFIG_FILE, STRIDE, WEIGHTS_FILE, DetectorConfig, ProposalNet, decode, iou
from ..models.backbone import bf16_native
from ..util.progress import Progress, silent
from .data import decode_framed
from .saving import save_trained
from .scenes import scene

PRODUCT_SIDE = 96  # catalogue photos are decoded at this side; a product is scaled from there into a scene


def _targets(boxes: list, s: int) -> tuple[torch.Tensor, ...]:
    """Heat (1, g, g) with a Gaussian bump per product centre (1 at its cell), size (2, g, g) as log(w, h / STRIDE),
    offset (2, g, g) and the centre cells (g, g) where size and offset are learned."""
    g = s // STRIDE
    heat, size, offset, centre = torch.zeros(1, g, g), torch.zeros(2, g, g), torch.zeros(2, g, g), torch.zeros(g, g, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(g).float(), torch.arange(g).float(), indexing="ij")
    for x0, y0, x1, y1 in boxes:
        cx, cy, w, h = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE, (x1 - x0) / STRIDE, (y1 - y0) / STRIDE
        ix, iy = min(g - 1, int(cx)), min(g - 1, int(cy))
        sigma = max(0.7, 0.15 * math.sqrt(w * h))
        heat[0] = torch.maximum(heat[0], torch.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma ** 2)))
        size[:, iy, ix] = torch.tensor([math.log(max(w, 0.25)), math.log(max(h, 0.25))])
        offset[:, iy, ix] = torch.tensor([cx - ix, cy - iy])
        centre[iy, ix] = True
    return heat, size, offset, centre


def _loss(out, heat, size, offset, centre) -> torch.Tensor:
    logits, pred_size, pred_offset = out
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat == 1
    focal = -(((1 - p) ** 2 * torch.log(p))[pos].sum() + ((1 - heat) ** 4 * p ** 2 * torch.log(1 - p))[~pos].sum())
    n = centre.sum().clamp(min=1)
    c = centre[:, None].expand_as(pred_size)
    return (focal + 0.5 * (pred_size - size).abs()[c].sum() + (pred_offset - offset).abs()[c].sum()) / n


def _batch(x, alpha, bbox, rows, gen, s):
    images, targets, boxes = [], [], []
    for _ in range(len(rows)):
        pick = rows[torch.randint(0, len(rows), (8,), generator=gen)]
        img, b, _ = scene(x[pick], alpha[pick], bbox[pick], gen, s)
        images.append(img)
        boxes.append(b)
        targets.append(_targets(b, s))
    return torch.stack(images), [torch.stack(t) for t in zip(*targets)], boxes


def _continued(folder: Path, cfg: DetectorConfig, root: Path, catalog: CatalogConfig,
               excluded: int) -> tuple[ProposalNet, int]:
    """The net of a trained detector, to train further with `cfg`, and the epochs it has trained (its own continuations
    included): one VibeError unless it was trained as this run would be (the same net, catalogue, subset, left-out
    items and split), so that its report scenes stay unseen. The input side may change: the net is fully
    convolutional, and the report scenes are the same products' (made at the new side)."""
    import json

    from ..locate.proposals import Detector

    before = Detector(Path(folder), onnx=False)
    card = json.loads((Path(folder) / CONFIG_FILE).read_text())
    differs = [f"{what} {was} (not {now})" for what, was, now in (
        ("width", before.cfg.width, cfg.width), ("seed", before.cfg.seed, cfg.seed),
        ("report_fraction", before.cfg.report_fraction, cfg.report_fraction), ("catalogue", card["trained_on"], root),
        ("subset", card["subset"], catalog.subset), ("excluded items", card["excluded_items"], excluded)) if str(was) != str(now)]
    if differs:
        raise VibeError(f"{folder} was trained with {', '.join(differs)}: training continues a detector only on the "
                        "catalogue, split and net it was trained with (pass the same --data, --subset and --exclude).")
    return before.net, card["config"]["epochs"] + card["report"].get("epochs_before", 0)


def proposal_recall(net: ProposalNet, images: torch.Tensor, boxes: list, cfg: DetectorConfig, threshold: float = 0.5) -> float:
    """Share of the true boxes that some proposal overlaps by IoU >= threshold (images already at cfg.side)."""
    found, total = 0, 0
    with torch.no_grad():
        for img, truth in zip(images, boxes):
            got = decode(*net(img[None].mul(2).sub(1)), cfg.side, cfg.min_score, 3 * cfg.max_products)
            total += len(truth)
            found += sum(any(iou(t, g[:4]) >= threshold for g in got) for t in truth)
    return found / max(1, total)


def train_proposals(catalog: CatalogConfig, out_dir: Path, cfg: DetectorConfig = DetectorConfig(),
                    progress: Progress = silent, log=lambda line: None, exclude_ids: set[int] = frozenset(),
                    init: Path | None = None) -> dict:
    """Train the detector on scenes of a catalogue's products and save it to `out_dir`. The report: proposal recall
    (IoU >= 0.5) on scenes of products held out of training, before and after. `init`: a trained detector's folder to
    continue from, trained as this run would be (see _continued); the report's "before" is then that detector's recall."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    cat = load_catalog(catalog)
    for line in cat.report.lines():
        log(line)
    items = cat.items[~cat.items["id"].isin(list(exclude_ids))].reset_index(drop=True)
    if len(items) < len(cat.items):
        log(f"  left out {len(cat.items) - len(items)} excluded items")
    # a detector that cannot be continued is refused now, not after minutes of decoding
    continued = None if init is None else _continued(init, cfg, cat.root, catalog, len(exclude_ids))
    pixels, masks, ok = decode_framed([cat.root / p for p in items["path"]], PRODUCT_SIDE, True, progress)
    if len(ok) < 50:
        raise VibeError(f"the proposal detector needs at least 50 readable studio photos; {catalog.root} has {len(ok)}.")
    x = torch.from_numpy(pixels[ok]).permute(0, 3, 1, 2).float().div_(255.0)
    alpha = torch.from_numpy(masks[ok])[:, None].float().div_(255.0)
    present = (alpha[:, 0] > 0.5)
    bbox = torch.tensor([[int(np.flatnonzero(m.any(0))[0]), int(np.flatnonzero(m.any(1))[0]),
                          int(np.flatnonzero(m.any(0))[-1]) + 1, int(np.flatnonzero(m.any(1))[-1]) + 1]
                         if m.any() else [0, 0, PRODUCT_SIDE, PRODUCT_SIDE] for m in present.numpy()])
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(x), generator=gen)
    n_held = max(16, int(len(order) * cfg.report_fraction))
    held, fit = order[:n_held], order[n_held:]
    report_gen = torch.Generator().manual_seed(cfg.seed + 1)
    report_images, report_targets, report_boxes = _batch(x, alpha, bbox, held.repeat(4)[:128], report_gen, cfg.side)
    net, epochs_before = (ProposalNet(cfg.width), 0) if continued is None else continued
    if epochs_before:  # the same split and report scenes, but scenes the detector has not trained on yet
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + 2 + epochs_before)

    def held_loss() -> float:
        with torch.no_grad():
            return round(float(_loss(net(report_images.mul(2.0).sub(1.0)), *report_targets)), 4)

    untrained, untrained_loss = proposal_recall(net.eval(), report_images, report_boxes, cfg), held_loss()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(fit) // (2 * cfg.batch_size))  # a scene holds about two products of the epoch's
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(10, cfg.epochs * steps_per_epoch),
                                                pct_start=0.15)
    use_bf16 = bf16_native()

    def next_batch():
        return _batch(x, alpha, bbox, fit[torch.randperm(len(fit), generator=gen)[:cfg.batch_size]], gen, cfg.side)

    pool = ThreadPoolExecutor(max_workers=1)  # the next batch's scenes are made while this one trains
    pending = pool.submit(next_batch)
    for epoch in range(cfg.epochs):
        net.train()
        for _ in range(steps_per_epoch):
            images, targets, _ = pending.result()
            pending = pool.submit(next_batch)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                out = net(images.mul(2.0).sub(1.0))
            loss = _loss([o.float() for o in out], *targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        progress("train proposals", epoch + 1, cfg.epochs)
    pool.shutdown(cancel_futures=True)
    net.eval()
    report = {"n_train": int(len(fit)), "n_report": int(len(held)), "epochs": cfg.epochs,
              "report_recall": round(proposal_recall(net, report_images, report_boxes, cfg), 4),
              "untrained_recall": round(untrained, 4), "report_loss": held_loss(), "untrained_loss": untrained_loss,
              "train_seconds": round(time.perf_counter() - t_start, 1)}
    if init is not None:
        report |= {"continued_from": str(init), "epochs_before": epochs_before}
    save_trained(out_dir, net, "vibe-proposals", WEIGHTS_FILE, CONFIG_FILE, cfg, cat.root, catalog, len(exclude_ids), report,
                 "the proposal detector")
    return report
