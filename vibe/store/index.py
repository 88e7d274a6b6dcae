"""FAISS inner-product indexes over L2-normalised vectors: exact up to EXACT_MAX items, approximate (IVF with 8-bit
scalar quantisation) beyond. An exact index scores every item of a query in one pass and keeps the scores for the
query's next searches on the thread (VectorIndex._scores); IVF filters through FAISS' own ID selectors."""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path

import faiss
import numpy as np

from ..config import INDEX_KINDS
from ..errors import VibeError
from ..util.files import atomic_path

EXACT_MAX = 200_000  # exact up to here (a 512-D scan on one core: about 30 ms at this size); beyond, IVF-SQ8
SCANS_KEPT = 4  # per thread and index, the scores of the last queries scanned (the view a photo is searched as: its
# nearest catalogue photos, then filtered; in combo its style vector once per outfit slot)


def ivf_lists(n: int) -> int:
    """Inverted lists for n vectors: about 4 sqrt(n), the FAISS guidelines' range for 1M-scale collections."""
    return int(min(65_536, max(16, 2 ** round(math.log2(4 * math.sqrt(n))))))


class VectorIndex:
    """An index whose ids are catalogue row numbers: `IndexFlatIP` (exact cosine on normalised vectors) or
    `IndexIVFScalarQuantizer` (inverted lists over 8-bit codes: a quarter of the memory, a fraction of the scan)."""

    def __init__(self, index: faiss.Index):
        self.index = index
        self.ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexFlat) else None
        if self.ivf is not None:
            self.ivf.make_direct_map()  # reconstruct(row) for catalogue-item queries and views
        self._scans = isinstance(index, faiss.IndexFlat) and index.metric_type == faiss.METRIC_INNER_PRODUCT
        self._local = threading.local()  # per thread: the last scans' scores, see _scores

    def __getstate__(self) -> dict:  # a copy or a pickle holds the index, not a thread's scans
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "auto", nprobe: int | None = None, seed: int = 0) -> "VectorIndex":
        """`kind`: exact, ivf, or auto (exact up to EXACT_MAX vectors)."""
        if kind not in INDEX_KINDS:
            raise VibeError(f"index must be one of {', '.join(INDEX_KINDS)}, not {kind!r}.")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        if kind == "exact" or (kind == "auto" and n <= EXACT_MAX):
            index = faiss.IndexFlatIP(d)
        else:
            nlist = ivf_lists(n)
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(seed).choice(n, size=min(n, 64 * nlist), replace=False)
            index.train(vectors[np.sort(sample)])
            index.nprobe = nprobe or max(1, nlist // 32)
        index.add(vectors)
        return cls(index)

    @property
    def kind(self) -> str:
        return "exact" if self.ivf is None else "ivf"

    def describe(self) -> dict:
        """For the manifest: what kind of index, and its search settings."""
        if self.ivf is None:
            return {"kind": "exact", "faiss": "IndexFlatIP"}
        return {"kind": "ivf", "faiss": "IndexIVFScalarQuantizer(QT_8bit)", "nlist": int(self.ivf.nlist),
                "nprobe": int(self.ivf.nprobe)}

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """All vectors (or those of `rows`); from an IVF-SQ8 index they are its 8-bit approximations."""
        if rows is None:
            return self.index.reconstruct_n(0, self.index.ntotal)
        return np.stack([self.index.reconstruct(int(r)) for r in rows]) if len(rows) else np.zeros((0, self.dim), np.float32)

    def vector(self, row: int) -> np.ndarray:
        return self.index.reconstruct(int(row))

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores) for one query, restricted to rows where `allowed` is True."""
        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise VibeError(f"A {q.shape[1]}-D query cannot search a {self.dim}-D index: was it made by another backbone?")
        n = len(self)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (n,):
                raise VibeError(f"A filter of {allowed.size} rows cannot restrict an index of {n}.")
        k = min(k, n if allowed is None else int(np.count_nonzero(allowed)))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self._scans:
            return self._scan(q[0], k, allowed)
        params = faiss.SearchParametersIVF(nprobe=self.ivf.nprobe) if self.ivf is not None else faiss.SearchParameters()
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        scores, rows = self.index.search(q, k, params=params)
        # IVF looks into nprobe lists only: a rare filter may have fewer than k of its items there. Look further (every
        # list at the most) rather than return fewer than k when k items pass the filter.
        while self.ivf is not None and (rows[0] >= 0).sum() < k and params.nprobe < self.ivf.nlist:
            params.nprobe = min(self.ivf.nlist, params.nprobe * 4)
            scores, rows = self.index.search(q, k, params=params)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    def _scan(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact search from every row's score (`_scores`), filtered or not: one rule for equal scores (duplicate
        photos), the lowest rows first and kept at the k-th place."""
        scores = self._scores(q)
        ok = ~np.isnan(scores) if allowed is None else allowed & ~np.isnan(scores)
        rows = np.flatnonzero(ok)
        picked = scores[rows]
        k = min(k, len(rows))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        kth = np.partition(picked, len(picked) - k)[len(picked) - k]
        above = np.flatnonzero(picked > kth)
        top = np.concatenate([above, np.flatnonzero(picked == kth)[: k - len(above)]])
        top = top[np.lexsort((top, -picked[top]))]
        return rows[top].astype(np.int64), picked[top].astype(np.float32)

    def _scores(self, q: np.ndarray) -> np.ndarray:
        """Every row's score for query q (read-only): one pass of FAISS' inner-product kernel over the flat index's own
        storage, on this thread's core, kept for this thread's next searches of q. A query is searched for its nearest
        catalogue photos, then filtered (and in combo per outfit slot): one scan, where FAISS made a pass each time."""
        key = q.tobytes()
        memo = self._local.__dict__.setdefault("scans", OrderedDict())
        if key in memo and len(memo[key]) == self.index.ntotal:
            memo.move_to_end(key)
            return memo[key]
        scores = np.empty(self.index.ntotal, np.float32)
        faiss.fvec_inner_products_ny(faiss.swig_ptr(scores), faiss.swig_ptr(q), self.index.get_xb(), self.index.d,
                                     self.index.ntotal)
        scores.flags.writeable = False
        memo[key] = scores
        while len(memo) > SCANS_KEPT:
            memo.popitem(last=False)
        return scores

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: Path) -> "VectorIndex":
        try:
            return cls(faiss.read_index(str(path)))
        except RuntimeError as e:
            raise VibeError(f"{path} is not a readable FAISS index ({str(e).splitlines()[0][:120]}); rebuild with `python -m vibe build`.") from None
