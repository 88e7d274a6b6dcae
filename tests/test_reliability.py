"""Every bad input gets one clear answer, no fault loses data, no file runs code (issue: reliability and safety)."""
import errno
import io
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, fast_build_config
from PIL import Image

from vibe.errors import VibeError
from vibe.search.bundle import current_build_id
from vibe.store.artifacts import load_artifacts
from vibe.util.images import ImageError, load_image


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


BAD_INPUTS = {
    "notes.txt": (b"just some text\n", "not an image"),
    "doc.pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n", "not an image"),
    "logo.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>', "not an image"),
    "empty.jpg": (b"", "empty file"),
}


def _truncated_jpeg() -> bytes:
    data = _jpeg(Image.new("RGB", (200, 200), (200, 30, 30)))
    return data[: len(data) // 2]


@pytest.mark.parametrize("name", [*BAD_INPUTS, "truncated.jpg"])
def test_unusable_files_are_one_clear_error(name):
    data, expected = BAD_INPUTS.get(name, (_truncated_jpeg(), "truncated"))
    with pytest.raises(ImageError, match=expected) as info:
        load_image(data, name)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_alpha_png_goes_on_white():
    im = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    im.paste((0, 0, 255, 255), (5, 5, 15, 15))
    out = load_image(_png(im))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((10, 10)) == (0, 0, 255)


def test_palette_with_transparency_goes_on_white():
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (0, 0, 10, 20))
    out = load_image(_png(im, transparency=0))
    assert out.getpixel((16, 10)) == (255, 255, 255) and out.getpixel((4, 10)) == (255, 0, 0)


def test_16_bit_greyscale_keeps_its_range():
    arr = np.linspace(0, 65535, 400, dtype=np.uint16).reshape(20, 20)
    out = load_image(_png(Image.fromarray(arr)))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((19, 19)) == (255, 255, 255)


@pytest.mark.parametrize("size", [(1, 1), (15, 300)])
def test_an_image_too_small_to_show_a_product_is_one_clear_error(size):
    with pytest.raises(ImageError, match=rf"{size[0]}x{size[1]} pixels, too small to show a product"):
        load_image(_png(Image.new("RGB", size, (200, 30, 30))), "icon.png")
    assert load_image(_png(Image.new("RGB", (16, 16), (200, 30, 30)))).size == (16, 16)  # the smallest accepted


