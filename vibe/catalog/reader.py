"""Read a styles.csv catalogue + image folder, validate it, and report what was recovered or skipped."""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..config import ATTRIBUTES, CatalogConfig
from ..errors import VibeError
from .fixes import FIXES_FILE, Applied, apply_fixes, fixes_path, read_fixes
from .rules import item_slot
from .split import in_holdout

REQUIRED_COLUMNS = ("id", *ATTRIBUTES.values())
NAME_COLUMN = "productDisplayName"
CATEGORY_COLUMNS = {"master": "masterCategory", "sub": "subCategory"}  # optional: they decide each item's outfit slot
MISSING_VALUES = {"", "NA", "N/A", "nan", "NaN", "null", "None"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class CatalogReport:
    """What reading a catalogue did: rows read, recovered, skipped and why."""

    rows_read: int = 0
    recovered: list[int] = field(default_factory=list)  # line numbers whose extra commas were joined into the name
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line, reason): skipped
    redecoded: list[int] = field(default_factory=list)  # lines that were not UTF-8
    duplicates: list[int] = field(default_factory=list)  # ids seen again: later rows skipped
    no_image: int = 0
    outside_subset: int = 0
    missing_labels: dict[str, int] = field(default_factory=dict)
    items: int = 0
    fixes: Applied | None = None  # label_fixes.csv read over the labels (None: there is none)

    def lines(self) -> list[str]:
        out = [f"catalogue: {self.rows_read} rows read, {self.items} items kept"]
        if self.recovered:
            out.append(f"  recovered {len(self.recovered)} rows with unquoted commas in the name (lines {_few(self.recovered)})")
        if self.redecoded:
            out.append(f"  {len(self.redecoded)} rows were not UTF-8 and were read as Latin-1 (lines {_few(self.redecoded)})")
        if self.malformed:
            shown = "; ".join(f"line {n}: {why}" for n, why in self.malformed[:5])
            more = f" (+{len(self.malformed) - 5} more)" if len(self.malformed) > 5 else ""
            out.append(f"  skipped {len(self.malformed)} malformed rows: {shown}{more}")
        if self.duplicates:
            out.append(f"  skipped {len(self.duplicates)} rows with an id seen before (ids {_few(self.duplicates)})")
        if self.no_image:
            out.append(f"  skipped {self.no_image} rows with no image in the images folder")
        if self.outside_subset:
            out.append(f"  left out {self.outside_subset} items outside the chosen subset")
        if self.fixes is not None:
            out.extend(_fix_lines(self.fixes))
        missing = {k: v for k, v in self.missing_labels.items() if v}
        if missing:
            out.append("  items with an empty/NA label (kept, excluded from that head): "
                       + ", ".join(f"{k} {v}" for k, v in missing.items()))
        return out

    def to_dict(self) -> dict:
        return {
            "rows_read": self.rows_read, "items": self.items, "recovered": len(self.recovered),
            "malformed": [list(m) for m in self.malformed], "redecoded": len(self.redecoded),
            "duplicates": len(self.duplicates), "no_image": self.no_image,
            "outside_subset": self.outside_subset, "missing_labels": dict(self.missing_labels),
            "label_fixes": None if self.fixes is None else {
                "applied": self.fixes.applied, "confirmed": self.fixes.confirmed, "already": self.fixes.already,
                "stale": self.fixes.stale, "unknown": len(self.fixes.unknown), "skipped": [list(s) for s in self.fixes.skipped]},
        }


def _fix_lines(f: Applied) -> list[str]:
    out = [f"  label fixes from {FIXES_FILE}: {f.applied} applied, {f.confirmed} labels confirmed right"
           + (f", {f.already} already in styles.csv" if f.already else "")]
    if f.stale:
        out.append(f"  {len(f.stale)} label fixes not applied: styles.csv changed that label since (ids {_few(f.stale)})")
    if f.unknown:
        out.append(f"  {len(f.unknown)} label fixes name items not in the catalogue (ids {_few(f.unknown)})")
    for number, why in f.skipped:
        out.append(f"  {FIXES_FILE} line {number} skipped: {why}")
    return out


