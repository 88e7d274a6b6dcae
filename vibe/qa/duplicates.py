"""Duplicate photos: groups of catalogue items whose photos are one shot, uploaded again. Two witnesses propose pairs:
the 512-D embedding (cosine >= a threshold) and the photo's perceptual hash (vibe.util.perceptual: within a few bits of
256); the photos of every proposed pair are then aligned and compared (vibe.util.alignment: keypoints under one
similarity transform, colours after a tone fit), which keeps crops, borders, re-toned and re-encoded copies and drops
the same pose shot in another colour. The very same bytes need no check. Each group says which witness found it and
how close its photos are; a group the team marked "different products" is never formed again."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..catalog.fixes import DIFFERENT, read_verdicts
from ..errors import VibeError
from ..util.alignment import Agreement, agreement, shot
from ..util.images import map_photos
from ..util.perceptual import BITS, as_bits, close_pairs, distances
from ..util.progress import Progress, silent

HASH_DISTANCE = 8  # of 256 bits: a pair this close is checked whatever its cosine
CANDIDATE_COSINE = 0.96  # the default proposal: chosen with the shot check on seeds 0 to 2 of `audit planted`
NEIGHBOURS = 8  # the embedding proposes at most each photo's 8 closest above the cosine (a pair: from either side)
NEAREST_COSINE = 0.85  # and each photo's nearest other photo down to this cosine: a heavily edited copy is often
# further than the threshold but still its original's nearest (one pair per photo: cheap to check)


@dataclass(frozen=True)
class Group:
    ids: list[int]  # sorted
    witnesses: tuple[str, ...]  # "same bytes", "photo hash", "embedding": what proposed the pairs that hold it
    cosine: float  # the closest pair's cosine in the 512-D space
    hash_distance: int  # the closest pair's perceptual-hash distance, in bits of 256
    verdict: str = ""  # the team's: "same product", or "" (undecided)
    keypoints: int = 0  # the best checked pair's keypoints under one transform (0: same bytes only)

    def describe(self) -> str:
        return (f"{' + '.join(self.witnesses)}; cosine {self.cosine:.4f}, photo hash {self.hash_distance} of {BITS} "
                f"bits apart" + (f", {self.keypoints} keypoints aligned" if self.keypoints else ""))


def duplicate_groups(art, threshold: float, hash_distance: int = HASH_DISTANCE,
                     nearest: float | None = NEAREST_COSINE) -> list[list[int]]:
    """Ids of each group (sorted; groups by their first id): see `find_groups`."""
    return [g.ids for g in find_groups(art, threshold, hash_distance, nearest=nearest)]


def _nearest_pairs(index, vectors: np.ndarray, cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with a < b: each photo and its nearest other photo, where their cosine is at least `cosine`."""
    similarity, found = index.search(vectors, 2)
    rows = np.arange(len(vectors))
    other = found[:, 0] == rows  # usually the photo itself comes first; a photo with an identical twin may not
    j = np.where(other, found[:, 1], found[:, 0])
    sim = np.where(other, similarity[:, 1], similarity[:, 0])
    keep = (j >= 0) & (j != rows) & (sim >= cosine)
    return np.minimum(rows, j)[keep], np.maximum(rows, j)[keep]


_CHECKED: dict[tuple[str, str], Agreement] = {}  # by the two photos' files and contents: a slider move re-checks none


def _check(art, a: np.ndarray, b: np.ndarray, progress: Progress) -> list[Agreement]:
    """Agreement of the photos of each pair (rows a[k], b[k]); an unreadable photo agrees with nothing."""
    items, root = art.items, art.catalog_root
    if len(_CHECKED) > 1_000_000:  # a long-running server over many catalogues: start again rather than grow
        _CHECKED.clear()
    photo = (str(root) + "/" + items["path"].astype(str) + "#" + items["hash"].astype(str)).to_numpy()
    keys = [(photo[i], photo[j]) for i, j in zip(a, b)]
    todo = sorted({r for (i, j), key in zip(zip(a, b), keys) if key not in _CHECKED for r in (i, j)})
    shots = dict(zip(todo, map_photos(shot, [root / items["path"].iat[r] for r in todo])))  # unreadable: None
    out = []
    for k, ((i, j), key) in enumerate(zip(zip(a, b), keys)):
        if key not in _CHECKED:
            ok = shots.get(i) is not None and shots.get(j) is not None
            _CHECKED[key] = agreement(shots[i], shots[j]) if ok else Agreement(0, float("inf"))
        out.append(_CHECKED[key])
        if k % 256 == 0:
            progress("checking proposed duplicate pairs", k, len(keys))
    progress("checking proposed duplicate pairs", len(keys), len(keys))
    return out


