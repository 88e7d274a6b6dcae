"""Duplicate photos: groups of catalogue items whose photos are near-identical, found by two witnesses: the 512-D
embedding (cosine at the build's calibrated threshold or one the user picks: re-encoded, resized, retouched copies)
and the photo's perceptual hash (vibe.util.perceptual: exact and re-encoded copies, whatever the embedding says), the
very same bytes besides. Each group says which witness found it and how close its photos are; a group the team
marked "different products" is never formed again."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..catalog.fixes import DIFFERENT, read_verdicts
from ..errors import VibeError
from ..util.perceptual import BITS, as_bits, close_pairs, distances

HASH_DISTANCE = 12  # of 256 bits: on the shared catalogue, 14 pairs of distinct ids this close, most of them re-uploads


@dataclass(frozen=True)
class Group:
    ids: list[int]  # sorted
    witnesses: tuple[str, ...]  # "same bytes", "photo hash", "embedding": what put its photos together
    cosine: float  # the closest pair's cosine in the 512-D space
    hash_distance: int  # the closest pair's perceptual-hash distance, in bits of 256
    verdict: str = ""  # the team's: "same product", or "" (undecided)

    def describe(self) -> str:
        return (f"{' + '.join(self.witnesses)}; cosine {self.cosine:.4f}, photo hash {self.hash_distance} of {BITS} "
                "bits apart")


def duplicate_groups(art, threshold: float, hash_distance: int = HASH_DISTANCE) -> list[list[int]]:
    """Ids of each group (sorted; groups by their first id): see `find_groups`."""
    return [g.ids for g in find_groups(art, threshold, hash_distance)]


def find_groups(art, threshold: float, hash_distance: int = HASH_DISTANCE) -> list[Group]:
    """Groups of items whose photos are near-identical: cosine >= threshold (FAISS range search), or a perceptual hash
    within `hash_distance` bits, or the same bytes; pairs inside a group marked "different products" are dropped."""
    if not 0.0 < threshold <= 1.0:
        raise VibeError(f"threshold must be between 0 and 1, not {threshold}.")
    items = art.items
    n, ids = len(items), items["id"].to_numpy()
    vectors = np.ascontiguousarray(art.clip.vectors())
    lims, _, found = art.clip.index.range_search(vectors, float(threshold))
    source = np.repeat(np.arange(n), np.diff(lims).astype(np.int64))
    edges = {"embedding": (source[source < found], found[source < found])}
    bits, valid = as_bits(items["photo_hash"].tolist() if "photo_hash" in items else [None] * n)  # parsed once
    edges["photo hash"] = close_pairs(bits, valid, hash_distance)
    codes = pd.factorize(items["hash"])[0]
    first = pd.Series(np.arange(n)).groupby(codes).transform("min").to_numpy()
    edges["same bytes"] = (first[first != np.arange(n)], np.flatnonzero(first != np.arange(n)))
    verdicts = read_verdicts(art.catalog_root)
    apart = [np.isin(ids, list(g)) for g, v in verdicts.items() if v == DIFFERENT]
    for kind, (a, b) in edges.items():
        keep = ~np.any([m[a] & m[b] for m in apart], axis=0) if apart else np.ones(len(a), bool)
        edges[kind] = (a[keep], b[keep])
    a = np.concatenate([e[0] for e in edges.values()])
    b = np.concatenate([e[1] for e in edges.values()])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    groups = []
    for c in np.flatnonzero(np.bincount(component) > 1):
        rows = np.flatnonzero(component == c)
        inside = {k: np.isin(e[0], rows) for k, e in edges.items()}
        pa, pb = np.triu_indices(len(rows), 1)
        cos = float((vectors[rows[pa]] * vectors[rows[pb]]).sum(1).max())
        dist = int(distances(bits, valid, rows[pa], rows[pb]).min())
        members = sorted(int(i) for i in ids[rows])
        groups.append(Group(members, tuple(k for k in ("same bytes", "photo hash", "embedding") if inside[k].any()),
                            cos, dist, verdicts.get(frozenset(members), "")))
    return sorted(groups, key=lambda g: g.ids)


def groups_table(art, groups: list) -> pd.DataFrame:
    """One row per item of each duplicate group (group number from 1, id, name, path, and for `Group`s the witnesses,
    closeness and verdict): the export."""
    by_id = art.items.set_index("id")
    rows = []
    for g, group in enumerate(groups, 1):
        extra = {"witnesses": " + ".join(group.witnesses), "cosine": round(group.cosine, 4),
                 "hash_distance": group.hash_distance, "verdict": group.verdict} if isinstance(group, Group) else {}
        for i in (group.ids if isinstance(group, Group) else group):
            rows.append({"group": g, "id": i, "name": by_id.at[i, "name"], "path": by_id.at[i, "path"], **extra})
    return pd.DataFrame(rows, columns=["group", "id", "name", "path"] + (
        ["witnesses", "cosine", "hash_distance", "verdict"] if groups and isinstance(groups[0], Group) else []))


def default_duplicate_threshold(art) -> float:
    """The build's calibrated threshold (the cosine that re-encoded and resized copies of its held-out photos keep),
    else a conservative 0.97."""
    return float(art.metrics.get("duplicates", {}).get("threshold", 0.97))
