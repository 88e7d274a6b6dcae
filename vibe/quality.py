"""Retrieval quality that depends on the ranking: does a re-shot photo find its own item (through `same` mode and through
the bare 512-D embedding), and do the unfiltered neighbours of a catalogue photo share its labels."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .backbone import Encoder
from .config import QualityConfig
from .fsutil import content_hash
from .heads import confidence_thresholds, precision_threshold
from .images import load_image
from .progress import Progress, silent
from .reshoot import CHANGES, reshoot, reupload
from .retrieve import Matcher
from .rules import gender_compatible
from .store import CHUNK, EmbeddingStore

RESHOOT_VERSION = "reshoot-1"  # part of the cache key of a re-shot photo: change it when vibe.reshoot changes


def reshoot_key(image_hash: str, change: str, seed: int, views: str = "") -> str:
    """The cache key of a re-shot photo: deterministic, so a rebuild embeds only re-shots of new photos. `views`: what
    decides a query's views (Encoder.views_version), for photos embedded as queries."""
    return content_hash(f"{RESHOOT_VERSION}:{seed}:{change}:{image_hash}{':' + views if views else ''}".encode())


@dataclass(frozen=True)
class Originals:
    """Photos to re-shoot, each also present (as the original) in the index that is searched."""

    rows: np.ndarray  # row of each original in the searched index
    ids: np.ndarray
    paths: list[Path]  # image files, absolute
    hashes: list[str]  # content hashes (an identical photo stored under another id counts as found too)


def _view_key(key: str, view: int) -> str:
    return key if view == 0 else content_hash(f"{key}:view{view}".encode())


def _embed_made(encoder: Encoder, store: EmbeddingStore, keys: list[str], make: Callable[[int], list[Image.Image]],
                batch_size: int, progress: Progress, stage: str) -> list[np.ndarray]:
    """(views, dim) embeddings of images made on demand (`make(i)` -> the views of item i), cached under `keys`:
    only keys not in the store yet are made and embedded, a shard at a time."""
    todo = list({k: i for i, k in reversed(list(enumerate(keys))) if k not in store}.values())
    progress(stage, 0, len(todo))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            views = list(pool.map(make, chunk))
            store.add([_view_key(keys[i], j) for i, vs in zip(chunk, views) for j in range(len(vs))],
                      encoder.encode_views([v for vs in views for v in vs], batch_size))
            progress(stage, start + len(chunk), len(todo))
    return [store.get([_view_key(k, j) for j in range(_n_views(store, k))]) for k in keys]


def _n_views(store: EmbeddingStore, key: str) -> int:
    n = 1  # a query's views are stored together, under view keys 0, 1, ...
    while _view_key(key, n) in store:
        n += 1
    return n


def embed_reshoots(encoder: Encoder, store: EmbeddingStore, originals: Originals, changes: Sequence[str], seed: int,
                   others: Sequence[Image.Image] = (), batch_size: int = 32,
                   progress: Progress = silent) -> dict[str, list[np.ndarray]]:
    """Every original re-shot by every change, as the (views, dim) embeddings its query would be searched with
    (Encoder.query_views), through the embedding cache: a rebuild only embeds re-shots of new photos."""
    out = {}
    for change in changes:
        def views_of(i: int, change: str = change) -> list[Image.Image]:
            photo = reshot_photo({"path": originals.paths[i], "change": change, "id": originals.ids[i]}, seed, others)
            return encoder.query_views(photo)[0]

        keys = [reshoot_key(h, change, seed, encoder.views_version) for h in originals.hashes]
        out[change] = _embed_made(encoder, store, keys, views_of, batch_size, progress, f"re-shoot {change}")
    store.compact()
    return out


def duplicate_threshold(art, encoder: Encoder, store: EmbeddingStore, originals: Originals, seed: int,
                        batch_size: int = 32, progress: Progress = silent) -> dict:
    """The cosine that the same photo uploaded again (vibe.reshoot.reupload: resized, recompressed) keeps to its
    original, as catalogue photos are embedded: its 1st percentile over these originals is the build's duplicate
    threshold."""
    def copy_of(i: int) -> list[Image.Image]:
        return [encoder.catalogue_view(reupload(load_image(originals.paths[i]), seed, int(originals.ids[i])))]

    keys = [reshoot_key(h, "reupload", seed) for h in originals.hashes]
    copies = _embed_made(encoder, store, keys, copy_of, batch_size, progress, "duplicate calibration")
    cos = [float(c[0] @ art.clip.vector(row)) for c, row in zip(copies, originals.rows)]
    return {"threshold": round(float(np.percentile(cos, 1)), 4), "n_copies": len(cos),
            "from": "re-uploads (resized 60-90 %, JPEG 60-85) of held-out photos: the 1st percentile of their cosine"}


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
    cases.sort(key=lambda c: (c["rank_same"] is not None, -(c["rank_same"] or 0), list(CHANGES).index(c["change"]), c["id"]))
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


def _by_hash(ids: Sequence[int], salt: str) -> np.ndarray:
    """Positions of `ids` in a deterministic pseudo-random order (stable across rebuilds and machines)."""
    return np.argsort([content_hash(f"{salt}{int(i)}".encode()) for i in ids], kind="stable")


def backdrop_photos(items, root: Path, n: int = 32) -> list[Image.Image]:
    """The photos busy backdrops are made of: n training photos of the build, in a fixed order (so a re-shot photo can
    be made again, e.g. to show it on the dashboard)."""
    pool = np.flatnonzero((items["split"] == "train").to_numpy())
    chosen = pool[_by_hash(items["id"].to_numpy()[pool], "backdrop")][:n]
    return [load_image(Path(root) / p) for p in items["path"].iloc[chosen] if (Path(root) / p).is_file()]


