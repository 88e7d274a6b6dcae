"""Typed configuration: dataclasses with defaults and validation. The CLI and env vars only fill them."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import VibeError

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO_ROOT / "data" / "sample"
DEFAULT_BACKBONE = "auto"  # FashionCLIP when it can be loaded, else the offline vibe-mini

# attribute name in vibe -> column in a Kaggle "Fashion Product Images" styles.csv
ATTRIBUTES: dict[str, str] = {
    "item_type": "articleType",
    "gender": "gender",
    "colour": "baseColour",
    "season": "season",
    "style": "usage",
}
HEADS = tuple(ATTRIBUTES)
OTHER = "Other"
# how a CLIP backbone runs (vibe.models.runtime); auto measures which is fastest here
PRECISIONS = ("auto", "fp32", "bf16", "int8", "int8-static", "onnx-fp32", "openvino")
INDEX_KINDS = ("auto", "exact", "ivf")  # FAISS index (vibe.store.index); auto: exact up to vibe.store.index.EXACT_MAX items
ENGINES = ("local", "ray")  # where images are embedded
# the re-shoot changes of vibe.eval.reshoot.CHANGES (named here so that a config can be checked before any work)
RESHOOT_CHANGES = ("crop", "smaller", "tinted", "busy", "rotate", "light", "jpeg", "downscale", "mixed")
# the held-out kinds of photo of vibe.eval.heldout.KINDS, made by code no training path imports
HELDOUT_KINDS = ("real_backdrop", "page_screenshot", "phone_shot", "white_balance")


def default_workdir() -> Path:
    """Where built artifacts live: $VIBE_WORKDIR, else data/build in the repo (git-ignored)."""
    return Path(os.environ.get("VIBE_WORKDIR") or REPO_ROOT / "data" / "build")


def default_backbone() -> str:
    return os.environ.get("VIBE_BACKBONE") or DEFAULT_BACKBONE


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise VibeError(message)


def _either(values: tuple[str, ...]) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1]


@dataclass(frozen=True)
class CatalogConfig:
    """Which catalogue to read and which part of it."""

    root: Path = SAMPLE_DATA
    subset: str = "all"  # all | train | holdout: a deterministic split by item id
    holdout_fraction: float = 0.2
    limit: int | None = None  # keep at most this many items (smoke runs)

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        _check(self.subset in ("all", "train", "holdout"), f"subset must be all, train or holdout, not {self.subset!r}.")
        _check(0.0 < self.holdout_fraction < 1.0, "holdout_fraction must be between 0 and 1.")
        _check(self.limit is None or self.limit > 0, "limit must be positive.")


@dataclass(frozen=True)
class HeadsConfig:
    """The five linear attribute heads on frozen embeddings."""

    min_class_count: int = 10  # rarer classes merge into "Other"
    heldout_fraction: float = 0.1  # items (by a hash of their id) kept out of training, for the reported metrics
    val_fraction: float = 0.1  # of the training part, for early stopping
    epochs: int = 300
    patience: int = 15
    warm_patience: int = 3  # when continuing from the previous build's heads (incremental rebuild)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 512
    audit_folds: int = 5  # out-of-fold predictions for the label audit (0: none; the audit then refuses)

    def __post_init__(self):
        _check(self.min_class_count >= 1, "min_class_count must be at least 1.")
        _check(self.audit_folds == 0 or self.audit_folds >= 2, "audit_folds must be 0 or at least 2.")
        _check(0.0 < self.heldout_fraction < 0.9, "heldout_fraction must be between 0 and 0.9.")
        _check(self.epochs > 0 and self.patience > 0, "epochs and patience must be positive.")


@dataclass(frozen=True)
class ProjectionConfig:
    """The 256-D style projection trained with a triplet loss."""

    dim: int = 256
    epochs: int = 15
    warm_epochs: int = 2  # when continuing from the previous build's head (incremental rebuild)
    margin: float = 0.2
    batch_weight: float = 1.0  # the in-batch InfoNCE term next to the triplet loss (0: triplet loss only)
    temperature: float = 0.1
    # keeps the batch's cosines near the backbone's (mean squared difference), so the space does not collapse onto its
    # labels: without it an item's 50 nearest neighbours spanned 0.01 in cosine, with it 0.04 (0: off)
    structure_weight: float = 1.0
    curated_weight: int = 5  # each curated triplet counts as this many mined ones
    lr: float = 3e-3
    batch_size: int = 256
    triplets_per_anchor: int = 8
    triplets_csv: Path | None = None  # curated anchor,positive,negative; else mined from labels

    def __post_init__(self):
        _check(self.dim > 0 and self.epochs > 0, "projection dim and epochs must be positive.")
        _check(self.margin > 0, "triplet margin must be positive.")
        _check(self.structure_weight >= 0 and self.batch_weight >= 0, "loss weights must be 0 or more.")


@dataclass(frozen=True)
class QualityConfig:
    """The ranking checks (vibe.eval.ranking): re-shot photos finding their own item, unfiltered neighbour precision; and the
    confidence from which a head's prediction filters `same`-mode results."""

    changes: tuple[str, ...] | None = None  # re-shoot changes (vibe.eval.reshoot.CHANGES); None: all of them
    heldout: tuple[str, ...] | None = None  # held-out kinds of photo (vibe.eval.heldout.KINDS); None: all; () none
    scenes: int = 300  # held-out scenes of 1-5 products on which proposal recall is measured (eval only)
    seed: int = 0
    k: int = 10  # ranks looked at: recall@1, recall@5, MRR@k
    per_change: int = 50  # a build's own check: held-out photos re-shot per change (0: no check)
    filter_precision: float = 0.9  # a filter applies from the confidence at which its head is right this often
    same_photo_precision: float = 0.98  # a photo this close passes same mode's filters: its own item this often

    def __post_init__(self):
        unknown = [c for c in self.changes or () if c not in RESHOOT_CHANGES]
        _check(not unknown, f"unknown re-shoot change(s) {', '.join(map(repr, unknown))}: use "
                            f"{_either(RESHOOT_CHANGES)}.")
        _check(self.changes is None or len(self.changes) > 0, "changes must name at least one re-shoot change.")
        unknown = [c for c in self.heldout or () if c not in HELDOUT_KINDS]
        _check(not unknown, f"unknown held-out kind(s) {', '.join(map(repr, unknown))}: use {_either(HELDOUT_KINDS)}.")
        _check(self.k >= 5, "k must be at least 5 (recall@5 is reported).")
        _check(self.per_change >= 0, "per_change must be 0 or more.")
        _check(0.5 <= self.filter_precision < 1.0, "filter_precision must be between 0.5 and 1.")


