"""Time to first render of the Embedding space page's N-point view with a cached layout, end to end: a real published
build of N items, a real `streamlit run Home.py`, Debian's headless Chromium driven by Playwright.

    .venv/bin/python scripts/bench_view.py [--points 100000] [--json] [--cache DIR]

The N items repeat the 1,000 real items of data/sample (unique ids, the same photos, their embeddings with small noise);
both 2-D layouts are written into the build's views cache where `vibe.explore.layout.layout` looks, so UMAP never runs.
The bundle is loaded once by opening Home first (every page shares it); then the timings:
  first render  navigation to /Embedding_space until the explorer iframe has `body[data-rendered]`, set once the
                frame holding the points has been composited (fresh server process: the layout comes from the disk
                cache, the explorer's files are prepared once per build)
  reload        the same after a page reload (the server's caches warm)
  recolour      choosing another "Colour by" until the plot shows the new view
  payload       bytes the browser received for the view during the first render: websocket messages plus the
                explorer's data files (not plotly.min.js, index.html or photos)
  hover file    the tooltips' names and labels, fetched on the first pointer move over the plot (not for the render)
The machine's load average is printed with the figures: on a busy machine every figure is slower."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000


def base_build(cache: Path, backbone: str) -> Path:
    """The 1,000-item sample built for real (about a minute), kept in `cache` for later runs while the backbone's
    fingerprint stays the same (the dashboard refuses a build made with another)."""
    from vibe.build.pipeline import build
    from vibe.config import SAMPLE_DATA, BuildConfig, CatalogConfig, HeadsConfig, ProjectionConfig
    from vibe.models.encoder import Encoder
    from vibe.store.artifacts import current_build, read_manifest

    workdir, encoder = cache / f"sample-{backbone}", Encoder(backbone)
    folder = current_build(workdir)
    if folder is None or read_manifest(folder, workdir)["backbone"]["fingerprint"] != encoder.fingerprint:
        build(BuildConfig(catalog=CatalogConfig(root=SAMPLE_DATA), backbone=backbone, workdir=workdir,
                          heads=HeadsConfig(epochs=2, patience=1), projection=ProjectionConfig(epochs=1)), encoder=encoder)
    return current_build(workdir)


def _plane(vectors: np.ndarray) -> np.ndarray:
    """A 2-D picture of the vectors (their first two principal components), scaled to about [-10, 10]."""
    centred = vectors - vectors.mean(0)
    xy = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    return (10 * xy / np.abs(xy).max()).astype(np.float32)


def grown_workdir(base: Path, n: int, workdir: Path, seed: int = 0) -> Path:
    """A published build of n items repeating the base build's items, with both layouts already in its views cache."""
    from vibe.explore.layout import FIT_POINTS, MAX_POINTS, SPACES, cache_path, sample_rows
    from vibe.store.artifacts import load_artifacts, publish, write_manifest
    from vibe.store.index import VectorIndex
    from vibe.util.files import atomic_path
    from vibe.util.vectors import l2_normalize

    art = load_artifacts(base.parent.parent, base.name)
    rng = np.random.default_rng(seed)
    src = np.arange(n) % len(art.items)
    copy = np.arange(n) // len(art.items)
    items = art.items.iloc[src].reset_index(drop=True)
    items["id"] = items["id"].to_numpy() + copy * 10 ** (len(str(items["id"].max())) + 1)  # unique, the first copy as is
    clip = art.clip.vectors()
    grown = l2_normalize(clip[src] + rng.normal(scale=0.02, size=(n, clip.shape[1])).astype(np.float32))
    staging = workdir / f".staging-bench-{os.getpid()}"
    staging.mkdir(parents=True)
    items.to_parquet(staging / "items.parquet")
    VectorIndex.build(grown).save(staging / "clip.faiss")
    VectorIndex.build(art.projection.project(grown)).save(staging / "style.faiss")
    for name in ("heads.safetensors", "projection.safetensors", "metrics.json"):
        shutil.copyfile(base / name, staging / name)
    write_manifest(staging, dict(art.manifest, n_items=n))
    folder = publish(workdir, staging)

    rows = sample_rows(n, MAX_POINTS)
    for space in SPACES:
        plane = _plane((art.clip if space == "clip" else art.style).vectors())  # clusters of similar items
        xy = plane[src[rows]] + rng.normal(scale=0.15, size=(len(rows), 2)).astype(np.float32)
        with atomic_path(cache_path(folder, space, len(rows))) as tmp, open(tmp, "wb") as f:
            np.savez(f, xy=xy, rows=rows, fitted=min(len(rows), FIT_POINTS))
    return folder


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(workdir / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=REPO, env=dict(os.environ, VIBE_WORKDIR=str(workdir)), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("streamlit did not start: see " + str(workdir / "streamlit.log"))


def _settle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)


