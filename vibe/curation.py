"""Merchandisers' marks on mix & match suggestions ("goes with" / "does not go with"), kept as anchor/positive/negative
rows in a CSV beside the catalogue: append-only, written atomically, with who and when. The next build trains on them."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from .errors import VibeError
from .fsutil import atomic_path, content_hash
from .projection import Compatibility

CURATED_FILE = "curated_triplets.csv"
COLUMNS = ("anchor", "positive", "negative", "mark", "who", "when", "filled")
GOES, CLASHES = "goes with", "does not go with"


def curated_path(root: Path) -> Path:
    return Path(root) / CURATED_FILE


def read_marks(root: Path) -> pd.DataFrame:
    """Every mark recorded for this catalogue (an empty table when there is none)."""
    path = curated_path(root)
    if not path.is_file():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _fill(items: pd.DataFrame, anchor: int, marked: int, goes: bool, marks: pd.DataFrame) -> tuple[int, str]:
    """The side of the triplet the mark does not give: the anchor's opposite mark if there is one, else one mined by
    the outfit rules (a complementary item that goes with it, or one of the anchor's own slot), in a fixed order."""
    opposite = marks[(marks["anchor"] == str(anchor)) & (marks["mark"] == (CLASHES if goes else GOES))]
    if len(opposite):
        return int(opposite.iloc[-1]["negative" if goes else "positive"]), "the anchor's latest opposite mark"
    rows = {int(i): r for r, i in enumerate(items["id"])}
    a, compat = rows[anchor], Compatibility(items)
    every = np.arange(len(items))
    wanted = compat.same_slot(a, every) if goes else compat(a, every)
    wanted[[a, rows[marked]]] = False
    if not wanted.any():
        raise VibeError(f"No item of the catalogue can complete the mark on {anchor}: it needs "
                        + ("another item of its own slot." if goes else "an item that goes with it."))
    ids = items["id"].to_numpy()[wanted]
    pick = ids[np.argmin([content_hash(f"{anchor}:{i}".encode()) for i in ids])]
    return int(pick), "the outfit rules (" + ("an item of the anchor's own slot" if goes else "an item that goes with it") + ")"


def record_mark(root: Path, items: pd.DataFrame, anchor: int, item: int, goes: bool, who: str,
                when: datetime | None = None) -> dict:
    """Append one mark: `item` goes (or does not go) with `anchor`. `items` is the built catalogue (id, labels, slot).
    The whole file is rewritten through a temporary file and renamed, under a lock: a crash leaves the old file whole."""
    root = Path(root)
    ids = set(items["id"].astype(int))
    if int(anchor) not in ids or int(item) not in ids or int(anchor) == int(item):
        raise VibeError(f"A mark needs two different items of the catalogue (got {anchor} and {item}).")
    who = (who or "").strip() or "anonymous"
    path = curated_path(root)
    try:
        with FileLock(str(path) + ".lock", timeout=10):
            marks = read_marks(root)
            other, how = _fill(items, int(anchor), int(item), goes, marks)
            row = {"anchor": str(anchor), "positive": str(item if goes else other), "negative": str(other if goes else item),
                   "mark": GOES if goes else CLASHES, "who": who,
                   "when": (when or datetime.now(timezone.utc)).isoformat(timespec="seconds"), "filled": how}
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
            writer.writeheader()
            writer.writerows([*marks.to_dict("records"), row])
            with atomic_path(path) as tmp:
                tmp.write_text(buf.getvalue(), encoding="utf-8")
    except OSError as e:
        raise VibeError(f"Could not save the mark in {path} ({e.strerror or e}): the catalogue folder must be writable. "
                        "Nothing was lost; the earlier marks are as they were.") from None
    return row


def curated_triplets(root: Path, items: pd.DataFrame) -> tuple[np.ndarray, int]:
    """The marks as (m, 3) row triplets of `items`; marks naming items no longer in the catalogue are skipped
    (returned as the count), so removing an item never breaks a build."""
    marks = read_marks(root)
    row_of = {str(int(i)): r for r, i in enumerate(items["id"])}
    triplets = [[row_of[m[c]] for c in ("anchor", "positive", "negative")] for m in marks.to_dict("records")
                if all(m[c] in row_of for c in ("anchor", "positive", "negative"))]
    return np.asarray(triplets, dtype=np.int64).reshape(-1, 3), len(marks) - len(triplets)
