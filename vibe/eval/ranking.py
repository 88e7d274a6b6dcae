"""Ranking metrics that can fail: where a re-shot photo's own item lands (through `same` mode and through the bare
512-D embedding), label precision of unfiltered neighbours, held-out style triplets, and what mix & match returns."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..catalog.rules import Compatibility, gender_compatible
from ..catalog.triplets import mine_triplets
from ..search.matcher import Matcher
from ..util.progress import Progress, silent
from .queries import Originals


def _rank(rows: Sequence[int], targets: set[int]) -> int | None:
    return next((i + 1 for i, r in enumerate(rows) if int(r) in targets), None)


def _summary(ranks: list[int | None], k: int) -> dict:
    r = np.array([x if x is not None else k + 1 for x in ranks], dtype=float)
    if not len(r):
        return {"n": 0, "recall@1": float("nan"), "recall@5": float("nan"), f"mrr@{k}": float("nan")}
    return {"n": int(len(r)), "recall@1": float((r == 1).mean()), "recall@5": float((r <= 5).mean()),
            f"mrr@{k}": float(np.where(r <= k, 1.0 / r, 0.0).mean())}


def rank_reshoots(matcher: Matcher, originals: Originals, queries: dict[str, list[np.ndarray]], k: int = 10,
                  n_worst: int = 24, progress: Progress = silent) -> dict:
    """Where each re-shot photo's original lands among the first k: through `same` mode (the filters a user gets)
    and through the bare embedding. recall@1, recall@5, MRR@k overall and per change, and the worst cases."""
    ranks = {"same": {}, "embedding": {}}
    cases = []
    done, total = 0, sum(len(q) for q in queries.values())
    for change, emb in queries.items():
        for mode in ranks:
            ranks[mode][change] = []
        for i, views in enumerate(emb):
            q = matcher.pick_view(views)[0]
            targets = set(matcher.rows_of_hash.get(originals.hashes[i], [])) | {int(originals.rows[i])}
            rows, _ = matcher.art.clip.search(q, k)
            res = matcher.search(q, mode="same", k=k)
            r_same, r_emb = _rank([m.row for m in res.matches], targets), _rank(rows, targets)
            ranks["same"][change].append(r_same)
            ranks["embedding"][change].append(r_emb)
            if r_same != 1:
                top = res.matches[0] if res.matches else None
                cases.append({"id": int(originals.ids[i]), "path": str(originals.paths[i]), "change": change,
                              "rank_same": r_same, "rank_embedding": r_emb, "filters": res.filters,
                              "top_id": top.id if top else None,
                              "top_path": str(matcher.art.catalog_root / top.path) if top else None,
                              "top_score": round(top.score, 4) if top else None})
            done += 1
            if done % 256 == 0 or done == total:
                progress("rank re-shots", done, total)
    out = {"k": k}
    for mode, per in ranks.items():
        out[mode] = {**_summary([r for v in per.values() for r in v], k), "per_change": {c: _summary(v, k) for c, v in per.items()}}
    # the worst: originals not found at all first, spread over the changes (round-robin), so every change shows
    order = list(queries)  # the changes (or kinds) in the order they were asked for
    cases.sort(key=lambda c: (c["rank_same"] is not None, -(c["rank_same"] or 0), order.index(c["change"]), c["id"]))
    by_change: dict[str, list] = {}
    for c in cases:
        by_change.setdefault(c["change"], []).append(c)
    worst = []
    while len(worst) < n_worst and any(by_change.values()):
        for c in list(by_change):
            if by_change[c] and len(worst) < n_worst:
                worst.append(by_change[c].pop(0))
    out["worst"] = worst
    return out


def neighbour_precision(matcher: Matcher, rows: Sequence[int], k: int = 5) -> dict:
    """Label precision@k of the unfiltered 512-D neighbours of catalogue photos (the photo itself and identical copies
    excluded): the share with the same item_type and colour, and with the same item_type."""
    item, colour = matcher.labels["item_type"], matcher.labels["colour"]
    both, type_only = [], []
    for row in rows:
        if item[row] is None or colour[row] is None:
            continue
        same_photo = set(matcher.rows_of_hash.get(matcher.hashes[row], [])) | {int(row)}
        found, _ = matcher.art.clip.search(matcher.art.clip.vector(row), k + len(same_photo))
        found = [int(r) for r in found if int(r) not in same_photo][:k]
        both.append(np.mean([item[r] == item[row] and colour[r] == colour[row] for r in found]) if found else 0.0)
        type_only.append(np.mean([item[r] == item[row] for r in found]) if found else 0.0)
    return {"k": k, "n": len(both), "type_and_colour": float(np.mean(both)) if both else float("nan"),
            "type": float(np.mean(type_only)) if type_only else float("nan")}


def neighbour_spread(index, rows: Sequence[int], k: int = 50) -> float:
    """How much a space ranks: for each item, the spread (90th minus 10th percentile) of the cosines of its k nearest
    neighbours, median over the items. A space collapsed onto its labels has a spread near 0."""
    spreads = []
    for row in rows:
        _, scores = index.search(index.vector(row), k + 1)
        scores = scores[1:]
        if len(scores) >= 2:
            spreads.append(float(np.percentile(scores, 90) - np.percentile(scores, 10)))
    return float(np.median(spreads)) if spreads else float("nan")


def style_triplets(compat: Compatibility, anchors: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Evaluation triplets by the true labels (vibe.catalog.triplets.mine_triplets): the positive completes the
    anchor's outfit; the negative is of a complementary slot too, but clashes (another usage, gender or season)."""
    return mine_triplets(compat, anchors, pool, rng, per_anchor=4, tries=64, own_slot=0.0, fallback=False)


