"""Style triplets (anchor, an item that goes with it, one that does not): mined by the outfit rules for training and
for evaluation alike, or read from a curated CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import VibeError
from .rules import Compatibility


def mine_triplets(compat: Compatibility, anchors: np.ndarray, pool: np.ndarray, rng: np.random.Generator,
                  per_anchor: int = 1, tries: int = 48, own_slot: float = 0.5, fallback: bool = True) -> np.ndarray:
    """(m, 3) row triplets. Each anchor (`per_anchor` times; see Compatibility.outfit_anchors) gets, among `tries`
    random items of `pool`, a positive that completes its outfit (vibe.catalog.rules.goes_with: a complementary slot,
    the same usage, compatible gender and season) and a negative that does not: with probability `own_slot` an item of
    the anchor's own slot (a second top completes no top), else one of a complementary slot that clashes (another
    usage, gender or season). `fallback`: an anchor with no negative of the wanted kind takes any item that does not
    go with it; without it, the anchor is dropped. Training mines with the defaults; evaluation with own_slot=0 and no
    fallback (only clashes, which a style space must rank)."""
    anchors, pool = np.asarray(anchors), np.asarray(pool)
    anchors = np.repeat(anchors, per_anchor)
    if not len(anchors) or not len(pool):
        return np.zeros((0, 3), dtype=np.int64)
    cand = rng.choice(pool, size=(len(anchors), tries))
    other = cand != anchors[:, None]
    ok = compat(anchors[:, None], cand) & other
    same_slot = compat.same_slot(anchors[:, None], cand)
    clash = ~ok & ~same_slot & compat.slots_complete(anchors[:, None], cand)
    want_same = rng.random(len(anchors)) < own_slot if own_slot > 0 else np.zeros(len(anchors), dtype=bool)
    bad = np.where(want_same[:, None], same_slot, clash) & other
    if fallback:
        bad = np.where(bad.any(axis=1)[:, None], bad, ~ok & other)
    keep = ok.any(axis=1) & bad.any(axis=1)
    rows = np.arange(len(anchors))
    return np.stack([anchors, cand[rows, ok.argmax(axis=1)], cand[rows, bad.argmax(axis=1)]], axis=1)[keep].astype(np.int64)


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
