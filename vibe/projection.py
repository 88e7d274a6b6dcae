"""The 256-D style projection head, trained with a triplet loss on triplets mined from labels or read from a curated CSV."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .config import ProjectionConfig
from .errors import VibeError
from .fsutil import load_module, save_module
from .progress import Progress, silent
from .rules import COMPLETES, completes, gender_compatible, seasons_compatible
from .vectors import l2_normalize


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


class Compatibility:
    """`goes_with` (vibe.rules) over a catalogue's labels, vectorised: which items complete an outfit around which.
    The rules fill small label-by-label tables once; a query is then integer indexing."""

    def __init__(self, items: pd.DataFrame):
        self.style = pd.factorize(items["style"])[0]  # missing -> -1: completes nothing
        self.slot_code, slots = pd.factorize(items["slot"])
        self.gender_code, genders = pd.factorize(items["gender"])
        self.season_code, seasons = pd.factorize(items["season"])

        def table(values, rule):  # the last row/column stands for a missing label (code -1)
            v = [*values, None]
            return np.array([[bool(rule(x, y)) for y in v] for x in v])

        self._slots = table(list(slots), lambda x, y: x is not None and y is not None and completes(x, y))
        self._genders = table(list(genders), gender_compatible)
        self._seasons = table(list(seasons), seasons_compatible)

    def slots_complete(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether item b's slot completes item a's, elementwise over broadcast row arrays."""
        return self._slots[self.slot_code[a], self.slot_code[b]]

    def same_slot(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.slot_code[a] == self.slot_code[b]

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether item b completes an outfit around item a, elementwise over broadcast row arrays."""
        return ((self.style[a] == self.style[b]) & (self.style[a] >= 0) & self.slots_complete(a, b)
                & self._genders[self.gender_code[a], self.gender_code[b]] & self._seasons[self.season_code[a], self.season_code[b]])


def mine_triplets(items: pd.DataFrame, rows: np.ndarray, per_anchor: int, rng: np.random.Generator,
                  tries: int = 48, compat: Compatibility | None = None) -> np.ndarray:
    """(m, 3) row triplets among `rows`: the positive completes an outfit around the anchor (vibe.rules.goes_with: a
    complementary slot, the same usage, compatible gender and season); the negative is either of the anchor's own slot
    (a second top completes no top) or of a complementary slot but clashing (another usage, gender or season)."""
    compat = compat or Compatibility(items)
    rows = np.asarray(rows)
    anchors = np.repeat(rows[np.isin(items["slot"].to_numpy(dtype=object)[rows], list(COMPLETES))], per_anchor)
    if not len(anchors):
        return np.zeros((0, 3), dtype=np.int64)
    cand = rng.choice(rows, size=(len(anchors), tries))
    ok = compat(anchors[:, None], cand)
    found = ok.any(axis=1)
    pos = cand[np.arange(len(anchors)), ok.argmax(axis=1)]
    same_slot = compat.same_slot(anchors[:, None], cand)
    clash = ~ok & ~same_slot & compat.slots_complete(anchors[:, None], cand)
    want_same = rng.random(len(anchors)) < 0.5
    bad = np.where(want_same[:, None], same_slot, clash) & (cand != anchors[:, None])
    bad = np.where(bad.any(axis=1)[:, None], bad, ~ok & (cand != anchors[:, None]))  # fall back to any non-match
    keep = found & bad.any(axis=1)
    neg = cand[np.arange(len(anchors)), bad.argmax(axis=1)]
    return np.stack([anchors[keep], pos[keep], neg[keep]], axis=1).astype(np.int64)


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
                     seed: int = 0, progress: Progress = silent, init: ProjectionHead | None = None,
                     compat: Compatibility | None = None) -> tuple[ProjectionHead, dict]:
    """`sample_triplets(epoch)` gives that epoch's (m, 3) row triplets. Three terms: `torch.nn.TripletMarginLoss` on
    each triplet; an InfoNCE over the batch (each anchor against every positive and negative of the batch, the ones that
    also complete its outfit masked out), so distances rank across the whole space; and the mean squared difference
    between the batch's cosines here and in the backbone space, so items of one label group keep their order instead
    of collapsing onto one point.
    With `init` (the previous build's head) only `cfg.warm_epochs` epochs run: the space is already shaped."""
    torch.manual_seed(seed)
    x = torch.from_numpy(emb.astype(np.float32))
    head = ProjectionHead(emb.shape[1], cfg.dim)
    epochs = cfg.epochs
    if init is not None and (init.dim_in, init.dim_out, init.hidden) == (head.dim_in, head.dim_out, head.hidden):
        head.load_state_dict(init.state_dict())
        epochs = min(cfg.epochs, cfg.warm_epochs)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr)
    triplet_loss = torch.nn.TripletMarginLoss(margin=cfg.margin)
    losses = []
    for epoch in range(epochs):
        trip = torch.from_numpy(sample_triplets(epoch))
        if not len(trip):
            raise VibeError("No triplets could be mined: the catalogue needs items of several outfit slots (tops, bottoms, "
                            "footwear...) sharing a usage label.")
        head.train()
        total = 0.0
        for start in range(0, len(trip), cfg.batch_size):
            a, p, n = trip[start:start + cfg.batch_size].T
            za, zp, zn = head(x[a]), head(x[p]), head(x[n])
            loss = triplet_loss(za, zp, zn)
            if cfg.batch_weight and len(a) > 1:
                logits = za @ torch.cat([zp, zn]).T / cfg.temperature
                if compat is not None:  # another anchor's positive that completes this outfit too is no negative
                    also = torch.from_numpy(compat(a.numpy()[:, None], p.numpy()[None, :])) & ~torch.eye(len(a), dtype=torch.bool)
                    logits[:, : len(a)] = logits[:, : len(a)].masked_fill(also, float("-inf"))
                loss = loss + cfg.batch_weight * torch.nn.functional.cross_entropy(logits, torch.arange(len(a)))
            if cfg.structure_weight:  # the batch's cosines stay near the backbone's: ranks within a label group survive
                z, xb = torch.cat([za, zp, zn]), torch.nn.functional.normalize(x[torch.cat([a, p, n])], dim=1)
                loss = loss + cfg.structure_weight * ((z @ z.T - xb @ xb.T) ** 2).mean()
            opt.zero_grad()
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
