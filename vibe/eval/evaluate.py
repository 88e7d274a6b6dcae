"""Score a build on a labelled catalogue it was not trained on: head accuracy, the ranking checks of vibe.eval.ranking
(re-shot photos finding their own item, unfiltered neighbour precision) and each mode's filter precision."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..catalog.reader import Catalog
from ..catalog.rules import goes_with
from ..config import HEADS, QualityConfig
from ..models.encoder import Encoder
from ..models.heads import encode_labels
from ..search.matcher import Matcher
from ..store.artifacts import Artifacts
from ..store.cache import EmbeddingStore, embed_files
from ..store.index import VectorIndex
from ..util.files import write_json
from ..util.progress import Progress, silent
from .boxes import own_box_first, scene_recall
from .metrics import evaluate_head
from .queries import Originals, embed_heldout, embed_reshoots
from .ranking import (
    combo_checks,
    neighbour_precision,
    rank_reshoots,
    style_space_report,
)
from .reshoot import CHANGES, backdrop_photos


def same_relevant(q: dict, m: dict) -> bool:
    """A strict match: the true articleType and baseColour both equal the query's."""
    return q["item_type"] is not None and m["item_type"] == q["item_type"] and q["colour"] is not None and m["colour"] == q["colour"]


def combo_relevant(q: dict, m: dict) -> bool:
    """A mix & match hit by the true labels: it completes the query's outfit (vibe.catalog.rules.goes_with)."""
    return goes_with(q, m)


def with_originals(art: Artifacts, items: pd.DataFrame, emb: np.ndarray, root: Path) -> tuple[Artifacts, np.ndarray]:
    """The build's index plus the evaluated photos (the originals a re-shot photo must find), in memory.
    Returns the extended artifacts and the row of each evaluated item in it (an item already built keeps its row)."""
    row_of_id = {int(i): r for r, i in enumerate(art.items["id"])}
    new = np.array([int(i) not in row_of_id for i in items["id"]], dtype=bool)
    added = items[new].assign(path=[str(Path(root).resolve() / p) for p in items["path"][new]])
    table = pd.concat([art.items, added], ignore_index=True)
    rows = np.array([row_of_id.get(int(i), -1) for i in items["id"]])
    rows[new] = len(art.items) + np.arange(int(new.sum()))
    vectors = np.concatenate([art.clip.vectors(), emb[new]])
    extended = dataclasses.replace(art, items=table, clip=VectorIndex.build(vectors),
                                   style=VectorIndex.build(art.projection.project(vectors)))
    return extended, rows


