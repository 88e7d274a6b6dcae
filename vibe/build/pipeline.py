"""Build or rebuild everything: catalogue -> embeddings -> heads -> projection -> indexes, published atomically."""
from __future__ import annotations

import json
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from ..catalog.marks import curated_path, curated_triplets
from ..catalog.reader import catalog_signature, load_catalog
from ..catalog.rules import Compatibility
from ..catalog.split import in_holdout
from ..catalog.triplets import mine_triplets, read_triplets_csv
from ..config import HEADS, BuildConfig
from ..errors import VibeError
from ..eval.metrics import evaluate_head
from ..models.encoder import Encoder
from ..models.heads import build_vocabularies, encode_labels, load_heads, save_heads
from ..models.style import load_projection, save_projection
from ..store.artifacts import (
    AUDIT_FILE,
    Artifacts,
    current_build,
    publish,
    read_manifest,
    remove_leftovers,
    save_audit,
    write_manifest,
)
from ..store.cache import EmbeddingStore, embed_files
from ..store.index import VectorIndex
from ..util.files import file_digest, remove_tree, write_json
from ..util.perceptual import VERSION as PHOTO_HASH_VERSION
from ..util.perceptual import photo_hashes
from ..util.progress import Progress, silent
from .calibrate import check_build
from .heads import out_of_fold_columns, out_of_fold_probs, train_heads
from .style import train_projection


@dataclass
class BuildResult:
    """What a build did, for the CLI summary and the dashboard."""

    path: Path
    n_items: int
    backbone: dict
    catalog_report: dict
    embedded: int  # images run through the backbone this time
    reused: int  # taken from the embedding cache
    failed: list[tuple[int, str]]  # images that could not be read: skipped
    added: int  # items not in the previous build
    removed: int  # items of the previous build that are gone
    changed: int  # items whose image bytes changed
    timings: dict[str, float] = field(default_factory=dict)
    heldout: dict[str, dict] = field(default_factory=dict)

    def lines(self) -> list[str]:
        t = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        out = [f"built {self.n_items} items with {self.backbone['description']} -> {self.path}",
               f"  embedded {self.embedded} images, reused {self.reused} from the cache; "
               f"vs previous build: {self.added} added, {self.removed} removed, {self.changed} changed"]
        if self.failed:
            out.append(f"  skipped {len(self.failed)} unreadable images: " + "; ".join(m for _, m in self.failed[:3])
                       + (" ..." if len(self.failed) > 3 else ""))
        out.append("  held-out accuracy: " + ", ".join(f"{h} {m['accuracy']:.3f}" for h, m in self.heldout.items()))
        out.append(f"  timings: {t}")
        return out


