"""2-D UMAP layouts of the 512-D backbone space and the 256-D style space, computed once per build and cached in the
build's own folder (so they go when the build is pruned); and what the explorer needs to show them (colour groups,
links to the photos, and the per-point data as static files the explorer fetches once instead of through Streamlit's
websocket on every rerun)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import HEADS
from ..store.artifacts import Artifacts
from ..util.files import atomic_path, content_hash
from ..util.progress import Progress, silent

SPACES = {"clip": "512-D backbone space", "style": "256-D style space"}
FIT_POINTS = 20_000  # UMAP is fitted on at most this many items; the others are placed with its transform
MAX_POINTS = 200_000  # more than this are shown as a sample (the page says so)
TOP_GROUPS = 12  # colour by the most common values, the rest as "other"


def sample_rows(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """All rows, or a deterministic random sample of `max_points` of them (sorted)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def compute_layout(vectors: np.ndarray, seed: int = 0, n_epochs: int | None = None, fit_points: int = FIT_POINTS,
                   progress: Progress = silent) -> tuple[np.ndarray, int]:
    """PCA to 50 dims first (cheap, keeps the neighbourhoods), then UMAP with cosine distance, fitted on at most
    `fit_points` of the vectors (a fixed sample); the rest are placed with UMAP's transform. Returns (xy, n fitted)."""
    import umap
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, dtype=np.float32)
    fit = sample_rows(len(x), fit_points, seed)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(n_components=50, random_state=seed).fit(x[fit]).transform(x).astype(np.float32)
    n_neighbors = max(2, min(15, len(fit) - 1))
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, metric="cosine", n_epochs=n_epochs, low_memory=True,
                        n_jobs=-1, init="spectral" if len(fit) > 10 else "random")
    xy = np.zeros((len(x), 2), dtype=np.float32)
    xy[fit] = reducer.fit_transform(x[fit])
    rest = np.setdiff1d(np.arange(len(x)), fit)
    for start in range(0, len(rest), 20_000):
        chunk = rest[start:start + 20_000]
        xy[chunk] = reducer.transform(x[chunk])
        progress("UMAP transform", start + len(chunk), len(rest))
    return xy, len(fit)


def cache_path(build: Path, space: str, n: int) -> Path:
    return Path(build) / "views" / f"{space}-{n}.npz"


def layout(art: Artifacts, space: str, max_points: int = MAX_POINTS, fit_points: int = FIT_POINTS,
           progress: Progress = silent) -> tuple[pd.DataFrame, dict]:
    """(x, y, row) per shown item, plus facts (shown, fitted on, seconds, cached?). Cached on disk per build and space."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {list(SPACES)}")
    rows = sample_rows(len(art.items), max_points)
    path = cache_path(art.path, space, len(rows))
    t0 = time.perf_counter()
    cached = path.is_file()
    if cached:
        with np.load(path, allow_pickle=False) as z:
            xy, rows, fitted = z["xy"], z["rows"], int(z["fitted"]) if "fitted" in z else len(z["rows"])
    else:
        progress(f"UMAP {space}", 0, 1)
        index = art.clip if space == "clip" else art.style
        xy, fitted = compute_layout(index.vectors()[rows], fit_points=fit_points, progress=progress)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, xy=xy, rows=rows, fitted=fitted)
        progress(f"UMAP {space}", 1, 1)
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "row": rows})
    return frame, {"n_shown": len(rows), "n_total": len(art.items), "sampled": len(rows) < len(art.items),
                   "fitted_on": fitted, "seconds": time.perf_counter() - t0, "cached": cached}


def colour_groups(values: pd.Series, top: int = TOP_GROUPS) -> tuple[np.ndarray, list[str]]:
    """Group codes for colouring: the `top` most common values by name, everything else "other", missing "(missing)"."""
    filled = values.fillna("(missing)").astype(str)
    counts = filled.value_counts()
    common = [v for v in counts.index if v != "(missing)"][:top]
    rest = ~filled.isin([*common, "(missing)"])
    names = [*common, *(["other"] if rest.any() else []), *(["(missing)"] if "(missing)" in counts else [])]
    code = {v: i for i, v in enumerate(names)}
    return filled.map(code).fillna(code.get("other", -1)).to_numpy(dtype=np.int16), names


def photo_folder(art: Artifacts, folder: Path) -> list[str]:
    """Give `folder`/images/ a link to every catalogue photo of the build (hard links, copies across file systems),
    so a component served from `folder` can show them; returns each item's file name there. Done once per build."""
    images = Path(folder) / "images"
    images.mkdir(parents=True, exist_ok=True)
    paths = art.items["path"].astype(str)
    names = paths.str.replace(r"^.*/", "", regex=True)  # Path(p).name, vectorised (Arrow): 100,000 on a first visit
    first = ~names.duplicated()
    present = set(os.listdir(images))  # one listing, not a stat per item
    for name, path in zip(names[first], paths[first]):
        if name in present:
            continue
        target, source = images / name, art.catalog_root / path
        try:
            os.link(source, target)
        except OSError:
            if source.is_file():
                shutil.copyfile(source, target)
    return names.tolist()