def _few(values: list, n: int = 5) -> str:
    return ", ".join(map(str, values[:n])) + (", ..." if len(values) > n else "")


@dataclass
class Catalog:
    """A validated catalogue: one row per item with an image, labels as strings (None when missing)."""

    root: Path
    items: pd.DataFrame  # id, name, path, item_type, gender, colour, season, style, master, sub, slot
    report: CatalogReport

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, row: int) -> Path:
        return self.root / self.items["path"].iat[row]


def _decode_lines(raw: bytes, report: CatalogReport) -> list[str]:
    lines = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            lines.append(line.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("latin-1"))
            report.redecoded.append(number)
    return lines


def read_styles(csv_path: Path, report: CatalogReport | None = None) -> tuple[pd.DataFrame, CatalogReport]:
    """Parse a styles.csv, recovering rows whose name has unquoted commas; skip and report the rest."""
    report = report or CatalogReport()
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise VibeError(f"No styles.csv at {csv_path}: point --data at a folder holding styles.csv and images/.")
    lines = _decode_lines(csv_path.read_bytes(), report)
    if not lines or not lines[0].strip():
        raise VibeError(f"{csv_path} is empty: it needs a header row with {', '.join(REQUIRED_COLUMNS)}.")
    rows = csv.reader(io.StringIO("\n".join(lines)))
    header = [h.strip() for h in next(rows)]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise VibeError(f"{csv_path} lacks the column(s) {', '.join(missing)}; a catalogue needs {', '.join(REQUIRED_COLUMNS)}.")
    width = len(header)
    name_last = header[-1] == NAME_COLUMN
    records, seen = [], set()
    for number, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        report.rows_read += 1
        if len(row) > width:
            if not name_last:
                report.malformed.append((number, f"{len(row)} fields, expected {width}"))
                continue
            row = row[: width - 1] + [",".join(row[width - 1:])]
            report.recovered.append(number)
        elif len(row) < width:
            report.malformed.append((number, f"{len(row)} fields, expected {width}"))
            continue
        rec = dict(zip(header, (c.strip() for c in row)))
        try:
            item_id = int(rec["id"])
        except ValueError:
            report.malformed.append((number, f"id {rec['id']!r} is not a whole number"))
            continue
        if item_id in seen:
            report.duplicates.append(item_id)
            continue
        seen.add(item_id)
        out = {"id": item_id, "name": rec.get(NAME_COLUMN, "") or ""}
        for attr, column in {**ATTRIBUTES, **CATEGORY_COLUMNS}.items():
            value = rec.get(column, "")
            out[attr] = None if value in MISSING_VALUES else value
        out["slot"] = item_slot(out["sub"], out["item_type"])
        records.append(out)
    frame = pd.DataFrame.from_records(records, columns=["id", "name", *ATTRIBUTES, *CATEGORY_COLUMNS, "slot"])
    frame["id"] = frame["id"].astype("int64")
    return frame, report


def _image_index(images_dir: Path) -> dict[str, str]:
    """Map an item id (file stem) to its image file name, one directory listing for the whole folder."""
    found = {}
    for name in sorted(p.name for p in images_dir.iterdir()):
        stem, dot, suffix = name.rpartition(".")
        if dot and "." + suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(stem, name)
    return found


