"""The dashboard once in a real headless Chromium (Debian's, driven by Playwright): every page, an upload, screenshots."""
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE

from vibe.bench.serving import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = REPO / "tests" / "_artifacts" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
PAGES = [("", "Find-My-Vibe"), ("Find_matches", "Find matches"), ("Head_accuracy", "Head accuracy"),
         ("Embedding_space", "Embedding space"), ("Catalogue_QA", "Catalogue QA"), ("Rebuild_index", "Rebuild index"),
         ("Batch_match", "Batch match")]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason="Debian chromium is not installed (scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def sample_workdir(tmp_path_factory):
    """The shipped sample catalogue built with vibe-mini, as a newcomer without the model hub sees it (pinned: `auto`
    would download FashionCLIP where the hub is reachable, and the test would measure something else)."""
    from vibe.build.pipeline import build
    from vibe.catalog.reader import link_images
    from vibe.config import BuildConfig, CatalogConfig

    catalog = tmp_path_factory.mktemp("sample-catalog")  # a copy: the QA page saves label fixes beside its styles.csv
    (catalog / "images").mkdir()
    shutil.copy(SAMPLE / "styles.csv", catalog / "styles.csv")
    link_images((p, catalog / "images" / p.name) for p in (SAMPLE / "images").iterdir())
    workdir = tmp_path_factory.mktemp("sample-build")
    build(BuildConfig(catalog=CatalogConfig(root=catalog), backbone="vibe-mini", workdir=workdir))
    return workdir


@pytest.fixture(scope="module")
def server(sample_workdir):
    port = free_port()
    env = dict(os.environ, VIBE_WORKDIR=str(sample_workdir))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start: " + proc.stdout.read().decode()[-2000:])
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def _settle(page):
    """Wait until the script run is over (the running indicator is gone)."""
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    page.wait_for_timeout(300)


def _no_error_boxes(page):
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').first.inner_text()
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0, page.locator('[data-testid="stAlertContentError"]').first.inner_text()


def _hover_a_point(page):
    """Hover the first point of the explorer and see its product photo in the tooltip."""
    iframe = page.locator("iframe[title*='explorer']").first
    iframe.wait_for(timeout=120_000)
    frame = iframe.element_handle().content_frame()
    frame.locator("body[data-rendered]").wait_for(timeout=120_000)
    frame.wait_for_function("() => { const p = document.getElementById('plot'); return p && p._fullLayout && p.data; }",
                            timeout=60_000)
    # where Plotly drew the first point of the first trace, in the frame's pixels
    x, y = frame.evaluate("""() => {
        const p = document.getElementById('plot'), fl = p._fullLayout, t = p.data[0];
        return [fl.margin.l + fl.xaxis.l2p(t.x[0]), fl.margin.t + fl.yaxis.l2p(t.y[0])];
    }""")
    box = iframe.bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    tip = frame.locator("#tip img")
    tip.wait_for(state="visible", timeout=30_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=tip.element_handle(), timeout=30_000)
    assert frame.locator("#tip .name").inner_text().strip()


def _upload(page, photo) -> None:
    """Upload a PIL photo on Find matches and wait for its results."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jpg", delete=False) as f:
        photo.save(f, "JPEG", quality=92)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(f.name)
    _settle(page)
    _no_error_boxes(page)


def _picker(page, before=None):
    """The product picker's frame once it shows a photo other than `before` (the data-photo of an earlier upload's
    picker, which stays on the page until the new upload is rendered) with its boxes."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        iframe = page.locator("iframe[title*='product_picker']").first
        if iframe.count():
            frame = iframe.element_handle().content_frame()
            shown = frame.locator("body").get_attribute("data-photo") if frame else None
            if shown and shown != before and frame.locator("body[data-boxes]").count():
                page.get_by_text("searched as").first.wait_for(timeout=120_000)
                _settle(page)
                return frame
        page.wait_for_timeout(500)
    raise AssertionError(f"the product picker never showed the new upload (still {before})")


