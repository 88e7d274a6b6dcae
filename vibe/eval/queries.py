"""Re-shot photos embedded as the queries a user would send (their views: vibe.locate.query), through the embedding
cache under deterministic keys, so a rebuild or a second eval embeds only re-shots of photos it has not seen."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..locate.query import Locator
from ..models.encoder import Encoder
from ..store.cache import CHUNK, EmbeddingStore
from ..util.files import content_hash
from ..util.images import load_image
from ..util.progress import Progress, silent
from .reshoot import USES_BACKDROPS, Backdrops, reshot_photo

RESHOOT_VERSION = "reshoot-1"  # part of the cache key of a re-shot photo: change it when vibe.eval.reshoot changes


def reshoot_key(image_hash: str, change: str, seed: int, views: str = "", backdrops: str = "") -> str:
    """The cache key of a re-shot photo: deterministic, so a rebuild embeds only re-shots of new photos. `views`: what
    decides a query's views (vibe.locate.query.Locator.version), for photos embedded as queries; `backdrops`: the digest
    of the photos a busy backdrop is made of (vibe.eval.reshoot.Backdrops), for the changes that use them."""
    extra = "".join(f":{v}" for v in (views, backdrops) if v)
    return content_hash(f"{RESHOOT_VERSION}:{seed}:{change}:{image_hash}{extra}".encode())


@dataclass(frozen=True)
class Originals:
    """Photos to re-shoot, each also present (as the original) in the index that is searched."""

    rows: np.ndarray  # row of each original in the searched index
    ids: np.ndarray
    paths: list[Path]  # image files, absolute
    hashes: list[str]  # content hashes (an identical photo stored under another id counts as found too)


def _view_key(key: str, view: int) -> str:
    return key if view == 0 else content_hash(f"{key}:view{view}".encode())


def embed_made(encoder: Encoder, store: EmbeddingStore, keys: list[str], make: Callable[[int], list[Image.Image]],
                batch_size: int, progress: Progress, stage: str) -> list[np.ndarray]:
    """(views, dim) embeddings of images made on demand (`make(i)` -> the views of item i), cached under `keys`:
    only keys not in the store yet are made and embedded, a shard at a time."""
    todo = list({k: i for i, k in reversed(list(enumerate(keys))) if k not in store}.values())
    progress(stage, 0, len(todo))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            views = list(pool.map(make, chunk))
            store.add([_view_key(keys[i], j) for i, vs in zip(chunk, views) for j in range(len(vs))],
                      encoder.encode_views([v for vs in views for v in vs], batch_size))
            progress(stage, start + len(chunk), len(todo))
    return [store.get([_view_key(k, j) for j in range(_n_views(store, k))]) for k in keys]


def _n_views(store: EmbeddingStore, key: str) -> int:
    n = 1  # a query's views are stored together, under view keys 0, 1, ...
    while _view_key(key, n) in store:
        n += 1
    return n


def _embed_kinds(encoder: Encoder, store: EmbeddingStore, originals: Originals, kinds: Sequence[str],
                 photo: Callable[[str, int], Image.Image], tag: Callable[[str], tuple[str, str]], seed: int,
                 batch_size: int, progress: Progress, locator: Locator | None, stage: str) -> dict[str, list[np.ndarray]]:
    """Per kind, every original made into a query photo (`photo(kind, i)`), as the (views, dim) embeddings its query
    is searched with (vibe.locate.query), through the cache under keys named by `tag(kind)`: (what makes the photo,
    what it is made of)."""
    locator = locator or Locator.for_encoder(encoder)
    out = {}
    for kind in kinds:
        made_as, made_of = tag(kind)
        keys = [reshoot_key(h, made_as, seed, locator.version, made_of) for h in originals.hashes]
        out[kind] = embed_made(encoder, store, keys, lambda i, kind=kind: locator.views(photo(kind, i)).views, batch_size,
                               progress, f"{stage} {kind}")
    store.compact()
    return out


def embed_reshoots(encoder: Encoder, store: EmbeddingStore, originals: Originals, changes: Sequence[str], seed: int,
                   backdrops: Backdrops, batch_size: int = 32, progress: Progress = silent,
                   locator: Locator | None = None) -> dict[str, list[np.ndarray]]:
    """Every original re-shot by every change (vibe.eval.reshoot), embedded as the query it would be: a rebuild only
    embeds re-shots of new photos."""
    def photo(change: str, i: int) -> Image.Image:
        return reshot_photo({"path": originals.paths[i], "change": change, "id": originals.ids[i]}, seed, backdrops)

    return _embed_kinds(encoder, store, originals, changes, photo,
                        lambda c: (c, backdrops.digest if c in USES_BACKDROPS else ""), seed, batch_size, progress,
                        locator, "re-shoot")


def heldout_query(originals: Originals, i: int, kind: str, seed: int, others: Backdrops, part: str):
    """Original i as a held-out kind of photo (vibe.eval.heldout): the photo, every product's box, the target's."""
    from .heldout import heldout_photo

    return heldout_photo(load_image(originals.paths[i]), kind, seed, int(originals.ids[i]), others.photos, part)


def heldout_case(case: dict, seed: int, others: Backdrops, part: str = "score"):
    """The held-out photo of a report's case ({"path", "change" (the kind), "id"}), made again exactly."""
    from .heldout import heldout_photo

    return heldout_photo(load_image(case["path"]), case["change"], seed, int(case["id"]), others.photos, part).image


def embed_heldout(encoder: Encoder, store: EmbeddingStore, originals: Originals, kinds: Sequence[str], seed: int,
                  others: Backdrops, part: str = "score", batch_size: int = 32, progress: Progress = silent,
                  locator: Locator | None = None) -> dict[str, list[np.ndarray]]:
    """Every original as every held-out kind of photo (vibe.eval.heldout, of its `part`'s real photos), embedded as the
    query it would be. `others`: the catalogue photos a page screenshot shows beside the product."""
    from .heldout import VERSION

    return _embed_kinds(encoder, store, originals, kinds,
                        lambda kind, i: heldout_query(originals, i, kind, seed, others, part).image,
                        lambda kind: (f"{VERSION}:{part}:{kind}", others.digest if kind == "page_screenshot" else ""),
                        seed, batch_size, progress, locator, "held-out")
