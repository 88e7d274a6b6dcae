"""Catalogue QA: labels that disagree with an out-of-fold prediction and with the item's neighbours, and groups of
near-identical photos (the same photo under two ids, a re-encoded or resized copy)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .catalog import id_fraction
from .config import HEADS, HeadsConfig
from .errors import VibeError
from .heads import train_heads
from .progress import Progress, silent

FOLDS = 5
NEIGHBOURS = 10
SMOOTHING = 1 / NEIGHBOURS  # a label no neighbour carries counts as if one in ten did: one vote is weak evidence


def fold_of(ids: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """A fixed fold per item id (a salted hash), so an item is judged by the same heads across rebuilds."""
    return np.array([int(id_fraction(int(i), "fold") * folds) for i in ids])


def out_of_fold_columns(emb: np.ndarray, codes: dict[str, np.ndarray], vocabs: dict, ids: np.ndarray, cfg: HeadsConfig,
                        seed: int = 0, folds: int = FOLDS, progress: Progress = silent) -> dict[str, np.ndarray]:
    """Per head, what heads trained without the item say of it (k-fold cross-fitting, so an item's own label never
    trains the head that judges it): the predicted class, its probability and the catalogue label's probability.
    Three numbers per item and head: stored with the build's items."""
    probs = _out_of_fold_probs(emb, codes, vocabs, ids, cfg, seed, folds, progress)
    out = {}
    for h, p in probs.items():
        rows = np.arange(len(p))
        out[f"oof_pred_{h}"] = p.argmax(1).astype(np.int16)
        out[f"oof_p_pred_{h}"] = p.max(1).astype(np.float32)
        out[f"oof_p_label_{h}"] = np.where(codes[h] >= 0, p[rows, np.maximum(codes[h], 0)], np.nan).astype(np.float32)
    return out


def _out_of_fold_probs(emb: np.ndarray, codes: dict[str, np.ndarray], vocabs: dict, ids: np.ndarray, cfg: HeadsConfig,
                       seed: int, folds: int, progress: Progress) -> dict[str, np.ndarray]:
    fold = fold_of(ids, folds)
    out = {h: np.zeros((len(emb), len(v)), dtype=np.float32) for h, v in vocabs.items()}
    quick = replace(cfg, patience=min(cfg.patience, 5), epochs=min(cfg.epochs, 100))
    for f in range(folds):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if not len(test) or len(train) < 10:
            continue
        heads, _ = train_heads(emb[train], {h: c[train] for h, c in codes.items()}, vocabs, quick, seed)
        for h, p in heads.predict_proba(emb[test]).items():
            out[h][test] = p
        progress("audit: out-of-fold heads", f + 1, folds)
    return out


def label_problems(art, head: str = "item_type", top: int | None = None) -> pd.DataFrame:
    """Items whose catalogue label disagrees with its out-of-fold prediction, most suspicious first. The score is how
    surprising the catalogue label is to two independent witnesses, added in nats: the held-out head
    (-ln p(label)) and the item's 10 nearest other photos (-ln(share carrying the label + SMOOTHING)). A label the head
    gives 1 % and no neighbour carries scores 4.6 + 2.3 = 6.9; one the head gives 40 % and half the neighbours carry,
    0.9 + 0.5 = 1.4. Surprise, not the margin to the suggestion, because a random mislabel is far less likely than a
    confusion between look-alike classes (Tshirts/Tops), and the margin cannot tell them apart."""
    if head not in HEADS:
        raise VibeError(f"head must be one of {', '.join(HEADS)}, not {head!r}.")
    items = art.items
    if f"oof_pred_{head}" not in items:
        raise VibeError("This build has no out-of-fold predictions (it was built with --audit-folds 0): rebuild it "
                        "to audit its labels.")
    vocab = art.heads.vocabs[head]
    label = items[f"{head}_code"].to_numpy()
    suggested = items[f"oof_pred_{head}"].to_numpy()
    candidates = np.flatnonzero((label >= 0) & (suggested != label))
    shares = _neighbour_shares(art, candidates, label, len(vocab))
    rows = np.arange(len(candidates))
    p_sug = items[f"oof_p_pred_{head}"].to_numpy()[candidates]
    p_lab = items[f"oof_p_label_{head}"].to_numpy()[candidates]
    s_sug, s_lab = shares[rows, suggested[candidates]], shares[rows, label[candidates]]
    score = -np.log(np.maximum(p_lab, 1e-6)) - np.log(s_lab + SMOOTHING)
    table = pd.DataFrame({"id": items["id"].to_numpy()[candidates], "name": items["name"].to_numpy()[candidates],
                          "path": items["path"].to_numpy()[candidates], "label": items[head].to_numpy()[candidates],
                          "suggested": [vocab[i] for i in suggested[candidates]], "score": score,
                          "p_suggested": p_sug, "p_label": p_lab, "neighbours_suggested": s_sug, "neighbours_label": s_lab})
    table = table.sort_values(["score", "id"], ascending=[False, True]).reset_index(drop=True)
    return table.head(top) if top else table