def evaluate(art: Artifacts, encoder: Encoder, catalog: Catalog, workdir, k: int = 5, batch_size: int = 32,
             quality: QualityConfig = QualityConfig(), progress: Progress = silent) -> tuple[dict, dict]:
    """Returns (scores in the documented JSON shape, extra facts: overlap with the build, failures, the worst cases)."""
    matcher = Matcher(art, encoder)
    store = EmbeddingStore(Path(workdir) / "cache", encoder.fingerprint, encoder.dim)
    emb, hashes, stats = embed_files(encoder, [catalog.root / p for p in catalog.items["path"]], store, batch_size, progress)
    ok = ~np.isnan(emb).any(axis=1)
    items = catalog.items[ok].assign(hash=[h for h, good in zip(hashes, ok) if good]).reset_index(drop=True)
    emb = emb[ok]
    codes = encode_labels(items, art.heads.vocabs)
    probs = art.heads.predict_proba(emb)
    heads = {}
    for h in HEADS:
        m = evaluate_head(codes[h], probs[h].argmax(1), art.heads.vocabs[h])
        heads[h] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

    # filter precision: are the matches' labels the query's? (the filters chose them, so this follows the heads)
    truth = items[[*HEADS, "slot"]].astype(object).where(items[[*HEADS, "slot"]].notna(), None).to_dict("records")
    precision = {"same": [], "combo": []}
    for i in range(len(items)):
        exclude = matcher.rows_of_hash.get(items["hash"].iat[i], [])
        for mode, relevant in (("same", same_relevant), ("combo", combo_relevant)):
            res = matcher.search(emb[i], mode=mode, k=k, exclude=exclude)
            precision[mode].append(sum(relevant(truth[i], {**m.labels, "slot": m.slot}) for m in res.matches) / k)
        progress("filter precision", i + 1, len(items))

    # the ranking checks, in the build's index plus the evaluated originals
    extended, rows = with_originals(art, items, emb, catalog.root)
    union = Matcher(extended, encoder)
    originals = Originals(rows=rows, ids=items["id"].to_numpy(), paths=[catalog.root / p for p in items["path"]],
                          hashes=items["hash"].astype(str).tolist())
    changes = list(quality.changes or CHANGES)
    backdrops = backdrop_photos(art.items, art.catalog_root)
    queries = embed_reshoots(encoder, store, originals, changes, quality.seed, backdrops, batch_size, progress)
    ranked = rank_reshoots(union, originals, queries, quality.k, progress=progress)
    reshoot = {"n_originals": int(len(items)), "seed": quality.seed, "k": quality.k, "index_size": int(len(extended.items)),
               "backdrop_ids": backdrops.ids,
               "same": ranked["same"], "embedding": ranked["embedding"]}
    heldout, worst_heldout = heldout_report(union, encoder, store, originals, quality, backdrops, batch_size, progress)
    filter_precision = {mode: {"k": k, "precision": float(np.mean(v)) if v else 0.0} for mode, v in precision.items()}
    checks = combo_checks(union, rows, k=5)
    filter_precision["combo"].update({key: checks[key] for key in ("own_slot_share", "distinct_slots", "usage_gender_share")},
                                     checks_k=checks["k"], checks_n=checks["n"])
    scores = {"n_queries": int(len(items)), "heads": heads,
              "retrieval": {**filter_precision, "reshoot": reshoot, "heldout": heldout,
                            "neighbours": neighbour_precision(union, rows),
                            "style_space": style_space_report(extended, rows, quality.seed)}}
    built_ids = set(art.items["id"].tolist())
    extra = {"overlap_with_build": int(sum(int(i) in built_ids for i in items["id"])), "failed": stats.failed,
             "report": catalog.report, "worst": ranked["worst"], "changes": {c: CHANGES[c] for c in changes},
             "worst_heldout": worst_heldout}
    return scores, extra


def heldout_report(matcher: Matcher, encoder: Encoder, store: EmbeddingStore, originals: Originals,
                   quality: QualityConfig, others, batch_size: int = 32, progress: Progress = silent) -> tuple[dict, list]:
    """The held-out kinds of photo (vibe.eval.heldout, its "score" part), searched as a user's upload would be: where
    the original lands through same mode and the bare embedding, per kind; and whether the proposals find the products
    (the own box first on page screenshots, every product of scenes). (report, worst cases)."""
    from .heldout import KINDS, PHOTOS

    kinds = list(quality.heldout if quality.heldout is not None else KINDS)
    if not kinds:
        return {}, []
    queries = embed_heldout(encoder, store, originals, kinds, quality.seed, others, "score", batch_size, progress,
                            matcher.locator)
    ranked = rank_reshoots(matcher, originals, queries, quality.k, progress=progress)
    report = {"part": "score", "kinds": {kind: KINDS[kind] for kind in kinds}, "backdrop_photos": list(PHOTOS["score"]),
              "others_ids": others.ids, "same": ranked["same"], "embedding": ranked["embedding"],
              "proposals": {"detector": matcher.locator.version,
                            "page_screenshot": own_box_first(matcher.locator, originals, quality.seed, others, "score",
                                                             progress) if "page_screenshot" in kinds else None,
                            "scenes": scene_recall(matcher.locator, originals, quality.seed, "score", quality.scenes,
                                                   progress) if quality.scenes else None}}
    return report, ranked["worst"]


def save_report(art: Artifacts, name: str, scores: dict, extra: dict) -> Path:
    """Keep an evaluation beside the build it scored (the dashboard's Head accuracy page shows it)."""
    path = art.path / "evals" / f"{name}.json"
    write_json(path, {"name": name, "scores": scores, "worst": extra["worst"], "changes": extra["changes"],
                      "worst_heldout": extra.get("worst_heldout", []),
                      "seed": scores["retrieval"]["reshoot"]["seed"], "overlap_with_build": extra["overlap_with_build"]})
    return path
