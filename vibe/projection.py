"""The 256-D style projection head, trained with a triplet loss on triplets mined from labels or read from a curated CSV."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .vectors import l2_normalize
from .config import ProjectionConfig
from .errors import VibeError
from .fsutil import load_module, save_module
from .progress import Progress, silent
from .rules import gender_compatible


class ProjectionHead(torch.nn.Module):
    """dim -> hidden -> out, L2-normalised: a style space where complementary items sit close."""

    def __init__(self, dim_in: int, dim_out: int = 256, hidden: int = 512):
        super().__init__()
        self.dim_in, self.dim_out, self.hidden = dim_in, dim_out, hidden
        self.net = torch.nn.Sequential(torch.nn.Linear(dim_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.net(x))

    @torch.inference_mode()
    def project(self, emb: np.ndarray) -> np.ndarray:
        return self(torch.from_numpy(np.asarray(emb, dtype=np.float32))).numpy()


def mine_triplets(items: pd.DataFrame, rows: np.ndarray, per_anchor: int, rng: np.random.Generator,
                  tries: int = 32) -> np.ndarray:
    """(m, 3) row triplets among `rows`: positive = same style, compatible gender, another item type; negative = another
    style. Compares the catalogue's own labels (not the heads' merged classes: two rare types are still two types)."""
    sub = items.iloc[rows]
    style = pd.factorize(sub["style"])[0]  # missing -> -1
    item = pd.factorize(sub["item_type"])[0]
    gender = sub["gender"].to_numpy(dtype=object)
    out = []
    for s in np.unique(style[style >= 0]):
        members = np.flatnonzero(style == s)
        others = np.flatnonzero((style != s) & (style >= 0))
        if len(members) < 2 or not len(others):
            continue
        anchors = np.repeat(members, per_anchor)
        cand = rng.choice(members, size=(len(anchors), tries))
        ok = (item[cand] != item[anchors, None]) & (item[cand] >= 0) & gender_compatible(gender[cand], gender[anchors, None])
        found = ok.any(axis=1)
        pos = cand[np.arange(len(anchors)), ok.argmax(axis=1)]
        neg = rng.choice(others, size=len(anchors))
        out.append(np.stack([anchors[found], pos[found], neg[found]], axis=1))
    if not out:
        return np.zeros((0, 3), dtype=np.int64)
    return np.asarray(rows)[np.concatenate(out)]


def read_triplets_csv(path: Path, items: pd.DataFrame, root: Path) -> np.ndarray:
    """Curated `anchor,positive,negative` (item ids, or image paths inside the catalogue) -> row triplets; bad rows are listed."""
    path = Path(path)
    if not path.is_file():
        raise VibeError(f"No triplets CSV at {path}.")
    row_of_id = {int(i): r for r, i in enumerate(items["id"])}
    row_of_path = {p: r for r, p in enumerate(items["path"])}
    root = Path(root).resolve()

    def resolve(value: str) -> int | None:
        value = value.strip()
        if value.isdigit():
            return row_of_id.get(int(value))
        candidate = (root / value).resolve()
        if not candidate.is_relative_to(root):
            return None  # never look outside the catalogue folder
        return row_of_path.get(candidate.relative_to(root).as_posix())

    triplets, bad = [], []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"anchor", "positive", "negative"} <= {h.strip() for h in reader.fieldnames}:
            raise VibeError(f"{path} needs the columns anchor,positive,negative.")
        for line, rec in enumerate(reader, start=2):
            rec = {k.strip(): (v or "") for k, v in rec.items() if k}
            rows = [resolve(rec[c]) for c in ("anchor", "positive", "negative")]
            if None in rows:
                bad.append(f"line {line}: {', '.join(rec[c] for c in ('anchor', 'positive', 'negative'))}")
            else:
                triplets.append(rows)
    if bad:
        shown = "; ".join(bad[:10]) + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        raise VibeError(f"{path}: {len(bad)} rows name items that are not in the catalogue (or lie outside it): {shown}.")
    if not triplets:
        raise VibeError(f"{path} holds no triplets.")
    return np.asarray(triplets, dtype=np.int64)


def train_projection(emb: np.ndarray, sample_triplets: Callable[[int], np.ndarray], cfg: ProjectionConfig,
                     seed: int = 0, progress: Progress = silent, init: ProjectionHead | None = None) -> tuple[ProjectionHead, dict]:
    """Train with `torch.nn.TripletMarginLoss`; `sample_triplets(epoch)` gives that epoch's (m, 3) row triplets.
    With `init` (the previous build's head) only `cfg.warm_epochs` epochs run: the space is already shaped."""
    torch.manual_seed(seed)
    x = torch.from_numpy(emb.astype(np.float32))
    head = ProjectionHead(emb.shape[1], cfg.dim)
    epochs = cfg.epochs
    if init is not None and (init.dim_in, init.dim_out, init.hidden) == (head.dim_in, head.dim_out, head.hidden):
        head.load_state_dict(init.state_dict())
        epochs = min(cfg.epochs, cfg.warm_epochs)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr)
    loss_fn = torch.nn.TripletMarginLoss(margin=cfg.margin)
    losses = []
    for epoch in range(epochs):
        trip = torch.from_numpy(sample_triplets(epoch))
        if not len(trip):
            raise VibeError("No triplets could be mined: the catalogue needs at least two styles with several item types.")
        head.train()
        total = 0.0
        for start in range(0, len(trip), cfg.batch_size):
            a, p, n = trip[start:start + cfg.batch_size].T
            opt.zero_grad()
            loss = loss_fn(head(x[a]), head(x[p]), head(x[n]))
            loss.backward()
            opt.step()
            total += loss.item() * len(a)
        losses.append(total / len(trip))
        progress("projection", epoch + 1, epochs)
    return head.eval(), {"epochs": epochs, "warm_start": init is not None, "loss": losses}


def save_projection(path: Path, head: ProjectionHead) -> None:
    save_module(path, head, {"dim_in": str(head.dim_in), "dim_out": str(head.dim_out), "hidden": str(head.hidden),
                             "format": "vibe-projection-1"})


def load_projection(path: Path) -> ProjectionHead:
    return load_module(path, lambda m: ProjectionHead(int(m["dim_in"]), int(m["dim_out"]), int(m["hidden"])), "projection")