def _click_box(frame, index: int) -> None:
    """Click proposal `index` where a user could: a point of its box that no smaller box on top of it covers."""
    at = frame.evaluate("""i => {
        const el = document.querySelector(`.box[data-index="${i}"]`), r = el.getBoundingClientRect();
        for (const fy of [0.5, 0.25, 0.75, 0.1, 0.9]) for (const fx of [0.5, 0.25, 0.75, 0.1, 0.9]) {
            const x = r.left + fx * r.width, y = r.top + fy * r.height;
            if (document.elementFromPoint(x, y)?.closest(".box") === el) return {x: fx * r.width, y: fy * r.height};
        }
        return null;
    }""", index)
    assert at is not None, f"box {index + 1} is covered everywhere by other boxes"
    frame.locator(f'.box[data-index="{index}"]').click(position=at)


def _numbers_shown(frame):
    """Every box's number lies inside the picker, where it can be seen (a box at the photo's top edge too)."""
    cut = frame.evaluate("""() => { const s = document.getElementById('stage').getBoundingClientRect();
        return [...document.querySelectorAll('.box span')].filter(n => { const r = n.getBoundingClientRect();
            return r.top < s.top - 1 || r.left < s.left - 1 || r.right > s.right + 1; }).map(n => n.textContent) }""")
    assert not cut, f"the numbers of boxes {cut} are cut off at the photo's edge"


def _pick_products(page):
    """Photos no generator of the project's training made (a page screenshot with other products beside it, a product
    on a real photo): their products are boxed; a click on another box searches it; a drawn box searches that."""
    from PIL import Image

    from vibe.eval.heldout import heldout_photo

    photos = [Image.open(p).convert("RGB") for p in sorted((SAMPLE / "images").iterdir())[30:36]]
    shot = heldout_photo(photos[0], "page_screenshot", 0, 7, photos[1:], "score")
    _upload(page, shot.image)
    frame = _picker(page)
    assert int(frame.locator("body").get_attribute("data-boxes")) >= 3
    _numbers_shown(frame)
    page.screenshot(path=str(SHOTS / "picker-page-screenshot.png"), full_page=True)
    # no box hides a smaller one: at the centre of each box, the box on top is no larger than it (the page's own
    # product stays clickable inside framing's box around the whole page)
    hidden = frame.evaluate("""() => [...document.querySelectorAll('.box')].filter(el => {
        const r = el.getBoundingClientRect(), top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2)
            .closest('.box');
        return top.offsetWidth * top.offsetHeight > el.offsetWidth * el.offsetHeight;
    }).map(el => Number(el.dataset.index) + 1)""")
    assert not hidden, f"boxes {hidden} are under larger ones at their centre"
    # another product of the page: the smallest box, one of the thumbnails below it (1: the page's own product)
    other = frame.evaluate("""() => [...document.querySelectorAll('.box')].filter(el => el.dataset.index !== "0")
        .sort((a, b) => a.offsetWidth * a.offsetHeight - b.offsetWidth * b.offsetHeight)[0].dataset.index""")
    _click_box(frame, int(other))
    page.get_by_text(f"searched as product {int(other) + 1} of").first.wait_for(timeout=120_000)
    _settle(page)
    _no_error_boxes(page)
    page.screenshot(path=str(SHOTS / "picker-page-screenshot-thumbnail.png"), full_page=True)

    before = frame.locator("body").get_attribute("data-photo")
    shot = heldout_photo(photos[2], "real_backdrop", 0, 3, (), "score")
    _upload(page, shot.image)
    frame = _picker(page, before)
    _numbers_shown(frame)
    page.screenshot(path=str(SHOTS / "picker-real-backdrop.png"), full_page=True)
    stage = frame.locator("#stage").bounding_box()
    x0, y0, x1, y1 = shot.boxes[shot.target]
    sx = stage["width"] / shot.image.width
    page.mouse.move(stage["x"] + x0 * sx, stage["y"] + y0 * sx)
    page.mouse.down()
    page.mouse.move(stage["x"] + x1 * sx, stage["y"] + y1 * sx, steps=5)
    page.mouse.up()
    page.get_by_text("searched as the box you drew").first.wait_for(timeout=120_000)
    _settle(page)
    _no_error_boxes(page)
    page.screenshot(path=str(SHOTS / "picker-real-backdrop-drawn-box.png"), full_page=True)


