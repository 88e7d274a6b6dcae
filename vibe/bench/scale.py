"""The large-catalogue figures of `python -m vibe bench`: an approximate index over 1M vectors that look like real
embeddings, the items table of a 1M-item build, and Ray against the local engine."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..util.vectors import l2_normalize

HOW_MADE = ("real embeddings of the sample catalogue, each synthetic vector a random point between a real vector and "
            "one of its 10 nearest neighbours (t in [0, 0.5]), plus Gaussian noise in the real vectors' top-64 PCA "
            "subspace scaled to their per-component spread x {noise}: clustered like the catalogue, not uniform noise")


def like_real(base: np.ndarray, n: int, seed: int = 0, noise: float = 0.35) -> np.ndarray:
    """n L2-normalised vectors with the structure of `base` (see HOW_MADE)."""
    rng = np.random.default_rng(seed)
    base = l2_normalize(np.asarray(base, np.float32))
    sims = base @ base.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1)[:, :10]
    centred = base - base.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:64]
    scale = (s[:64] / np.sqrt(len(base))).astype(np.float32) * noise
    out = np.empty((n, base.shape[1]), np.float32)
    for start in range(0, n, 100_000):  # in chunks: a few hundred MB of temporaries at a time
        m = min(100_000, n - start)
        i = rng.integers(0, len(base), m)
        j = neighbours[i, rng.integers(0, neighbours.shape[1], m)]
        t = rng.uniform(0, 0.5, (m, 1)).astype(np.float32)
        z = rng.standard_normal((m, len(comps)), dtype=np.float32) * scale
        out[start:start + m] = l2_normalize((1 - t) * base[i] + t * base[j] + z @ comps)
    return out


def ann_figures(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> dict:
    """The approximate index (what `auto` picks past vibe.store.index.EXACT_MAX) against exact search: recall@k, p50 query time (one query at a time, as the
    dashboard asks), index size in memory, build time."""
    import faiss

    from ..store.index import VectorIndex

    t0 = time.perf_counter()
    approx = VectorIndex.build(vectors, "ivf")
    build_s = time.perf_counter() - t0
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, k)  # batched: the ground truth, not a latency figure

    def one_by_one(search) -> tuple[np.ndarray, list[float]]:
        rows, times = [], []
        for q in queries:
            t = time.perf_counter()
            rows.append(search(q))
            times.append(time.perf_counter() - t)
        return np.stack(rows), times

    found, approx_t = one_by_one(lambda q: approx.search(q, k)[0])
    _, exact_t = one_by_one(lambda q: exact.search(q[None], k)[1][0])
    recall = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)]))
    size = len(faiss.serialize_index(approx.index))
    return {"recall_at_10": recall, "query_p50_ms": float(np.median(approx_t)) * 1000,
            "exact_query_p50_ms": float(np.median(exact_t)) * 1000, "index_gb": size / 2**30,
            "build_s": build_s, "index": approx.describe(), "n_vectors": len(vectors), "n_queries": len(queries)}


def items_load_figure(items: pd.DataFrame, n: int) -> dict:
    """Seconds to read the items table of an n-item build (a real build's columns, rows repeated with unique ids)."""
    from ..config import HEADS

    src = np.arange(n) % len(items)
    rng = np.random.default_rng(0)
    table = items.iloc[src].reset_index(drop=True).assign(id=np.arange(n) + 1, hash=[f"{i:032x}" for i in range(n)],
                                                        split="train")
    for h in HEADS:
        table[f"{h}_code"] = rng.integers(0, 20, n).astype(np.int16)
        table[f"pred_{h}"] = rng.integers(0, 20, n).astype(np.int16)
        table[f"conf_{h}"] = rng.random(n, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="vibe-items-") as tmp:
        path = Path(tmp) / "items.parquet"
        table.to_parquet(path, index=False)
        t = time.perf_counter()
        loaded = pd.read_parquet(path)
        seconds = time.perf_counter() - t
        size = path.stat().st_size
    return {"seconds": seconds, "rows": len(loaded), "columns": loaded.shape[1], "file_mb": size / 2**20,
            "memory_mb": float(loaded.memory_usage(deep=True).sum()) / 2**20}


def ray_figure(backbone: str, paths: list[Path], workers: int = 2, batch_size: int = 16) -> dict:
    """Images/s of `build --engine ray` (a local Ray with `workers` actors of one thread each) over the local engine's
    on the same images, each into an empty cache. Ray's own start-up is timed apart; actor start-up is included."""
    import ray
    import torch

    from ..build.ray_engine import embed_on_ray
    from ..models.encoder import Encoder
    from ..store.cache import EmbeddingStore, embed_files

    encoder = Encoder(backbone)
    with tempfile.TemporaryDirectory(prefix="vibe-ray-") as tmp:
        t = time.perf_counter()
        embed_files(encoder, paths, EmbeddingStore(Path(tmp) / "local", encoder.fingerprint, encoder.dim), batch_size)
        local_s = time.perf_counter() - t
        t = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)  # as embed_on_ray starts a local Ray
        start_s = time.perf_counter() - t
        threads = torch.get_num_threads()
        arrivals: list[tuple[float, int]] = []  # (time, images done) as batches come back
        try:
            t = time.perf_counter()
            emb, _, _ = embed_on_ray(encoder, paths, EmbeddingStore(Path(tmp) / "ray", encoder.fingerprint, encoder.dim),
                                     workers=workers, batch_size=batch_size,
                                     progress=lambda stage, done, total: arrivals.append((time.perf_counter(), done)))
            ray_s = time.perf_counter() - t
        finally:
            ray.shutdown()
            torch.set_num_threads(threads)
    # after the first batch is back (every actor has loaded its backbone by then, or nearly): the steady rate
    first = next(((at, n) for at, n in arrivals if n > 0), None)
    steady = ((arrivals[-1][1] - first[1]) / (arrivals[-1][0] - first[0]) / (len(paths) / local_s)
              if first and arrivals[-1][0] > first[0] else None)
    return {"ray_vs_local": local_s / ray_s, "steady_ray_vs_local": steady, "local_s": local_s, "ray_s": ray_s,
            "ray_start_s": start_s, "images": len(paths), "workers": workers}
