"""The bench's one entry point: its configuration, the figures it reports, and a run that measures each stage in turn,
says each figure as soon as it is measured, and reports a stage that cannot run (an optional engine not installed) as
skipped, with how to add it, instead of losing what was measured before."""
from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..config import SAMPLE_DATA
from ..util.progress import Progress, silent
from . import serving
from .stages import STAGES as MEASURE
from .stages import Context, load

STAGES = {**MEASURE, "serve": serving.serve, "match": serving.match}

KEYS = ("embed_pipeline_vs_forward", "fast_path_speedup_vs_prototype", "fast_path_min_cosine", "query_p50_ms",
        "query_p95_ms", "query_p50_over_forward", "framing_ms", "framing_share_of_query", "proposal_query_p50_ms",
        "proposal_query_over_framed", "incremental_1pct_over_full",
        "umap_cached_load_s", "umap_fresh_44k_s", "peak_rss_gb", "ann_1m_recall_at_10", "ann_1m_query_p50_ms",
        "exact_1m_query_p50_ms", "ann_1m_index_gb", "items_load_1m_s", "ray_embed_vs_local", "serve_qps_16_over_encode", "serve_p99_16_over_p50_1",
        "serve_unexpected_responses", "serve_rss_growth", "serve_rebuild_failed_requests", "match_over_build_embedding")


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of each measurement; `quick()` is the tiny configuration the test suite runs."""

    backbone: str = "vit-b32-random"  # FashionCLIP's architecture with random weights: exactly its cost, no download
    data: Path = SAMPLE_DATA  # real photos to measure on (`bench --data DIR`)
    n_images: int = 160  # images through the embedding path (five batches)
    batch_size: int = 32
    index_size: int = 44_000  # the full Kaggle catalogue
    n_queries: int = 30
    incremental_base: int = 400  # items of the full build in the incremental measurement
    umap_points: int = 44_000
    rss_items: int = 44_000
    repeats: int = 3
    ann_vectors: int = 1_000_000  # the large-catalogue figures (vibe.bench.scale)
    ann_queries: int = 500
    ann_backbone: str = "vibe-mini"  # real embeddings to grow the 1M vectors from (trained weights, not random ones)
    items_rows: int = 1_000_000
    ray_images: int = 2000  # a fixed start-up (Ray Data, actor processes: about 8 s here) is paid once per build
    serve_items: int = 300  # the catalogue `vibe serve` answers from in the serving figures (vibe.bench.serving)
    serve_photos: int = 64  # distinct query photos the clients send
    serve_requests: int = 480  # requests at each of 1, 4 and 16 clients (30 a client at 16: the ramp at the ends matters less)
    serve_mixed: int = 2000  # requests with 10 % bad inputs mixed in
    match_photos: int = 500  # the folder `vibe match` runs on

    @classmethod
    def quick(cls) -> "BenchConfig":
        return cls(backbone="tiny-random", n_images=16, batch_size=8, index_size=2_000, n_queries=5,
                   incremental_base=100, umap_points=300, rss_items=300, repeats=1, ann_vectors=20_000, ann_queries=20,
                   ann_backbone="tiny-random", items_rows=5_000, ray_images=16, serve_items=60, serve_photos=8,
                   serve_requests=12, serve_mixed=40, match_photos=16)


Stage = Callable[[Context], dict]  # -> top-level figures (a subset of KEYS); details go into ctx.details


def missing_optional(stage: str) -> str | None:
    """Why a stage cannot run here (an optional package is absent), with how to add it; None when it can."""
    import importlib.util

    if stage == "ray":
        try:
            found = importlib.util.find_spec("ray") is not None
        except (ImportError, ValueError):  # a module blocked or half-installed: as good as absent
            found = False
        if not found:
            return "Ray is not installed: pip install -r requirements-scale.txt, then run the bench again"
    if stage == "serve":
        missing = [m for m in ("fastapi", "uvicorn", "httpx", "multipart") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} not installed: pip install -r requirements.txt, then run the bench again"
    return None


def run(cfg: BenchConfig = BenchConfig(), progress: Progress = silent, say: Callable[[str], None] = lambda line: None,
        stages: dict[str, Stage] | None = None) -> dict:
    """Every stage in turn (vibe.bench.stages.STAGES). Each figure goes to `say` as soon as it is measured; a stage
    that cannot run is skipped (its figures None, the reason under `skipped`), one that fails is reported under
    `failed` and the rest still run. Returns the documented keys plus `machine`, `details`, `skipped`, `failed`."""
    from ..models.backbone import bf16_native
    from ..models.runtime import cpu_flags, cpu_model

    stages = stages or STAGES
    figures: dict = dict.fromkeys(KEYS)
    skipped, failed = {}, {}
    for name in stages:  # optional engines are checked before minutes are spent on the rest
        why = missing_optional(name)
        if why:
            skipped[name] = why
            say(f"bench: {name} will be skipped ({why})")
    ctx = Context(cfg, Path(tempfile.mkdtemp(prefix="vibe-bench-")))
    try:
        load(ctx)
        todo = [n for n in stages if n not in skipped]
        progress("bench", 0, len(todo))
        for i, name in enumerate(todo, 1):
            t = time.perf_counter()
            try:
                got = stages[name](ctx)
            except Exception as e:  # noqa: BLE001 - one stage's failure must not lose the figures of the others
                failed[name] = f"{type(e).__name__}: {e}"
                ctx.details.setdefault("tracebacks", {})[name] = traceback.format_exc(limit=6)
                say(f"bench: {name} failed ({failed[name]}); going on with the other stages")
            else:
                figures.update(got)
                say(f"bench: {name} ({time.perf_counter() - t:.0f} s): "
                    + ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in got.items()))
            progress("bench", i, len(todo))
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    encoder = ctx.made.get("encoder")
    machine = {"cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
               "cpu": cpu_model(), "cpu_bf16": bf16_native(), "cpu_flags": cpu_flags(), "threads": torch.get_num_threads(),
               **({"runtime": encoder.runtime.name, "runtime_why": encoder.runtime.why} if encoder else {})}
    return {**figures, "machine": machine, "details": ctx.details | {"config": cfg.__dict__}, "skipped": skipped,
            "failed": failed}