def _batch_match(page):
    """Photos no training code made (data/examples: a page screenshot, a real backdrop, a phone shot, a white balance)
    and two catalogue photos, matched at once: every photo listed beside its matches, nothing in red."""
    photos = sorted((REPO / "data" / "examples").glob("*.jpg")) + sorted((SAMPLE / "images").iterdir())[20:22]
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([str(p) for p in photos])
    page.get_by_role("button", name=f"Match {len(photos)} photos").click()
    page.get_by_text("Download every match (CSV)").wait_for(timeout=120_000)
    _settle(page)
    _no_error_boxes(page)
    values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    assert values[0] == str(len(photos)) and values[3] == "0"  # all read, none unreadable
    assert page.locator('[data-testid="stDataFrame"]').count() == 1


def _fix_a_label(page):
    """The first flagged item's suggestion accepted, as a catalogue team member would: the card leaves the list and
    the decision is counted."""
    decided = page.locator('[data-testid="stMetricValue"]').nth(2).inner_text()
    page.get_by_placeholder("e.g. Asha (catalogue team)").fill("browser test")
    page.keyboard.press("Tab")
    _settle(page)
    accept = page.get_by_role("button", name="Accept:").first
    card = accept.locator("xpath=ancestor::div[contains(., 'suspicion')][1]").inner_text()  # the card around it
    item = re.search(r"id (\d+) ·", card).group(1)
    assert page.get_by_text(f"id {item} ·").count() == 1
    accept.click()
    page.get_by_text("the next build applies it").first.wait_for(timeout=60_000)
    _settle(page)
    _no_error_boxes(page)
    assert int(page.locator('[data-testid="stMetricValue"]').nth(2).inner_text()) == int(decided) + 1
    assert page.get_by_text(f"id {item} ·").count() == 0  # decided: off the list
    page.screenshot(path=str(SHOTS / "catalogue-qa-fix-accepted.png"), full_page=True)


def test_every_page_in_chromium(server):
    from playwright.sync_api import sync_playwright

    shutil.rmtree(SHOTS, ignore_errors=True)  # screenshots of an earlier run must not count
    SHOTS.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})  # Streamlit scrolls inside the page: a tall viewport shows it all
        for path, title in PAGES:
            page.goto(f"{server}/{path}", wait_until="domcontentloaded")
            page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
            _settle(page)
            _no_error_boxes(page)
            # served, not edited: no Deploy button or developer menu (.streamlit/config.toml, read from the repo's top)
            assert page.get_by_text("Deploy", exact=True).count() == 0
            if path == "Find_matches":
                photo = sorted((SAMPLE / "images").iterdir())[10]
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
                page.get_by_text("8 matches").first.wait_for(timeout=120_000)
                _settle(page)
                _no_error_boxes(page)
                thumbs = page.locator('[data-testid="stImage"] img')
                assert thumbs.count() == 1 + 8  # the query and eight result thumbnails
                assert all(thumbs.nth(i).evaluate("img => img.naturalWidth") > 0 for i in range(thumbs.count()))
                _pick_products(page)
            if path == "Embedding_space":
                _hover_a_point(page)
            if path == "Batch_match":
                _batch_match(page)
            if path == "Catalogue_QA":
                _fix_a_label(page)
            page.screenshot(path=str(SHOTS / f"{path or 'Home'}.png"), full_page=True)
        browser.close()
    assert {f"{path or 'Home'}.png" for path, _ in PAGES} <= {p.name for p in SHOTS.glob("*.png")}
