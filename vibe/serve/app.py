"""The FastAPI app: `create_app(ServeConfig)`. Every route calls the same matcher the CLI and dashboard use; the
forward passes go through the Batcher, everything else runs in the thread pool, and every bad input is a 4xx JSON
error in one sentence."""
from __future__ import annotations

import asyncio
import functools
import io
import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Literal

import anyio
import torch
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .. import __version__
from ..config import ServeConfig
from ..errors import VibeError
from ..util.images import PHOTO_FORMATS, ImageError, load_image
from .batcher import Batcher, Overloaded
from .limits import ApiError, Guard, TooLarge
from .state import Served

log = logging.getLogger("vibe.serve")

FIND_QUERY = {"mode", "k", "box", "product", "all", "per_slot", "item_id"}
FIND_FORM = {"image", "item_id"}


def _only(request: Request, query: set[str], form: set[str] = frozenset(), form_data=None) -> None:
    """An unknown parameter is a mistake the caller wants to hear about, not something to ignore."""
    unknown = sorted(set(request.query_params) - query) + sorted(set(form_data or ()) - form)
    if unknown:
        allowed = ", ".join(sorted(query | form))
        raise ApiError(400, f"Unknown parameter {unknown[0]!r}: this endpoint takes {allowed}.")


def _check_pixels(data: bytes, limit: int, label: str) -> None:
    """Refuse a photo over the pixel limit from its header, before anything decodes it."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - not readable as an image: load_image says what is wrong, in one sentence
        return
    if w * h > limit:
        raise ImageError(f"{label} is {w}x{h} pixels, over this server's {limit / 1e6:g} MP limit: resize it first.")


def _parse_box(box: str | None):
    if box is None:
        return None
    parts = box.split(",")
    if len(parts) != 4:
        raise ApiError(400, f"box is four numbers, left,top,right,bottom in the photo's pixels (got {box!r}).")
    return parts


def create_app(cfg: ServeConfig, served: Served | None = None) -> FastAPI:
    """The app over `cfg.workdir`'s published build (`served`: one already loaded, as the tests and bench pass)."""
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["served"] = served or await run_in_threadpool(Served, cfg.workdir, cfg.backbone)
        state["batcher"] = Batcher(cfg.max_batch, cfg.window_ms / 1000, cfg.max_queue)
        # one full batch before the first request: the runtime plans its kernels and sizes its memory for the largest
        # batch now, not under load (ONNX Runtime's arena otherwise grows the first time a larger batch arrives)
        enc = state["served"].bundle().encoder
        await run_in_threadpool(enc.embed_pixels, torch.zeros(cfg.max_batch, 3, enc.input_side, enc.input_side))
        state["started"] = time.time()
        state["cpu"] = anyio.CapacityLimiter(cfg.cpu_workers or os.cpu_count() or 2)
        yield
        state["batcher"].close()

    app = FastAPI(title="Find-My-Vibe", version=__version__, lifespan=lifespan,
                  description="Same-item and mix & match search over a FashionCLIP catalogue build: the API of "
                              "`python -m vibe find`, `search` and the dashboard's Find matches page.")
    guard = Guard(cfg)

    async def bundle():
        return await run_in_threadpool(state["served"].bundle)

    async def work(fn, *args):
        # decoding, framing, proposals and search take a core each: as many at once as there are cores, so that
        # sixteen requests do not fight over two cores (and the batching thread) with thirty-two threads
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=state["cpu"])

    async def embed(encoder, pixels):
        return await asyncio.wrap_future(state["batcher"].submit(encoder, pixels))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return guard.error(e.status, str(e), e.headers)

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, e: Overloaded):
        return guard.error(503, str(e), {"Retry-After": str(e.retry_after)})

    @app.exception_handler(ImageError)
    async def _bad_image(request: Request, e: ImageError):
        return guard.error(422, str(e))

    @app.exception_handler(VibeError)
    async def _vibe_error(request: Request, e: VibeError):
        return guard.error(400, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
        return guard.error(422, f"{where or 'request'}: {first.get('msg', 'invalid')}.")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        if isinstance(e.__cause__, TooLarge):  # FastAPI wraps what failed while it read the body
            return guard.error(413, guard.too_large())
        detail = e.detail if isinstance(e.detail, str) else "request refused"
        return guard.error(e.status_code, detail if detail.endswith(".") else f"{detail}.", getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return guard.error(500, f"Internal error ({type(e).__name__}); the server keeps running and has logged it.")

    app.add_middleware(_Guarded, guard=guard)

    @app.get("/healthz", summary="Liveness: the server answers")
    async def healthz():
        return {"ok": True}

    @app.get("/v1/status", summary="The build in service: backbone, runtime, index kind, item count")
    async def status():
        b = await bundle()
        m, enc, batcher = b.artifacts.manifest, b.encoder, state["batcher"]
        return {"build_id": b.build_id, "created_at": m["created_at"], "items": m["n_items"],
                "catalog": m["catalog"]["root"], "index": "ivf" if b.artifacts.clip.ivf is not None else "exact",
                "backbone": {"name": enc.name, "description": enc.description, "fingerprint": enc.fingerprint,
                             "dim": enc.dim},
                "runtime": {"precision": enc.precision, "why": enc.runtime.why},
                "same_photo_cosine": b.matcher.same_photo_cosine,
                "batching": {"max_batch": cfg.max_batch, "window_ms": cfg.window_ms, "batches": batcher.batches,
                             "views": batcher.views, "waiting": batcher.waiting},
                "in_flight": guard.in_flight, "uptime_s": round(time.time() - state["started"], 1),
                "reload_error": state["served"].last_error, "version": __version__}

    @app.post("/v1/find", summary="Matches for an uploaded photo (field `image`) or a catalogue item (`item_id`)")
    async def find(request: Request,
                   image: UploadFile | None = File(None, description=f"a photo: {PHOTO_FORMATS}"),
                   item_id: int | None = Form(None, description="a catalogue item id instead of a photo"),
                   mode: Literal["same", "combo"] = Query("same"),
                   k: int = Query(10, ge=1, le=cfg.max_k),
                   box: str | None = Query(None, description="left,top,right,bottom in the photo's pixels"),
                   product: int | None = Query(None, ge=1, description="search only proposal N (1: the detector's best; "
                                               "by default the first few are tried, the most catalogue-like kept)"),
                   all: bool = Query(False, description="matches for every product found: a list, best first"),
                   per_slot: int = Query(4, ge=1, le=20)):
        _only(request, FIND_QUERY, FIND_FORM, await request.form())
        item_id = item_id if item_id is not None else _query_int(request, "item_id")
        if (image is None) == (item_id is None):
            raise ApiError(400, "Send either a photo in the multipart field 'image' or a catalogue 'item_id'.")
        if sum(map(bool, (box, product, all))) > 1:
            raise ApiError(400, "Give one of box, product or all.")
        b = await bundle()
        if item_id is not None:
            if box or product or all:
                raise ApiError(400, "box, product and all pick a part of a photo: send a photo, not an item_id.")
            _row(b, item_id)
            res = await work(lambda: b.matcher.find(item_id=item_id, mode=mode, k=k, per_slot=per_slot))
            return JSONResponse(res.to_dict())
        data, label = await image.read(), image.filename or "the upload"
        _check_pixels(data, cfg.max_pixels, label)
        found, exclude, pixels = await work(b.matcher.locate_pixels, data, label, _parse_box(box),
                                            product - 1 if product else None, all)
        if found is None:  # the very bytes of a catalogue photo: its stored embedding, nothing to embed
            res = await work(lambda: b.matcher.search_views(None, mode=mode, k=k, per_slot=per_slot,
                                                                          exclude=exclude))
            return JSONResponse([res.to_dict()] if all else res.to_dict())
        emb = await embed(b.encoder, pixels)
        if all:
            results = await work(lambda: b.matcher.search_every(found, exclude, mode=mode, k=k,
                                                                             per_slot=per_slot, embedded=emb))
            return JSONResponse([r.to_dict() for r in results])
        res = await work(lambda: b.matcher.search_views(found, mode=mode, k=k, per_slot=per_slot,
                                                                      exclude=exclude, embedded=emb))
        return JSONResponse(res.to_dict())

    @app.get("/v1/search", summary="Catalogue items for a query in words (\"white sports shoes men\")")
    async def search(request: Request, q: str = Query(..., min_length=1, max_length=500),
                     k: int = Query(10, ge=1, le=cfg.max_k)):
        _only(request, {"q", "k"})
        b = await bundle()
        res = await work(b.matcher.search_words, q, k)
        return JSONResponse(res.to_dict())

    @app.post("/v1/embed", summary="Photos -> L2-normalised vectors of the build's backbone (as catalogue photos are)")
    async def embed_images(request: Request, images: list[UploadFile] = File(..., description="one or more photos")):
        _only(request, set(), {"images"}, await request.form())
        if len(images) > cfg.max_images:
            raise ApiError(400, f"At most {cfg.max_images} photos per request (got {len(images)}).")
        b = await bundle()
        enc = b.encoder
        named = [(await f.read(), f.filename or f"photo {i + 1}") for i, f in enumerate(images)]

        def views():
            out = []
            for data, label in named:
                _check_pixels(data, cfg.max_pixels, label)
                out.append(enc.catalogue_view(load_image(data, label, enc.decode_side)))
            return enc.pixels(out)

        vectors = await embed(enc, await work(views))
        return JSONResponse({"backbone": enc.name, "fingerprint": enc.fingerprint, "dim": enc.dim,
                             "names": [label for _, label in named], "vectors": vectors.round(6).tolist()})

    @app.get("/v1/items/{item_id}", summary="A catalogue item: name, labels, outfit slot, photo URL")
    async def item(request: Request, item_id: int):
        _only(request, set())
        b = await bundle()
        row = _row(b, item_id)
        one = b.matcher.match(row, 1.0)
        return {"id": item_id, "name": one.name, "labels": one.labels, "slot": b.matcher.labels["slot"][row],
                "image": f"/v1/items/{item_id}/image"}

    @app.get("/v1/items/{item_id}/image", summary="A catalogue item's photo, as the catalogue holds it")
    async def item_image(request: Request, item_id: int):
        _only(request, set())
        b = await bundle()
        path = b.artifacts.catalog_root / b.matcher.match(_row(b, item_id), 1.0).path
        if not path.is_file():
            raise ApiError(404, f"The photo of item {item_id} is missing from the catalogue folder ({path}).")
        return FileResponse(path)

    return app


def _row(bundle, item_id: int) -> int:
    row = bundle.matcher.row_of_id.get(int(item_id))
    if row is None:
        raise ApiError(404, f"Item {item_id} is not in the built catalogue.")
    return row


class _Guarded:
    """Starlette's middleware shape (a class called with the app) around Guard.middleware."""

    def __init__(self, app, guard: Guard):
        self._call = guard.middleware(app)

    async def __call__(self, scope, receive, send):
        await self._call(scope, receive, send)


def _query_int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be a whole number (got {raw!r}).") from None