def load_catalog(config: CatalogConfig | Path | str) -> Catalog:
    """Read `root/styles.csv` and `root/images/`, keeping items that have an image."""
    if not isinstance(config, CatalogConfig):
        config = CatalogConfig(root=Path(config))
    root = config.root
    if not root.is_dir():
        raise VibeError(f"Catalogue folder {root} does not exist: pass --data with a folder holding styles.csv and images/.")
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise VibeError(f"{root} has no images/ folder: a catalogue is styles.csv plus images/{{id}}.jpg.")
    frame, report = read_styles(root / "styles.csv")
    images = _image_index(images_dir)
    paths = frame["id"].astype(str).map(images)
    report.no_image = int(paths.isna().sum())
    frame = frame.assign(path="images/" + paths)[paths.notna()]
    if fixes_path(root).is_file():
        frame, report.fixes = apply_fixes(frame, read_fixes(root))
        frame["slot"] = [item_slot(s, t) for s, t in zip(frame["sub"], frame["item_type"])]  # a new type may move slot
    if config.subset != "all":
        holdout = frame["id"].map(lambda i: in_holdout(i, config.holdout_fraction))
        keep = holdout if config.subset == "holdout" else ~holdout
        report.outside_subset = int((~keep).sum())
        frame = frame[keep]
    frame = frame.sort_values("id", kind="stable").reset_index(drop=True)
    if config.limit is not None:
        frame = frame.iloc[: config.limit].reset_index(drop=True)
    if frame.empty:
        if config.subset != "all" and report.outside_subset:
            raise VibeError(f"The {config.subset} subset of {root} is empty: none of its {report.outside_subset} items with an "
                            f"image falls in it (the split puts {config.holdout_fraction:.0%} of item ids, by a hash of the id, "
                            f"in holdout). Use --subset all, or another --holdout-fraction.")
        raise VibeError(f"No item in {root / 'styles.csv'} has an image in {images_dir}: nothing to build.")
    report.items = len(frame)
    report.missing_labels = {attr: int(frame[attr].isna().sum()) for attr in ATTRIBUTES}
    return Catalog(root=root, items=frame[["id", "name", "path", *ATTRIBUTES, *CATEGORY_COLUMNS, "slot"]], report=report)


def catalog_signature(root: Path) -> str:
    """A cheap fingerprint of a catalogue folder (styles.csv bytes + image names and sizes): tells when a build is stale."""
    root = Path(root)
    h = hashlib.blake2b(digest_size=12)
    try:
        h.update((root / "styles.csv").read_bytes())
        if fixes_path(root).is_file():  # a saved fix makes the build stale: the next one applies it
            h.update(fixes_path(root).read_bytes())
        for entry in sorted(os.scandir(root / "images"), key=lambda e: e.name):
            h.update(f"{entry.name}:{entry.stat().st_size};".encode())
    except OSError:
        return ""
    return h.hexdigest()


def as_label(value) -> str | None:
    """A catalogue label as a string, or None when it is missing (None, NaN, pandas' NA): the one test for a missing
    label that heads, retrieval, QA and the explorer share."""
    return None if value is None or bool(pd.isna(value)) else str(value)


STYLES_HEADER = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage",
                 NAME_COLUMN]


def write_styles(path: Path, items: pd.DataFrame, overrides: dict[int, dict[str, str]] | None = None) -> None:
    """Write items (the columns `load_catalog` gives) as a styles.csv in the Kaggle layout, quoted where a value needs
    it; `overrides` replaces some labels of some ids (vibe attribute names: item_type, colour...)."""
    column = {**{v: k for k, v in ATTRIBUTES.items()}, **{v: k for k, v in CATEGORY_COLUMNS.items()},
              NAME_COLUMN: "name", "id": "id", "year": None}
    overrides = overrides or {}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(STYLES_HEADER)
        for rec in items.to_dict("records"):
            rec = {**rec, **overrides.get(int(rec["id"]), {})}
            writer.writerow([as_label(rec.get(column[c])) or "" if column[c] else "" for c in STYLES_HEADER])


def link_images(pairs: Iterable[tuple[Path, Path]]) -> None:
    """Each (source, target) image: a hard link where the file system allows it, else a copy."""
    for source, target in pairs:
        if target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            target.write_bytes(Path(source).read_bytes())
