"""Product proposals: the shipped detector finds every product of scenes on real photos no training used, a box the
user draws is searched alone (and a bad one is one clear error), training beats its untrained self."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import SAMPLE
from PIL import Image

from vibe.errors import VibeError
from vibe.locate.boxes import check_box, iou
from vibe.locate.proposals import STRIDE, Detector, DetectorConfig, decode, letterbox, load_detector
from vibe.locate.query import Locator


def _photos(n, start=0):
    return [Image.open(p).convert("RGB") for p in sorted((SAMPLE / "images").iterdir())[start:start + n]]


def test_a_box_is_checked_against_the_photo():
    assert check_box(("10", "20.4", 90, 70), (100, 80)) == (10, 20, 90, 70)
    assert check_box((-5, -5, 50, 50), (100, 80)) == (0, 0, 50, 50)  # clipped to the photo
    for bad, why in (((50, 10, 40, 60), "empty"), ((200, 10, 300, 60), "outside the photo"), ((1, 2, 3), "four numbers"),
                     (("a", 0, 5, 5), "four numbers"), ((10, 10, 14, 60), "under 8 pixels")):
        with pytest.raises(VibeError, match=why):
            check_box(bad, (100, 80))
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3) and iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0


def test_decoding_reads_boxes_back_from_the_maps_the_detector_learns():
    from vibe.train.proposals import _targets

    side = 128
    boxes = [(10.0, 20.0, 50.0, 90.0), (70.0, 8.0, 120.0, 40.0)]
    heat, size, offset, centre = _targets(boxes, side)
    logits = torch.logit(heat.clamp(1e-4, 1 - 1e-4))[None]
    got = decode(logits, size[None], offset[None], side, 0.5, 10)
    assert len(got) == 2
    for truth in boxes:
        assert max(iou(truth, g[:4]) for g in got) > 0.95
    arr, scale, (left, top) = letterbox(Image.new("RGB", (400, 200)), side)
    assert arr.shape == (side, side, 3) and scale == side / 400 and (left, top) == (0, 32)
    assert side % STRIDE == 0


def test_the_shipped_detector_finds_products_on_real_photos_and_pages_it_never_saw():
    # data/sample was left out of the detector's training; the scenes' backdrops are real photos (scikit-image's) and
    # the pages are laid out by vibe.eval.heldout, which no training code imports. Issue 20's goal is a scene recall of
    # 0.90: the shipped detector does not reach it (0.484 on these 40 scenes, 60 of 124 products, 59 without test-time
    # flipping; the eval's 300: README), so this guards what it does reach: above the 24-epoch detector it was trained
    # on from (0.427 here, 53). On pages it puts the own box first on 36 of these 40 (31 without flipping, the 24-epoch
    # one 28: it sometimes boxes the text column); the eval's 1,510 pages of held-out items: README (goal 0.85)
    from vibe.eval.heldout import heldout_photo, scene

    detector = load_detector()
    assert detector is not None, "the shipped detector is missing from checkpoints/proposals"
    photos = _photos(60)
    rng = np.random.default_rng(0)
    found = total = 0
    for key in range(40):
        picks = rng.choice(len(photos), size=int(rng.integers(1, 6)), replace=False)
        shot = scene([photos[i] for i in picks], 0, key, "score")
        proposals = detector.propose(shot.image)
        total += len(shot.boxes)
        found += sum(any(iou(p.box, b) >= 0.5 for p in proposals) for b in shot.boxes)
    assert found / total >= 0.44, (found, total)
    first = 0
    locator = Locator(True, 160)  # as a query sees them: framing boxes a white page whole, the product comes first
    for key in range(40):
        shot = heldout_photo(photos[key], "page_screenshot", 0, key, photos[key + 1:key + 5], "score")
        proposals = locator.propose(shot.image)[0]
        first += bool(proposals) and iou(proposals[0].box, shot.boxes[shot.target]) >= 0.5
    assert first / 40 >= 0.85, first


def test_training_scenes_of_every_backdrop_family_box_the_products_in_frame():
    from vibe.train.scenes import FAMILIES, FAMILY_WEIGHTS, _closeup, scene

    r = 96  # a red product (a 60 x 70 block) on white, as decode_framed gives catalogue photos
    x = torch.ones(4, 3, r, r)
    alpha = torch.zeros(4, 1, r, r)
    x[:, :, 13:83, 18:78] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)
    alpha[:, :, 13:83, 18:78] = 1
    bbox = torch.tensor([[18, 13, 78, 83]] * 4)
    gen = torch.Generator().manual_seed(3)
    assert len(FAMILIES) == len(FAMILY_WEIGHTS) and abs(float(FAMILY_WEIGHTS.sum()) - 1) < 1e-6
    for family in FAMILIES:
        for _ in range(3):
            img, boxes, made = scene(x, alpha, bbox, gen, 128, family)
            assert made == family and img.shape == (3, 128, 128) and 0 <= float(img.min()) <= float(img.max()) <= 1
            assert all(0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 for x0, y0, x1, y1 in boxes), (family, boxes)
    # a close-up is the product's own surface filling the frame (no white backdrop, so no outline to find)
    close = _closeup(128, gen, x, alpha, bbox)
    assert torch.allclose(close.mean((1, 2)), torch.tensor([0.9, 0.1, 0.1]), atol=0.02)


def test_the_detector_on_onnx_runtime_proposes_what_torch_does_and_torch_takes_over_without_it(monkeypatch):
    """ONNX Runtime runs the detector (a third of eager torch's time); its boxes are torch's, on photos and on held-out
    pages and scenes. Without ONNX Runtime the detector runs on torch, with the same boxes."""
    import builtins

    from vibe.eval.heldout import heldout_photo, scene

    fast, exact = Detector(), Detector(onnx=False)
    assert fast.session is not None and exact.session is None
    photos = _photos(12)
    shots = [*photos[:4], *(heldout_photo(photos[k], "page_screenshot", 0, k, photos[k + 1:k + 5], "score").image
                            for k in range(4)), *(scene(photos[k:k + 3], 0, k, "score").image for k in range(4))]
    for shot in shots:
        a, b = fast.propose(shot), exact.propose(shot)
        assert [p.box for p in a] == [p.box for p in b] and np.allclose([p.score for p in a], [p.score for p in b],
                                                                        atol=1e-4)
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "onnxruntime" else real_import(name, *a, **k))
    fallback = Detector()
    assert fallback.session is None and [p.box for p in fallback.propose(shots[4])] == [p.box for p in exact.propose(shots[4])]


def test_a_mirrored_photo_gets_the_mirrored_proposals():
    """The detector reads a photo and its mirror image and averages the two (test-time flipping): a product found
    facing left is found as well facing right, with the same score."""
    from PIL import ImageOps

    from vibe.eval.heldout import heldout_photo

    detector = load_detector()
    side = detector.cfg.side  # a photo of the detector's own side: no resize whose rounding is not mirror-symmetric
    for k, photo in enumerate(_photos(6, start=20)):
        shot = heldout_photo(photo, "real_backdrop", 0, k, (), "score").image.resize((side, side), Image.BILINEAR)
        found, mirrored = detector.propose(shot), detector.propose(ImageOps.mirror(shot))
        assert found and len(found) == len(mirrored), (k, found, mirrored)
        for p, q in zip(found, mirrored):
            x0, y0, x1, y1 = q.box
            assert np.allclose(p.box, (side - x1, y0, side - x0, y1), atol=1), (k, p, q)
            assert p.score == pytest.approx(q.score, abs=1e-4), (k, p, q)


def test_training_saves_a_detector_that_beats_its_untrained_self_and_a_damaged_one_is_one_clear_error(small_catalog, tmp_path,
                                                                                                     monkeypatch):
    import vibe.train.proposals as training
    from vibe.config import CatalogConfig
    from vibe.train.proposals import train_proposals

    out = tmp_path / "det"
    report = train_proposals(CatalogConfig(root=small_catalog), out, replace(DetectorConfig(), side=64, width=8, epochs=10,
                                                                            batch_size=16, lr=0.01, min_score=0.1))
    # a few seconds of training: the held-out scenes' loss falls well below the untrained net's and some boxes are found.
    # Seed 0 ends at 0.69 of the untrained loss (bf16 and fp32 alike, 0.70 on an AVX2 CI machine), an untrained step
    # (lr 1e-9) at 0.96: 0.8 tells the two apart on every CPU without sitting on the trained figure.
    assert report["report_loss"] < 0.8 * report["untrained_loss"], report
    assert report["report_recall"] > report["untrained_recall"], report
    detector = Detector(out)
    assert all(0 <= p.box[0] < p.box[2] <= 300 and 0 <= p.box[1] < p.box[3] <= 200
               for p in detector.propose(Image.new("RGB", (300, 200), (200, 180, 160))))
    # training continues from a trained detector: it starts where that one ended (its loss, not an untrained net's)
    cfg = replace(detector.cfg, epochs=1)
    more = train_proposals(CatalogConfig(root=small_catalog), tmp_path / "det-more", cfg, init=out)
    assert more["untrained_loss"] == pytest.approx(report["report_loss"], abs=1e-3) and more["epochs_before"] == 10, more
    # and at another input side (the net is fully convolutional; README: a 128-px detector trained on at 192 px)
    larger = train_proposals(CatalogConfig(root=small_catalog), tmp_path / "det-80", replace(cfg, side=80), init=out)
    assert Detector(tmp_path / "det-80").cfg.side == 80 and larger["epochs_before"] == 10, larger
    with pytest.raises(VibeError, match="multiple of 16"):  # the net halves the side four times
        replace(cfg, side=100)
    # a detector that cannot be continued is refused before any photo is decoded (minutes on a real catalogue)
    monkeypatch.setattr(training, "decode_framed", lambda *a, **k: pytest.fail("photos decoded before the refusal"))
    with pytest.raises(VibeError, match=r"width 8 \(not 16\)"):
        train_proposals(CatalogConfig(root=small_catalog), tmp_path / "det-wider", replace(cfg, width=16), init=out)
    with pytest.raises(VibeError, match=r"excluded items 0 \(not 1\)"):  # another split: its report scenes were trained on
        train_proposals(CatalogConfig(root=small_catalog), tmp_path / "det-other", cfg, init=out, exclude_ids={1})
    (out / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(VibeError, match="proposal detector"):
        Detector(out)
    assert load_detector(tmp_path / "nothing-here") is None


def test_a_box_searches_only_the_product_inside_it(built_mini):
    from vibe.eval.heldout import scene
    from vibe.models.encoder import Encoder
    from vibe.search.matcher import Matcher
    from vibe.store.artifacts import load_artifacts

    art = load_artifacts(built_mini[0])
    matcher = Matcher(art, Encoder("vibe-mini"))
    rows = [0, 40, 80, 120, 160, 200]
    hits = 0
    for first, second in zip(rows[::2], rows[1::2]):
        photos = [Image.open(art.catalog_root / art.items["path"].iat[r]).convert("RGB") for r in (first, second)]
        shot = scene(photos, 1, first, "score")
        for row, box in zip((first, second), shot.boxes):
            res = matcher.find(shot.image, box=box, k=5)
            assert res.query_view["box"] == list(box) and "the box you drew" in res.query_view["note"]
            hits += int(art.items["id"].iat[row]) in [m.id for m in res.matches]
    assert hits >= 4, hits  # each product found from its own box (the other one is in the same photo)


def test_find_box_and_all_on_the_command_line(built_mini, tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO

    from vibe.eval.heldout import heldout_photo
    from vibe.store.artifacts import load_artifacts

    art = load_artifacts(built_mini[0])
    photos = [Image.open(art.catalog_root / p).convert("RGB") for p in art.items["path"].iloc[:5]]
    shot = heldout_photo(photos[0], "page_screenshot", 0, 1, photos[1:], "score")
    path = tmp_path / "page.jpg"
    shot.image.save(path, quality=92)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "vibe", "find", str(path), "--workdir", str(built_mini[0]), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=300)

    every = run("--all", "--json", "-k", "3")
    assert every.returncode == 0, every.stderr
    results = json.loads(every.stdout)
    assert len(results) >= 2 and [r["query_view"]["proposal"] for r in results] == list(range(len(results)))
    assert all(len(r["matches"]) == 3 and r["query_view"]["box"] for r in results)
    x0, y0, x1, y1 = shot.boxes[shot.target]
    boxed = run("--box", f"{x0},{y0},{x1},{y1}", "--json")
    assert boxed.returncode == 0 and json.loads(boxed.stdout)["query_view"]["box"] == [x0, y0, x1, y1]
    for bad, why in ((f"{x1},{y0},{x0},{y1}", "is empty"), ("5000,5000,6000,6000", "outside the photo"), ("1,2,3", "four numbers")):
        r = run("--box", bad)
        assert r.returncode == 2 and "Traceback" not in r.stderr and why in r.stderr, r.stderr
        assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1