def triplet_accuracy(vectors: np.ndarray, triplets: np.ndarray) -> float:
    """Share of triplets where the anchor is closer (cosine) to the positive than to the negative."""
    if not len(triplets):
        return float("nan")
    a, p, n = (vectors[triplets[:, i]] for i in range(3))
    return float(((a * p).sum(1) > (a * n).sum(1)).mean())


def style_space_report(art, anchors: np.ndarray, seed: int = 0, n_spread: int = 200) -> dict:
    """Held-out triplet accuracy of the 256-D style space with true labels and no filters, against the 512-D space and
    random vectors; and the neighbour spread of both spaces."""
    rng = np.random.default_rng(seed)
    triplets = style_triplets(Compatibility(art.items), anchors, np.arange(len(art.items)), rng)
    clip, style = art.clip.vectors(), art.style.vectors()
    noise = rng.normal(size=style.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    sample = rng.choice(len(art.items), size=min(n_spread, len(art.items)), replace=False)
    return {"n_triplets": int(len(triplets)),
            "triplet_accuracy": {"style": triplet_accuracy(style, triplets), "clip": triplet_accuracy(clip, triplets),
                                 "random": triplet_accuracy(noise, triplets)},
            "spread": {"style": neighbour_spread(art.style, sample), "clip": neighbour_spread(art.clip, sample)}}


def combo_checks(matcher: Matcher, rows: Sequence[int], k: int = 5) -> dict:
    """What mix & match returns for catalogue photos queried as uploads (predicted labels, the photo itself excluded):
    the share of results in the query's own slot, the number of distinct slots in the first k, and the share with the
    query's true usage and a compatible gender."""
    own, distinct, fits = [], [], []
    slot, style, gender = matcher.labels["slot"], matcher.labels["style"], matcher.labels["gender"]
    for row in rows:
        res = matcher.search(matcher.art.clip.vector(row), mode="combo", k=k,
                             exclude=matcher.rows_of_hash.get(matcher.hashes[row], []) + [int(row)])
        got = [m.row for m in res.matches[:k]]
        if not got:
            continue
        own.append(np.mean([slot[r] == slot[row] for r in got]))
        distinct.append(len({slot[r] for r in got}))
        if style[row] is not None:
            fits.append(np.mean([style[r] == style[row] and gender_compatible(gender[row], gender[r]) for r in got]))
    return {"k": k, "n": len(own), "own_slot_share": float(np.mean(own)) if own else float("nan"),
            "distinct_slots": float(np.mean(distinct)) if distinct else float("nan"),
            "usage_gender_share": float(np.mean(fits)) if fits else float("nan")}
