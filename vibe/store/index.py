"""FAISS inner-product indexes over L2-normalised vectors: exact up to EXACT_MAX items, approximate (IVF with 8-bit
scalar quantisation) beyond, with filtered search through FAISS' own ID selectors either way."""
from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from ..config import INDEX_KINDS
from ..errors import VibeError
from ..util.files import atomic_path

EXACT_MAX = 200_000  # exact search stays under ~20 ms up to here (512-D, 2 cores); beyond it, IVF-SQ8


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
        n = len(self)
        params = faiss.SearchParametersIVF(nprobe=self.ivf.nprobe) if self.ivf is not None else faiss.SearchParameters()
        if allowed is None:
            k = min(k, n)
        else:
            k = min(k, int(allowed.sum()))
            if k <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            bits = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")
            params.sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        scores, rows = self.index.search(q, k, params=params)
        # IVF looks into nprobe lists only: a rare filter may have fewer than k of its items there. Look further (every
        # list at the most) rather than return fewer than k when k items pass the filter.
        while self.ivf is not None and (rows[0] >= 0).sum() < k and params.nprobe < self.ivf.nlist:
            params.nprobe = min(self.ivf.nlist, params.nprobe * 4)
            scores, rows = self.index.search(q, k, params=params)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: Path) -> "VectorIndex":
        try:
            return cls(faiss.read_index(str(path)))
        except RuntimeError as e:
            raise VibeError(f"{path} is not a readable FAISS index ({str(e).splitlines()[0][:120]}); rebuild with `python -m vibe build`.") from None
