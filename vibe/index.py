"""FAISS inner-product indexes over L2-normalised vectors, with filtered search through FAISS' own ID selectors."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .errors import VibeError
from .fsutil import atomic_path


class VectorIndex:
    """An exact `IndexFlatIP` (cosine on normalised vectors) whose ids are catalogue row numbers."""

    def __init__(self, index: faiss.Index):
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray) -> "VectorIndex":
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index)

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def vectors(self) -> np.ndarray:
        return self.index.reconstruct_n(0, self.index.ntotal)

    def vector(self, row: int) -> np.ndarray:
        return self.index.reconstruct(int(row))

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores) for one query, restricted to rows where `allowed` is True."""
        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        n = len(self)
        if allowed is None:
            k = min(k, n)
            scores, rows = self.index.search(q, k)
        else:
            k = min(k, int(allowed.sum()))
            if k <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            bits = np.packbits(np.asarray(allowed, dtype=bool), bitorder="little")
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
            scores, rows = self.index.search(q, k, params=faiss.SearchParameters(sel=selector))
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
