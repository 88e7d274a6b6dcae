"""The REST API: the same answers as the Python API, every bad input a 4xx JSON error in one sentence (and the server
still answering), the token, dynamic batching with a bounded queue, and a rebuild picked up under load."""
from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import SAMPLE, fast_build_config
from PIL import Image

from vibe.bench.serving import free_port, png_bomb
from vibe.config import ServeConfig
from vibe.errors import VibeError
from vibe.search.bundle import current_build_id, load_bundle
from vibe.serve.batcher import Batcher, Overloaded

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from vibe.serve.app import create_app  # noqa: E402

PHOTO = (SAMPLE / "images" / "10148.jpg").read_bytes()


def _jpeg(path, size=None) -> bytes:
    im = Image.open(path).convert("RGB")
    if size:
        im = im.resize(size)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(built):
    workdir, _ = built
    with TestClient(create_app(ServeConfig(workdir=workdir))) as c:
        yield c


def test_find_answers_as_the_python_api_does(client, built):
    workdir, _ = built
    bundle = load_bundle(workdir)
    photo = _jpeg(SAMPLE / "images" / "10148.jpg", (300, 400))  # not the catalogue's bytes: embedded for real
    want = bundle.matcher.find(photo, k=5)
    got = client.post("/v1/find", files={"image": ("shot.jpg", photo, "image/jpeg")}, params={"k": 5})
    assert got.status_code == 200, got.text
    body = got.json()
    assert [m["id"] for m in body["matches"]] == [m.id for m in want.matches]
    assert np.allclose([m["score"] for m in body["matches"]], [m.score for m in want.matches], atol=1e-5)
    assert body["query_view"]["note"] == want.query_view["note"] and body["filters"] == want.filters

    item = int(bundle.artifacts.items["id"].iloc[3])
    by_id = client.post("/v1/find", data={"item_id": str(item)}, params={"mode": "combo", "k": 4}).json()
    assert [m["id"] for m in by_id["matches"]] == [m.id for m in bundle.matcher.find(item_id=item, mode="combo", k=4).matches]
    every = client.post("/v1/find", files={"image": ("shot.jpg", photo)}, params={"all": "true", "k": 2})
    assert every.status_code == 200 and isinstance(every.json(), list) and len(every.json()) >= 1


