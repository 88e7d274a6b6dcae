"""Duplicate photos: groups of catalogue items whose photos are near-identical in the 512-D space (the same photo
under two ids, a re-encoded, resized or retouched copy), at the build's calibrated threshold or one the user picks."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import VibeError


def duplicate_groups(art, threshold: float) -> list[list[int]]:
    """Groups of catalogue items whose photos are near-identical: cosine >= threshold in the 512-D space (FAISS range
    search), or the very same bytes. Each group's ids sorted; groups by their first id."""
    if not 0.0 < threshold <= 1.0:
        raise VibeError(f"threshold must be between 0 and 1, not {threshold}.")
    vectors = np.ascontiguousarray(art.clip.vectors())
    lims, _, found = art.clip.index.range_search(vectors, float(threshold))
    source = np.repeat(np.arange(len(vectors)), np.diff(lims).astype(np.int64))
    pairs = [source[source != found], found[source != found]]
    codes = pd.factorize(art.items["hash"])[0]
    same = pd.Series(np.arange(len(codes))).groupby(codes).transform("min").to_numpy()  # identical bytes: one group
    pairs = [np.concatenate([pairs[0], np.arange(len(codes))]), np.concatenate([pairs[1], same])]
    graph = coo_matrix((np.ones(len(pairs[0])), (pairs[0], pairs[1])), shape=(len(codes), len(codes)))
    n, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=n)
    ids = art.items["id"].to_numpy()
    groups = [sorted(int(i) for i in ids[component == c]) for c in np.flatnonzero(sizes > 1)]
    return sorted(groups)


def groups_table(art, groups: list[list[int]]) -> pd.DataFrame:
    """One row per item of each duplicate group (group number from 1, id, name, path): the export."""
    by_id = art.items.set_index("id")
    return pd.DataFrame([{"group": g, "id": i, "name": by_id.at[i, "name"], "path": by_id.at[i, "path"]}
                         for g, group in enumerate(groups, 1) for i in group], columns=["group", "id", "name", "path"])


def default_duplicate_threshold(art) -> float:
    """The build's calibrated threshold (the cosine that re-encoded and resized copies of its held-out photos keep),
    else a conservative 0.97."""
    return float(art.metrics.get("duplicates", {}).get("threshold", 0.97))
