"""`python -m vibe bench`: every stage against its physical limit and against the prototype's way, measured in one run."""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .backbone import Encoder
from .config import SAMPLE_DATA
from .parts import bf16_native
from .runtime import cpu_flags
from .vectors import l2_normalize
from .progress import Progress, silent

KEYS = ("embed_pipeline_vs_forward", "fast_path_speedup_vs_prototype", "fast_path_min_cosine", "query_p50_ms",
        "query_p95_ms", "query_p50_over_forward", "framing_ms", "framing_share_of_query", "incremental_1pct_over_full",
        "umap_cached_load_s", "umap_fresh_44k_s", "peak_rss_gb", "ann_1m_recall_at_10", "ann_1m_query_p50_ms",
        "exact_1m_query_p50_ms", "ann_1m_index_gb", "items_load_1m_s", "ray_embed_vs_local")


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
    ann_vectors: int = 1_000_000  # the large-catalogue figures (vibe.bench_scale)
    ann_queries: int = 500
    ann_backbone: str = "vibe-mini"  # real embeddings to grow the 1M vectors from (trained weights, not random ones)
    items_rows: int = 1_000_000
    ray_images: int = 2000  # a fixed start-up (Ray Data, actor processes: about 8 s here) is paid once per build

    @classmethod
    def quick(cls) -> "BenchConfig":
        return cls(backbone="tiny-random", n_images=16, batch_size=8, index_size=2_000, n_queries=5,
                   incremental_base=100, umap_points=300, rss_items=300, repeats=1, ann_vectors=20_000, ann_queries=20,
                   ann_backbone="tiny-random", items_rows=5_000, ray_images=16)


