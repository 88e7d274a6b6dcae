"""2-D UMAP layouts of the 512-D backbone space and the 256-D style space, computed once per build and cached in the
build's own folder (so they go when the build is pruned)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import Artifacts
from .fsutil import atomic_path
from .progress import Progress, silent

SPACES = {"clip": "512-D backbone space", "style": "256-D style space"}
MAX_POINTS = 20_000


def sample_rows(n: int, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """All rows, or a deterministic random sample of `max_points` of them (sorted)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def compute_layout(vectors: np.ndarray, seed: int = 0, n_epochs: int | None = None) -> np.ndarray:
    """PCA to 50 dims first (cheap, keeps the neighbourhoods), then UMAP with cosine distance."""
    import umap
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, dtype=np.float32)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    n_neighbors = max(2, min(15, len(x) - 1))
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, metric="cosine", n_epochs=n_epochs,
                        low_memory=True, n_jobs=-1, init="spectral" if len(x) > 10 else "random")
    return reducer.fit_transform(x).astype(np.float32)


def cache_path(build: Path, space: str, n: int) -> Path:
    return Path(build) / "views" / f"{space}-{n}.npz"


def layout(art: Artifacts, space: str, max_points: int = MAX_POINTS, progress: Progress = silent) -> tuple[pd.DataFrame, dict]:
    """(x, y, row) per shown item, plus facts (sampled?, seconds, cached?). Cached on disk per build and space."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {list(SPACES)}")
    rows = sample_rows(len(art.items), max_points)
    path = cache_path(art.path, space, len(rows))
    t0 = time.perf_counter()
    cached = path.is_file()
    if cached:
        with np.load(path, allow_pickle=False) as z:
            xy, rows = z["xy"], z["rows"]
    else:
        progress(f"UMAP {space}", 0, 1)
        index = art.clip if space == "clip" else art.style
        xy = compute_layout(index.vectors()[rows])
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, xy=xy, rows=rows)
        progress(f"UMAP {space}", 1, 1)
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "row": rows})
    return frame, {"n_shown": len(rows), "n_total": len(art.items), "sampled": len(rows) < len(art.items),
                   "seconds": time.perf_counter() - t0, "cached": cached}
