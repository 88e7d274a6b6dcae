"""Training vibe-mini on a labelled catalogue, on the CPU, in minutes: each photo seen as itself and re-shot."""
from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from ..catalog.reader import load_catalog
from ..catalog.split import stratified_split
from ..config import HEADS, OTHER, CatalogConfig
from ..errors import VibeError
from ..models.backbone import bf16_native
from ..models.heads import build_vocabularies, encode_labels
from ..models.mini import CONFIG_FILE, WEIGHTS_FILE, MiniConfig, MiniNet
from ..util.checkpoint import save_module
from ..util.files import atomic_folder, write_json
from ..util.progress import Progress, silent
from . import composite
from .data import decode_framed


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
    pixels, masks, ok = decode_framed(paths, cfg.resolution, cfg.framing, progress)
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
    joint = _joint_classes(y_all, vocabs, cfg.class_heads)

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
            views = [composite.light(x, gen)]
            if cfg.reshoot:
                views.append(composite.reshoot(x, a_all[idx].float().div_(255.0), gen, cfg.perspective, cfg.cast))
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


def _joint_classes(y: dict[str, torch.Tensor], vocabs: dict[str, list[str]], heads: tuple[str, ...]) -> torch.Tensor:
    """One class per combination of the `heads`' labels (item type and colour: a black T-shirt), for the class term;
    -1 where a label is missing or is a merged rare class."""
    joint, known = torch.zeros_like(y[heads[0]]), torch.ones_like(y[heads[0]], dtype=torch.bool)
    for h in heads:
        other = vocabs[h].index(OTHER) if OTHER in vocabs[h] else -2
        joint, known = joint * len(vocabs[h]) + y[h].clamp(min=0), known & (y[h] >= 0) & (y[h] != other)
    return torch.where(known, joint, torch.full_like(joint, -1))


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


