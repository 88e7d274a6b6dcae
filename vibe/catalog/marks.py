"""Merchandisers' marks on mix & match suggestions ("goes with" / "does not go with"), kept as anchor/positive/negative
rows in a CSV beside the catalogue: append-only, written atomically, with who and when. The next build trains on them."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import VibeError
from ..util.files import content_hash
from .ledger import append_row, now, read_ledger
from .rules import Compatibility

CURATED_FILE = "curated_triplets.csv"
COLUMNS = ("anchor", "positive", "negative", "mark", "who", "when", "filled")
GOES, CLASHES = "goes with", "does not go with"


def curated_path(root: Path) -> Path:
    return Path(root) / CURATED_FILE


def read_marks(root: Path) -> pd.DataFrame:
    """Every mark recorded for this catalogue (an empty table when there is none)."""
    return read_ledger(curated_path(root), COLUMNS)


def latest_marks(marks: pd.DataFrame) -> pd.DataFrame:
    """The marks in force: per (anchor, marked item) only the latest, whichever way it went. A merchandiser who changes
    their mind on an item replaces the earlier mark; the file keeps both, as history."""
    if marks.empty:
        return marks.assign(item=pd.Series(dtype=str))
    marked = marks["positive"].where(marks["mark"] == GOES, marks["negative"])
    return marks.assign(item=marked).drop_duplicates(["anchor", "item"], keep="last")


def _fill(compat: Compatibility, row_of: dict[int, int], ids: np.ndarray, anchor: int, marked: int, goes: bool,
          in_force: pd.DataFrame) -> tuple[int, str]:
    """The side of the triplet a mark does not give: the item of the anchor's latest opposite mark in force (never the
    marked item itself), else one chosen by the outfit rules (for "goes with": an item of the anchor's own slot; for
    "does not go with": one that goes with it), in a fixed order."""
    opposite = in_force[(in_force["anchor"] == str(anchor)) & (in_force["mark"] == (CLASHES if goes else GOES))
                        & (in_force["item"] != str(marked))]
    if len(opposite):
        return int(opposite["item"].iat[-1]), "the anchor's latest opposite mark"
    a, every = row_of[anchor], np.arange(len(ids))
    wanted = compat.same_slot(a, every) if goes else compat(a, every)
    wanted[[a, row_of[marked]]] = False
    if not wanted.any():
        raise VibeError(f"No item of the catalogue can complete the mark on {anchor}: it needs "
                        + ("another item of its own slot." if goes else "an item that goes with it."))
    pick = ids[wanted][np.argmin([content_hash(f"{anchor}:{i}".encode()) for i in ids[wanted]])]
    return int(pick), "the outfit rules (" + ("an item of the anchor's own slot" if goes else "an item that goes with it") + ")"


def record_mark(root: Path, items: pd.DataFrame, anchor: int, item: int, goes: bool, who: str,
                when: datetime | None = None) -> dict:
    """Append one mark: `item` goes (or does not go) with `anchor`. `items` is the built catalogue (id, labels, slot).
    Saved through `ledger.append_row` (atomic, locked): a crash leaves the old file whole."""
    root = Path(root)
    known = set(items["id"].astype(int))
    if int(anchor) not in known or int(item) not in known or int(anchor) == int(item):
        raise VibeError(f"A mark needs two different items of the catalogue (got {anchor} and {item}).")
    who = (who or "").strip() or "anonymous"
    ids = items["id"].to_numpy()

    def row(marks: pd.DataFrame) -> dict:
        other, how = _fill(Compatibility(items), {int(i): r for r, i in enumerate(ids)}, ids, int(anchor), int(item),
                           goes, latest_marks(marks))
        return {"anchor": str(anchor), "positive": str(item if goes else other), "negative": str(other if goes else item),
                "mark": GOES if goes else CLASHES, "who": who,
                "when": when.isoformat(timespec="seconds") if when else now(), "filled": how}
    return append_row(curated_path(root), COLUMNS, row, "mark")


def curated_triplets(root: Path, items: pd.DataFrame) -> tuple[np.ndarray, int]:
    """The marks in force (`latest_marks`) as (m, 3) row triplets of `items`, the other side of each filled again from
    the marks in force, so a reversed mark never leaves a stale triplet and no triplet holds one item twice. Marks
    naming items no longer in the catalogue are skipped (returned as the count), so removing an item never breaks a
    build."""
    in_force = latest_marks(read_marks(root))
    ids = items["id"].to_numpy()
    row_of = {int(i): r for r, i in enumerate(ids)}
    compat = Compatibility(items) if len(in_force) else None
    triplets, skipped = [], 0
    for m in in_force.to_dict("records"):
        anchor, marked = int(m["anchor"]), int(m["item"])
        if anchor not in row_of or marked not in row_of:
            skipped += 1
            continue
        goes = m["mark"] == GOES
        try:
            other, _ = _fill(compat, row_of, ids, anchor, marked, goes, in_force[in_force["item"].astype(int).isin(row_of)])
        except VibeError:
            skipped += 1
            continue
        pos, neg = (marked, other) if goes else (other, marked)
        triplets.append([row_of[anchor], row_of[pos], row_of[neg]])
    return np.asarray(triplets, dtype=np.int64).reshape(-1, 3), skipped