def _explorer(page):
    """The explorer's frame once its points are drawn (stops the benchmark if the page shows an error instead)."""
    errors = "[data-testid='stException'], [data-testid='stAlertContentError']"
    page.wait_for_selector(f"iframe[title*='explorer'], {errors}", state="attached", timeout=TIMEOUT_MS)
    if page.locator(errors).count():
        raise SystemExit("The Embedding space page shows an error: " + page.locator(errors).first.inner_text())
    iframe = page.locator("iframe[title*='explorer']").first
    iframe.wait_for(timeout=TIMEOUT_MS)
    frame = iframe.element_handle().content_frame()
    # checked on every animation frame: the figure ends with the frame that shows the points
    frame.wait_for_function("() => document.body.dataset.rendered", timeout=TIMEOUT_MS, polling="raf")
    return frame


def measure(url: str, n: int) -> dict:
    """The timings and the payload in one browser session."""
    from playwright.sync_api import sync_playwright

    received, responses = [0], []

    def on_socket(ws):
        ws.on("framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload)))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.on("websocket", on_socket)
        page.on("response", lambda r: responses.append(r) if "/component/" in r.url else None)
        page.goto(url, wait_until="domcontentloaded")  # Home: the server loads the bundle every page shares
        page.get_by_role("heading", name="Find-My-Vibe").first.wait_for(timeout=TIMEOUT_MS)
        _settle(page)

        received[0], responses[:] = 0, []
        t0 = time.perf_counter()
        page.goto(f"{url}/Embedding_space", wait_until="commit")
        frame = _explorer(page)
        first = time.perf_counter() - t0
        shown = int(frame.evaluate("() => document.body.dataset.rendered"))
        data = [r for r in responses if not r.url.split("?")[0].endswith(("/plotly.min.js", "/index.html", "/"))
                and "/images/" not in r.url]
        payload = received[0] + sum(r.request.sizes()["responseBodySize"] for r in data)
        _settle(page)

        t0 = time.perf_counter()
        page.reload(wait_until="commit")
        frame = _explorer(page)
        reload = time.perf_counter() - t0
        _settle(page)

        before = frame.evaluate("() => document.body.dataset.view")  # set once a view's points are on screen
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Colour by").click()
        t0 = time.perf_counter()
        page.get_by_role("option", name="colour", exact=True).click()
        frame.wait_for_function("old => document.body.dataset.view !== old", arg=before, timeout=TIMEOUT_MS,
                                polling="raf")
        recolour = time.perf_counter() - t0
        browser.close()
    return {"view_points": shown, "view_first_render_s": round(first, 3), "view_recolour_s": round(recolour, 3),
            "payload_mb": round(payload / 1e6, 3), "view_reload_s": round(reload, 3), "requested_points": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--backbone", default="vibe-mini", help="the backbone of the base build (offline ones only)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vibe-bench-view",
                    help="where the 1,000-item base build is kept between runs")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Debian chromium is not installed ({CHROMIUM}); scripts/test.sh installs it")

    base = base_build(args.cache, args.backbone)
    tmp = Path(tempfile.mkdtemp(prefix="vibe-bench-view-"))
    proc = None
    try:
        t0 = time.perf_counter()
        grown_workdir(base, args.points, tmp)
        setup_s = time.perf_counter() - t0
        proc, url = start_server(tmp)
        load = os.getloadavg()[0]
        result = measure(url, args.points) | {"load_average": round(load, 2), "cpus": os.cpu_count()}
        # the names and labels for the tooltips: fetched on the first pointer move over the plot, not for the render
        hover = sum(f.stat().st_size for f in tmp.glob("builds/*/views/explorer/hover-*.json"))
        result["hover_file_mb"] = round(hover / 1e6, 3)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return
    print(f"Embedding space view, {result['view_points']:,} points, cached layout (build made in {setup_s:.1f} s; "
          f"load average {result['load_average']} on {result['cpus']} CPUs)")
    for label, key, unit in [("first render", "view_first_render_s", "s"), ("reload", "view_reload_s", "s"),
                             ("recolour", "view_recolour_s", "s"), ("payload (first render)", "payload_mb", "MB"),
                             ("hover file (on demand)", "hover_file_mb", "MB")]:
        print(f"  {label:<24}{result[key]:>10.3f} {unit}")


if __name__ == "__main__":
    main()
