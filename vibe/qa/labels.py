"""Label problems: items whose catalogue label disagrees with an out-of-fold prediction (vibe.build.heads) and with the
labels of the item's nearest photos, most surprising first."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import HEADS
from ..errors import VibeError

NEIGHBOURS = 10
SMOOTHING = 1 / NEIGHBOURS  # a label no neighbour carries counts as if one in ten did: one vote is weak evidence


def audited(art) -> bool:
    """Whether the build has the out-of-fold predictions the label audit reads (not when built with --audit-folds 0)."""
    return any(c.startswith("oof_pred_") for c in art.items.columns)


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
    if not audited(art):
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
