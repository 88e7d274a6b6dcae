"""2-D UMAP layouts of the 512-D backbone space and the 256-D style space, computed once per build and cached in the
build's own folder (so they go when the build is pruned); and what the explorer needs to show them (colour groups,
links to the photos)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import Artifacts
from .fsutil import atomic_path
from .progress import Progress, silent

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
    names = [Path(p).name for p in art.items["path"]]
    for name, path in zip(names, art.items["path"]):
        target = images / name
        if target.exists():
            continue
        source = art.catalog_root / path
        try:
            os.link(source, target)
        except OSError:
            if source.is_file():
                shutil.copyfile(source, target)
    return names