def prepare_explorer(art: Artifacts, assets: dict[str, Path]) -> tuple[Path, list[str]]:
    """The build's explorer folder (views/explorer): the photo links (`photo_folder`) and a copy of each asset (file
    name there -> source: the component's page, plotly.js), rewritten atomically where it differs. Returns (folder,
    photo file name of each item)."""
    folder = Path(art.path) / "views" / "explorer"
    files = photo_folder(art, folder)
    for name, source in assets.items():
        data = Path(source).read_bytes()
        if not (folder / name).is_file() or (folder / name).read_bytes() != data:
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes(data)
    return folder, files


def item_labels(items: pd.DataFrame) -> pd.Series:
    """Each item's head labels as one line, "Skirts · Women · Blue · Summer · Casual" (missing ones as "?"). Joined
    once per distinct combination: 100,000 items hold a few thousand."""
    codes, values = zip(*(pd.factorize(items[h], use_na_sentinel=False) for h in HEADS))
    names = [["?" if v is None or v != v else str(v) for v in vs] for vs in values]
    key = np.zeros(len(items), dtype=np.int64)
    for code, vs in zip(codes, values):
        key = key * len(vs) + code  # one number per combination
    _, first, which = np.unique(key, return_index=True, return_inverse=True)
    lines = np.array([" · ".join(n[c[row]] for n, c in zip(names, codes)) for row in first], dtype=object)
    return pd.Series(lines[which.reshape(-1)], index=items.index, dtype=object)


def static_file(folder: Path, stem: str, suffix: str, data: bytes) -> str:
    """Write `data` into `folder` once, named by its content (so a browser may cache it for good and a name never
    points at other data), atomically; returns the file name."""
    name = f"{stem}-{content_hash(data)[:16]}{suffix}"
    if not (Path(folder) / name).is_file():
        with atomic_path(Path(folder) / name) as tmp:
            tmp.write_bytes(data)
    return name


def explorer_points(folder: Path, frame: pd.DataFrame) -> dict:
    """The points file of one layout for the explorer (binary, little-endian: x of every point as float32, then y as
    float32, then its catalogue row as int32), and the name its hover file will have (`explorer_hover` writes it: the
    page does so after the component is on its way, as the tooltips are not needed for the first render).
    Returns {"n", "points", "hover"} (file names)."""
    rows = frame["row"].to_numpy()
    points = b"".join([frame["x"].to_numpy("<f4").tobytes(), frame["y"].to_numpy("<f4").tobytes(),
                       rows.astype("<i4").tobytes()])
    name = static_file(folder, "points", ".bin", points)
    # a build never changes and the rows fix the hover data: named after the points, known before it is written
    return {"n": len(rows), "points": name, "hover": name.replace("points-", "hover-").replace(".bin", ".json")}


def explorer_hover(art: Artifacts, folder: Path, frame: pd.DataFrame, files: list[str], name: str) -> None:
    """Write the hover file `name` once (JSON: lists `file` and `name`, and `label`, an index into `labels` (the
    distinct label lines), all in the points' order), atomically: the explorer fetches it on the first pointer move
    and tries again on the next one while it is missing."""
    if (Path(folder) / name).is_file():
        return
    rows = frame["row"].to_numpy()
    shown = art.items.iloc[rows]
    label, lines = pd.factorize(item_labels(shown))
    hover = {"file": np.asarray(files, dtype=object)[rows].tolist(), "name": shown["name"].astype(str).tolist(),
             "label": label.tolist(), "labels": lines.tolist()}
    with atomic_path(Path(folder) / name) as tmp:
        tmp.write_bytes(json.dumps(hover, separators=(",", ":"), ensure_ascii=False).encode())


def explorer_groups(art: Artifacts, folder: Path, rows: np.ndarray, colour_by: str) -> dict:
    """The colour group of each shown point (`colour_groups` of `colour_by`) as a file of little-endian int16, in the
    points' order. Returns {"group": its file name, "groups": the group names}."""
    group, names = colour_groups(art.items[colour_by].iloc[rows])
    return {"group": static_file(folder, f"group-{colour_by}", ".bin", group.astype("<i2").tobytes()), "groups": names}
