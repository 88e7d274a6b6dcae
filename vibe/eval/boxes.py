"""Whether product proposals find the products, on held-out photos (vibe.eval.heldout): the searched product's own box
ranked first on page screenshots with distractor thumbnails, and every product of scenes of one to five."""
from __future__ import annotations

import numpy as np

from ..locate.boxes import iou
from ..locate.query import Locator
from ..util.images import load_image
from ..util.progress import Progress, silent
from .queries import Originals, heldout_query
from .reshoot import Backdrops

IOU = 0.5  # a proposal finds a product when they overlap at least this much


def own_box_first(locator: Locator, originals: Originals, seed: int, others: Backdrops, part: str = "score",
                  progress: Progress = silent) -> dict:
    """On page screenshots: how often the first proposal is the page's own product (IoU >= 0.5 with its box), and how
    often any proposal is."""
    first, anywhere = [], []
    for i in range(len(originals.ids)):
        shot = heldout_query(originals, i, "page_screenshot", seed, others, part)
        proposals = locator.propose(shot.image)[0]
        target = shot.boxes[shot.target]
        first.append(bool(proposals) and iou(proposals[0].box, target) >= IOU)
        anywhere.append(any(iou(p.box, target) >= IOU for p in proposals))
        if (i + 1) % 100 == 0 or i + 1 == len(originals.ids):
            progress("proposals: page screenshots", i + 1, len(originals.ids))
    return {"n": len(first), "own_box_first": float(np.mean(first)) if first else float("nan"),
            "own_box_found": float(np.mean(anywhere)) if anywhere else float("nan")}


def scene_recall(locator: Locator, originals: Originals, seed: int, part: str = "score", n_scenes: int = 300,
                 progress: Progress = silent) -> dict:
    """On scenes of 1-5 held-out products on real photos: the share of products some proposal finds (recall at IoU
    0.5), and how many proposals a scene gets beside its products."""
    from .heldout import scene

    rng = np.random.default_rng([seed, 11])
    found, total, extra = 0, 0, []
    for j in range(n_scenes):
        picks = rng.choice(len(originals.ids), size=int(rng.integers(1, 6)), replace=False)
        shot = scene([load_image(originals.paths[i]) for i in picks], seed, j, part)
        proposals = locator.propose(shot.image)[0]
        hits = [any(iou(p.box, b) >= IOU for p in proposals) for b in shot.boxes]
        found, total = found + sum(hits), total + len(shot.boxes)
        extra.append(len(proposals) - sum(hits))
        if (j + 1) % 50 == 0 or j + 1 == n_scenes:
            progress("proposals: scenes", j + 1, n_scenes)
    return {"n_scenes": n_scenes, "n_products": total, "recall": found / max(1, total),
            "extra_per_scene": float(np.mean(extra)) if extra else float("nan")}