def _timeit(fn, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def _real_images(root: Path) -> tuple[Path, pd.DataFrame]:
    from .catalog import load_catalog

    return Path(root), load_catalog(root).items


def _catalog_dir(dst: Path, root: Path, items, unique_tag: str = "") -> Path:
    """A catalogue folder of the given items (files hard-linked, or copied with a unique trailer so each is a new image)."""
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for item_id, path in zip(items["id"], items["path"]):
        target = dst / "images" / f"{item_id}.jpg"
        if target.exists():
            continue
        if unique_tag:
            # JPEG decoders ignore bytes after the end marker: distinct content, same picture
            target.write_bytes((root / path).read_bytes() + f"{unique_tag}{item_id}".encode())
        else:
            os.link(root / path, target)
    header = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
    rows = [",".join(["" if v is None or v != v else str(v).replace(",", " ") for v in
                      (r.id, r.gender, r.master, r.sub, r.item_type, r.colour, r.season, "", r.style, r.name)])
            for r in items.itertuples()]
    (dst / "styles.csv").write_text("\n".join([header, *rows]) + "\n")
    return dst


def _grown(base: np.ndarray, n: int, seed: int = 0, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """n vectors: real embeddings repeated with small Gaussian perturbations (and which base row each came from)."""
    rng = np.random.default_rng(seed)
    src = np.arange(n) % len(base)
    return l2_normalize(base[src] + rng.normal(scale=noise, size=(n, base.shape[1])).astype(np.float32)), src


def _in_memory_artifacts(emb: np.ndarray, items, encoder: Encoder, folder: Path):
    """An Artifacts built in memory over `emb` (heads and projection trained briefly: their cost, not their quality, matters)."""
    from .artifacts import Artifacts
    from .config import HEADS, HeadsConfig, ProjectionConfig
    from .heads import build_vocabularies, encode_labels, train_heads
    from .index import VectorIndex
    from .projection import mine_triplets, train_projection

    vocabs = build_vocabularies(items, 10)
    codes = encode_labels(items, vocabs)
    heads, _ = train_heads(emb, codes, vocabs, HeadsConfig(epochs=3, patience=1))
    rng = np.random.default_rng(0)
    rows = np.arange(len(items))
    proj, _ = train_projection(emb, lambda e: mine_triplets(items, rows, 1, rng), ProjectionConfig(epochs=1))
    table = items.assign(**{f"{h}_code": codes[h] for h in HEADS}, hash=[f"bench{i}" for i in range(len(items))],
                         split="train")
    manifest = {"backbone": encoder.info(), "n_items": len(items), "vocabs": vocabs, "catalog": {"root": "."}}
    return Artifacts(path=folder, manifest=manifest, items=table,
                     clip=VectorIndex.build(emb), style=VectorIndex.build(proj.project(emb)), heads=heads, projection=proj,
                     metrics={})


def _prototype_embed(encoder: Encoder, paths: list[Path], batch_size: int) -> np.ndarray:
    """The prototype's way: CLIPProcessor on PIL images, fp32 forward, per batch of 32."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    pre = encoder.preprocess  # the same sizes and statistics, through transformers' own (PIL) processor
    processor = CLIPImageProcessor(size={"shortest_edge": pre.size}, crop_size={"height": pre.crop, "width": pre.crop},
                                   image_mean=list(pre.mean), image_std=list(pre.std), resample=pre.resample)
    out = []
    for start in range(0, len(paths), batch_size):
        images = [Image.open(p).convert("RGB") for p in paths[start:start + batch_size]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out.append(l2_normalize(encoder._forward(pixels)).numpy())
    return np.concatenate(out)


def _rss_child(catalog: str, workdir: str, backbone: str) -> None:
    """Run in a fresh process: one build of the big catalogue, then print this process's peak RSS."""
    from .config import BuildConfig, CatalogConfig, HeadsConfig, ProjectionConfig
    from .pipeline import build

    # epochs do not change the memory a build needs, only its time
    build(BuildConfig(catalog=CatalogConfig(root=Path(catalog)), backbone=backbone, workdir=Path(workdir),
                      heads=HeadsConfig(epochs=2, patience=1), projection=ProjectionConfig(epochs=1)))
    # VmHWM is this process's own peak; ru_maxrss would include the parent's, inherited across exec
    hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    print(json.dumps({"peak_rss_gb": hwm_kb / 2**20}))


def run(cfg: BenchConfig = BenchConfig(), progress: Progress = silent) -> dict:
    """All figures in one run. Returns the documented keys plus `machine` and `details`."""
    from .config import BuildConfig, CatalogConfig
    from .pipeline import build
    from .retrieve import Matcher
    from .store import EmbeddingStore, embed_files
    from .views import layout

    steps = 8
    progress("bench", 0, steps)
    details: dict = {}
    root, items = _real_images(cfg.data)
    encoder = Encoder(cfg.backbone)
    fp32 = Encoder(cfg.backbone, precision="fp32") if encoder.precision != "fp32" else encoder
    details["backbone"] = encoder.description
    details["precision"] = encoder.precision
    tmp = Path(tempfile.mkdtemp(prefix="vibe-bench-"))
    try:
        # 1. the build path against the bare forward pass, same batch size and precision
        sample = items.iloc[: cfg.n_images]
        paths = [root / p for p in sample["path"]]
        crop = encoder.input_side
        pixels = torch.rand(cfg.batch_size, 3, crop, crop) * 4 - 2
        encoder.embed_pixels(pixels)  # warm-up
        n_batches = max(1, cfg.n_images // cfg.batch_size)
        fwd, pipe = [], []
        for rep in range(cfg.repeats):  # interleaved and repeated: a shared machine drifts by 10-20 % between runs
            fwd.append(_timeit(lambda: encoder.embed_pixels(pixels), n_batches) / cfg.batch_size)
            store = EmbeddingStore(tmp / f"cache{rep}", encoder.fingerprint, encoder.dim)
            t = time.perf_counter()
            fast_emb, _, _ = embed_files(encoder, paths, store, cfg.batch_size)
            pipe.append((time.perf_counter() - t) / len(paths))
        forward_ips, pipeline_ips = 1 / float(np.median(fwd)), 1 / float(np.median(pipe))
        details |= {"forward_images_per_s": forward_ips, "pipeline_images_per_s": pipeline_ips}
        progress("bench", 1, steps)

        # 2. the fast path against the prototype's CLIPProcessor + fp32. The cosine compares the same pixels: the
        # prototype did not frame photos, so the fast path's numbers are checked with framing off
        t = time.perf_counter()
        proto = _prototype_embed(fp32, paths, 32)
        proto_ips = len(paths) / (time.perf_counter() - t)
        details["prototype_images_per_s"] = proto_ips
        speedup = pipeline_ips / proto_ips
        unframed = Encoder(cfg.backbone, precision=encoder.precision, framing=False).encode_images(paths, cfg.batch_size)
        min_cos = float((unframed * proto).sum(axis=1).min())
        details["runtime"] = encoder.runtime.to_dict()  # which path ran, and why (vibe.runtime)
        # the path a CPU without native bf16 takes when int8 measures fastest there: ONNX Runtime int8, same pipeline
        int8 = Encoder(cfg.backbone, precision="int8")
        int8.embed_pixels(pixels)
        t = time.perf_counter()
        embed_files(int8, paths, EmbeddingStore(tmp / "cache-int8", int8.fingerprint, int8.dim), cfg.batch_size)
        details["int8_speedup_vs_prototype"] = len(paths) / (time.perf_counter() - t) / proto_ips
        details["int8_min_cosine"] = float((Encoder(cfg.backbone, precision="int8", framing=False).encode_images(
            paths, cfg.batch_size) * proto).sum(axis=1).min())  # the int8 model is cached: built once above
        progress("bench", 2, steps)

        # 3. one upload -> attributes -> filtered search -> k results, on an index of index_size items
        grown, src = _grown(fast_emb, cfg.index_size)
        big_items = sample.iloc[src].reset_index(drop=True).assign(id=np.arange(cfg.index_size) + 10_000_000)
        art = _in_memory_artifacts(grown, big_items, encoder, tmp / "builds" / "query")
        matcher = Matcher(art, encoder)
        from .framing import frame_product
        from .images import load_image

        query_paths = items["path"].iloc[cfg.n_images:cfg.n_images + cfg.n_queries]
        queries = [_upload(root / q, i) for i, q in enumerate(query_paths)]
        frame_s = []
        for q in queries:
            decoded = load_image(q, max_side=encoder.decode_side)
            t = time.perf_counter()
            frame_product(decoded, encoder.frame_side)
            frame_s.append(time.perf_counter() - t)
        lat, fwd1 = [], []
        matcher.find(queries[0], mode="combo", k=10)  # warm-up
        for mode in ("same", "combo"):
            for q in queries:
                one = encoder.prepare(load_image(q, max_side=encoder.decode_side))[None]
                t = time.perf_counter()
                encoder.embed_pixels(one)  # the physical limit: the forward pass of this very image
                fwd1.append(time.perf_counter() - t)
                t = time.perf_counter()
                matcher.find(q, mode=mode, k=10)  # bytes -> decode -> forward -> heads -> filtered search -> results
                lat.append(time.perf_counter() - t)
        # a busy backdrop: framing gives up, the segmenter cuts the product out, the query embeds 11 views
        others = [load_image(root / p) for p in items["path"].iloc[:20]]
        busy = [_upload(root / q, i, "busy", others) for i, q in enumerate(query_paths)]
        if encoder.segmenter:
            seg_s = []
            for q in busy:
                decoded = load_image(q, max_side=encoder.decode_side)
                t = time.perf_counter()
                encoder.segmenter.view(decoded, encoder.frame_side)
                seg_s.append(time.perf_counter() - t)
            details["segment_ms"] = float(np.median(seg_s)) * 1000
        busy_lat = []
        for q in busy:
            t = time.perf_counter()
            matcher.find(q, mode="same", k=10)
            busy_lat.append(time.perf_counter() - t)
        details["busy_query_p50_ms"] = float(np.median(busy_lat)) * 1000
        p50, p95 = float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
        forward_1 = float(np.median(fwd1))
        details["single_image_forward_ms"] = forward_1 * 1000
        details["query_index"] = (f"{cfg.index_size} vectors: the {len(fast_emb)} embedded photos repeated with small "
                                  "noise (exact search costs the same whatever the vectors; the 1M figures use real-like ones)")
        details["query_photo"] = "a re-shot catalogue photo (tinted backdrop), 1024 px on its long side, JPEG quality 90"
        framing_ms = float(np.median(frame_s)) * 1000
        progress("bench", 3, steps)

        # 4. rebuild after adding 1 % new images, over a full build (the real pipeline, real images)
        base = items.iloc[: cfg.incremental_base]
        extra = items.iloc[cfg.incremental_base: cfg.incremental_base + max(1, cfg.incremental_base // 100)]
        cat = _catalog_dir(tmp / "inc", root, base)
        work = tmp / "inc-work"
        full_s = _timeit(lambda: build(BuildConfig(catalog=CatalogConfig(root=cat), workdir=work), encoder=encoder))
        _catalog_dir(tmp / "inc", root, pd.concat([base, extra]))
        inc_s = _timeit(lambda: build(BuildConfig(catalog=CatalogConfig(root=cat), workdir=work), encoder=encoder))
        details |= {"full_build_s": full_s, "incremental_build_s": inc_s, "incremental_items": len(extra)}
        progress("bench", 4, steps)

        # 5. UMAP: fresh on umap_points vectors (after a tiny warm-up run compiles numba), then from the disk cache
        from .views import compute_layout

        compute_layout(grown[:300])
        umap_art = art if cfg.umap_points == cfg.index_size else _in_memory_artifacts(
            *_grown_items(fast_emb, sample, cfg.umap_points), encoder, tmp / "builds" / "umap")
        # every point, not the dashboard's 20,000-point sample
        _, facts = layout(umap_art, "clip", max_points=cfg.umap_points)
        umap_fresh = facts["seconds"]
        details["umap_points"] = facts["n_shown"]
        _, facts = layout(umap_art, "clip", max_points=cfg.umap_points)
        umap_cached = facts["seconds"]
        progress("bench", 5, steps)

        # 6. peak RSS of a build of rss_items items (embeddings pre-cached: the cost measured is everything but the forward)
        big = sample.iloc[np.arange(cfg.rss_items) % len(sample)].reset_index(drop=True).assign(id=np.arange(cfg.rss_items) + 1)
        big_dir = _catalog_dir(tmp / "big", root, big, unique_tag="vibe-bench-")
        big_work = tmp / "big-work"
        _prefill(big_dir, big, fast_emb, np.arange(cfg.rss_items) % len(sample), EmbeddingStore(big_work / "cache", encoder.fingerprint, encoder.dim))
        child = subprocess.run([sys.executable, "-c", f"from vibe.bench import _rss_child; _rss_child({str(big_dir)!r}, {str(big_work)!r}, {cfg.backbone!r})"],
                               capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        if child.returncode:
            raise RuntimeError(f"the peak-RSS build failed: {child.stderr[-1500:]}")
        peak = json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_gb"]
        progress("bench", 6, steps)

        # 7. large catalogues: an approximate index over 1M real-like vectors, a 1M-item table, Ray vs local
        from .bench_scale import HOW_MADE, ann_figures, items_load_figure, like_real, ray_figure

        real = Encoder(cfg.ann_backbone).encode_images([root / p for p in items["path"]], 64)
        real = real[~np.isnan(real).any(axis=1)]
        pool = like_real(real, cfg.ann_vectors + cfg.ann_queries, seed=3)
        ann = ann_figures(pool[:cfg.ann_vectors], pool[cfg.ann_vectors:])
        del pool
        details["ann"] = ann | {"vectors": HOW_MADE.format(noise=0.35), "from": f"{len(real)} {cfg.ann_backbone} embeddings"}
        details["items_load"] = items_load_figure(items, cfg.items_rows)
        details["ray"] = ray_figure(cfg.backbone, [root / p for p in items["path"].iloc[:cfg.ray_images]], 2, cfg.batch_size)
        progress("bench", 7, steps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress("bench", steps, steps)
    result = {
        "embed_pipeline_vs_forward": pipeline_ips / forward_ips,
        "fast_path_speedup_vs_prototype": speedup,
        "fast_path_min_cosine": min_cos,
        "query_p50_ms": p50 * 1000,
        "query_p95_ms": p95 * 1000,
        "query_p50_over_forward": p50 / forward_1,
        "framing_ms": framing_ms,
        "framing_share_of_query": framing_ms / (p50 * 1000),
        "incremental_1pct_over_full": inc_s / full_s,
        "umap_cached_load_s": umap_cached,
        "umap_fresh_44k_s": umap_fresh,
        "peak_rss_gb": peak,
        "ann_1m_recall_at_10": ann["recall_at_10"],
        "ann_1m_query_p50_ms": ann["query_p50_ms"],
        "exact_1m_query_p50_ms": ann["exact_query_p50_ms"],
        "ann_1m_index_gb": ann["index_gb"],
        "items_load_1m_s": details["items_load"]["seconds"],
        "ray_embed_vs_local": details["ray"]["ray_vs_local"],
        "machine": {"cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "cpu_bf16": bf16_native(), "cpu_flags": cpu_flags(), "runtime": encoder.runtime.name,
                    "runtime_why": encoder.runtime.why,
                    "threads": torch.get_num_threads()},
        "details": details | {"config": cfg.__dict__},
    }
    return result


def _upload(path: Path, key: int, change: str = "tinted", others=()) -> bytes:
    """A query as a shopper sends it: the item re-shot (on a tinted backdrop), 1024 px on its long side, JPEG q90."""
    import io

    from PIL import Image

    from .images import load_image
    from .reshoot import reshoot

    photo = reshoot(load_image(path), change, 0, key, others)
    scale = 1024 / max(photo.size)
    buf = io.BytesIO()
    photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _grown_items(base: np.ndarray, sample, n: int):
    grown, src = _grown(base, n, seed=1)
    return grown, sample.iloc[src].reset_index(drop=True).assign(id=np.arange(n) + 20_000_000)


def _prefill(folder: Path, items, base: np.ndarray, src: np.ndarray, store) -> None:
    """Put perturbed real embeddings in the cache under each file's content hash (what embedding them would store)."""
    from .fsutil import content_hash

    keys = [content_hash((folder / "images" / f"{i}.jpg").read_bytes()) for i in items["id"]]
    emb, _ = _grown(base[src], len(src), seed=2, noise=0.01)
    store.add(keys, emb)