@contextmanager
def build_lock(workdir: Path) -> Iterator[None]:
    """One build per workdir. The OS drops the lock when its holder dies, so a killed build never blocks the next."""
    workdir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(workdir / "build.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise VibeError(f"Another build is already running in {workdir}; wait for it to finish (the current artifacts keep answering).") from None
    try:
        yield
    finally:
        lock.release()


def _previous_items(folder: Path | None) -> pd.DataFrame | None:
    """The previous build's photo hashes by content hash, when they were made the way this code makes them."""
    try:
        if not folder or json.loads((folder / "manifest.json").read_text()).get("photo_hash") != PHOTO_HASH_VERSION:
            return None
        return pd.read_parquet(folder / "items.parquet", columns=["id", "hash", "photo_hash"])
    except (OSError, ValueError, KeyError):
        return None


def _photo_hashes(items: pd.DataFrame, root: Path, previous: pd.DataFrame | None, progress: Progress) -> list:
    """The perceptual hash of every photo (the duplicate audit's second witness), the previous build's reused where
    the photo's bytes did not change."""
    known = dict(zip(previous["hash"], previous["photo_hash"])) if previous is not None else {}
    todo = [r for r, h in enumerate(items["hash"]) if not known.get(h)]
    progress("photo hashes", 0, max(1, len(todo)))
    fresh = dict(zip(todo, photo_hashes(root / items["path"].iat[r] for r in todo)))
    progress("photo hashes", max(1, len(todo)), max(1, len(todo)))
    return [fresh[r] if r in fresh else known[h] for r, h in enumerate(items["hash"])]


def split_record(cfg: BuildConfig, root: Path) -> dict:
    """What decides which items a build's heads may learn from: recorded in the manifest, compared before a warm start."""
    return {"root": str(Path(root).resolve()), "subset": cfg.catalog.subset, "holdout_fraction": cfg.catalog.holdout_fraction,
            "limit": cfg.catalog.limit, "heads_heldout_fraction": cfg.heads.heldout_fraction}


# settings that only say how long to train: a build that changes nothing else may continue from the previous one
# (a triplets file is compared by its contents, `triplets_digest`, not by the path it was given as)
_HOW_LONG = {"epochs", "patience", "warm_patience", "warm_epochs", "audit_folds", "triplets_csv"}


def training_settings(config: dict) -> dict:
    """Of a build's config as the manifest records it, the heads' and the projection's settings that shape what they
    learn."""
    return {part: {k: v for k, v in config.get(part, {}).items() if k not in _HOW_LONG} for part in ("heads", "projection")}


def recorded_config(cfg: BuildConfig) -> dict:
    """The build config as the manifest records it (JSON types: paths as strings), with the digest of a curated
    triplets file: a new file (or a changed one) shapes the style space, so it trains from scratch."""
    record = json.loads(json.dumps(asdict(cfg), default=str))
    triplets = cfg.projection.triplets_csv
    record["projection"]["triplets_digest"] = file_digest(triplets) if triplets and Path(triplets).is_file() else None
    return record


def _warm_start(folder: Path | None, workdir: Path, fingerprint: str, split: dict, settings: dict):
    """(heads, projection, why) of the previous build when it used the same backbone, the same catalogue split and the
    same training settings; else (None, None, why not). Warm-starting across splits would let heads continue from
    weights that saw held-out items; across settings, a few warm epochs would not show what the new settings do."""
    try:
        prev = read_manifest(folder, workdir)
    except VibeError:
        return None, None, ""
    if prev["backbone"]["fingerprint"] != fingerprint:
        return None, None, "no warm start: the previous build used another backbone"
    before = prev["catalog"].get("split")
    if before != split:
        changed = ", ".join(k for k in split if (before or {}).get(k) != split[k]) or "split"
        return None, None, f"no warm start: the previous build used another catalogue split ({changed} differ); training from scratch"
    trained = training_settings(prev.get("config", {}))
    changed = [f"{part}.{k}" for part, values in settings.items() for k in values if trained[part].get(k) != values[k]]
    if changed:
        return None, None, f"no warm start: training settings changed ({', '.join(changed)}); training from scratch"
    try:
        return (load_heads(folder / "heads.safetensors"), load_projection(folder / "projection.safetensors"),
                "warm start: heads and projection continue from the previous build (same backbone, same catalogue split)")
    except VibeError:
        return None, None, "no warm start: the previous build's heads could not be read"


def build(cfg: BuildConfig, progress: Progress = silent, encoder: Encoder | None = None,
          log=lambda line: None) -> BuildResult:
    """The one build path, used by `python -m vibe build` and the dashboard's Rebuild page."""
    workdir = cfg.workdir
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    catalog = load_catalog(cfg.catalog)  # before the workdir is made: a wrong --data leaves nothing behind
    timings["catalogue"] = time.perf_counter() - t0
    with build_lock(workdir):
        remove_leftovers(workdir)
        for line in catalog.report.lines():
            log(line)

        t0 = time.perf_counter()
        if encoder is None:
            encoder = Encoder(cfg.backbone, precision=cfg.precision)
        if encoder.note:
            log(f"warning: {encoder.note}")
        log(f"backbone: {encoder.description} [fingerprint {encoder.fingerprint}]")
        timings["backbone"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        store = EmbeddingStore(workdir / "cache", encoder.fingerprint, encoder.dim)
        paths = [catalog.root / p for p in catalog.items["path"]]
        if cfg.engine == "ray":
            from .ray_engine import embed_on_ray

            emb, hashes, stats = embed_on_ray(encoder, paths, store, cfg.ray_address, cfg.ray_workers, cfg.batch_size, progress,
                                              log=log)
        else:
            emb, hashes, stats = embed_files(encoder, paths, store, cfg.batch_size, progress, log=log)
        ok = ~np.isnan(emb).any(axis=1)
        items = catalog.items.assign(hash=hashes)[ok].reset_index(drop=True)
        emb = emb[ok]
        if len(items) < 10:
            raise VibeError(f"Only {len(items)} readable images in {catalog.root}: a build needs at least 10.")
        timings["embed"] = time.perf_counter() - t0
        # curated triplets are checked before any training, so a bad file fails fast
        fixed = read_triplets_csv(cfg.projection.triplets_csv, items, catalog.root) if cfg.projection.triplets_csv else None

        t0 = time.perf_counter()
        vocabs = build_vocabularies(items, cfg.heads.min_class_count)
        codes = encode_labels(items, vocabs)
        # held-out by a salted hash of the id: an item stays held out across rebuilds, so warm-started heads never saw it
        is_held = items["id"].map(lambda i: in_holdout(i, cfg.heads.heldout_fraction, salt="heads")).to_numpy()
        keep, held = np.flatnonzero(~is_held), np.flatnonzero(is_held)
        previous_build = current_build(workdir)  # resolved once: warm start and the added/removed counts read the same build
        split_info, recorded = split_record(cfg, catalog.root), recorded_config(cfg)
        warm_heads, warm_projection, why = _warm_start(previous_build, workdir, encoder.fingerprint, split_info,
                                                         training_settings(recorded))
        if why:
            log(why)
        heads, head_info = train_heads(emb[keep], {h: c[keep] for h, c in codes.items()}, vocabs, cfg.heads, cfg.seed, progress,
                                       init=warm_heads)
        log(f"trained the heads for {head_info['epochs']} epochs (they stop when the validation loss stops falling; at most "
            f"{cfg.heads.epochs})")
        probs = heads.predict_proba(emb)
        pred = {h: p.argmax(1) for h, p in probs.items()}
        metrics = {"split": "heldout", "n_heldout": int(len(held)), "heads": {
            h: evaluate_head(codes[h][held], pred[h][held], vocabs[h]) for h in HEADS}}
        timings["heads"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        oof_probs = out_of_fold_probs(emb, codes, vocabs, items["id"].to_numpy(), cfg.heads, cfg.seed,
                                      cfg.heads.audit_folds, progress) if cfg.heads.audit_folds else {}
        oof = out_of_fold_columns(oof_probs, codes)
        timings["audit"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        rng = np.random.default_rng(cfg.seed)
        compat = Compatibility(items)
        marks, stale = curated_triplets(catalog.root, items)
        if len(marks) or stale:
            log(f"triplets: {len(marks)} from merchandisers' marks in {curated_path(catalog.root)}, each counted "
                f"{cfg.projection.curated_weight}x" + (f"; {stale} naming items no longer in the catalogue skipped" if stale else ""))
        if fixed is not None:
            log(f"triplets: {len(fixed)} curated from {cfg.projection.triplets_csv}")
        weighted = np.repeat(marks, cfg.projection.curated_weight, axis=0)

        def sample(epoch: int) -> np.ndarray:
            base = fixed if fixed is not None else mine_triplets(compat, compat.outfit_anchors(keep), keep, rng,
                                                                   cfg.projection.triplets_per_anchor)
            both = np.concatenate([base, weighted])
            return both[rng.permutation(len(both))]

        projection, proj_info = train_projection(emb, sample, cfg.projection, cfg.seed, progress, init=warm_projection,
                                                 compat=compat)
        proj_info["curated_marks"] = int(len(marks))
        style = projection.project(emb)
        timings["projection"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        previous = _previous_items(previous_build)
        split = np.full(len(items), "train", dtype=object)
        split[held] = "heldout"
        table = items.assign(photo_hash=_photo_hashes(items, catalog.root, previous, progress),
                             **{f"{h}_code": codes[h] for h in HEADS}, **{f"pred_{h}": pred[h] for h in HEADS},
                            **{f"conf_{h}": probs[h].max(1).astype(np.float32) for h in HEADS}, split=split, **oof)
        art = Artifacts(path=workdir / "builds" / "(new)", manifest={"backbone": encoder.info(), "catalog": {"root": str(catalog.root)}},
                        items=table, clip=VectorIndex.build(emb, cfg.index), style=VectorIndex.build(style, cfg.index), heads=heads,
                        projection=projection, metrics=metrics)
        timings["index"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        _, retrieval = check_build(art, encoder, store, held, catalog.root, cfg.quality, probs, codes, cfg.batch_size, progress)
        if retrieval:
            metrics["retrieval"] = retrieval
            log("retrieval check on held-out items: re-shot photo finds its item at rank 1, same mode "
                f"{retrieval['same']['recall@1']:.2f}, bare embedding {retrieval['embedding']['recall@1']:.2f}; "
                f"neighbour type+colour precision@5 {retrieval['neighbours']['type_and_colour']:.2f}")
        timings["quality"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=workdir))
        try:
            table.to_parquet(staging / "items.parquet", index=False)
            art.clip.save(staging / "clip.faiss")
            art.style.save(staging / "style.faiss")
            save_heads(staging / "heads.safetensors", heads)
            save_projection(staging / "projection.safetensors", projection)
            if oof_probs:
                save_audit(staging / AUDIT_FILE, oof_probs)
            write_json(staging / "metrics.json", metrics)
            timings["write"] = time.perf_counter() - t0
            write_manifest(staging, {
                "backbone": encoder.info(), "n_items": int(len(table)), "dims": {"clip": int(emb.shape[1]), "style": int(style.shape[1])},
                "index": {"clip": art.clip.describe(), "style": art.style.describe()}, "engine": cfg.engine,
                "vocabs": vocabs, "catalog": {"root": str(catalog.root.resolve()), "report": catalog.report.to_dict(),
                            "signature": catalog_signature(catalog.root), "subset": cfg.catalog.subset,
                            "holdout_fraction": cfg.catalog.holdout_fraction, "split": split_info},
                "config": recorded, "training": {"heads": head_info, "projection": proj_info},
                "embedding": {"embedded": stats.embedded, "reused": stats.reused, "failed": stats.failed},
                "photo_hash": PHOTO_HASH_VERSION,
                "timings": timings,
            })
            final = publish(workdir, staging)
        except OSError as e:  # disk full, permissions...: the staging folder goes, the previous build stays
            remove_tree(staging)
            raise VibeError(f"Could not write the new artifacts in {workdir} ({e.strerror or e}); the previous build is "
                            "untouched and still answers. Free disk space (or fix permissions) and rebuild.") from None
        except BaseException:
            remove_tree(staging)
            raise
    old = dict(zip(previous["id"], previous["hash"])) if previous is not None else {}
    new = dict(zip(table["id"], table["hash"]))
    added = sum(i not in old for i in new)
    removed = sum(i not in new for i in old)
    changed = sum(i in old and old[i] != h for i, h in new.items())
    return BuildResult(path=final, n_items=len(table), backbone=encoder.info(), catalog_report=catalog.report.to_dict(),
                       embedded=stats.embedded, reused=stats.reused, failed=[(int(catalog.items["id"].iat[r]), m) for r, m in stats.failed],
                       added=added, removed=removed, changed=changed, timings=timings,
                       heldout={h: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]} for h, m in metrics["heads"].items()})