def test_cmyk_jpeg_becomes_rgb():
    out = load_image(_jpeg(Image.new("CMYK", (16, 16), (0, 255, 255, 0))))  # pure red in CMYK
    r, g, b = out.getpixel((8, 8))
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), (255, 255, 255))
    im.paste((0, 0, 0), (0, 0, 10, 20))  # black on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(_jpeg(im, exif=exif.tobytes()))
    assert out.size == (20, 40)
    assert sum(out.getpixel((10, 3))) < 100  # the black band is now on top


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_use_the_first_frame(fmt):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    r, g, b = load_image(buf.getvalue()).getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_an_image_over_the_projects_pixel_limit_is_refused_before_decoding(tmp_path):
    from vibe.util.images import MAX_PIXELS

    big = tmp_path / "big.png"
    side = 7100  # 50.4 MP: over the project's 40 MP limit, under Pillow's own bomb threshold (89 MP)
    Image.new("RGB", (side, side), (250, 250, 250)).save(big)  # 151 MB of pixels, a few hundred kB of PNG
    assert MAX_PIXELS < side * side < Image.MAX_IMAGE_PIXELS  # Pillow alone would decode it: the limit is ours
    # VmHWM: this process's own peak (ru_maxrss would include the pytest parent's, inherited across exec)
    code = ("import re, sys\nfrom vibe.util.images import load_image, ImageError\n"
            "try:\n    load_image(sys.argv[1])\nexcept ImageError as e:\n    print('refused:', e)\n"
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n")
    r = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("refused:") and "7100x7100 pixels, over the 40 MP limit" in lines[0], r.stdout + r.stderr
    assert int(lines[-1]) < 120_000  # kB: decoding would take 151 MB for the pixels alone


def test_a_pickled_checkpoint_never_runs(tmp_path, tiny_clip_dir):
    import shutil

    from vibe import Encoder
    from vibe.models.heads import load_heads
    from vibe.models.mini import CONFIG_FILE, WEIGHTS_FILE
    from vibe.models.registry import VIBE_MINI_DIR
    from vibe.models.style import load_projection

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = pickle.dumps({"weights": Payload()})
    # the project's own loaders: heads, projection, vibe-mini
    (tmp_path / "heads.safetensors").write_bytes(evil)
    with pytest.raises(VibeError, match="not a valid heads checkpoint"):
        load_heads(tmp_path / "heads.safetensors")
    with pytest.raises(VibeError, match="not a valid projection checkpoint"):
        load_projection(tmp_path / "heads.safetensors")
    mini = tmp_path / "evil-mini"
    mini.mkdir()
    shutil.copy(VIBE_MINI_DIR / CONFIG_FILE, mini / CONFIG_FILE)
    (mini / WEIGHTS_FILE).write_bytes(evil)
    with pytest.raises(VibeError, match="not a valid vibe-mini checkpoint"):
        Encoder(str(mini))
    # and a CLIP folder holding only a pickled pytorch_model.bin (transformers reads it with weights_only=True)
    folder = tmp_path / "evil-clip"
    shutil.copytree(tiny_clip_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(evil)
    with pytest.raises(VibeError):
        Encoder(str(folder))
    assert not marker.exists()


def _run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vibe", *args], cwd=REPO, capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.parametrize("name", [*BAD_INPUTS, "truncated.jpg"])
def test_find_on_bad_input_exits_with_one_line(built, tmp_path, name):
    workdir, _ = built
    data = BAD_INPUTS.get(name, (_truncated_jpeg(),))[0]
    (tmp_path / name).write_bytes(data)
    r = _run_cli("find", str(tmp_path / name), "--workdir", str(workdir))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(r.stderr.strip().splitlines()) == 1


def test_curated_triplets_naming_unknown_ids_or_outside_paths_fail_the_build_clearly(small_catalog, tmp_path):
    bad = tmp_path / "triplets.csv"
    bad.write_text("anchor,positive,negative\n999999999,1,2\n../../etc/passwd,1,2\n")
    r = _run_cli("build", "--data", str(small_catalog), "--backbone", "tiny-random", "--workdir", str(tmp_path / "w"),
                 "--triplets", str(bad), "--quiet", "--head-epochs", "5", "--projection-epochs", "1", "--audit-folds", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "line 2: 999999999" in r.stderr and "line 3: ../../etc/passwd" in r.stderr


def test_a_second_build_is_refused_while_one_runs(built, small_catalog):
    from filelock import FileLock

    workdir, _ = built
    with FileLock(str(workdir / "build.lock")):
        r = _run_cli("build", "--data", str(small_catalog), "--backbone", "tiny-random", "--workdir", str(workdir), "--quiet")
    assert r.returncode == 2 and "Another build is already running" in r.stderr


# Run in a child process: a build with a fault-injection point that announces itself on stdout, then waits to be killed.
KILL_CHILD = """
import sys, time, pathlib
import vibe.store.cache
from vibe.cli import main

where = sys.argv[1]
def pause(tag):
    print(tag, flush=True)
    time.sleep(600)
if where == "embedding":  # after two shards of 60 embeddings are saved, before the rest
    vibe.store.cache.CHUNK = 60
    real_add = vibe.store.cache.EmbeddingStore.add
    calls = []
    def add(self, keys, emb):
        real_add(self, keys, emb)
        calls.append(1)
        if len(calls) == 2:
            pause("CACHED")
    vibe.store.cache.EmbeddingStore.add = add
elif where == "publish":  # the new build folder is in builds/, `current` not yet switched
    real_symlink = pathlib.Path.symlink_to
    def symlink_to(self, target, *a):
        real_symlink(self, target, *a)
        pause("PUBLISHING")
    pathlib.Path.symlink_to = symlink_to
elif where == "training":
    import vibe.build.pipeline
    real_train = vibe.build.pipeline.train_projection
    def train(*a, **k):
        pause("TRAINING")
    vibe.build.pipeline.train_projection = train
main(sys.argv[2:])
"""


@pytest.mark.parametrize("where, marker", [("training", "TRAINING"), ("publish", "PUBLISHING"), ("embedding", "CACHED")])
def test_kill_9_mid_build_keeps_the_previous_build_and_the_next_build_starts(small_catalog, tmp_path, where, marker):
    from vibe.build.pipeline import build
    from vibe.store.cache import EmbeddingStore

    workdir = tmp_path / "w"
    catalog = tmp_path / "cat"
    import shutil

    shutil.copytree(small_catalog, catalog)
    build(fast_build_config(catalog, workdir, limit=100))
    before = current_build_id(workdir)
    # the next build has 200 images that are not cached yet
    proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, where, "build", "--data", str(catalog), "--backbone",
                             "tiny-random", "--workdir", str(workdir), "--limit", "300", "--quiet", "--head-epochs", "5", "--audit-folds", "0", "--check", "8",
                             "--projection-epochs", "2", "--min-class-count", "5"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == marker, proc.stderr.read()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert current_build_id(workdir) == before
    art = load_artifacts(workdir)  # every file still matches its manifest
    assert len(art.items) == 100
    from vibe import Encoder
    from vibe.catalog.reader import load_catalog
    from vibe.config import CatalogConfig
    from vibe.util.files import content_hash

    encoder = Encoder("tiny-random")
    photos = {content_hash((catalog / p).read_bytes()) for p in load_catalog(CatalogConfig(root=catalog, limit=300)).items["path"]}
    cached = sum(h in EmbeddingStore(workdir / "cache", encoder.fingerprint, encoder.dim) for h in photos)
    if where == "embedding":
        assert 100 < cached < len(photos)  # the shards saved before the kill are kept
    result = build(fast_build_config(catalog, workdir, limit=300))  # the stale lock does not block it
    assert current_build_id(workdir) != before
    assert result.embedded == len(photos) - cached  # nothing that was cached is embedded again
    assert (result.embedded > 0) == (where == "embedding")
    assert sorted(p.name for p in (workdir / "builds").iterdir()) == sorted([before, current_build_id(workdir)])
    assert not list(workdir.glob(".current.*")) and not list(workdir.glob(".staging-*"))


def test_disk_full_while_writing_keeps_the_previous_build(built, small_catalog, tmp_path, monkeypatch):
    import shutil

    import faiss

    from vibe.build.pipeline import build

    workdir = tmp_path / "w"
    shutil.copytree(built[0], workdir, symlinks=True)
    before = current_build_id(workdir)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faiss, "write_index", full)
    with pytest.raises(VibeError, match="No space left on device.*previous build is untouched"):
        build(fast_build_config(small_catalog, workdir))
    assert current_build_id(workdir) == before
    assert not list(workdir.glob(".staging-*"))
    load_artifacts(workdir)


def test_dashboard_shows_an_error_box_for_every_bad_upload(built, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VIBE_WORKDIR", str(built[0]))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/1_Find_matches.py")
    at.run()
    for name in [*BAD_INPUTS, "truncated.jpg"]:
        data = BAD_INPUTS.get(name, (_truncated_jpeg(),))[0]
        name = Path(name).stem + ".jpg"  # the uploader only takes image extensions: these pretend to be photos
        at.file_uploader[0].set_value((name, data, "image/jpeg"))
        at.run()
        assert not at.exception, name
        assert len(at.error) == 1 and name in at.error[0].value, (name, [e.value for e in at.error])
