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
from ..util.images import load_image
from ..util.progress import Progress, silent
from .duplicates import default_duplicate_threshold, duplicate_groups
from .labels import label_problems

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


def plant(catalog: CatalogConfig, out: Path, flip: float = 0.03, copies: int = 50, seed: int = 0) -> dict:
    """Write a copy of the catalogue to `out`: `flip` of the item_type labels changed to another type (drawn by the
    catalogue's own frequencies), and `copies` photos added again, retouched (`retouched`), under new ids with the
    original's labels. Returns what was planted (ids)."""
    rng = np.random.default_rng(seed)
    items = load_catalog(catalog).items
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    types = items["item_type"].dropna()
    flipped = rng.choice(items.index[items["item_type"].notna()], size=max(1, round(flip * len(items))), replace=False)
    new_type = {}
    for row in flipped:
        choices = types[types != items.at[row, "item_type"]]
        new_type[int(items.at[row, "id"])] = str(choices.iloc[rng.integers(len(choices))])
    originals = rng.choice(len(items), size=min(copies, len(items)), replace=False)
    next_id = int(items["id"].max()) + 1
    pairs = []
    for k, row in enumerate(originals):
        copy = retouched(load_image(catalog.root / items.at[row, "path"]), seed + 1, int(items.at[row, "id"]))
        copy.save(out / "images" / f"{next_id + k}.png")  # lossless: the retouch chose its own compression
        pairs.append((int(items.at[row, "id"]), next_id + k))
    link_images((catalog.root / p, out / "images" / f"{i}{Path(p).suffix}") for i, p in zip(items["id"], items["path"]))
    copies_rows = items.iloc[originals].assign(id=[c for _, c in pairs])
    write_styles(out / "styles.csv", pd.concat([items, copies_rows], ignore_index=True),
                 {i: {"item_type": t} for i, t in new_type.items()})
    return {"flipped": sorted(new_type), "pairs": pairs, "n_items": len(items) + len(pairs)}


def measure(cfg: BuildConfig, flip: float = 0.03, copies: int = 50, seed: int = 0, encoder=None,
            progress: Progress = silent, log=lambda line: None) -> dict:
    """Plant faults in a copy of cfg.catalog (under cfg.workdir), build it with cfg, and score the audit."""
    from ..build.pipeline import build
    from ..models.encoder import Encoder
    from ..search.bundle import load_bundle

    planted_dir = cfg.workdir / "planted-catalogue"
    truth = plant(cfg.catalog, planted_dir, flip, copies, seed)
    build(replace(cfg, catalog=CatalogConfig(root=planted_dir)), progress=progress, encoder=encoder, log=log)
    bundle = load_bundle(cfg.workdir, encoders=lambda name: encoder or Encoder(name))
    art = bundle.artifacts
    flipped = set(truth["flipped"])
    n = len(flipped)
    flagged = label_problems(art, "item_type")["id"].tolist()
    threshold = default_duplicate_threshold(art)
    groups = duplicate_groups(art, threshold)
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    found = sum(1 for a, b in truth["pairs"] if a in group_of and group_of.get(a) == group_of.get(b))
    planted_groups = {group_of[a] for a, b in truth["pairs"] if a in group_of and group_of.get(a) == group_of.get(b)}
    other = [g for i, g in enumerate(groups) if i not in planted_groups]
    names = art.items.set_index("id")["name"]
    # ranked from the photos alone: the catalogue labels the hits are counted by are not used as evidence
    search = bundle.matcher.search_words(SEARCH_QUERY, 10, label_evidence=False)
    hits = sum(all(m.labels[h] == v for h, v in SEARCH_LABELS.items()) for m in search.matches)
    return {
        "n_items": truth["n_items"], "backbone": art.backbone["name"],
        "labels": {"head": "item_type", "flipped": n, f"precision_at_{n}": len(flipped & set(flagged[:n])) / n,
                   f"recall_at_{2 * n}": len(flipped & set(flagged[:2 * n])) / n},
        "duplicates": {"planted": len(truth["pairs"]), "threshold": threshold, "recall": found / len(truth["pairs"]),
                       "groups": len(groups), "other_groups": len(other),
                       # groups the catalogue itself holds twice under one product name: duplicates, not false alarms
                       "other_groups_one_name": sum(names.loc[g].nunique() == 1 for g in other),
                       "other_examples": other[:10]},
        "search": {"query": SEARCH_QUERY, "labels": SEARCH_LABELS, "share_top10": hits / max(1, len(search.matches)),
                   "label_evidence": False},
        "copies": RETOUCHES,
    }
