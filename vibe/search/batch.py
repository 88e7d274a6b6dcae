"""Batch matching of a whole folder or zip of photos (`python -m vibe match`, the Batch match page): photos located on
worker threads while the previous chunk's views go through the model together, one row per (photo, rank), written
atomically after every chunk so that an interrupted run resumes where it stopped (photos are known by content hash)."""
from __future__ import annotations

import io
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from ..errors import VibeError
from ..util.files import atomic_path, content_hash
from ..util.progress import Progress, silent
from ..util.images import PHOTO_SUFFIXES

COLUMNS = ["query", "hash", "status", "rank", "id", "name", "score", "slot", "searched", "box", "filters", "error"]


@dataclass(frozen=True)
class Photo:
    """One photo of a batch: its name (path inside the folder or zip) and how to read its bytes."""

    name: str
    read: Callable[[], bytes]


def _image_name(name: str) -> bool:
    parts = Path(name).parts
    return (Path(name).suffix.lower() in PHOTO_SUFFIXES and not any(p.startswith(".") for p in parts)
            and "__MACOSX" not in parts)


def photos_in_zip(data: bytes | Path, label: str = "the zip") -> list[Photo]:
    """The photos inside a zip (its own folders kept in their names); a damaged zip is one clear error."""
    try:
        archive = zipfile.ZipFile(data if isinstance(data, Path) else io.BytesIO(data))
    except (zipfile.BadZipFile, OSError):
        raise VibeError(f"{label} is not a readable zip file.") from None
    lock = threading.Lock()  # a ZipFile is read by one thread at a time

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            with lock:
                try:
                    return archive.read(info)
                except (zipfile.BadZipFile, OSError, EOFError) as e:  # one damaged member costs that photo only
                    raise VibeError(f"{info.filename} cannot be read from {label} ({e}).") from None
        return read

    return [Photo(i.filename, reader(i)) for i in sorted(archive.infolist(), key=lambda i: i.filename)
            if not i.is_dir() and _image_name(i.filename)]


def photos_from_uploads(files: list[tuple[str, bytes]]) -> list[Photo]:
    """Uploaded files (name, bytes) as photos: a zip stands for the photos inside it (named zip/inner/path)."""
    photos = []
    for name, data in files:
        if name.lower().endswith(".zip"):
            photos += [Photo(f"{name}/{p.name}", p.read) for p in photos_in_zip(data, name)]
        else:
            photos.append(Photo(name, lambda data=data: data))
    return photos


