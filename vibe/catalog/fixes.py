"""The catalogue team's decisions on the audit's findings, kept beside styles.csv (never editing it): label fixes
(accepted suggestion, another label, or "the label is right") in label_fixes.csv, and duplicate verdicts (same
product / different products) in duplicate_verdicts.csv. Append-only ledgers with who and when; per item and
attribute (per group) the latest row is in force. The build reads the label fixes over the catalogue; the audit
leaves decided items and groups out."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import HEADS
from ..errors import VibeError
from .ledger import append_row, now, read_ledger

FIXES_FILE = "label_fixes.csv"
FIX_COLUMNS = ("id", "attribute", "old", "new", "action", "who", "when")
ACCEPTED, SET, RIGHT = "accepted", "set", "right"  # the suggestion taken; another label set; the label confirmed
VERDICTS_FILE = "duplicate_verdicts.csv"
VERDICT_COLUMNS = ("ids", "verdict", "who", "when")
SAME, DIFFERENT = "same product", "different products"


@dataclass
class FixesRead:
    """The label fixes in force, and the rows of label_fixes.csv that could not be read (line, why)."""

    fixes: pd.DataFrame  # id (int), attribute, old, new, action, who, when: the latest per (id, attribute)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def fixes_path(root: Path) -> Path:
    return Path(root) / FIXES_FILE


def read_fixes(root: Path) -> FixesRead:
    """label_fixes.csv, row by row: a malformed row (wrong field count, an id that is not a whole number, an unknown
    attribute or action, an empty new label, "right" with a changed label) is skipped and named, never fatal."""
    path = fixes_path(root)
    empty = pd.DataFrame(columns=list(FIX_COLUMNS)).astype({"id": "int64"})
    if not path.is_file():
        return FixesRead(empty)
    rows = csv.reader(io.StringIO(path.read_text(encoding="utf-8", errors="replace")))
    header = next(rows, None)
    if header is None or [h.strip() for h in header] != list(FIX_COLUMNS):
        return FixesRead(empty, [(1, f"the header is not {','.join(FIX_COLUMNS)}: no fix read")])
    good, skipped = [], []
    for number, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        why = _malformed(row)
        if why:
            skipped.append((number, why))
            continue
        rec = dict(zip(FIX_COLUMNS, (c.strip() for c in row)))
        good.append({**rec, "id": int(rec["id"])})
    fixes = pd.DataFrame(good, columns=list(FIX_COLUMNS)) if good else empty
    return FixesRead(fixes.drop_duplicates(["id", "attribute"], keep="last").reset_index(drop=True), skipped)


def _malformed(row: list[str]) -> str:
    if len(row) != len(FIX_COLUMNS):
        return f"{len(row)} fields, expected {len(FIX_COLUMNS)}"
    rec = dict(zip(FIX_COLUMNS, (c.strip() for c in row)))
    if not rec["id"].lstrip("-").isdigit():
        return f"id {rec['id']!r} is not a whole number"
    if rec["attribute"] not in HEADS:
        return f"attribute {rec['attribute']!r} is not one of {', '.join(HEADS)}"
    if rec["action"] not in (ACCEPTED, SET, RIGHT):
        return f"action {rec['action']!r} is not {ACCEPTED}, {SET} or {RIGHT}"
    if not rec["new"]:
        return "the new label is empty"
    if rec["action"] == RIGHT and rec["new"] != rec["old"]:
        return f"marked right but the label changes ({rec['old']!r} -> {rec['new']!r})"
    return ""


@dataclass
class Applied:
    """What applying the fixes did, for the catalogue report."""

    applied: int = 0  # labels changed
    confirmed: int = 0  # labels marked right
    already: int = 0  # the catalogue already carries the new label
    stale: list[int] = field(default_factory=list)  # ids whose catalogue label changed since the fix: not applied
    unknown: list[int] = field(default_factory=list)  # ids not in the catalogue
    skipped: list[tuple[int, str]] = field(default_factory=list)  # malformed rows (line, why)


def apply_fixes(frame: pd.DataFrame, read: FixesRead) -> tuple[pd.DataFrame, Applied]:
    """The catalogue with the fixes in force over its labels. A fix applies when the catalogue still carries the label
    it corrected (`old`); one whose label was changed since (in styles.csv) is left out and counted stale."""
    out, done = frame.copy(), Applied(skipped=list(read.skipped))
    row_of = {int(i): r for r, i in enumerate(out["id"])}
    for fix in read.fixes.itertuples():
        r = row_of.get(int(fix.id))
        if r is None:
            done.unknown.append(int(fix.id))
            continue
        current = out.iat[r, out.columns.get_loc(fix.attribute)]
        current = "" if current is None or pd.isna(current) else str(current)
        if fix.action == RIGHT:
            done.confirmed += current == fix.old
        elif current == fix.new:
            done.already += 1
        elif current != fix.old:
            done.stale.append(int(fix.id))
        else:
            out.iat[r, out.columns.get_loc(fix.attribute)] = fix.new
            done.applied += 1
    return out, done


def record_fix(root: Path, item_id: int, attribute: str, old: str | None, new: str, action: str, who: str) -> dict:
    """Save one decision on an item's label (see FIX_COLUMNS); styles.csv is never touched."""
    if attribute not in HEADS:
        raise VibeError(f"attribute must be one of {', '.join(HEADS)}, not {attribute!r}.")
    if action not in (ACCEPTED, SET, RIGHT):
        raise VibeError(f"action must be {ACCEPTED}, {SET} or {RIGHT}, not {action!r}.")
    old = (old or "").strip()
    new = old if action == RIGHT else (new or "").strip()
    if not new:
        raise VibeError("A fix needs the new label.")
    row = {"id": str(int(item_id)), "attribute": attribute, "old": old, "new": new, "action": action,
           "who": (who or "").strip() or "anonymous", "when": now()}
    return append_row(fixes_path(root), FIX_COLUMNS, lambda _: row, "label fix")