@dataclass(frozen=True)
class BuildConfig:
    """Everything `vibe.build.pipeline.build` needs."""

    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    backbone: str = field(default_factory=default_backbone)
    workdir: Path = field(default_factory=default_workdir)
    precision: str = "auto"  # the encoder's runtime: auto (fastest measured here, vibe.models.runtime) | fp32 | bf16 | int8
    index: str = "auto"  # exact | ivf | auto: exact FAISS search up to vibe.store.index.EXACT_MAX items, IVF-SQ8 beyond
    engine: str = "local"  # local | ray: where images are embedded (both write the same cache)
    ray_address: str | None = None  # a Ray cluster this machine is a node of (`auto`, `head:6379`); None: a local Ray
    ray_workers: int = 2  # embedding actors
    batch_size: int = 32
    seed: int = 0
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    def __post_init__(self):
        object.__setattr__(self, "workdir", Path(self.workdir))
        _check(self.batch_size > 0, "batch_size must be positive.")
        _check(self.precision in PRECISIONS, f"precision must be {_either(PRECISIONS)}, not {self.precision!r}.")
        _check(self.index in INDEX_KINDS, f"index must be {_either(INDEX_KINDS)}, not {self.index!r}.")
        _check(self.engine in ENGINES, f"engine must be {_either(ENGINES)}, not {self.engine!r}.")
        _check(self.ray_workers >= 1, "ray_workers must be at least 1.")
        _check(not (self.ray_address or "").startswith("ray://"),
               f"Ray Data cannot run over a Ray Client address ({self.ray_address}): run the build on a node of the "
               "cluster with --ray-address auto (or HEAD:6379).")


def build_config_from_record(record: dict, **changes) -> BuildConfig:
    """The BuildConfig a manifest recorded (`recorded_config`), with `changes` (top-level fields, or a nested
    dataclass replaced whole): a rebuild that repeats the current build exactly unless something is changed on purpose.
    Fields a newer version added take their defaults; fields an older version had and this one lacks are dropped."""
    from dataclasses import fields

    def make(cls, values: dict):
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for name, value in (values or {}).items():
            if name not in known:
                continue
            if name == "catalog":
                value = make(CatalogConfig, value)
            elif name in ("heads", "projection", "quality"):
                value = make({"heads": HeadsConfig, "projection": ProjectionConfig, "quality": QualityConfig}[name], value)
            elif name in ("root", "workdir", "triplets_csv") and value is not None:
                value = Path(value)
            elif name == "changes" and value is not None:
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    return replace(make(BuildConfig, record), **changes)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig:
    """`python -m vibe serve`: where it listens, who may call it, and the limits that keep it answering under load."""

    workdir: Path = field(default_factory=default_workdir)
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # required on every request when set; required to bind anything but loopback
    backbone: str | None = None  # default: the one the build was made with
    max_upload_mb: float = 20.0  # a request body above this is refused (413) before it is read whole
    max_pixels: int = 40_000_000  # a photo above this is refused from its header, before it is decoded
    max_batch: int = 32  # views embedded together from concurrent requests
    window_ms: float = 2.0  # how long the first request of a batch waits for others
    max_queue: int = 64  # requests waiting for the model; one more is answered 503 with Retry-After
    max_inflight: int = 128  # requests being handled at once; one more is answered 503 with Retry-After
    cpu_workers: int | None = None  # requests decoded, located or searched at once (default: one per core)
    max_k: int = 100
    max_images: int = 32  # photos per /v1/embed request

    def __post_init__(self):
        object.__setattr__(self, "workdir", Path(self.workdir))
        _check(1 <= self.port <= 65535, f"port must be between 1 and 65535, not {self.port}.")
        _check(self.token is None or len(self.token) >= 8, "token must be at least 8 characters.")
        _check(self.host in LOOPBACK or self.token is not None,
               f"Binding {self.host} makes the API reachable from other machines: give --token (or set VIBE_API_TOKEN); "
               "every request must then send it as 'Authorization: Bearer TOKEN'.")
        _check(self.max_upload_mb > 0 and self.max_pixels > 0, "max_upload_mb and max_pixels must be positive.")
        _check(min(self.max_batch, self.max_queue, self.max_inflight, self.max_k, self.max_images) >= 1,
               "max_batch, max_queue, max_inflight, max_k and max_images must be at least 1.")
        _check(self.window_ms >= 0, "window_ms must not be negative.")
