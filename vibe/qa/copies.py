"""The duplicate audit scored on kinds of copy nothing in it was tuned on: a built catalogue with copies of some of its
photos added (a white balance from the held-out evaluation's code, a small rotation, a strong downscale, a dark
border), grouped by the very `find_groups` the page runs. `audit planted` tuned the shot check on its own retouched
and hard copies; these kinds measure what that choice costs elsewhere. No rebuild: only the copies are embedded."""
from __future__ import annotations

import io
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from ..store.index import VectorIndex
from ..util.images import load_image
from ..util.perceptual import photo_hash
from .duplicates import default_duplicate_threshold, find_groups

KINDS = {
    "white balance": "vibe.eval.heldout's white balance: enlarged to 480-720 px, red up and blue down by 8-18 % or the "
                     "reverse, a mild tone curve",
    "rotated": "turned 2-4 degrees either way on white, JPEG quality 85",
    "downscaled": "40-60 % of the size, JPEG quality 75",
    "dark border": "a border of 6-10 % of the side in a dark grey, PNG",
}


def unseen_copy(photo: Image.Image, kind: str, seed: int, key: int) -> Image.Image:
    """A copy of `photo` of `kind` (see KINDS), deterministic for (seed, key)."""
    rng = np.random.default_rng([seed, int(key) & 0x7FFFFFFF, list(KINDS).index(kind), 11])
    photo = photo.convert("RGB")
    if kind == "white balance":
        from ..eval.heldout import heldout_photo

        return heldout_photo(photo, "white_balance", seed, key).image
    if kind == "rotated":
        angle = float(rng.uniform(2, 4)) * (1 if rng.random() < 0.5 else -1)
        return _jpeg(photo.rotate(angle, Image.BICUBIC, expand=True, fillcolor=(255, 255, 255)), 85)
    if kind == "downscaled":
        scale = float(rng.uniform(0.4, 0.6))
        return _jpeg(photo.resize((max(8, round(photo.width * scale)), max(8, round(photo.height * scale))),
                                  Image.LANCZOS), 75)
    if kind == "dark border":
        grey = int(rng.integers(30, 70))
        return ImageOps.expand(photo, border=round(max(photo.size) * float(rng.uniform(0.06, 0.10))),
                               fill=(grey, grey, grey))
    raise ValueError(f"unknown kind of copy {kind!r}; the kinds are {', '.join(KINDS)}")


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def measure_copies(art, encoder, per_kind: int = 50, seed: int = 0, kinds=tuple(KINDS)) -> dict:
    """Per kind: `per_kind` catalogue photos copied, the copies added to the build (embedded by `encoder`, which must
    be the build's backbone), then `find_groups` at the default threshold. recall: copies grouped with their
    original; false groups: groups holding a copy and an item that is neither its original nor the same bytes as it."""
    rng = np.random.default_rng(seed)
    items, root = art.items, art.catalog_root
    threshold = default_duplicate_threshold(art)
    out = {"threshold": threshold, "per_kind": per_kind, "kinds": {}}
    # what each original is already grouped with in the catalogue as built: a copy joining that is not a false group
    grouped = {i: set(g.ids) for g in find_groups(art, threshold) for i in g.ids}
    with tempfile.TemporaryDirectory(prefix="vibe-copies-") as tmp:
        for kind in kinds:
            rows = rng.choice(len(items), size=min(per_kind, len(items)), replace=False)
            copies = [unseen_copy(load_image(root / items["path"].iat[r]), kind, seed, int(items["id"].iat[r]))
                      for r in rows]
            new_ids = int(items["id"].max()) + 1 + np.arange(len(rows))
            paths = [str(Path(tmp) / f"{kind.replace(' ', '-')}-{i}.png") for i in new_ids]
            for image, path in zip(copies, paths):
                image.save(path)
            added = items.iloc[rows].assign(id=new_ids, path=paths, hash=[f"copy-{i}" for i in new_ids],
                                            photo_hash=[photo_hash(c) for c in copies])
            vectors = np.concatenate([art.clip.vectors(), encoder.encode_images(copies)]).astype(np.float32)
            grown = replace(art, items=pd.concat([items, added], ignore_index=True), clip=VectorIndex.build(vectors))
            groups = find_groups(grown, threshold)
            original = {int(c): int(items["id"].iat[r]) for c, r in zip(new_ids, rows)}
            found = false = 0
            for g in groups:
                members = set(g.ids)
                for c in members & set(original):
                    found += original[c] in members
                    false += bool(members - {c} - grouped.get(original[c], {original[c]}) - set(original))
            out["kinds"][kind] = {"recall": found / len(rows), "false_groups": false, "how": KINDS[kind]}
    return out