def _neighbour_shares(art, rows: np.ndarray, label: np.ndarray, n_classes: int) -> np.ndarray:
    """(len(rows), classes): the share of each class among the catalogue labels of each row's nearest other photos."""
    out = np.zeros((len(rows), n_classes), dtype=np.float32)
    if not len(rows):
        return out
    vectors = art.clip.vectors()
    hashes = art.items["hash"].to_numpy()
    scores, found = art.clip.index.search(np.ascontiguousarray(vectors[rows]), NEIGHBOURS + 4)
    for i, row in enumerate(rows):
        others = [r for r in found[i] if r >= 0 and r != row and hashes[r] != hashes[row]][:NEIGHBOURS]
        known = [label[r] for r in others if label[r] >= 0]
        if known:
            out[i] = np.bincount(known, minlength=n_classes) / len(known)
    return out


def duplicate_groups(art, threshold: float) -> list[list[int]]:
    """Groups of catalogue items whose photos are near-identical: cosine >= threshold in the 512-D space (FAISS range
    search), or the very same bytes. Each group's ids sorted; groups by their first id."""
    if not 0.0 < threshold <= 1.0:
        raise VibeError(f"threshold must be between 0 and 1, not {threshold}.")
    vectors = np.ascontiguousarray(art.clip.vectors())
    lims, _, found = art.clip.index.range_search(vectors, float(threshold))
    source = np.repeat(np.arange(len(vectors)), np.diff(lims).astype(np.int64))
    pairs = [source[source != found], found[source != found]]
    codes = pd.factorize(art.items["hash"])[0]
    same = pd.Series(np.arange(len(codes))).groupby(codes).transform("min").to_numpy()  # identical bytes: one group
    pairs = [np.concatenate([pairs[0], np.arange(len(codes))]), np.concatenate([pairs[1], same])]
    graph = coo_matrix((np.ones(len(pairs[0])), (pairs[0], pairs[1])), shape=(len(codes), len(codes)))
    n, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=n)
    ids = art.items["id"].to_numpy()
    groups = [sorted(int(i) for i in ids[component == c]) for c in np.flatnonzero(sizes > 1)]
    return sorted(groups)


def groups_table(art, groups: list[list[int]]) -> pd.DataFrame:
    """One row per item of each duplicate group (group number from 1, id, name, path): the export."""
    by_id = art.items.set_index("id")
    return pd.DataFrame([{"group": g, "id": i, "name": by_id.at[i, "name"], "path": by_id.at[i, "path"]}
                         for g, group in enumerate(groups, 1) for i in group], columns=["group", "id", "name", "path"])


def default_duplicate_threshold(art) -> float:
    """The build's calibrated threshold (the cosine that re-encoded and resized copies of its held-out photos keep),
    else a conservative 0.97."""
    return float(art.metrics.get("duplicates", {}).get("threshold", 0.97))
