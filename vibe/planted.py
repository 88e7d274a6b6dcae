"""Catalogue QA measured on planted faults: a copy of a catalogue with item_type labels flipped at random and photos
uploaded twice (re-encoded, resized), built, then audited. The figures can fail: they count what the audit finds."""
from __future__ import annotations

import csv
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .audit import default_duplicate_threshold, duplicate_groups, label_problems
from .catalog import load_catalog
from .config import BuildConfig, CatalogConfig
from .images import load_image
from .progress import Progress, silent
from .reshoot import reupload

SEARCH_QUERY = "white sports shoes men"
SEARCH_LABELS = {"colour": "White", "item_type": "Sports Shoes", "gender": "Men"}


def plant(catalog: CatalogConfig, out: Path, flip: float = 0.03, copies: int = 50, seed: int = 0) -> dict:
    """Write a copy of the catalogue to `out`: `flip` of the item_type labels changed to another type (drawn by the
    catalogue's own frequencies), and `copies` photos added again under new ids (vibe.reshoot.reupload: resized,
    recompressed). Returns what was planted (ids)."""
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
        copy = reupload(load_image(catalog.root / items.at[row, "path"]), seed + 1, int(items.at[row, "id"]))
        copy.save(out / "images" / f"{next_id + k}.jpg", "JPEG", quality=95)  # reupload already recompressed it
        pairs.append((int(items.at[row, "id"]), next_id + k))
    for item_id, path in zip(items["id"], items["path"]):
        target = out / "images" / f"{item_id}{Path(path).suffix}"
        if not target.exists():
            try:
                os.link(catalog.root / path, target)
            except OSError:
                target.write_bytes((catalog.root / path).read_bytes())
    header = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage",
              "productDisplayName"]
    rows = [[r.id, r.gender, r.master, r.sub, new_type.get(int(r.id), r.item_type), r.colour, r.season, "", r.style, r.name]
            for r in items.itertuples()]
    by_id = items.set_index("id")
    rows += [[copy, *(by_id.at[orig, c] for c in ("gender", "master", "sub", "item_type", "colour", "season")), "",
              by_id.at[orig, "style"], by_id.at[orig, "name"]] for orig, copy in pairs]
    with open(out / "styles.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *[["" if v is None or v != v else v for v in row] for row in rows]])
    return {"flipped": sorted(new_type), "pairs": pairs, "n_items": len(items) + len(pairs)}


def measure(cfg: BuildConfig, flip: float = 0.03, copies: int = 50, seed: int = 0, encoder=None,
            progress: Progress = silent, log=lambda line: None) -> dict:
    """Plant faults in a copy of cfg.catalog (under cfg.workdir), build it with cfg, and score the audit."""
    from .backbone import Encoder
    from .bundle import load_bundle
    from .pipeline import build

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
    search = bundle.matcher.search_words(SEARCH_QUERY, 10)
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
        "search": {"query": SEARCH_QUERY, "labels": SEARCH_LABELS, "share_top10": hits / max(1, len(search.matches))},
    }
