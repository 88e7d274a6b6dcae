"""The bench's stages, one function per figure group, in the order `vibe.bench.run.run` measures them. Each returns its
top-level figures and leaves what later stages need in `ctx.made`."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..models.encoder import Encoder
from ..util.vectors import l2_normalize


@dataclass
class Context:
    """What the stages share: the configuration, the photos, the encoder, a scratch folder, and what earlier stages
    measured or made (the embedded sample, the query index)."""

    cfg: "BenchConfig"  # noqa: F821 - vibe.bench.run.BenchConfig
    tmp: Path
    details: dict = field(default_factory=dict)
    made: dict = field(default_factory=dict)


def _timeit(fn, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def _median_ms(fn, inputs) -> float:
    """The median time of fn(x) over the inputs, in milliseconds."""
    times = []
    for x in inputs:
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000


def _catalog_dir(dst: Path, root: Path, items: pd.DataFrame, unique_tag: str = "") -> Path:
    """A catalogue folder of the given items (files hard-linked, or copied with a unique trailer so each is a new image)."""
    from ..catalog.reader import link_images, write_styles

    (dst / "images").mkdir(parents=True, exist_ok=True)
    targets = [dst / "images" / f"{i}.jpg" for i in items["id"]]
    if unique_tag:
        for item_id, path, target in zip(items["id"], items["path"], targets):
            if not target.exists():  # JPEG decoders ignore bytes after the end marker: distinct content, same picture
                target.write_bytes((root / path).read_bytes() + f"{unique_tag}{item_id}".encode())
    else:
        link_images(zip((root / p for p in items["path"]), targets))
    write_styles(dst / "styles.csv", items)
    return dst


def _grown(base: np.ndarray, n: int, seed: int = 0, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """n vectors: real embeddings repeated with small Gaussian perturbations (and which base row each came from)."""
    rng = np.random.default_rng(seed)
    src = np.arange(n) % len(base)
    return l2_normalize(base[src] + rng.normal(scale=noise, size=(n, base.shape[1])).astype(np.float32)), src


def _in_memory_artifacts(emb: np.ndarray, items: pd.DataFrame, encoder: Encoder, folder: Path):
    """An Artifacts built in memory over `emb` (heads and projection trained briefly: their cost, not their quality, matters)."""
    from ..build.heads import train_heads
    from ..build.style import train_projection
    from ..catalog.rules import Compatibility
    from ..catalog.triplets import mine_triplets
    from ..config import HEADS, HeadsConfig, ProjectionConfig
    from ..models.heads import build_vocabularies, encode_labels
    from ..store.artifacts import Artifacts
    from ..store.index import VectorIndex

    vocabs = build_vocabularies(items, 10)
    codes = encode_labels(items, vocabs)
    heads, _ = train_heads(emb, codes, vocabs, HeadsConfig(epochs=3, patience=1))
    rng, rows, compat = np.random.default_rng(0), np.arange(len(items)), Compatibility(items)
    proj, _ = train_projection(emb, lambda e: mine_triplets(compat, compat.outfit_anchors(rows), rows, rng, 1),
                               ProjectionConfig(epochs=1))
    table = items.assign(**{f"{h}_code": codes[h] for h in HEADS}, hash=[f"bench{i}" for i in range(len(items))],
                         split="train")
    manifest = {"backbone": encoder.info(), "n_items": len(items), "vocabs": vocabs, "catalog": {"root": "."}}
    return Artifacts(path=folder, manifest=manifest, items=table, clip=VectorIndex.build(emb),
                     style=VectorIndex.build(proj.project(emb)), heads=heads, projection=proj, metrics={})


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


def as_upload(photo, side: int = 1024) -> bytes:
    """A photo as a shopper or a site sends it: `side` px on its long side, JPEG q90."""
    from PIL import Image

    scale = side / max(photo.size)
    buf = io.BytesIO()
    photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _upload(path: Path, key: int, change: str = "tinted", others=()) -> bytes:
    """A query as a shopper sends it: the item re-shot (on a tinted backdrop), 1024 px on its long side, JPEG q90."""
    from ..eval.reshoot import reshoot
    from ..util.images import load_image

    return as_upload(reshoot(load_image(path), change, 0, key, others))


def _heldout_upload(path: Path, key: int, others) -> bytes:
    """A photo framing cannot take, as a shopper sends it: the item on a real photo, or in a page screenshot (every
    other one), 1024 px on its long side, JPEG q90."""
    from ..eval.heldout import heldout_photo
    from ..util.images import load_image

    kind = "page_screenshot" if key % 2 else "real_backdrop"
    return as_upload(heldout_photo(load_image(path), kind, 0, key, others, "score").image)


def load(ctx: Context) -> None:
    """The photos of `cfg.data` and the encoder every stage measures."""
    from ..catalog.reader import load_catalog

    cfg = ctx.cfg
    ctx.made["root"], ctx.made["items"] = Path(cfg.data), load_catalog(cfg.data).items
    encoder = ctx.made["encoder"] = Encoder(cfg.backbone)
    ctx.details |= {"backbone": encoder.description, "precision": encoder.precision,
                    "runtime": encoder.runtime.to_dict()}  # which path ran, and why (vibe.models.runtime)
    sample = ctx.made["sample"] = ctx.made["items"].iloc[: cfg.n_images]
    ctx.made["paths"] = [ctx.made["root"] / p for p in sample["path"]]


def embed(ctx: Context) -> dict:
    """The build path against the bare forward pass, same batch size and precision, interleaved and repeated (a
    shared machine drifts by 10-20 % between runs)."""
    from ..store.cache import EmbeddingStore, embed_files

    cfg, encoder, paths = ctx.cfg, ctx.made["encoder"], ctx.made["paths"]
    pixels = torch.rand(cfg.batch_size, 3, encoder.input_side, encoder.input_side) * 4 - 2
    encoder.embed_pixels(pixels)  # warm-up
    n_batches = max(1, cfg.n_images // cfg.batch_size)
    fwd, pipe = [], []
    for rep in range(cfg.repeats):
        fwd.append(_timeit(lambda: encoder.embed_pixels(pixels), n_batches) / cfg.batch_size)
        store = EmbeddingStore(ctx.tmp / f"cache{rep}", encoder.fingerprint, encoder.dim)
        t = time.perf_counter()
        ctx.made["embedded"], _, _ = embed_files(encoder, paths, store, cfg.batch_size)
        pipe.append((time.perf_counter() - t) / len(paths))
    forward_ips, pipeline_ips = 1 / float(np.median(fwd)), 1 / float(np.median(pipe))
    ctx.made["pipeline_ips"] = pipeline_ips
    ctx.details |= {"forward_images_per_s": forward_ips, "pipeline_images_per_s": pipeline_ips}
    return {"embed_pipeline_vs_forward": pipeline_ips / forward_ips}


def fast_path(ctx: Context) -> dict:
    """The default path against the prototype's CLIPProcessor + fp32. The cosine compares the same pixels: the
    prototype did not frame photos, so the fast path's numbers are checked with framing off. Beside it, the int8 path
    (what a CPU without native bf16 takes when int8 measures fastest there)."""
    from ..store.cache import EmbeddingStore, embed_files

    cfg, encoder, paths = ctx.cfg, ctx.made["encoder"], ctx.made["paths"]
    if "pipeline_ips" not in ctx.made:
        embed(ctx)
    fp32 = Encoder(cfg.backbone, precision="fp32") if encoder.precision != "fp32" else encoder
    t = time.perf_counter()
    proto = _prototype_embed(fp32, paths, 32)
    proto_ips = len(paths) / (time.perf_counter() - t)
    unframed = Encoder(cfg.backbone, precision=encoder.precision, framing=False).encode_images(paths, cfg.batch_size)
    int8 = Encoder(cfg.backbone, precision="int8")
    int8.embed_pixels(torch.zeros(cfg.batch_size, 3, int8.input_side, int8.input_side))
    t = time.perf_counter()
    embed_files(int8, paths, EmbeddingStore(ctx.tmp / "cache-int8", int8.fingerprint, int8.dim), cfg.batch_size)
    ctx.details |= {"prototype_images_per_s": proto_ips,
                    "int8_speedup_vs_prototype": len(paths) / (time.perf_counter() - t) / proto_ips,
                    "int8_min_cosine": float((Encoder(cfg.backbone, precision="int8", framing=False).encode_images(
                        paths, cfg.batch_size) * proto).sum(axis=1).min())}  # the int8 model is cached: built once above
    return {"fast_path_speedup_vs_prototype": ctx.made["pipeline_ips"] / proto_ips,
            "fast_path_min_cosine": float((unframed * proto).sum(axis=1).min())}


def _query_index(ctx: Context):
    """The query index: `index_size` vectors grown from the embedded sample (exact search costs the same whatever the
    vectors), with a matcher over it. Made once, for the query and UMAP stages."""
    from ..search.matcher import Matcher

    if "art" not in ctx.made:
        if "embedded" not in ctx.made:
            embed(ctx)
        cfg, sample = ctx.cfg, ctx.made["sample"]
        grown, src = _grown(ctx.made["embedded"], cfg.index_size)
        items = sample.iloc[src].reset_index(drop=True).assign(id=np.arange(cfg.index_size) + 10_000_000)
        ctx.made["art"] = _in_memory_artifacts(grown, items, ctx.made["encoder"], ctx.tmp / "builds" / "query")
        ctx.made["grown"] = grown
        ctx.made["matcher"] = Matcher(ctx.made["art"], ctx.made["encoder"])
    return ctx.made["art"], ctx.made["matcher"]


def query(ctx: Context) -> dict:
    """One upload -> framing -> attributes -> filtered search -> k results, both modes, against the forward pass of the
    same image; then the same photos re-shot on a busy backdrop (framing gives up: more views)."""
    from ..locate.framing import frame_product
    from ..util.images import load_image

    cfg, encoder, root, items = ctx.cfg, ctx.made["encoder"], ctx.made["root"], ctx.made["items"]
    _, matcher = _query_index(ctx)
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
    others = [load_image(root / p) for p in items["path"].iloc[:20]]
    busy = [_upload(root / q, i, "busy", others) for i, q in enumerate(query_paths)]
    decoded = lambda q: load_image(q, max_side=encoder.decode_side)  # noqa: E731
    seg = matcher.locator.segmenter
    if seg:
        ctx.details["segment_ms"] = _median_ms(lambda im: seg.view(im, encoder.frame_side), [decoded(q) for q in busy])
    busy_ms = _median_ms(lambda q: matcher.find(q, mode="same", k=10), busy)
    # photos framing cannot take (a product on a real photo, a page screenshot): searched as the default search does (its
    # first proposals cut out by GrabCut, the whole photo, the segmenter's cut-out)
    held = [_heldout_upload(root / q, i, [o for o in others[:6]]) for i, q in enumerate(query_paths)]
    detector = matcher.locator.detector
    if detector:
        ctx.details["detector_ms"] = _median_ms(detector.propose, [decoded(q) for q in held])
    held_ms = _median_ms(lambda q: matcher.find(q, mode="same", k=10), held)
    same_lat = lat[: len(queries)]  # the framed photos of the same items, same mode
    p50, p95, forward_1 = float(np.percentile(lat, 50)), float(np.percentile(lat, 95)), float(np.median(fwd1))
    framing_ms = float(np.median(frame_s)) * 1000
    ctx.details |= {
        "busy_query_p50_ms": busy_ms, "single_image_forward_ms": forward_1 * 1000,
        "query_index": f"{cfg.index_size} vectors: the {len(ctx.made['embedded'])} embedded photos repeated with small "
                       "noise (exact search costs the same whatever the vectors; the 1M figures use real-like ones)",
        "query_photo": "a re-shot catalogue photo (tinted backdrop), 1024 px on its long side, JPEG quality 90"}
    ctx.details["proposal_query_photos"] = ("the same items on a real photo or in a page screenshot (vibe.eval.heldout), "
                                            "1024 px JPEG quality 90")
    return {"query_p50_ms": p50 * 1000, "query_p95_ms": p95 * 1000, "query_p50_over_forward": p50 / forward_1,
            "framing_ms": framing_ms, "framing_share_of_query": framing_ms / (p50 * 1000),
            "proposal_query_p50_ms": held_ms, "proposal_query_over_framed": held_ms / (float(np.median(same_lat)) * 1000)}


def incremental(ctx: Context) -> dict:
    """A rebuild after adding 1 % new images, over a full build (the real pipeline, real images)."""
    from ..build.pipeline import build
    from ..config import BuildConfig, CatalogConfig

    cfg, root, items = ctx.cfg, ctx.made["root"], ctx.made["items"]
    base = items.iloc[: cfg.incremental_base]
    extra = items.iloc[cfg.incremental_base: cfg.incremental_base + max(1, cfg.incremental_base // 100)]
    cat = _catalog_dir(ctx.tmp / "inc", root, base)
    work = ctx.tmp / "inc-work"
    encoder = ctx.made["encoder"]
    full_s = _timeit(lambda: build(BuildConfig(catalog=CatalogConfig(root=cat), workdir=work), encoder=encoder))
    _catalog_dir(ctx.tmp / "inc", root, pd.concat([base, extra]))
    inc_s = _timeit(lambda: build(BuildConfig(catalog=CatalogConfig(root=cat), workdir=work), encoder=encoder))
    ctx.details |= {"full_build_s": full_s, "incremental_build_s": inc_s, "incremental_items": len(extra)}
    return {"incremental_1pct_over_full": inc_s / full_s}


def umap(ctx: Context) -> dict:
    """UMAP fresh on `umap_points` vectors (after a tiny warm-up run compiles numba), every point (not the dashboard's
    20,000-point sample), then from the disk cache."""
    from ..explore.layout import compute_layout, layout

    cfg, encoder = ctx.cfg, ctx.made["encoder"]
    art, _ = _query_index(ctx)
    compute_layout(ctx.made["grown"][:300])
    if cfg.umap_points != cfg.index_size:
        grown, src = _grown(ctx.made["embedded"], cfg.umap_points, seed=1)
        items = ctx.made["sample"].iloc[src].reset_index(drop=True).assign(id=np.arange(cfg.umap_points) + 20_000_000)
        art = _in_memory_artifacts(grown, items, encoder, ctx.tmp / "builds" / "umap")
    _, facts = layout(art, "clip", max_points=cfg.umap_points)
    fresh = facts["seconds"]
    ctx.details["umap_points"] = facts["n_shown"]
    _, facts = layout(art, "clip", max_points=cfg.umap_points)
    return {"umap_fresh_44k_s": fresh, "umap_cached_load_s": facts["seconds"]}


def _prefill(folder: Path, items: pd.DataFrame, base: np.ndarray, src: np.ndarray, store) -> None:
    """Put perturbed real embeddings in the cache under each file's content hash (what embedding them would store)."""
    from ..util.files import content_hash

    keys = [content_hash((folder / "images" / f"{i}.jpg").read_bytes()) for i in items["id"]]
    emb, _ = _grown(base[src], len(src), seed=2, noise=0.01)
    store.add(keys, emb)


