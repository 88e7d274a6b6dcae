"""Domain rules, each in one place: which genders are compatible, and in which order query filters relax."""
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
    reason: str = ""

    @property
    def applied(self) -> bool:
        return self.status == "applied"


def relax_order(filters: list[QueryFilter], priority: tuple[str, ...]) -> list[QueryFilter]:
    """The applied filters in the order they are dropped when too few items pass: least confident first;
    on a tie (e.g. catalogue labels, all 1.0) the one latest in `priority` goes first."""
    rank = {h: i for i, h in enumerate(priority)}
    return sorted((f for f in filters if f.applied), key=lambda f: (f.confidence, -rank.get(f.head, len(rank))))
