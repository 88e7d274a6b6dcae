"""Embedding cache keyed by backbone fingerprint + image content hash, so a rebuild embeds only new or changed images."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .backbone import Encoder
from .fsutil import atomic_path, content_hash
from .images import read_bytes
from .errors import VibeError
from .progress import Progress, silent

CHUNK = 512  # images read, embedded and saved per shard: bounds memory and what an interruption can lose
MAX_SHARDS = 16


class EmbeddingStore:
    """Append-only shards of (content hash, embedding) for one backbone fingerprint."""

    def __init__(self, root: Path, fingerprint: str, dim: int):
        self.dir = Path(root) / fingerprint
        self.dim = dim
        self._keys: dict[str, int] = {}
        self._chunks: list[np.ndarray] = []
        self._rows = 0
        for shard in sorted(self.dir.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys, emb = z["keys"], z["emb"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                shard.unlink(missing_ok=True)  # a damaged shard is only a cache miss
                continue
            if emb.ndim != 2 or emb.shape[1] != dim:
                continue
            self._append(keys, emb)

    def _append(self, keys: np.ndarray, emb: np.ndarray) -> None:
        for i, k in enumerate(keys):
            self._keys[k.decode() if isinstance(k, bytes) else str(k)] = self._rows + i
        self._chunks.append(emb.astype(np.float32, copy=False))
        self._rows += len(emb)

    def _matrix(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def get(self, keys: Sequence[str]) -> np.ndarray:
        return self._matrix()[[self._keys[k] for k in keys]]

    def add(self, keys: Sequence[str], emb: np.ndarray) -> None:
        """Persist new embeddings at once (one atomic shard), then make them visible."""
        if not len(keys):
            return
        key_arr = np.array(list(keys), dtype="S32")
        try:
            self._write_shard(key_arr, emb)
        except OSError as e:  # disk full, read-only folder...: what was saved before stays; nothing half-written remains
            raise VibeError(f"Could not save embeddings to the cache in {self.dir} ({e.strerror or e}). The embeddings "
                            "saved before are kept and the previous build still answers: free disk space (or fix "
                            "permissions) and rebuild; only the images not yet cached will be embedded.") from None
        self._append(key_arr, emb)

    def _write_shard(self, keys: np.ndarray, emb: np.ndarray) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.dir.glob("shard-*.npz"))
        n = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        target = self.dir / f"shard-{n:06d}.npz"
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, keys=keys, emb=emb.astype(np.float32))
        return target

    def compact(self) -> None:
        """Merge many shards into one. A crash midway leaves duplicate keys, which loading tolerates."""
        shards = sorted(self.dir.glob("shard-*.npz"))
        if len(shards) <= MAX_SHARDS or not self._rows:
            return
        keys = np.array(sorted(self._keys, key=self._keys.get), dtype="S32")
        try:
            merged = self._write_shard(keys, self._matrix()[sorted(self._keys.values())])
        except OSError:
            return  # compaction only saves file handles: the shards as they are stay valid
        for shard in shards:
            if shard != merged:
                shard.unlink(missing_ok=True)


@dataclass
class EmbedStats:
    reused: int = 0
    embedded: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (row, reason)


def embed_files(encoder: Encoder, paths: Sequence[Path], store: EmbeddingStore, batch_size: int = 32,
                progress: Progress = silent) -> tuple[np.ndarray, list[str | None], EmbedStats]:
    """Embed image files through the cache. Returns (n, dim) embeddings (NaN rows for unreadable files), content hashes, stats."""
    n = len(paths)
    out = np.full((n, encoder.dim), np.nan, dtype=np.float32)
    hashes: list[str | None] = [None] * n
    stats = EmbedStats()
    progress("embed", 0, n)
    for start in range(0, n, CHUNK):
        rows = range(start, min(start + CHUNK, n))
        todo: dict[str, bytes] = {}
        names: dict[str, str] = {}
        bad: dict[str, str] = {}
        for row in rows:
            try:
                data = read_bytes(paths[row])
            except VibeError as e:
                stats.failed.append((row, str(e)))
                continue
            hashes[row] = content_hash(data)
            if hashes[row] not in store:
                todo.setdefault(hashes[row], data)
                names.setdefault(hashes[row], str(paths[row]))
        if todo:
            keys = list(todo)
            emb = encoder.encode_images([todo[k] for k in keys], batch_size=batch_size, names=[names[k] for k in keys],
                                        on_error=lambda i, e: bad.setdefault(keys[i], str(e)))
            good = [i for i, k in enumerate(keys) if k not in bad]
            store.add([keys[i] for i in good], emb[good])
            stats.embedded += len(good)
        for row in rows:
            key = hashes[row]
            if key is None:
                continue
            if key in store:
                out[row] = store.get([key])[0]
                stats.reused += 0 if key in todo else 1
            else:
                stats.failed.append((row, bad.get(key, f"{paths[row]} is not a readable image")))
        progress("embed", rows.stop, n)
    store.compact()
    return out, hashes, stats