def rss_child(catalog: str, workdir: str, backbone: str) -> None:
    """Run in a fresh process: one build of the big catalogue, then print this process's peak RSS."""
    from ..build.pipeline import build
    from ..config import BuildConfig, CatalogConfig, HeadsConfig, ProjectionConfig

    # epochs do not change the memory a build needs, only its time
    build(BuildConfig(catalog=CatalogConfig(root=Path(catalog)), backbone=backbone, workdir=Path(workdir),
                      heads=HeadsConfig(epochs=2, patience=1), projection=ProjectionConfig(epochs=1)))
    # VmHWM is this process's own peak; ru_maxrss would include the parent's, inherited across exec
    hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    print(json.dumps({"peak_rss_gb": hwm_kb / 2**20}))


def rss(ctx: Context) -> dict:
    """Peak RSS of a build of `rss_items` items in a fresh process (embeddings pre-cached: what is measured is everything
    but the forward pass)."""
    from ..store.cache import EmbeddingStore

    cfg, encoder, sample = ctx.cfg, ctx.made["encoder"], ctx.made["sample"]
    if "embedded" not in ctx.made:
        embed(ctx)
    src = np.arange(cfg.rss_items) % len(sample)
    big = sample.iloc[src].reset_index(drop=True).assign(id=np.arange(cfg.rss_items) + 1)
    big_dir = _catalog_dir(ctx.tmp / "big", ctx.made["root"], big, unique_tag="vibe-bench-")
    big_work = ctx.tmp / "big-work"
    _prefill(big_dir, big, ctx.made["embedded"], src, EmbeddingStore(big_work / "cache", encoder.fingerprint, encoder.dim))
    child = subprocess.run([sys.executable, "-c", "from vibe.bench.stages import rss_child; "
                            f"rss_child({str(big_dir)!r}, {str(big_work)!r}, {cfg.backbone!r})"],
                           capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if child.returncode:
        raise RuntimeError(f"the peak-RSS build failed: {child.stderr[-1500:]}")
    return {"peak_rss_gb": json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_gb"]}


def ann(ctx: Context) -> dict:
    """An approximate index over 1M real-like vectors (vibe.bench.scale) against exact search."""
    from .scale import HOW_MADE, ann_figures, like_real

    cfg, root, items = ctx.cfg, ctx.made["root"], ctx.made["items"]
    real = Encoder(cfg.ann_backbone).encode_images([root / p for p in items["path"]], 64)
    real = real[~np.isnan(real).any(axis=1)]
    pool = like_real(real, cfg.ann_vectors + cfg.ann_queries, seed=3)
    got = ann_figures(pool[:cfg.ann_vectors], pool[cfg.ann_vectors:])
    ctx.details["ann"] = got | {"vectors": HOW_MADE.format(noise=0.35), "from": f"{len(real)} {cfg.ann_backbone} embeddings"}
    return {"ann_1m_recall_at_10": got["recall_at_10"], "ann_1m_query_p50_ms": got["query_p50_ms"],
            "exact_1m_query_p50_ms": got["exact_query_p50_ms"], "ann_1m_index_gb": got["index_gb"]}


def items_load(ctx: Context) -> dict:
    from .scale import items_load_figure

    ctx.details["items_load"] = items_load_figure(ctx.made["items"], ctx.cfg.items_rows)
    return {"items_load_1m_s": ctx.details["items_load"]["seconds"]}


def ray(ctx: Context) -> dict:
    """`build --engine ray` (a local Ray with two actors) against the local engine, on the same images."""
    from .scale import ray_figure

    cfg, root, items = ctx.cfg, ctx.made["root"], ctx.made["items"]
    ctx.details["ray"] = ray_figure(cfg.backbone, [root / p for p in items["path"].iloc[:cfg.ray_images]], 2, cfg.batch_size)
    return {"ray_embed_vs_local": ctx.details["ray"]["ray_vs_local"]}


STAGES = {"embed": embed, "fast_path": fast_path, "query": query, "incremental": incremental, "umap": umap, "rss": rss,
          "ann": ann, "items_load": items_load, "ray": ray}
