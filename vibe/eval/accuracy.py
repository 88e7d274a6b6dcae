"""Head accuracy views over the held-out split recorded at build time: confusion matrices, per-class tables, confused pairs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..errors import VibeError
from ..store.artifacts import Artifacts


def _heldout(art: Artifacts, head: str) -> pd.DataFrame:
    items = art.items
    rows = items[(items["split"] == "heldout") & (items[f"{head}_code"] >= 0)]
    if rows.empty:
        raise VibeError(f"The build has no held-out items with a {head} label; rebuild with a larger catalogue.")
    return rows


def class_order(art: Artifacts, head: str) -> list[int]:
    """Class indices, most frequent in the held-out split first (classes never seen there last)."""
    counts = np.bincount(_heldout(art, head)[f"{head}_code"], minlength=len(art.heads.vocabs[head]))
    return [int(i) for i in np.argsort(-counts, kind="stable")]


def confusion(art: Artifacts, head: str, normalize: bool = False, top: int | None = None) -> pd.DataFrame:
    """Rows = true class, columns = predicted, ordered by frequency; `top` keeps the most frequent true classes
    and folds the rest of the columns into '(other classes)' so long tails stay readable."""
    metrics = art.metrics["heads"][head]
    vocab = metrics["labels"]
    cm = np.asarray(metrics["confusion"], dtype=float)
    order = class_order(art, head)
    present = [i for i in order if cm[i].sum() > 0 or cm[:, i].sum() > 0]
    keep = present[:top] if top else present
    frame = pd.DataFrame(cm[np.ix_(keep, keep)], index=[vocab[i] for i in keep], columns=[vocab[i] for i in keep])
    rest = [i for i in range(len(vocab)) if i not in keep]
    if rest and top:
        frame["(other classes)"] = cm[np.ix_(keep, rest)].sum(axis=1)
    if normalize:
        totals = cm[keep].sum(axis=1, keepdims=True)
        frame = frame.div(np.where(totals > 0, totals, 1).ravel(), axis=0)
    return frame


def per_class(art: Artifacts, head: str) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (scikit-learn, computed at build time), by support."""
    table = pd.DataFrame(art.metrics["heads"][head]["per_class"])
    return table.sort_values(["support", "class"], ascending=[False, True]).reset_index(drop=True)


def summary(art: Artifacts) -> pd.DataFrame:
    return pd.DataFrame([{"head": h, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "held-out items": m["n"],
                          "classes": len(m["labels"])} for h, m in art.metrics["heads"].items()])


def confused_pairs(art: Artifacts, head: str, n: int = 10) -> pd.DataFrame:
    """The (true, predicted) pairs with the most mistakes."""
    m = art.metrics["heads"][head]
    cm = np.asarray(m["confusion"])
    off = [(cm[t, p], m["labels"][t], m["labels"][p]) for t in range(len(cm)) for p in range(len(cm)) if t != p and cm[t, p]]
    off.sort(key=lambda x: (-x[0], x[1], x[2]))
    return pd.DataFrame([{"true": t, "predicted": p, "count": int(c), "share of true class": c / max(1, cm[m["labels"].index(t)].sum())}
                         for c, t, p in off[:n]])


def cell_items(art: Artifacts, head: str, true: str, predicted: str) -> pd.DataFrame:
    """The held-out items of one confusion-matrix cell, most confident mistakes first."""
    vocab = art.heads.vocabs[head]
    if true not in vocab or predicted not in vocab:
        raise VibeError(f"{true!r} or {predicted!r} is not a {head} class of this build.")
    rows = _heldout(art, head)
    rows = rows[(rows[f"{head}_code"] == vocab.index(true)) & (rows[f"pred_{head}"] == vocab.index(predicted))]
    return rows.sort_values(f"conf_{head}", ascending=False)


def retrieval_reports(art: Artifacts) -> dict[str, dict]:
    """The ranking checks of this build: its own (held-out items, made at build time) and every `vibe eval` saved beside it.
    Each value: {"label", "report" (re-shoots, vibe.eval.ranking shape), "seed", "worst", "neighbours", "backdrop_ids"
    (the photos its busy backdrops were made of; None in reports made before they were recorded), "heldout" (the
    held-out kinds of photo, the same shape with their worst cases; None in older reports)}."""
    out = {}
    own = art.metrics.get("retrieval")
    if own:
        out["build"] = {"label": f"this build's held-out items ({own['n_originals']} photos, each re-shot {len(own['changes'])} ways)",
                        "report": own, "seed": own["seed"], "worst": own.get("worst", []), "neighbours": own.get("neighbours"),
                        "backdrop_ids": own.get("backdrop_ids"), "heldout": own.get("heldout")}
    for path in sorted((art.path / "evals").glob("*.json")):
        try:
            saved = json.loads(path.read_text())
            reshoot = saved["scores"]["retrieval"]["reshoot"]
        except (OSError, ValueError, KeyError):
            continue  # a damaged or older report is not worth an error box
        out[path.stem] = {"label": f"`vibe eval` on {saved['name']} ({reshoot['n_originals']} photos)", "report": reshoot,
                          "seed": saved.get("seed", 0), "worst": saved.get("worst", []),
                          "neighbours": saved["scores"]["retrieval"].get("neighbours"),
                          "backdrop_ids": reshoot.get("backdrop_ids"),
                          "heldout": {**saved["scores"]["retrieval"].get("heldout", {}),
                                      "worst": saved.get("worst_heldout", [])} or None}
    return out


def retrieval_table(report: dict, what: str = "change") -> pd.DataFrame:
    """One row per re-shoot change or held-out kind (and all together): where the original lands, through same mode and
    the bare embedding."""
    k = report["k"]
    rows = []
    for change in ["all", *report["same"]["per_change"]]:
        same = report["same"] if change == "all" else report["same"]["per_change"][change]
        bare = report["embedding"] if change == "all" else report["embedding"]["per_change"][change]
        rows.append({what: change, "photos": same["n"], "same: recall@1": same["recall@1"], "same: recall@5": same["recall@5"],
                     f"same: MRR@{k}": same[f"mrr@{k}"], "embedding: recall@1": bare["recall@1"],
                     "embedding: recall@5": bare["recall@5"], f"embedding: MRR@{k}": bare[f"mrr@{k}"]})
    return pd.DataFrame(rows)
