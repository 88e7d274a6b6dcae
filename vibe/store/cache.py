"""Embedding cache keyed by backbone fingerprint + image content hash, so a rebuild embeds only new or changed images."""
from __future__ import annotations

import os
import secrets
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from filelock import FileLock

from ..errors import VibeError
from ..models.encoder import Encoder
from ..util.files import atomic_path, content_hash
from ..util.images import read_bytes
from ..util.progress import Progress, silent

CHUNK = 512  # images read, embedded and saved per shard: bounds memory and what an interruption can lose
MAX_SHARDS = 16


class EmbeddingStore:
    """Append-only shards of (content hash, embedding) for one backbone fingerprint. Several processes may share one
    (a build and an eval): every shard has a name no other writer can pick, and compaction merges only the shards
    this store has read or written, so it never deletes one that another process has just added."""

    def __init__(self, root: Path, fingerprint: str, dim: int):
        self.dir = Path(root) / fingerprint
        self.dim = dim
        self._keys: dict[str, int] = {}
        self._chunks: list[np.ndarray] = []
        self._rows = 0
        self._shards: set[Path] = set()  # the shards whose embeddings this store holds
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
            self._shards.add(shard)

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
        # time first (shards load in the order they were written), then who wrote it: two writers never collide
        target = self.dir / f"shard-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.npz"
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, keys=keys, emb=emb.astype(np.float32))
        self._shards.add(target)
        return target

    def compact(self) -> None:
        """Merge this store's shards into one when there are many. Only shards whose embeddings this store holds are
        merged and removed (under a lock, one compaction at a time); a crash midway leaves duplicate keys, which
        loading tolerates."""
        if len(self._shards) <= MAX_SHARDS or not self._rows:
            return
        try:
            with FileLock(str(self.dir / "compact.lock"), timeout=0):
                mine = [p for p in self._shards if p.is_file()]
                keys = np.array(sorted(self._keys, key=self._keys.get), dtype="S32")
                merged = self._write_shard(keys, self._matrix()[sorted(self._keys.values())])
                for shard in mine:
                    shard.unlink(missing_ok=True)
                self._shards = {merged}
        except (OSError, TimeoutError):
            return  # compaction only saves file handles (or another process is at it): the shards stay valid


@dataclass
class EmbedStats:
    reused: int = 0
    embedded: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (row, reason)
    errors: dict[str, str] = field(default_factory=dict)  # content hash -> why its image could not be embedded


def cache_plan(paths: Sequence[Path], store: EmbeddingStore) -> tuple[list[str | None], dict[str, Path], EmbedStats]:
    """Hash every file (the cache key is its content); return the hashes, the keys the cache lacks (each with one of its
    files: a photo stored twice is embedded once), and stats with the unreadable files."""
    hashes: list[str | None] = [None] * len(paths)
    todo: dict[str, Path] = {}
    stats = EmbedStats()
    for row, path in enumerate(paths):
        try:
            hashes[row] = content_hash(read_bytes(path))
        except VibeError as e:
            stats.failed.append((row, str(e)))
            continue
        if hashes[row] not in store:
            todo.setdefault(hashes[row], path)
    return hashes, todo, stats


def fill_from_store(paths: Sequence[Path], hashes: list[str | None], store: EmbeddingStore, stats: EmbedStats,
                    new: set[str]) -> np.ndarray:
    """(n, dim) embeddings from the cache (NaN rows for files that could not be embedded, with the reason in stats);
    `new`: the keys embedded by this call, so the rest count as reused."""
    out = np.full((len(paths), store.dim), np.nan, dtype=np.float32)
    cached = [r for r, h in enumerate(hashes) if h is not None and h in store]
    if cached:
        out[cached] = store.get([hashes[r] for r in cached])
    stats.reused = sum(hashes[r] not in new for r in cached)
    for row, h in enumerate(hashes):
        if h is not None and h not in store:
            stats.failed.append((row, stats.errors.get(h, f"{paths[row]} is not a readable image")))
    return out


def plan_line(paths: Sequence[Path], hashes: list[str | None], todo: dict[str, Path]) -> str:
    """What an embedding pass is about to do, in one line (why "1,000 items" become "996 to embed")."""
    known = [h for h in hashes if h is not None]
    twice = len(known) - len(set(known))
    return (f"embedding: {len(todo):,} of {len(paths):,} photos are new to the cache"
            + (f"; {twice:,} are the same photo as another item's, embedded once" if twice else "")
            + (f"; {len(paths) - len(known):,} could not be read" if len(known) < len(paths) else ""))


def embed_files(encoder: Encoder, paths: Sequence[Path], store: EmbeddingStore, batch_size: int = 32,
                progress: Progress = silent, log=lambda line: None) -> tuple[np.ndarray, list[str | None], EmbedStats]:
    """Embed image files through the cache, here (see vibe.build.ray_engine for Ray). Only images the cache lacks go
    through the model, a shard of CHUNK at a time, each saved as soon as it is computed.
    Returns (n, dim) embeddings (NaN rows for unreadable files), content hashes, stats."""
    hashes, todo, stats = cache_plan(paths, store)
    log(plan_line(paths, hashes, todo))
    keys = list(todo)
    progress("embed", 0, len(keys))
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        emb = encoder.encode_images([todo[k] for k in chunk], batch_size=batch_size,
                                    on_error=lambda i, e: stats.errors.setdefault(chunk[i], str(e)))
        good = [i for i, k in enumerate(chunk) if k not in stats.errors]
        store.add([chunk[i] for i in good], emb[good])
        stats.embedded += len(good)
        progress("embed", start + len(chunk), len(keys))
    out = fill_from_store(paths, hashes, store, stats, set(todo))
    store.compact()
    return out, hashes, stats
