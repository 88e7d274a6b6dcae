"""Mix & match: the query's outfit slot, and the best items of every slot that completes it, ranked in the 256-D style
space (which slots complete which: vibe.catalog.rules.COMPLETES)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .results import Match, Prediction


def query_slot(matcher, emb: np.ndarray, preds: dict[str, Prediction], known: dict | None = None,
               sure_from: float = 0.0) -> dict:
    """The query's outfit slot: a catalogue item's own; else the slot of the predicted item type when the head is
    sure of it (from `sure_from`, the item_type filter's threshold for this query); else the most common slot among its
    10 nearest catalogue photos."""
    if known and known.get("slot"):
        return {"slot": known["slot"], "how": "the item's own catalogue labels"}
    t = preds["item_type"]
    if t.label in matcher.slot_of_type and t.confidence >= sure_from:
        return {"slot": matcher.slot_of_type[t.label], "how": f"the predicted item type {t.label} ({t.confidence:.2f})"}
    rows, _ = matcher.art.clip.search(emb, 10)
    votes = pd.Series([matcher.labels["slot"][r] for r in rows]).value_counts()
    return {"slot": str(votes.index[0]), "how": f"{votes.iloc[0]} of its 10 nearest catalogue photos", "voted": True}


def board(matcher, emb: np.ndarray, allowed: np.ndarray, slots: tuple[str, ...], per_slot: int) -> dict[str, list[Match]]:
    """Per complementary slot (in the outfit table's order), its best `per_slot` items in the style space."""
    style_q = matcher.art.projection.project(emb[None])[0]
    out = {}
    for slot in slots:
        if slot not in matcher.label_values["slot"]:
            continue
        rows, scores = matcher.art.style.search(style_q, per_slot, allowed & matcher.slot_mask([slot]))
        if len(rows):
            out[slot] = [matcher.match(r, s, slot) for r, s in zip(rows, scores)]
    return out


def outfit_order(outfit: dict[str, list[Match]], k: int) -> list[Match]:
    """The flat list of an outfit: the best item of every slot first (slots in the outfit table's order), then the
    second options, and so on, up to k. Within a slot, options keep their score order."""
    flat, depth = [], max((len(v) for v in outfit.values()), default=0)
    for r in range(depth):
        flat += [options[r] for options in outfit.values() if r < len(options)]
    return flat[:k]


def by_slot(matches: list[Match], options: dict[str, list[Match]]) -> dict[str, list[Match]]:
    """`matches` grouped by slot, slots in the order of `options` (the outfit table's), each in score order."""
    grouped = {slot: [m for m in matches if m.slot == slot] for slot in options}
    return {slot: ms for slot, ms in grouped.items() if ms}