def test_embed_search_items_status(client, built):
    workdir, _ = built
    bundle = load_bundle(workdir)
    got = client.post("/v1/embed", files=[("images", ("a.jpg", PHOTO)), ("images", ("b.jpg", _jpeg(SAMPLE / "images" / "10148.jpg", (200, 260))))])
    assert got.status_code == 200, got.text
    vectors = np.asarray(got.json()["vectors"], dtype=np.float32)
    assert vectors.shape == (2, bundle.encoder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert float(vectors[0] @ bundle.encoder.encode_image(PHOTO)) > 0.9999  # the catalogue's own embedding of it

    words = client.get("/v1/search", params={"q": "red shirt men", "k": 3}).json()
    assert len(words["matches"]) == 3 and words["query"] == "red shirt men"
    item = int(bundle.artifacts.items["id"].iloc[0])
    info = client.get(f"/v1/items/{item}").json()
    assert info["id"] == item and set(info["labels"]) == {"item_type", "gender", "colour", "season", "style"}
    image = client.get(info["image"])
    assert image.status_code == 200 and image.content == (bundle.artifacts.catalog_root / bundle.matcher.match(0, 1).path).read_bytes()
    status = client.get("/v1/status").json()
    assert status["build_id"] == bundle.build_id and status["items"] == len(bundle.artifacts.items)
    assert status["backbone"]["fingerprint"] == bundle.encoder.fingerprint and status["index"] in ("exact", "ivf")


@pytest.mark.parametrize("request_kwargs, status, words", [
    (dict(files={"image": ("x.jpg", b"hello there")}), 422, "not an image"),
    (dict(files={"image": ("x.jpg", PHOTO[: len(PHOTO) // 3])}), 422, "truncated"),
    (dict(files={"image": ("bomb.png", png_bomb())}), 422, "decompression bomb"),
    (dict(files={"image": ("big.png", png_bomb(7000))}), 422, "40 MP limit"),  # refused from its header
    (dict(files={"image": ("x.jpg", b"")}), 422, "empty"),
    (dict(files={"image": ("x.jpg", PHOTO)}, params={"mode": "nearest"}), 422, "mode"),
    (dict(files={"image": ("x.jpg", PHOTO), "colour": ("c", b"red")}), 400, "Unknown parameter 'colour'"),
    (dict(files={"image": ("x.jpg", PHOTO)}, params={"colour": "red"}), 400, "Unknown parameter 'colour'"),
    (dict(files={"image": ("x.jpg", PHOTO)}, params={"box": "1,2,3"}), 400, "four numbers"),
    (dict(files={"image": ("x.jpg", PHOTO)}, params={"box": "9000,9000,9500,9500"}), 400, "outside the photo"),
    (dict(files={"image": ("x.jpg", PHOTO)}, params={"box": "10,10,10,50"}), 400, "empty"),
    (dict(files={"image": ("x.jpg", PHOTO)}, params={"k": 0}), 422, "k"),
    (dict(files={"image": ("x.jpg", PHOTO)}, params={"product": 99}), 400, "no product 99"),
    (dict(data={"item_id": "1"}), 404, "not in the built catalogue"),
    (dict(data={"item_id": "twelve"}), 422, "item_id"),
    (dict(), 400, "either a photo"),
    (dict(content=b"\xff" * (51 * 2**20), headers={"content-type": "application/octet-stream"}), 413, "limit"),
    (dict(content=(b"\xff" * 2**20 for _ in range(25)), headers={"content-type": "multipart/form-data; boundary=x"}),
     413, "limit"),  # chunked, no Content-Length: counted as it arrives
])
def test_every_bad_input_is_one_4xx_sentence_and_the_server_keeps_answering(client, request_kwargs, status, words):
    got = client.post("/v1/find", **request_kwargs)
    assert got.status_code == status, got.text
    body = got.json()
    assert body["status"] == status and words.lower() in body["error"].lower()
    assert body["error"].count(". ") == 0 and "Traceback" not in body["error"]  # one sentence
    assert client.get("/healthz").json() == {"ok": True}


def test_other_routes_refuse_bad_requests_in_json(client):
    assert client.get("/v1/items/1").status_code == 404
    assert client.get("/v1/items/abc").status_code == 422
    assert client.get("/v1/search").status_code == 422
    assert client.get("/v1/search", params={"q": "red", "mode": "x"}).json()["error"].startswith("Unknown parameter")
    assert client.post("/v1/embed", files=[("images", ("a.jpg", b"nope"))]).status_code == 422
    assert client.get("/v1/nothing").json()["status"] == 404


def test_a_token_is_required_off_loopback_and_then_on_every_request(built):
    workdir, _ = built
    with pytest.raises(VibeError, match="--token"):
        ServeConfig(workdir=workdir, host="0.0.0.0")
    with TestClient(create_app(ServeConfig(workdir=workdir, host="0.0.0.0", token="s3cret-token"))) as c:
        assert c.get("/healthz").status_code == 401
        assert c.get("/v1/status", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert c.get("/v1/status", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/healthz", headers={"X-API-Token": "s3cret-token"}).status_code == 200


class _SlowEncoder:
    dim = 3

    def __init__(self, gate: threading.Event | None = None, delay: float = 0.05):
        self.calls, self.gate, self.delay = [], gate, delay

    def embed_many(self, pixels, batch_size=32):
        if self.gate:
            self.gate.wait(5)
        time.sleep(self.delay)
        self.calls.append(len(pixels))
        return np.asarray([[v, v, v] for v in pixels[:, 0].tolist()], dtype=np.float32)


def test_concurrent_requests_share_forward_passes_and_each_gets_its_own_rows():
    enc, batcher = _SlowEncoder(), Batcher(max_batch=16, window=0.02, max_queue=64)
    with ThreadPoolExecutor(12) as pool:
        futures = list(pool.map(lambda i: batcher.submit(enc, torch.tensor([[i], [i + 0.5]])), range(12)))
        got = [f.result(5) for f in futures]
    for i, rows in enumerate(got):
        assert rows[:, 0].tolist() == [i, i + 0.5]
    assert sum(enc.calls) == 24 and len(enc.calls) <= 4 and max(enc.calls) <= 16  # 12 requests, a few passes
    batcher.close()


def test_a_full_queue_refuses_at_once_instead_of_growing():
    gate = threading.Event()
    enc, batcher = _SlowEncoder(gate, 0), Batcher(max_batch=1, window=0, max_queue=2)
    first = batcher.submit(enc, torch.tensor([[1.0]]))
    time.sleep(0.1)  # the worker holds the first job (its forward pass waits at the gate)
    queued = [batcher.submit(enc, torch.tensor([[2.0]])), batcher.submit(enc, torch.tensor([[3.0]]))]
    with pytest.raises(Overloaded, match="busy"):
        batcher.submit(enc, torch.tensor([[4.0]]))
    gate.set()
    assert [f.result(5)[0, 0] for f in [first, *queued]] == [1, 2, 3]
    batcher.close()


def test_an_overloaded_server_answers_503_with_retry_after(client, monkeypatch):
    def full(self, encoder, pixels):
        raise Overloaded("The server is busy: 64 requests are already waiting for the model; retry in a second.")

    monkeypatch.setattr(Batcher, "submit", full)
    got = client.post("/v1/find", files={"image": ("x.jpg", _jpeg(SAMPLE / "images" / "10148.jpg", (220, 300)))})
    assert got.status_code == 503 and got.headers["retry-after"] == "1" and "busy" in got.json()["error"]


def test_a_rebuild_published_under_load_is_served_without_a_failed_request(tmp_path, small_catalog):
    import httpx
    import uvicorn

    from vibe.build.pipeline import build

    workdir = tmp_path / "work"
    cfg = fast_build_config(small_catalog, workdir)
    build(cfg)
    first = current_build_id(workdir)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(workdir=workdir, port=port)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    photos = [_jpeg(p, (240, 320)) for p in sorted((small_catalog / "images").glob("*.jpg"))[:8]]
    stop, codes, builds = threading.Event(), [], set()

    def client_loop(n):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v1/find", files={"image": ("p.jpg", photos[n % len(photos)])}, params={"k": 3})
                codes.append(r.status_code)
                builds.add(c.get("/v1/status").json()["build_id"])
                n += 1

    try:
        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(client_loop, i) for i in range(4)]
            time.sleep(1.0)
            from dataclasses import replace
            build(replace(cfg, seed=1))  # published while four clients query
            second = current_build_id(workdir)
            time.sleep(1.5)
            stop.set()
            [r.result() for r in running]
    finally:
        server.should_exit = True
        thread.join(10)
    assert first != second and second in builds and first in builds
    assert len(codes) > 10 and set(codes) == {200}, codes
