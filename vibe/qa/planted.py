"""Catalogue QA measured on planted faults: a copy of a catalogue with item_type labels flipped at random and photos
added again as retouched copies, built, then audited. The figures can fail: they count what the audit finds. The
copies are made here, by changes the build's duplicate calibration never makes (it calibrates on resized, recompressed
re-uploads: vibe.eval.reshoot.reupload), so the recall does not measure the calibration against itself."""
from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageOps

from ..catalog.reader import link_images, load_catalog, write_styles
from ..config import BuildConfig, CatalogConfig
from ..errors import VibeError
from ..util.images import load_image
from ..util.progress import Progress, silent
from .duplicates import HASH_DISTANCE, default_duplicate_threshold, find_groups

SEARCH_QUERY = "white sports shoes men"
SEARCH_LABELS = {"colour": "White", "item_type": "Sports Shoes", "gender": "Men"}
RETOUCHES = "a crop of 3-8 % off two sides, a 2-5 % border (white or light grey), a mild tone change (brightness and " \
            "contrast x0.92-1.08, saturation x0.9-1.1), then saved at 110-140 % of the size as PNG or JPEG quality 88-95"


def retouched(image: Image.Image, seed: int, key: int) -> Image.Image:
    """The same photo as a supplier would send it again (see RETOUCHES); deterministic for (seed, key)."""
    rng = np.random.default_rng([seed, int(key) & 0x7FFFFFFF, 7])
    w, h = image.size
    dx, dy = (max(1, round(s * float(rng.uniform(0.03, 0.08)))) for s in (w, h))
    left, top = (dx, 0) if rng.random() < 0.5 else (0, dy)
    image = image.convert("RGB").crop((left, top, w - (dx - left), h - (dy - top)))
    image = ImageOps.expand(image, border=max(1, round(max(w, h) * float(rng.uniform(0.02, 0.05)))),
                            fill=(255, 255, 255) if rng.random() < 0.5 else (238, 238, 238))
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast):
        image = enhance(image).enhance(float(rng.uniform(0.92, 1.08)))
    image = ImageEnhance.Color(image).enhance(float(rng.uniform(0.9, 1.1)))
    scale = float(rng.uniform(1.1, 1.4))
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    buf = io.BytesIO()
    if rng.random() < 0.5:
        image.save(buf, "PNG")
    else:
        image.save(buf, "JPEG", quality=int(rng.integers(88, 96)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def hard_copy(image: Image.Image) -> Image.Image:
    """A harsher re-upload (see HARD): 5 % cropped off every side, a 12-px white border, 5 % brighter, JPEG quality 70."""
    image = image.convert("RGB")
    w, h = image.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    image = ImageOps.expand(image.crop((dx, dy, w - dx, h - dy)), border=12, fill=(255, 255, 255))
    buf = io.BytesIO()
    ImageEnhance.Brightness(image).enhance(1.05).save(buf, "JPEG", quality=70)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


HARD = "every other copy: 5 % cropped off every side, a 12-px white border, 5 % brighter, recompressed at JPEG quality 70"
KINDS = ("uniform", "confusion")  # flips drawn by the catalogue's frequencies, or to the look-alike class


def _new_types(items: pd.DataFrame, flipped: np.ndarray, kind: str, rng, vectors: np.ndarray | None) -> dict[int, str]:
    """uniform: another type drawn by the catalogue's own frequencies. confusion: the type whose photos' mean is
    nearest the item's photo, among the other types with at least 5 items (Tshirts <-> Tops, not Tshirts -> Trunk)."""
    types = items["item_type"]
    if kind == "uniform":
        known = types.dropna()
        out = {}
        for row in flipped:
            choices = known[known != types.iat[row]]
            out[int(items["id"].iat[row])] = str(choices.iloc[rng.integers(len(choices))])
        return out
    if vectors is None:
        raise VibeError("confusion flips need the catalogue's embeddings.")
    counts = types.value_counts()
    common = [t for t in counts.index if counts[t] >= 5]
    centroids = np.stack([vectors[(types == t).to_numpy()].mean(0) for t in common])
    out = {}
    for row in flipped:
        order = np.argsort(-(centroids @ vectors[row]))
        out[int(items["id"].iat[row])] = next(common[c] for c in order if common[c] != types.iat[row])
    return out


def plant(catalog: CatalogConfig, out: Path, flip: float = 0.03, copies: int = 50, seed: int = 0,
          kind: str = "uniform", vectors: np.ndarray | None = None) -> dict:
    """Write a copy of the catalogue to `out`: `flip` of the item_type labels changed to another type (`kind`, see
    _new_types; `vectors` are the catalogue's embeddings, rows as load_catalog's items), and `copies` photos added
    again under new ids with the original's labels: half retouched (`retouched`), half hard copies (`hard_copy`).
    Returns what was planted (ids)."""
    if kind not in KINDS:
        raise VibeError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    rng = np.random.default_rng(seed)
    items = load_catalog(catalog).items
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    flipped = rng.choice(np.flatnonzero(items["item_type"].notna()), size=max(1, round(flip * len(items))), replace=False)
    new_type = _new_types(items, flipped, kind, rng, vectors)
    originals = rng.choice(len(items), size=min(copies, len(items)), replace=False)
    next_id = int(items["id"].max()) + 1
    pairs = []
    for k, row in enumerate(originals):
        photo = load_image(catalog.root / items.at[row, "path"])
        copy = hard_copy(photo) if k % 2 else retouched(photo, seed + 1, int(items.at[row, "id"]))
        copy.save(out / "images" / f"{next_id + k}.png")  # lossless: the copy chose its own compression
        pairs.append((int(items.at[row, "id"]), next_id + k))
    link_images((catalog.root / p, out / "images" / f"{i}{Path(p).suffix}") for i, p in zip(items["id"], items["path"]))
    copies_rows = items.iloc[originals].assign(id=[c for _, c in pairs])
    write_styles(out / "styles.csv", pd.concat([items, copies_rows], ignore_index=True),
                 {i: {"item_type": t} for i, t in new_type.items()})
    return {"flipped": sorted(new_type), "pairs": pairs, "n_items": len(items) + len(pairs), "kind": kind}


def _precision(scores: np.ndarray, ids: np.ndarray, flipped: set[int]) -> dict:
    """Precision at the number flipped and recall at twice it, of a ranking (highest score first, NaN last)."""
    n = len(flipped)
    order = np.lexsort((ids, -np.nan_to_num(scores, nan=-np.inf)))
    ranked = ids[order]
    return {"precision_at_n": len(flipped & set(ranked[:n].tolist())) / n,
            "recall_at_2n": len(flipped & set(ranked[:2 * n].tolist())) / n}


def score_labels(art, truth: dict, original_codes: np.ndarray, cfg: BuildConfig) -> dict:
    """Every ranking of rankings.METHODS, the shipped list and the error estimate, on one planted build."""
    from ..build.heads import out_of_fold_probs
    from .labels import RANKING, audit_labels, evidence
    from .rankings import METHODS, estimate_errors

    flipped, ids = set(truth["flipped"]), art.items["id"].to_numpy()
    n = len(flipped)
    ev = evidence(art, "item_type")
    methods = {name: _precision(m(ev), ids, flipped) for name, m in METHODS.items()}
    audit = audit_labels(art, "item_type", ev=ev)
    shown = set(audit.table["id"].head(n).tolist())
    # the catalogue's own errors: the same estimate over heads trained on its original labels, same photos
    codes = {h: art.items[f"{h}_code"].to_numpy() for h in art.heads.vocabs}
    original = replace(ev, labels=original_codes, probs=out_of_fold_probs(
        art.clip.vectors(), {**codes, "item_type": original_codes}, art.heads.vocabs, ids, cfg.heads, cfg.seed,
        cfg.heads.audit_folds)["item_type"])
    own = estimate_errors(original)
    return {"head": "item_type", "kind": truth["kind"], "flipped": n, "methods": methods,
            "shipped": {"method": RANKING, "precision_at_n": len(flipped & shown) / n,
                        "disagreements": int(len(audit.table))},
            "estimate": audit.estimate, "estimate_off_diagonal": estimate_errors(ev, "off_diagonal"),
            "estimate_original": own, "estimate_over_planted_plus_own": audit.estimate / max(1, n + own)}


UNCHECKED_HASH = 12  # the audit before the shot check: the calibrated cosine or a hash within 12 bits, unchecked


def score_duplicates(art, truth: dict) -> dict:
    """The shipped audit's groups against the planted copies, and beside it the audit without the shot check."""
    out = _score_groups(art, truth, find_groups(art, default_duplicate_threshold(art)))
    out["threshold"], out["hash_distance"] = default_duplicate_threshold(art), HASH_DISTANCE
    calibrated = float(art.metrics.get("duplicates", {}).get("threshold", 0.97))
    before = _score_groups(art, truth, find_groups(art, calibrated, UNCHECKED_HASH, check=False))
    out["unchecked"] = {"threshold": calibrated, "hash_distance": UNCHECKED_HASH,
                        **{k: before[k] for k in ("recall", "recall_hard", "other_groups_not_same_bytes",
                                                  "other_groups_one_name")}}
    return out


def _score_groups(art, truth: dict, groups: list) -> dict:
    group_of = {i: g for g, members in enumerate(groups) for i in members.ids}
    together = [(a, b) for a, b in truth["pairs"] if a in group_of and group_of.get(a) == group_of.get(b)]
    planted_groups = {group_of[a] for a, _ in together}
    other = [g for i, g in enumerate(groups) if i not in planted_groups]
    items = art.items.set_index("id")
    hard = truth["pairs"][1::2]
    false = [g for g in other if items.loc[g.ids, "hash"].nunique() > 1]  # not planted, not all the very same bytes
    return {"planted": len(truth["pairs"]), "recall": len(together) / len(truth["pairs"]),
            "recall_hard": sum(p in together for p in hard) / max(1, len(hard)),
            "groups": len(groups), "other_groups": len(other), "other_groups_not_same_bytes": len(false),
            # of those, groups the catalogue itself holds twice under one product name: likely duplicates, not alarms
            "other_groups_one_name": sum(items.loc[g.ids, "name"].nunique() == 1 for g in false),
            "by_witness": {w: sum(w in g.witnesses for g in groups) for w in ("same bytes", "photo hash", "embedding")},
            "other_examples": [g.ids for g in false[:10]], "copies": f"{RETOUCHES}; {HARD}"}


def measure(cfg: BuildConfig, flip: float = 0.03, copies: int = 50, seed: int = 0, encoder=None,
            kinds: tuple[str, ...] = KINDS, progress: Progress = silent, log=lambda line: None) -> dict:
    """For each kind of flip: plant faults in a copy of cfg.catalog (under cfg.workdir), build it with cfg, and score
    every label ranking, the error estimate and the duplicate groups. The catalogue is embedded once (the builds read
    the same cache)."""
    from ..build.pipeline import build
    from ..models.encoder import Encoder
    from ..models.heads import encode_labels
    from ..search.bundle import load_bundle
    from ..store.cache import EmbeddingStore, embed_files

    encoder = encoder or Encoder(cfg.backbone, precision=cfg.precision)
    original = load_catalog(cfg.catalog)
    vectors = None
    if "confusion" in kinds:
        store = EmbeddingStore(cfg.workdir / "cache", encoder.fingerprint, encoder.dim)
        vectors, _, _ = embed_files(encoder, [original.root / p for p in original.items["path"]], store, cfg.batch_size,
                                    progress)
        vectors = np.nan_to_num(vectors)  # an unreadable photo: no vote for any class's mean
    out = {"labels": {}, "duplicates": {}}
    for kind in kinds:
        planted_dir = cfg.workdir / f"planted-catalogue-{kind}"
        truth = plant(cfg.catalog, planted_dir, flip, copies, seed, kind, vectors)
        build(replace(cfg, catalog=CatalogConfig(root=planted_dir)), progress=progress, encoder=encoder, log=log)
        bundle = load_bundle(cfg.workdir, encoders=lambda name: encoder)
        art = bundle.artifacts
        by_id = original.items.set_index("id")["item_type"]
        copy_of = {c: a for a, c in truth["pairs"]}
        true_types = art.items["id"].map(lambda i: by_id.get(copy_of.get(i, i)))
        original_codes = encode_labels(art.items.assign(item_type=true_types), art.heads.vocabs)["item_type"]
        out["labels"][kind] = score_labels(art, truth, original_codes, cfg)
        out["duplicates"][kind] = score_duplicates(art, truth)
        out.update(n_items=truth["n_items"], backbone=art.backbone["name"])
        log(f"planted ({kind}): " + table_lines({"labels": {kind: out["labels"][kind]}})[-1])
    # ranked from the photos alone: the catalogue labels the hits are counted by are not used as evidence
    search = bundle.matcher.search_words(SEARCH_QUERY, 10, label_evidence=False)
    hits = sum(all(m.labels[h] == v for h, v in SEARCH_LABELS.items()) for m in search.matches)
    out["search"] = {"query": SEARCH_QUERY, "labels": SEARCH_LABELS, "share_top10": hits / max(1, len(search.matches)),
                     "label_evidence": False}
    return out


def table_lines(result: dict) -> list[str]:
    """The methods x flip kinds table (precision at the number flipped) as Markdown lines."""
    kinds = list(result["labels"])
    methods = list(next(iter(result["labels"].values()))["methods"])
    lines = ["| ranking | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{result['labels'][k]['methods'][m]['precision_at_n']:.3f}" for k in kinds) + " |")
    lines.append("| the list as shown (disagreements only) | "
                 + " | ".join(f"{result['labels'][k]['shipped']['precision_at_n']:.3f}" for k in kinds) + " |")
    return lines


def summary_lines(result: dict) -> list[str]:
    """Beside the table: each flip kind's estimate against the planted and the original's errors, and the duplicate
    audit's recall of the planted copies with its false groups."""
    lines = []
    for kind, labels in result["labels"].items():
        lines.append(f"{kind} flips: estimate {labels['estimate']} of {labels['flipped']} planted + "
                     f"{labels['estimate_original']} on the original labels ({labels['estimate_over_planted_plus_own']:.2f})")
    for kind, dupes in result["duplicates"].items():
        lines.append(f"{kind} build, duplicates: recall {dupes['recall']:.2f} of {dupes['planted']} planted copies "
                     f"(hard {dupes['recall_hard']:.2f}), {dupes['other_groups_not_same_bytes']} other groups not of the "
                     f"same bytes; before the shot check {dupes['unchecked']['recall']:.2f}, "
                     f"{dupes['unchecked']['other_groups_not_same_bytes']}")
    return lines
