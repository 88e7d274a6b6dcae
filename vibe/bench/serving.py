"""The bench's serving figures: `vibe serve` started on loopback in its own process and driven by 1, 4 and 16 concurrent
clients sending real photos (throughput against batch embedding, latency, server memory, bad inputs mixed in, a rebuild
published mid-run), and `vibe match` on a folder against the build's own embedding speed."""
from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
LEVELS = (1, 4, 16)


@dataclass(frozen=True)
class Call:
    kind: str  # "good", or the kind of bad input
    kwargs: dict  # httpx request arguments for POST /v1/find


def _photo_upload(path: Path, side: int = 1024) -> bytes:
    """A catalogue-like product photo as a site sends it: the catalogue photo at `side` px on its long side, JPEG q90."""
    from PIL import Image

    from .stages import as_upload

    return as_upload(Image.open(path).convert("RGB"), side)


def png_bomb(side: int = 60000) -> bytes:
    """A valid PNG header declaring side x side pixels (by default 3.6 GP), with a few bytes of data."""
    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def _bad_calls(photo: bytes) -> list[Call]:
    """One of each bad input a client can send; each must be a 4xx and cost the server nothing lasting."""
    return [Call("not_an_image", {"files": {"image": ("notes.jpg", b"these are not pixels" * 50)}}),
            Call("truncated", {"files": {"image": ("cut.jpg", photo[: len(photo) // 3])}}),
            Call("decompression_bomb", {"files": {"image": ("bomb.png", png_bomb())}}),
            Call("body_50mb", {"files": {"image": ("huge.jpg", photo + b"\0" * (50 * 2**20))}}),
            Call("unknown_field", {"files": {"image": ("p.jpg", photo), "colour": ("c", b"red")}}),
            Call("unknown_mode", {"files": {"image": ("p.jpg", photo)}, "params": {"mode": "nearest"}})]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


class Server:
    """`python -m vibe serve` in its own process on a free loopback port, stopped on exit."""

    def __init__(self, workdir: Path, log: Path):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "vibe", "serve", "--workdir", str(workdir), "--port",
                                      str(self.port), "--log-level", "warning"], cwd=REPO, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=os.environ.copy())
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vibe serve exited: {log.read_text()[-1500:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError("vibe serve did not answer within 300 s")

    def rss_mb(self) -> float:
        return _rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def _expected(kind: str, code) -> bool:
    """A good photo must be answered (200); a bad input refused as the client's mistake (4xx), never a 5xx or a dropped
    connection."""
    return code == 200 if kind == "good" else isinstance(code, int) and 400 <= code < 500


def drive(url: str, calls: list[Call], clients: int, until: threading.Event | None = None) -> dict:
    """Send `calls` from `clients` concurrent clients (each with its own connection), or cycle through them until `until`
    is set; per call its latency and status (an exception's name: the connection failed). Returns queries/s, p50/p99
    of the good calls and the unexpected outcomes."""
    import httpx

    counter, out = itertools.count(), {}

    def client():
        with httpx.Client(base_url=url, timeout=300) as c:
            while (i := next(counter)) < len(calls) or (until is not None and not until.is_set()):
                t = time.perf_counter()
                try:
                    code = c.post("/v1/find", **calls[i % len(calls)].kwargs).status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                out[i] = (time.perf_counter() - t, code)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done = [(out[i], calls[i % len(calls)]) for i in sorted(out)]
    good = [lat for (lat, code), call in done if call.kind == "good" and code == 200]
    unexpected = [(call.kind, code) for (_, code), call in done if not _expected(call.kind, code)]
    return {"clients": clients, "requests": len(done), "seconds": wall, "queries_per_s": len(done) / wall,
            "p50_ms": float(np.percentile(good, 50)) * 1000 if good else None,
            "p99_ms": float(np.percentile(good, 99)) * 1000 if good else None,
            "unexpected": len(unexpected), "unexpected_examples": unexpected[:5]}


def served_build(ctx) -> tuple[Path, Path]:
    """A build of `serve_items` catalogue photos with the bench's backbone (made once): (workdir, its catalogue)."""
    from ..build.pipeline import build
    from ..config import BuildConfig, CatalogConfig, QualityConfig
    from .stages import _catalog_dir

    if "served" not in ctx.made:
        cfg, items = ctx.cfg, ctx.made["items"]
        cat = _catalog_dir(ctx.tmp / "serve-catalog", ctx.made["root"], items.iloc[: cfg.serve_items])
        work = ctx.tmp / "serve-work"
        build(BuildConfig(catalog=CatalogConfig(root=cat), workdir=work, quality=QualityConfig(per_change=8)),
              encoder=ctx.made["encoder"])
        ctx.made["served"] = (work, cat)
    return ctx.made["served"]


def serve(ctx) -> dict:
    """Queries/s at 16 clients over `encode_images` on the same photos; p99 at 16 over p50 at 1; 2,000 calls with 10 % bad
    inputs (every bad one a 4xx, every good one a 200) and the server's RSS across them; a rebuild published during a
    16-client run."""
    cfg, encoder, items, root = ctx.cfg, ctx.made["encoder"], ctx.made["items"], ctx.made["root"]
    work, cat = served_build(ctx)
    others = items["path"].iloc[cfg.serve_items: cfg.serve_items + cfg.serve_photos]  # not in the build: embedded
    photos = [_photo_upload(root / p) for p in others]
    encoder.encode_images(photos[:cfg.batch_size], cfg.batch_size)  # warm-up
    seconds = []
    for _ in range(3):  # one pass over the photos takes a second or two: the median of three
        t = time.perf_counter()
        encoder.encode_images(photos, cfg.batch_size)
        seconds.append(time.perf_counter() - t)
    encode_ips = len(photos) / float(np.median(seconds))
    good = [Call("good", {"files": {"image": (f"p{i}.jpg", p)}, "params": {"k": 10}}) for i, p in enumerate(photos)]
    server = Server(work, ctx.tmp / "serve.log")
    try:
        drive(server.url, good[:8], 4)  # warm-up: the first requests load lazily (detector, segmenter)
        levels = {n: drive(server.url, [good[i % len(good)] for i in range(cfg.serve_requests)], n) for n in LEVELS}
        bad = _bad_calls(photos[0])
        mixed = [bad[(i // 10) % len(bad)] if i % 10 == 9 else good[i % len(good)] for i in range(cfg.serve_mixed)]
        rss_before = server.rss_mb()
        noisy = drive(server.url, mixed, 16)
        rss_after = server.rss_mb()
        rebuild = _rebuild_under_load(server, good, cat, work, cfg)
    finally:
        server.stop()
    ctx.details["serve"] = {"encode_images_per_s": encode_ips, "levels": levels, "mixed": noisy,
                            "bad_kinds": [b.kind for b in bad], "rss_before_mb": rss_before, "rss_after_mb": rss_after,
                            "rebuild": rebuild, "photos": f"{len(photos)} catalogue photos not in the build, 1024 px JPEG q90"}
    return {"serve_qps_16_over_encode": levels[16]["queries_per_s"] / encode_ips,
            "serve_p99_16_over_p50_1": levels[16]["p99_ms"] / levels[1]["p50_ms"],
            "serve_unexpected_responses": noisy["unexpected"], "serve_rss_growth": rss_after / rss_before - 1,
            "serve_rebuild_failed_requests": rebuild["failed"]}


def _rebuild_under_load(server: Server, good: list[Call], cat: Path, work: Path, cfg) -> dict:
    """A real rebuild (`vibe build` in its own process, same catalogue and backbone) published while 16 clients query."""
    import httpx

    before = httpx.get(server.url + "/v1/status", timeout=30).json()["build_id"]
    result, stop = {}, threading.Event()
    runner = threading.Thread(target=lambda: result.update(drive(server.url, good, 16, until=stop)))
    runner.start()
    time.sleep(1)
    done = subprocess.run([sys.executable, "-m", "vibe", "build", "--data", str(cat), "--workdir", str(work),
                           "--backbone", cfg.backbone, "--check", "8", "--seed", "1", "--quiet"], cwd=REPO,
                          capture_output=True, text=True)
    time.sleep(2)  # requests go on after the swap: the first ones load the new build
    stop.set()
    runner.join()
    after = httpx.get(server.url + "/v1/status", timeout=30).json()["build_id"]
    if done.returncode:
        raise RuntimeError(f"the rebuild failed: {done.stderr[-1500:]}")
    return {"failed": result["unexpected"], "requests": result["requests"], "build_before": before,
            "build_after": after, "swapped": before != after, "queries_per_s": result["queries_per_s"]}


def match(ctx) -> dict:
    """`vibe match` on a folder of `match_photos` photos not in the build, against the build's embedding path on the
    same files (a fresh cache: every photo embedded)."""
    from ..search.batch import match_to_csv, photos_in
    from ..search.bundle import load_bundle
    from ..store.cache import EmbeddingStore, embed_files
    from .stages import _catalog_dir

    cfg, encoder, items = ctx.cfg, ctx.made["encoder"], ctx.made["items"]
    work, _ = served_build(ctx)
    chosen = items.iloc[cfg.serve_items: cfg.serve_items + cfg.match_photos]
    folder = _catalog_dir(ctx.tmp / "match-folder", ctx.made["root"], chosen) / "images"
    paths = sorted(folder.glob("*.jpg"))
    t = time.perf_counter()
    embed_files(encoder, paths, EmbeddingStore(ctx.tmp / "match-cache", encoder.fingerprint, encoder.dim), cfg.batch_size)
    build_ips = len(paths) / (time.perf_counter() - t)
    matcher = load_bundle(work, encoders=lambda name: encoder).matcher
    summary, _ = match_to_csv(matcher, photos_in(folder), ctx.tmp / "matches.csv", k=5, chunk=cfg.batch_size)
    ctx.details["match"] = summary.to_dict() | {"build_embedding_images_per_s": build_ips}
    return {"match_over_build_embedding": summary.images_per_s / build_ips}
