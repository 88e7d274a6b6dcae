"""What a build calibrates on its held-out items, for the queries users will send: the confidence from which each head's
prediction filters same-mode results, the cosine from which a photo is its own item, the duplicate threshold; and the
build's own ranking check on those items."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..config import HELDOUT_KINDS, QualityConfig
from ..eval.boxes import own_box_first
from ..eval.queries import Originals, embed_heldout, embed_made, embed_reshoots, reshoot_key
from ..eval.ranking import (
    combo_checks,
    neighbour_precision,
    rank_reshoots,
    style_space_report,
)
from ..eval.reshoot import CHANGES, backdrop_photos, by_hash, reupload
from ..models.encoder import Encoder
from ..search.matcher import Matcher
from ..store.cache import EmbeddingStore
from ..util.images import load_image
from ..util.progress import Progress, silent


def confidence_thresholds(probs: dict[str, np.ndarray], codes: dict[str, np.ndarray], precision: float,
                          min_items: int = 20, fallback: float = 0.5) -> dict[str, float]:
    """Per head, the lowest confidence from which its predictions are right at least `precision` of the time on these
    (held-out) items. Retrieval applies a filter on a prediction only from that confidence up. A head never that sure
    gets a threshold above 1 (its filter never applies); with fewer than `min_items` labelled items, `fallback`."""
    out = {}
    for head, p in probs.items():
        known = codes[head] >= 0
        if known.sum() < min_items:
            out[head] = fallback
            continue
        out[head] = precision_threshold(p[known].max(1), p[known].argmax(1) == codes[head][known], precision)
    return out


def familiarity_thresholds(clean_probs: dict[str, np.ndarray], clean_codes: dict[str, np.ndarray],
                           probs: dict[str, np.ndarray], codes: dict[str, np.ndarray], familiarity: np.ndarray,
                           precision: float, min_items: int = 20) -> dict:
    """The filters' confidence thresholds, calibrated apart for photos close to the catalogue and photos further from
    it: the re-made calibration photos (`probs`, with `familiarity`, their cosine to the nearest catalogue photo) split
    at their median familiarity; the clean catalogue photos join the familiar half. A head that is wrong more often on
    unfamiliar photos (a jacket on a man filtered as Women on a real backdrop) gets a higher threshold there, so its
    filter stops dropping the product itself. A head with fewer than `min_items` labelled unfamiliar photos keeps its
    familiar threshold; with fewer photos than that in all, one set serves every photo."""
    def thresholds(keep: np.ndarray, with_clean: bool) -> dict[str, float]:
        def join(clean: dict, made: dict) -> dict:
            return {h: np.concatenate([clean[h][: len(clean[h]) * with_clean], made[h][keep]]) for h in made}

        return confidence_thresholds(join(clean_probs, probs), join(clean_codes, codes), precision, min_items)

    out = {"precision": precision, "thresholds": thresholds(np.ones(len(familiarity), dtype=bool), True)}
    if len(familiarity) < 2 * min_items:
        return out
    cut = float(np.nanmedian(familiarity))
    familiar = ~(familiarity < cut)  # a photo with no nearest photo (NaN) is not one to call far
    out["thresholds"] = thresholds(familiar, True)
    unfamiliar = thresholds(~familiar, False)
    out["unfamiliar_thresholds"] = {h: unfamiliar[h] if (codes[h][~familiar] >= 0).sum() >= min_items else t
                                    for h, t in out["thresholds"].items()}
    out |= {"familiar_cosine": round(cut, 4), "unfamiliar_share": round(float((~familiar).mean()), 4)}
    return out


def precision_threshold(scores: np.ndarray, right: np.ndarray, precision: float) -> float:
    """The lowest score from which the cases at or above it are right at least `precision` of the time; above 1 when
    no score is that reliable."""
    scores, right = np.asarray(scores, dtype=float), np.asarray(right, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    accuracy = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(accuracy >= precision)
    return float(scores[order][ok[-1]]) if len(ok) else 1.01


def duplicate_threshold(art, encoder: Encoder, store: EmbeddingStore, originals: Originals, seed: int,
                        batch_size: int = 32, progress: Progress = silent) -> dict:
    """The cosine that the same photo uploaded again (vibe.eval.reshoot.reupload: resized, recompressed) keeps to its
    original, as catalogue photos are embedded: its 1st percentile over these originals is the build's duplicate
    threshold."""
    def copy_of(i: int) -> list[Image.Image]:
        return [encoder.catalogue_view(reupload(load_image(originals.paths[i]), seed, int(originals.ids[i])))]

    keys = [reshoot_key(h, "reupload", seed) for h in originals.hashes]
    copies = embed_made(encoder, store, keys, copy_of, batch_size, progress, "duplicate calibration")
    cos = [float(c[0] @ art.clip.vector(row)) for c, row in zip(copies, originals.rows)]
    return {"threshold": round(float(np.percentile(cos, 1)), 4), "n_copies": len(cos),
            "from": "re-uploads (resized 60-90 %, JPEG 60-85) of held-out photos: the 1st percentile of their cosine"}


def _originals(art, rows: np.ndarray, root: Path) -> Originals:
    return Originals(rows=rows, ids=art.items["id"].to_numpy()[rows], paths=[root / p for p in art.items["path"].iloc[rows]],
                     hashes=art.items["hash"].iloc[rows].astype(str).tolist())


def check_build(art, encoder: Encoder, store: EmbeddingStore, held: np.ndarray, root: Path,
                cfg: QualityConfig, probs: dict[str, np.ndarray], codes: dict[str, np.ndarray], batch_size: int = 32,
                progress: Progress = silent) -> tuple[dict, dict | None]:
    """A build's calibration and its own ranking check, on its held-out items, kept apart: `cfg.per_change` held-out
    photos (in a fixed order by id) are re-shot by every change, alternately into a calibration part and a scored
    part. The filter thresholds, the same-photo cosine and the duplicate threshold are fitted on the calibration part
    (and the clean photos of every held-out item not scored); the scored part is then ranked with them, as a user's
    queries would be. Returns (filters: {precision, thresholds, same_photo_cosine}, retrieval report or None);
    `art.metrics` gets the filters first."""
    ids = art.items["id"].to_numpy()
    picked = held[by_hash(ids[held], "check")][: cfg.per_change]
    calibrate, scored = picked[0::2], picked[1::2]
    changes = list(cfg.changes or CHANGES)
    kinds = list(cfg.heldout if cfg.heldout is not None else HELDOUT_KINDS)
    backdrops = backdrop_photos(art.items, root)
    matcher = Matcher(art, encoder)

    def queries(rows: np.ndarray, part: str) -> tuple[Originals, dict]:
        """Re-shots (the training-style family) and held-out kinds of photo (vibe.eval.heldout, of `part`'s real photos)."""
        originals = _originals(art, rows, root)
        if not len(rows):
            return originals, {}
        made = embed_reshoots(encoder, store, originals, changes, cfg.seed, backdrops, batch_size, progress, matcher.locator)
        held_out = embed_heldout(encoder, store, originals, kinds, cfg.seed, backdrops, part, batch_size, progress,
                                 matcher.locator)
        return originals, {**made, **{f"heldout:{k}": v for k, v in held_out.items()}}

    # calibrated on photos like users' uploads, both families (the held-out kinds from photos the eval never scores):
    # the clean held-out photos and re-made ones, none of them scored below
    cal, cal_queries = queries(calibrate, "calibrate")
    clean = np.setdiff1d(held, scored)
    views = [matcher.pick_view(v)[0] for q in cal_queries.values() for v in q]
    reshot = art.heads.predict_proba(np.stack(views)) if views else {h: p[:0] for h, p in probs.items()}
    reshot_codes = {h: np.tile(codes[h][calibrate], len(cal_queries)) for h in codes}
    # how close each re-made photo comes to the catalogue (its own original is there, as a user's product would be)
    familiarity = np.array([matcher.familiarity(v) for v in views])
    filters = familiarity_thresholds({h: probs[h][clean] for h in probs}, {h: codes[h][clean] for h in codes},
                                     reshot, reshot_codes, familiarity, cfg.filter_precision)
    filters |= {"calibrated_on": [int(i) for i in cal.ids], "calibrated_with": list(cal_queries)}
    if len(calibrate):
        targets = [set(matcher.rows_of_hash.get(h, [])) | {int(r)} for h, r in zip(cal.hashes, cal.rows)]
        filters["same_photo_cosine"] = same_photo_cosine(matcher, cal_queries, targets, cfg.same_photo_precision)
        art.metrics["duplicates"] = duplicate_threshold(art, encoder, store, cal, cfg.seed, batch_size, progress)
    art.metrics["filters"] = filters
    if not len(scored):
        return filters, None
    originals, scored_queries = queries(scored, "score")
    made = {c: q for c, q in scored_queries.items() if not c.startswith("heldout:")}
    report = rank_reshoots(matcher, originals, made, cfg.k, progress=progress)
    report.update(n_originals=int(len(scored)), seed=cfg.seed, changes={c: CHANGES[c] for c in changes},
                  scored_ids=[int(i) for i in originals.ids], backdrop_ids=backdrops.ids,
                  neighbours=neighbour_precision(matcher, held), style_space=style_space_report(art, held, cfg.seed),
                  combo=combo_checks(matcher, scored))
    if kinds:
        held_out = rank_reshoots(matcher, originals, {k: scored_queries[f"heldout:{k}"] for k in kinds}, cfg.k,
                                 progress=progress)
        report["heldout"] = {"part": "score", "kinds": kinds, "same": held_out["same"], "embedding": held_out["embedding"],
                             "worst": held_out["worst"], "others_ids": backdrops.ids, "proposals": {
                                 "detector": matcher.locator.version, "scenes": None,
                                 "page_screenshot": own_box_first(matcher.locator, originals, cfg.seed, backdrops, "score")
                                 if "page_screenshot" in kinds else None}}
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