def find_groups(art, threshold: float, hash_distance: int = HASH_DISTANCE, progress: Progress = silent,
                check: bool = True, nearest: float | None = NEAREST_COSINE) -> list[Group]:
    """Groups of items whose photos are one shot: pairs proposed by cosine >= threshold (FAISS range search), each
    photo's nearest other photo at cosine >= `nearest` (None: not proposed; never without the check) or a
    perceptual hash within `hash_distance` bits, kept when their photos align (Agreement.same_shot; `check=False`:
    every proposed pair, as the audit did before, kept for comparison); the same bytes always. Pairs inside a group
    marked "different products" are dropped."""
    if not 0.0 < threshold <= 1.0:
        raise VibeError(f"threshold must be between 0 and 1, not {threshold}.")
    items = art.items
    n, ids = len(items), items["id"].to_numpy()
    vectors = np.ascontiguousarray(art.clip.vectors())
    lims, similarity, found = art.clip.index.range_search(vectors, float(threshold))
    lims = lims.astype(np.int64)
    source = np.repeat(np.arange(n), np.diff(lims))
    order = np.lexsort((-similarity, source))  # each photo's neighbours, closest first
    rank = np.arange(len(order)) - np.repeat(lims[:-1], np.diff(lims))
    closest = np.zeros(len(order), bool)
    closest[order[rank <= NEIGHBOURS]] = True  # itself and its NEIGHBOURS closest: a crowded space stays cheap to check
    keep = (closest | (not check)) & (source < found)  # unchecked (the audit before): every pair, as it was
    edges = {"embedding": (source[keep], found[keep])}
    if check and nearest is not None and nearest < threshold:
        pairs = pd.DataFrame(dict(zip("ab", _nearest_pairs(art.clip.index, vectors, nearest))))
        pairs = pd.concat([pd.DataFrame(dict(zip("ab", edges["embedding"]))), pairs]).drop_duplicates()
        edges["embedding"] = (pairs.a.to_numpy(), pairs.b.to_numpy())
    bits, valid = as_bits(items["photo_hash"].tolist() if "photo_hash" in items else [None] * n)  # parsed once
    edges["photo hash"] = close_pairs(bits, valid, hash_distance)
    codes = pd.factorize(items["hash"])[0]
    first = pd.Series(np.arange(n)).groupby(codes).transform("min").to_numpy()
    edges["same bytes"] = (first[first != np.arange(n)], np.flatnonzero(first != np.arange(n)))
    verdicts = read_verdicts(art.catalog_root)
    apart = [np.isin(ids, list(g)) for g, v in verdicts.items() if v == DIFFERENT]
    same_bytes = set(zip(*edges["same bytes"]))
    proposed = pd.DataFrame({"a": np.concatenate([edges[k][0] for k in ("embedding", "photo hash")]),
                             "b": np.concatenate([edges[k][1] for k in ("embedding", "photo hash")])})
    proposed = proposed[np.array([(x, y) not in same_bytes for x, y in zip(proposed.a, proposed.b)], dtype=bool)]
    proposed = proposed.drop_duplicates()
    checks = dict(zip(zip(proposed.a, proposed.b),
                      _check(art, proposed.a.to_numpy(), proposed.b.to_numpy(), progress) if check else []))
    for kind, (a, b) in edges.items():
        keep = ~np.any([m[a] & m[b] for m in apart], axis=0) if apart else np.ones(len(a), bool)
        if kind != "same bytes" and check:
            keep &= np.array([(x, y) in same_bytes or checks[x, y].same_shot for x, y in zip(a, b)], dtype=bool)
        edges[kind] = (a[keep], b[keep])
    a = np.concatenate([e[0] for e in edges.values()])
    b = np.concatenate([e[1] for e in edges.values()])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    groups = []
    for c in np.flatnonzero(np.bincount(component) > 1):
        rows = np.flatnonzero(component == c)
        in_group = component[a] == c
        inside = {k: np.isin(e[0], rows) for k, e in edges.items()}
        pa, pb = np.triu_indices(len(rows), 1)
        cos = float((vectors[rows[pa]] * vectors[rows[pb]]).sum(1).max())
        dist = int(distances(bits, valid, rows[pa], rows[pb]).min())
        aligned = [checks[x, y].inliers for x, y in zip(a[in_group], b[in_group]) if (x, y) in checks] if len(a) else []
        members = sorted(int(i) for i in ids[rows])
        groups.append(Group(members, tuple(k for k in ("same bytes", "photo hash", "embedding") if inside[k].any()),
                            cos, dist, verdicts.get(frozenset(members), ""), max(aligned, default=0)))
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
    """The cosine that proposes pairs: CANDIDATE_COSINE, or the build's calibrated threshold (the cosine re-encoded,
    resized copies of its held-out photos keep) where that is lower (another backbone); the shot check decides."""
    return min(CANDIDATE_COSINE, float(art.metrics.get("duplicates", {}).get("threshold", CANDIDATE_COSINE)))