def reshot_photo(case: dict, seed: int, others: Sequence[Image.Image]) -> Image.Image:
    """A re-shot photo of a report's case ({"path", "change", "id"}), made again exactly."""
    return reshoot(load_image(case["path"]), case["change"], seed, int(case["id"]), others)


def check_build(art, encoder: Encoder, store: EmbeddingStore, held: np.ndarray, root: Path,
                cfg: QualityConfig, probs: dict[str, np.ndarray], codes: dict[str, np.ndarray], batch_size: int = 32,
                progress: Progress = silent) -> tuple[dict, dict | None]:
    """A build's own ranking check on its held-out items, and the calibration of the filter thresholds.
    Returns (filters: {precision, thresholds}, retrieval report or None). `art.metrics` gets the filters first, so
    the check runs with the thresholds a user's queries will get."""
    ids = art.items["id"].to_numpy()
    picked = held[_by_hash(ids[held], "check")][: cfg.per_change]
    changes = list(cfg.changes or CHANGES)
    queries: dict[str, np.ndarray] = {}
    originals = Originals(rows=picked, ids=ids[picked], paths=[root / p for p in art.items["path"].iloc[picked]],
                          hashes=art.items["hash"].iloc[picked].astype(str).tolist())
    if len(picked):
        queries = embed_reshoots(encoder, store, originals, changes, cfg.seed, backdrop_photos(art.items, root), batch_size, progress)
    # calibrated on held-out items, clean and re-shot: the confidence a head has on photos like users' uploads
    matcher = Matcher(art, encoder)
    picked_views = [matcher.pick_view(v)[0] for q in queries.values() for v in q]
    reshot = art.heads.predict_proba(np.stack(picked_views)) if picked_views else {h: p[:0] for h, p in probs.items()}
    thresholds = confidence_thresholds({h: np.concatenate([probs[h][held], reshot[h]]) for h in probs},
                                       {h: np.concatenate([codes[h][held], np.tile(codes[h][picked], len(queries))]) for h in codes},
                                       cfg.filter_precision)
    filters = {"precision": cfg.filter_precision, "thresholds": thresholds}
    if len(picked):
        targets = [set(matcher.rows_of_hash.get(h, [])) | {int(r)} for h, r in zip(originals.hashes, originals.rows)]
        filters["same_photo_cosine"] = same_photo_cosine(matcher, queries, targets, cfg.same_photo_precision)
    art.metrics["filters"] = filters
    if not len(picked):
        return filters, None
    art.metrics["duplicates"] = duplicate_threshold(art, encoder, store, originals, cfg.seed, batch_size, progress)
    report = rank_reshoots(matcher, originals, queries, cfg.k, progress=progress)
    report.update(n_originals=int(len(picked)), seed=cfg.seed, changes={c: CHANGES[c] for c in changes},
                  neighbours=neighbour_precision(matcher, held), style_space=style_space_report(art, held, cfg.seed),
                  combo=combo_checks(matcher, picked))
    return filters, report


def same_photo_cosine(matcher: Matcher, queries: dict[str, list[np.ndarray]], targets: list[set[int]],
                      precision: float, min_items: int = 20) -> float:
    """The lowest 512-D cosine from which the unfiltered first match of a re-shot held-out photo is its own item at
    least `precision` of the time (above 1: never that sure; same mode then never lets a photo past its filters)."""
    scores, right = [], []
    for emb in queries.values():
        for i, views in enumerate(emb):
            rows, sc = matcher.art.clip.search(matcher.pick_view(views)[0], 1)
            if len(rows):
                scores.append(float(sc[0]))
                right.append(int(rows[0]) in targets[i])
    if len(scores) < min_items:
        return 1.01
    return precision_threshold(scores, right, precision)


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


def style_triplets(compat, anchors: np.ndarray, pool: np.ndarray, rng: np.random.Generator, per_anchor: int = 4,
                   tries: int = 64) -> np.ndarray:
    """Evaluation triplets by the true labels: the positive completes the anchor's outfit (vibe.rules.goes_with); the
    negative is of a complementary slot too, but clashes (another usage, gender or season)."""
    anchors = np.repeat(np.asarray(anchors), per_anchor)
    cand = rng.choice(np.asarray(pool), size=(len(anchors), tries))
    good = compat(anchors[:, None], cand) & (cand != anchors[:, None])
    clash = ~good & compat.slots_complete(anchors[:, None], cand)
    keep = good.any(1) & clash.any(1)
    idx = np.arange(len(anchors))
    return np.stack([anchors, cand[idx, good.argmax(1)], cand[idx, clash.argmax(1)]], 1)[keep]


def triplet_accuracy(vectors: np.ndarray, triplets: np.ndarray) -> float:
    """Share of triplets where the anchor is closer (cosine) to the positive than to the negative."""
    if not len(triplets):
        return float("nan")
    a, p, n = (vectors[triplets[:, i]] for i in range(3))
    return float(((a * p).sum(1) > (a * n).sum(1)).mean())


def style_space_report(art, anchors: np.ndarray, seed: int = 0, n_spread: int = 200) -> dict:
    """Held-out triplet accuracy of the 256-D style space with true labels and no filters, against the 512-D space and
    random vectors; and the neighbour spread of both spaces."""
    from .projection import Compatibility

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
