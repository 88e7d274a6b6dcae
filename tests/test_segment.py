"""The product segmenter: the shipped one cuts products out of busy photos it never saw; training saves a checkpoint
that loads (and a damaged one is one clear error); query views include the cut-out only when there is a segmenter."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import SAMPLE
from PIL import Image

from vibe.errors import VibeError
from vibe.locate.framing import cutout
from vibe.locate.segment import DEFAULT, Segmenter, SegmenterConfig, load_segmenter
from vibe.train.segmenter import train_segmenter


def test_the_shipped_segmenter_cuts_out_a_view_that_finds_the_product_better_than_the_photo():
    # data/sample was left out of the shipped segmenter's (and vibe-mini's) training: these products are new to both.
    # A busy photo as the eval makes them (vibe.eval.reshoot "busy": the product at 55-85 % of the frame on a blurred,
    # tinted collage of other catalogue photos); the cut-out must be closer to the product's catalogue photo than the
    # busy photo is, and look like a catalogue photo (white corners)
    from vibe.eval.reshoot import reshoot
    from vibe.models.encoder import Encoder

    files = sorted((SAMPLE / "images").iterdir())
    photos = [Image.open(p).convert("RGB") for p in files[:60]]
    seg = load_segmenter()
    assert seg is not None, f"the shipped segmenter is missing from {DEFAULT}"
    enc = Encoder("vibe-mini")
    better = 0
    for i in range(30):
        busy = reshoot(photos[i], "busy", 0, i, photos[30:60])
        view = seg.view(busy)
        if view is None:  # no confident product: the query keeps its photo and crops
            continue
        assert (np.asarray(view)[[0, 0, -1, -1], [0, -1, 0, -1]] >= 250).all()
        original, whole, cut = enc.encode_images([files[i], busy, view])
        better += float(cut @ original) > float(whole @ original)
    assert better >= 22, better  # 25 of 30 here; an untrained U-Net finds no product in any


def test_training_saves_a_segmenter_that_loads_and_a_damaged_one_is_one_clear_error(small_catalog, tmp_path):
    from vibe.config import CatalogConfig

    out = tmp_path / "seg"
    report = train_segmenter(CatalogConfig(root=small_catalog), out, replace(SegmenterConfig(), side=32, width=8, epochs=4))
    assert report["n_train"] + report["n_report"] >= 250
    # on composites of photos held out of training, the trained net finds the products; the same net untrained does not
    assert report["report_iou"] > report["untrained_iou"] + 0.15, report
    seg = Segmenter(out)
    prob = seg.mask(Image.open(sorted((small_catalog / "images").iterdir())[0]).convert("RGB"))
    assert prob.shape == (32, 32) and ((prob >= 0) & (prob <= 1)).all()
    (out / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(VibeError, match="segmenter"):
        Segmenter(out)
    assert load_segmenter(tmp_path / "nothing-here") is None


def test_a_busy_query_gets_the_cut_out_as_a_view_only_when_there_is_a_segmenter(tiny_encoder):
    from vibe.locate.query import Locator, tried

    product = cutout(Image.open(sorted((SAMPLE / "images").iterdir())[4]).convert("RGB").resize((200, 260)))
    busy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (400, 500, 3), dtype=np.uint8))
    busy.paste(product, (150, 80), product)
    with_seg = Locator.for_encoder(tiny_encoder)
    found = with_seg.views(busy)
    n = len(tried(found.proposals))  # the first proposals, the photo, the cut-out
    assert not found.framing.applied and n >= 1 and len(found.views) == n + 2
    assert found.names[-1].startswith("the product as the segmenter cut it out")
    without = Locator(tiny_encoder.framing, tiny_encoder.frame_side, segmenter=False)
    assert len(without.views(busy).views) == n + 1 and without.version != with_seg.version  # cached re-shots not mixed up
    no_detector = Locator(tiny_encoder.framing, tiny_encoder.frame_side, detector=False)
    assert len(no_detector.views(busy).views) == 11  # the photo, nine crops, the cut-out
    neither = Locator(tiny_encoder.framing, tiny_encoder.frame_side, segmenter=False, detector=False)
    assert len(neither.views(busy).views) == 10


def test_the_cli_trains_a_segmenter_into_the_folder_it_names(small_catalog, tmp_path):
    from vibe.cli import main

    out = tmp_path / "from-cli"
    assert main(["train-segmenter", "--data", str(small_catalog), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert Segmenter(out).cfg.epochs == 1
