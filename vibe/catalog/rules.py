"""Domain rules, each in one place: which genders and seasons are compatible, which outfit slots complete which, when
item b goes with item a (by labels, and vectorised over a catalogue), and in which order query filters relax."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

UNISEX = "Unisex"


def gender_compatible(a, b):
    """Same gender, or either side Unisex, or either side unknown (None/NaN: no evidence against it).
    Works on two labels (-> bool) or on arrays of labels (-> bool array); retrieval, mining and evaluation all call it."""
    a_arr, b_arr = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    out = (a_arr == b_arr) | (a_arr == UNISEX) | (b_arr == UNISEX) | pd.isna(a_arr) | pd.isna(b_arr)
    return bool(out) if np.ndim(out) == 0 else np.asarray(out, dtype=bool)


@dataclass
class QueryFilter:
    """One attribute filter of a query: its value, how sure we are of it, and what became of it."""

    head: str
    value: str
    confidence: float  # the head's probability for `value`; 1.0 for a catalogue item's own label
    source: str  # "predicted" | "catalogue"
    status: str = "applied"  # applied | relaxed | skipped
    reason: str = ""  # why it is not applied, in a merchandiser's words
    detail: str = ""  # the numbers behind the reason (a tooltip on the page)

    @property
    def applied(self) -> bool:
        return self.status == "applied"


def relax_order(filters: list[QueryFilter], priority: tuple[str, ...]) -> list[QueryFilter]:
    """The applied filters in the order they are dropped when too few items pass: least confident first;
    on a tie (e.g. catalogue labels, all 1.0) the one latest in `priority` goes first."""
    rank = {h: i for i, h in enumerate(priority)}
    return sorted((f for f in filters if f.applied), key=lambda f: (f.confidence, -rank.get(f.head, len(rank))))


# --- outfit slots: which part of an outfit an item is, and which slots complete which --------------------------------
# From the catalogue's subCategory, with articleType overrides where a subcategory mixes slots (jackets are layers,
# a dupatta is a scarf). Near-synonyms (Kurtas/Kurtis, Tshirts/Tops) share a slot by construction.
SLOT_OF_SUBCATEGORY = {
    "Topwear": "top", "Bottomwear": "bottom", "Dress": "one-piece", "Saree": "one-piece", "Apparel Set": "one-piece",
    "Innerwear": "innerwear", "Loungewear and Nightwear": "nightwear", "Socks": "socks",
    "Shoes": "footwear", "Sandal": "footwear", "Flip Flops": "footwear",
    "Bags": "bag", "Wallets": "wallet", "Watches": "watch", "Eyewear": "eyewear", "Jewellery": "jewellery",
    "Belts": "belt", "Headwear": "headwear", "Scarves": "scarf", "Stoles": "scarf", "Mufflers": "scarf",
    "Gloves": "gloves", "Ties": "tie", "Cufflinks": "tie",
}
SLOT_OF_TYPE = {
    "Jackets": "layer", "Blazers": "layer", "Rain Jacket": "layer", "Waistcoat": "layer", "Shrug": "layer",
    "Nehru Jackets": "layer", "Dupatta": "scarf", "Rompers": "one-piece", "Lehenga Choli": "one-piece",
    "Dresses": "one-piece", "Jumpsuit": "one-piece", "Tracksuits": "one-piece", "Swimwear": "one-piece",
    "Belts": "belt", "Suspenders": "belt", "Socks": "socks", "Messenger Bag": "bag", "Wallets": "wallet",
}
OTHER_SLOT = "other"  # personal care, gifts, sports goods...: not part of an outfit
ACCESSORIES = ("bag", "watch", "eyewear", "jewellery", "belt", "headwear", "scarf", "wallet", "tie", "gloves", "socks")
# For a query in a slot, the slots an outfit adds, the most important first. A slot missing here (innerwear,
# nightwear, other) completes no outfit. A one-piece (dress, saree, jumpsuit) takes no top or bottom.
COMPLETES: dict[str, tuple[str, ...]] = {
    "top": ("bottom", "footwear", "layer", "bag", "watch", "eyewear", "belt", "jewellery", "headwear", "scarf"),
    "bottom": ("top", "footwear", "layer", "bag", "watch", "belt", "eyewear", "jewellery", "headwear", "scarf"),
    "one-piece": ("footwear", "layer", "bag", "jewellery", "watch", "eyewear", "scarf", "headwear", "belt"),
    "layer": ("top", "bottom", "footwear", "bag", "watch", "eyewear", "scarf", "headwear"),
    "footwear": ("top", "bottom", "one-piece", "bag", "watch", "socks", "eyewear", "belt", "jewellery"),
    **{a: ("top", "bottom", "one-piece", "footwear", "layer", *(b for b in ACCESSORIES if b != a)) for a in ACCESSORIES},
}


def item_slot(subcategory: str | None, item_type: str | None) -> str:
    """The outfit slot of a catalogue item, from its articleType (overrides) or its subCategory."""
    if item_type in SLOT_OF_TYPE:
        return SLOT_OF_TYPE[item_type]
    return SLOT_OF_SUBCATEGORY.get(subcategory or "", OTHER_SLOT)


def completes(slot: str, other) -> np.ndarray | bool:
    """Whether items of slot(s) `other` complete an outfit around an item of `slot` (never its own slot)."""
    wanted = COMPLETES.get(slot, ())
    if np.ndim(other) == 0:
        return other in wanted
    return np.isin(np.asarray(other, dtype=object), list(wanted))


SEASONS = ("Spring", "Summer", "Fall", "Winter")  # a cycle: each season borders the one before and after it


def seasons_compatible(a, b):
    """The same or a neighbouring season (a Winter top goes with Fall trousers), or either unknown: only opposite
    seasons clash (Summer/Winter, Spring/Fall). The season rule of mix & match, mining and evaluation. Requiring the
    exact season emptied whole slots (a sample catalogue has 9 Winter clothes and 116 Winter accessories)."""
    a_arr, b_arr = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    pos = {s: i for i, s in enumerate(SEASONS)}
    place = np.vectorize(lambda v: pos.get(v, -9), otypes=[int])
    ia, ib = place(a_arr), place(b_arr)
    out = ~((ia >= 0) & (ib >= 0) & (np.abs(ia - ib) == 2))  # unknown or missing (-9) is never opposite
    return bool(out) if np.ndim(out) == 0 else np.asarray(out, dtype=bool)


def goes_with(a: dict, b: dict) -> bool:
    """Whether catalogue item `b` completes an outfit around `a`, by their labels: a complementary slot, the same usage,
    a compatible gender and season. Mining, the curation fill-in and the style-space evaluation share this rule."""
    return (a.get("style") is not None and a.get("style") == b.get("style") and bool(completes(a["slot"], b["slot"]))
            and gender_compatible(a.get("gender"), b.get("gender")) and seasons_compatible(a.get("season"), b.get("season")))


class Compatibility:
    """`goes_with` (vibe.catalog.rules) over a catalogue's labels, vectorised: which items complete an outfit around which.
    The rules fill small label-by-label tables once; a query is then integer indexing."""

    def __init__(self, items: pd.DataFrame):
        self.style = pd.factorize(items["style"])[0]  # missing -> -1: completes nothing
        self.slots = items["slot"].to_numpy(dtype=object)
        self.slot_code, slots = pd.factorize(items["slot"])
        self.gender_code, genders = pd.factorize(items["gender"])
        self.season_code, seasons = pd.factorize(items["season"])

        def table(values, rule):  # the last row/column stands for a missing label (code -1)
            v = [*values, None]
            return np.array([[bool(rule(x, y)) for y in v] for x in v])

        self._slots = table(list(slots), lambda x, y: x is not None and y is not None and completes(x, y))
        self._genders = table(list(genders), gender_compatible)
        self._seasons = table(list(seasons), seasons_compatible)

    def slots_complete(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether item b's slot completes item a's, elementwise over broadcast row arrays."""
        return self._slots[self.slot_code[a], self.slot_code[b]]

    def outfit_anchors(self, rows: np.ndarray) -> np.ndarray:
        """Those of `rows` whose slot some other slot completes (innerwear, nightwear, personal care: none)."""
        rows = np.asarray(rows)
        return rows[np.isin(self.slots[rows], list(COMPLETES))]

    def same_slot(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.slot_code[a] == self.slot_code[b]

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether item b completes an outfit around item a, elementwise over broadcast row arrays."""
        return ((self.style[a] == self.style[b]) & (self.style[a] >= 0) & self.slots_complete(a, b)
                & self._genders[self.gender_code[a], self.gender_code[b]] & self._seasons[self.season_code[a], self.season_code[b]])