def decided(root: Path, attribute: str) -> dict[int, tuple[str, str]]:
    """{id: (old, new)} of the fixes in force on one attribute: the audit leaves these items out while the build
    still carries either label (the fix waits for the next build, or confirmed the label)."""
    fixes = read_fixes(root).fixes
    fixes = fixes[fixes["attribute"] == attribute]
    return {int(f.id): (f.old, f.new) for f in fixes.itertuples()}


def export_fixes(root: Path) -> pd.DataFrame:
    """The fixes in force, for the product-information system: id, attribute, old, new, action, who, when."""
    return read_fixes(root).fixes


def verdicts_path(root: Path) -> Path:
    return Path(root) / VERDICTS_FILE


def read_verdicts(root: Path) -> dict[frozenset[int], str]:
    """{group's ids: verdict} in force (the latest per group); rows that cannot be read are skipped."""
    out: dict[frozenset[int], str] = {}
    for rec in read_ledger(verdicts_path(root), VERDICT_COLUMNS).to_dict("records"):
        try:
            ids = frozenset(int(i) for i in str(rec["ids"]).split())
        except ValueError:
            continue
        if len(ids) > 1 and rec.get("verdict") in (SAME, DIFFERENT):
            out[ids] = rec["verdict"]
    return out


def record_verdict(root: Path, ids: list[int], verdict: str, who: str) -> dict:
    """Save a verdict on a duplicate group: `same product` (a real duplicate, to merge) or `different products` (a
    false group: its photos are never grouped together again)."""
    if verdict not in (SAME, DIFFERENT):
        raise VibeError(f"verdict must be {SAME!r} or {DIFFERENT!r}, not {verdict!r}.")
    ids = sorted({int(i) for i in ids})
    if len(ids) < 2:
        raise VibeError("A duplicate verdict needs a group of at least two items.")
    row = {"ids": " ".join(map(str, ids)), "verdict": verdict, "who": (who or "").strip() or "anonymous", "when": now()}
    return append_row(verdicts_path(root), VERDICT_COLUMNS, lambda _: row, "duplicate verdict")