def per_photo(rows: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """One line per query photo: its status and its `top` matches side by side (what the Batch match page shows)."""
    lines = []
    for query, mine in rows.groupby("query", sort=False):
        first = mine.iloc[0]
        line = {"query": query, "status": first["status"], "searched": first.get("searched", ""),
                "error": first.get("error", "")}
        for _, m in mine[mine["rank"].notna()].head(top).iterrows():
            r = int(m["rank"])
            line |= {f"id_{r}": int(m["id"]), f"name_{r}": m["name"], f"score_{r}": float(m["score"])}
        lines.append(line)
    return pd.DataFrame(lines)


def photos_in(path: Path) -> list[Photo]:
    """The photos of a folder (every image file under it, hidden ones left out) or of a .zip file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _image_name(str(p.relative_to(path))))
        return [Photo(str(p.relative_to(path)), p.read_bytes) for p in files]
    if path.is_file() and path.suffix.lower() == ".zip":
        return photos_in_zip(path, path.name)
    if not path.exists():
        raise VibeError(f"{path}: no such folder or zip file.")
    raise VibeError(f"{path} is neither a folder nor a .zip file of photos.")


@dataclass
class BatchSummary:
    photos: int = 0
    matched: int = 0
    no_match: int = 0
    errors: int = 0
    skipped: int = 0  # already in the output from an earlier run
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        done = self.matched + self.no_match
        return done / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"{self.photos} photos: {self.matched} matched, {self.no_match} with no match above the build's "
                f"same-item threshold, {self.errors} unreadable, {self.skipped} already done; "
                f"{self.images_per_s:.1f} photos/s")

    def to_dict(self) -> dict:
        return asdict(self) | {"images_per_s": self.images_per_s}


def _rows(photo: Photo, digest: str, result) -> list[dict]:
    view = result.query_view or {}
    base = {"query": photo.name, "hash": digest, "status": result.verdict, "searched": view.get("note", ""),
            "box": ",".join(map(str, view["box"])) if view.get("box") else "",
            "filters": "; ".join(f"{h}={v}" for h, v in result.filters.items()), "error": ""}
    return [base | {"rank": i, "id": m.id, "name": m.name, "score": round(m.score, 4), "slot": m.slot or ""}
            for i, m in enumerate(result.matches, 1)]


def match_photos(matcher, photos: list[Photo], *, mode: str = "same", k: int = 5, done: set[str] = frozenset(),
                 chunk: int = 32, progress: Progress = silent) -> Iterator[tuple[list[dict], BatchSummary]]:
    """Match every photo; yields (the rows of the next chunk, the summary so far). Photos whose content hash is in
    `done` are skipped; an unreadable photo is one row with its error, and the rest go on."""
    summary, t0 = BatchSummary(photos=len(photos)), time.perf_counter()
    if k < 1:
        raise VibeError("k must be at least 1.")

    def one(photo: Photo):
        digest = ""
        try:
            data = photo.read()
            digest = content_hash(data)
            return (photo, digest, None) if digest in done else (photo, digest, matcher.locate_pixels(data, photo.name))
        except VibeError as e:
            return photo, digest, e

    def locate(part: list[Photo]):
        return list(readers.map(one, part))  # two photos at a time: decoding, framing, preprocessing release the GIL

    chunks = [photos[s:s + chunk] for s in range(0, len(photos), chunk)]
    with ThreadPoolExecutor(max_workers=1) as pool, ThreadPoolExecutor(max_workers=2) as readers:
        # the next chunk is decoded and located during this one's forward
        pending = pool.submit(locate, chunks[0]) if chunks else None
        for n in range(len(chunks)):
            located = pending.result()
            pending = pool.submit(locate, chunks[n + 1]) if n + 1 < len(chunks) else None
            rows = _match_chunk(matcher, located, mode, k, summary)
            summary.seconds = time.perf_counter() - t0
            yield rows, summary  # the caller writes them before progress is reported
            progress("match", min((n + 1) * chunk, len(photos)), len(photos))


def _match_chunk(matcher, located, mode: str, k: int, summary: BatchSummary) -> list[dict]:
    pixels = [got[2] for _, _, got in located if isinstance(got, tuple) and got[0] is not None]
    emb = matcher.encoder.embed_many(torch.cat(pixels)) if pixels else np.zeros((0, matcher.encoder.dim), np.float32)
    rows, start = [], 0
    for photo, digest, got in located:
        if got is None:
            summary.skipped += 1
            continue
        if isinstance(got, VibeError):
            summary.errors += 1
            rows.append({"query": photo.name, "hash": digest, "status": "error", "error": str(got)})
            continue
        found, exclude, _ = got
        n = len(found.views) if found is not None else 0
        # a photo with the very bytes of a catalogue photo is that item: here it is the answer, not left out
        result = matcher.search_views(found, mode=mode, k=k, exclude=exclude, include_same=True,
                                      embedded=emb[start:start + n] if found is not None else None)
        start += n
        mine = _rows(photo, digest, result)
        if not mine:  # nothing passed: recorded, so that a re-run does not search it again
            mine = [{"query": photo.name, "hash": digest, "status": "no match", "error": ""}]
        rows += mine
        summary.no_match += mine[0]["status"] == "no match"
        summary.matched += mine[0]["status"] != "no match"
    return rows


def read_done(out: Path) -> pd.DataFrame:
    """The rows an earlier run wrote to `out` (none when it does not exist)."""
    if not Path(out).exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        return pd.read_csv(out, dtype={"hash": str, "query": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise VibeError(f"{out} exists but is not a matches CSV this command wrote ({e}): give another --out.") from None


def match_to_csv(matcher, photos: list[Photo], out: Path, *, mode: str = "same", k: int = 5, chunk: int = 32,
                 progress: Progress = silent) -> tuple[BatchSummary, pd.DataFrame]:
    """`python -m vibe match`: every photo's matches appended to `out` (rewritten atomically after each chunk), photos
    already in it skipped. Returns the summary and every row (earlier runs' included)."""
    earlier = read_done(out)
    if len(earlier) and not set(COLUMNS) <= set(earlier.columns):
        raise VibeError(f"{out} exists but is not a matches CSV this command wrote: give another --out.")
    earlier = earlier[earlier["status"] != "error"]  # photos that failed are tried again, not listed twice
    frames, summary = [earlier] if len(earlier) else [], BatchSummary(photos=len(photos))
    for rows, summary in match_photos(matcher, photos, mode=mode, k=k, done=set(earlier["hash"]), chunk=chunk,
                                        progress=progress):
        if rows:
            frames.append(pd.DataFrame(rows, columns=COLUMNS))
            with atomic_path(Path(out)) as tmp:
                as_table(frames).to_csv(tmp, index=False)
    return summary, as_table(frames)


def as_table(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of `match_photos`' chunks as one table in COLUMNS' order, as the CSV holds them (the CLI's and the page's)."""
    table = pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)
    for col in ("rank", "id"):  # whole numbers, empty on an error row (not 1.0)
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("Int64")
    return table
