"""Product framing finds the product on plain backdrops of any colour and leaves busy photos alone; re-shot photos are
deterministic for a seed; filters apply only where their head is confident."""
import dataclasses
import io

import numpy as np
import pytest
from conftest import SAMPLE, product_cutout, two_products_on_noise
from PIL import Image

from vibe.eval.reshoot import CHANGES, reshoot
from vibe.locate.framing import frame_product


@pytest.mark.parametrize("backdrop", [(255, 255, 255), (236, 226, 208), (128, 128, 128), (30, 40, 90), (200, 230, 200)])
def test_framing_finds_the_product_on_a_plain_backdrop_of_any_colour(backdrop):
    product = product_cutout()
    photo = Image.new("RGB", (640, 480), backdrop)
    x, y = 300, 120
    photo.paste(product, (x, y), product)
    framed, found = frame_product(photo)
    assert found.applied, found.reason
    left, top, right, bottom = found.box
    tol = 0.02 * max(photo.size)  # the box is found on a copy 192-383 px large: within a few of its pixels
    assert left <= x + tol and top <= y + tol and right >= x + product.width - tol and bottom >= y + product.height - tol
    assert left >= x - tol and top >= y - tol and right <= x + product.width + tol and bottom <= y + product.height + tol
    corners = np.asarray(framed)[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners >= 245).all()  # re-centred on white, whatever the backdrop was
    assert framed.width < 0.5 * photo.width


def test_framing_leaves_busy_or_empty_photos_alone():
    rng = np.random.default_rng(0)
    busy = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    product = product_cutout()
    busy.paste(product, (200, 100), product)
    out, found = frame_product(busy)
    assert not found.applied and "busy" in found.reason and out is busy
    plain = Image.new("RGB", (300, 300), (240, 240, 240))
    out, found = frame_product(plain)
    assert not found.applied and out is plain


def test_a_catalogue_photo_stays_the_same_product_after_framing():
    photo = Image.open(sorted((SAMPLE / "images").iterdir())[3]).convert("RGB")
    framed, found = frame_product(photo)
    assert found.applied
    assert framed.width <= photo.width * 1.1 and framed.height <= photo.height * 1.1


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_reshoots_are_deterministic_for_a_seed_and_differ_across_seeds():
    photo = Image.open(sorted((SAMPLE / "images").iterdir())[5]).convert("RGB")
    others = [Image.open(p).convert("RGB") for p in sorted((SAMPLE / "images").iterdir())[20:26]]
    for change in CHANGES:
        a, b = reshoot(photo, change, 0, 42, others), reshoot(photo, change, 0, 42, others)
        assert _png(a) == _png(b), change
        assert any(_png(a) != _png(reshoot(photo, change, seed, 42, others)) for seed in (1, 2, 3)), change
        assert _png(a) != _png(photo), change
    with pytest.raises(ValueError, match="change must be one of"):
        reshoot(photo, "sepia")


def test_thresholds_are_the_confidence_from_which_a_head_is_right_often_enough():
    from vibe.build.calibrate import confidence_thresholds

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 1000)
    right = rng.uniform(size=1000) < conf  # a calibrated head: right with probability = confidence
    probs = np.stack([conf, 1 - conf], 1)
    codes = np.where(right, 0, 1)
    t = confidence_thresholds({"h": probs}, {"h": codes}, precision=0.9)["h"]
    above = conf >= t
    assert 0.75 < t < 0.9 and right[above].mean() >= 0.9
    assert confidence_thresholds({"h": probs}, {"h": np.ones(1000, int)}, 0.9)["h"] > 1  # never right: never applied
    assert confidence_thresholds({"h": probs[:5]}, {"h": codes[:5]}, 0.9)["h"] == 0.5  # too few items: the fallback


def test_filters_are_calibrated_apart_on_photos_far_from_the_catalogue():
    from vibe.build.calibrate import familiarity_thresholds

    rng = np.random.default_rng(1)
    n = 2000
    conf = rng.uniform(0.3, 1.0, n)
    familiarity = rng.uniform(0.3, 1.0, n)
    # a head calibrated on catalogue-like photos, and overconfident by 0.25 on those far from the catalogue
    right = rng.uniform(size=n) < np.where(familiarity >= 0.65, conf, conf - 0.25)
    probs, codes = {"h": np.stack([conf, 1 - conf], 1)}, {"h": np.where(right, 0, 1)}
    none = {"h": np.zeros((0, 2))}, {"h": np.zeros(0, int)}
    got = familiarity_thresholds(*none, probs, codes, familiarity, precision=0.9)
    assert abs(got["familiar_cosine"] - 0.65) < 0.03 and abs(got["unfamiliar_share"] - 0.5) < 0.01
    near, far = got["thresholds"]["h"], got["unfamiliar_thresholds"]["h"]
    assert 0.75 < near < 0.9 and far > 1  # far from the catalogue this head is never right 90 % of the time
    one_set = familiarity_thresholds(*none, {"h": probs["h"][:30]}, {"h": codes["h"][:30]}, familiarity[:30], 0.9)
    assert "unfamiliar_thresholds" not in one_set  # too few photos to split


def test_a_photo_far_from_the_catalogue_gets_the_unfamiliar_thresholds(built, tiny_encoder):
    from vibe.search.matcher import Matcher
    from vibe.store.artifacts import load_artifacts

    art = load_artifacts(built[0])
    emb = art.clip.vector(0)
    preds = Matcher(art, tiny_encoder).predict(emb)
    near = {h: 0.0 for h in ("item_type", "gender", "colour")}
    far = {**near, "colour": preds["colour"].confidence + 1e-6}
    closest = float(art.clip.search(emb, 1)[1][0])  # the photo's own catalogue photo: 1.0
    for cut, skipped in ((closest + 0.01, True), (closest - 0.01, False)):
        filters = {"precision": 0.9, "thresholds": near, "unfamiliar_thresholds": far, "familiar_cosine": cut}
        res = Matcher(dataclasses.replace(art, metrics={**art.metrics, "filters": filters}), tiny_encoder).search(
            emb, mode="same", k=1)
        notes = {f.head: f for f in res.filter_notes}
        assert res.familiarity == pytest.approx(closest, abs=1e-5)
        assert (notes["colour"].status == "skipped") == skipped, cut
        assert ("further from the catalogue" in notes["colour"].reason) == skipped


def test_a_filter_whose_head_is_unsure_is_not_applied(built, tiny_encoder):
    from vibe.search.matcher import Matcher
    from vibe.store.artifacts import load_artifacts

    art = load_artifacts(built[0])
    emb = art.clip.vector(0)
    preds = Matcher(art, tiny_encoder).predict(emb)
    # item_type: just above its confidence (applies); colour: just below (skipped)
    thresholds = {"item_type": preds["item_type"].confidence - 1e-6, "colour": preds["colour"].confidence + 1e-6, "gender": 0.0}
    sure = dataclasses.replace(art, metrics={**art.metrics, "filters": {"precision": 0.9, "thresholds": thresholds}})
    res = Matcher(sure, tiny_encoder).search(emb, mode="same", k=1)
    notes = {f.head: f for f in res.filter_notes}
    assert notes["colour"].status == "skipped" and "not sure enough" in notes["colour"].reason
    assert "colour" not in res.filters
    if preds["item_type"].label != "Other":
        assert notes["item_type"].applied and res.filters["item_type"] == preds["item_type"].label


def test_a_skipped_filters_note_shows_the_confidence_under_its_limit(built, tiny_encoder):
    """A confidence just under a filter's limit reads under it (0.966 against 0.971), not as the same rounded number."""
    import re

    from vibe.search.matcher import Matcher, apart
    from vibe.store.artifacts import load_artifacts

    assert apart(0.966, 0.971) == ("0.966", "0.971") and apart(0.5, 0.9) == ("0.50", "0.90")
    art = load_artifacts(built[0])
    emb = art.clip.vector(0)
    conf = Matcher(art, tiny_encoder).predict(emb)["colour"].confidence
    edge = min(conf + 0.002, round(conf, 2) + 0.0049)  # over the confidence, the same to two decimals
    filters = {"precision": 0.9, "thresholds": {"item_type": 0.0, "gender": 0.0, "colour": edge}}
    res = Matcher(dataclasses.replace(art, metrics={**art.metrics, "filters": filters}), tiny_encoder).search(emb, k=1)
    reason = {f.head: f for f in res.filter_notes}["colour"].reason
    sure, needed = re.search(r"not sure enough \(([\d.]+); it needs ([\d.]+)\)", reason).groups()
    assert float(sure) < float(needed), reason


def test_an_upload_is_framed_or_searched_with_its_best_crop(built, tiny_encoder):
    from vibe.locate.query import Locator, tried
    from vibe.search.matcher import Matcher
    from vibe.store.artifacts import load_artifacts

    art = load_artifacts(built[0])
    matcher = Matcher(art, tiny_encoder)  # the shipped detector and segmenter
    product = product_cutout()
    tinted = Image.new("RGB", (500, 400), (200, 225, 205))  # a green sheet: a colour, not a white balance
    tinted.paste(product, (150, 80), product)
    res = matcher.find(_png(tinted), mode="same", k=3)
    assert res.query_view["views"] == 1 and "framed on white" in res.query_view["note"]
    busy = two_products_on_noise()
    res = matcher.find(_png(busy), mode="same", k=3)
    # the first proposals (vibe.locate.query.tried), with the whole photo and the segmenter's cut-out beside them (a
    # cut-off or busy photo); the result names the proposal of the view it kept (None: the whole photo or the cut-out)
    found = matcher.locator.views(busy)
    picks = tried(found.proposals)
    assert len(picks) >= 2 and res.query_view["views"] == len(picks) + 2, res.query_view
    assert found.sources == [*picks, None, None] and picks[0] == 0
    assert [name.split(" (")[0] for name in found.names[:len(picks)]] == [f"product {i + 1} of {len(found.proposals)}"
                                                                         for i in picks]
    picked = res.query_view["picked"]
    assert res.query_view["proposal"] == (picks[picked] if picked < len(picks) else None)
    # without a detector: the whole photo, nine fixed crops and the cut-out; retrieval keeps the most catalogue-like
    matcher = Matcher(art, tiny_encoder, Locator(tiny_encoder.framing, tiny_encoder.frame_side, detector=False))
    res = matcher.find(_png(busy), mode="same", k=3)
    assert res.query_view["views"] == 11 and "of the 11 views tried" in res.query_view["note"]  # photo, 9 crops, cut-out
    found = matcher.locator.views(busy)
    views = tiny_encoder.encode_views(found.views)
    assert views.shape == (11, 512) and not found.framing.applied
    best, picked = matcher.pick_view(views)
    scores, _ = matcher.art.clip.index.search(views, 1)
    assert picked == int(np.argmax(scores[:, 0])) and res.query_view["picked"] == picked
    same_photo = matcher.find(matcher.art.catalog_root / matcher.art.items["path"].iat[0], k=2)
    assert "the same photo as catalogue item" in same_photo.query_view["note"]


def test_a_default_search_shows_the_other_products_it_tried_with_their_nearest_photo(built, tiny_encoder):
    # Google Lens' "also in this photo": when the kept view is the wrong product (a cup beside the bag), the bag's
    # nearest catalogue photo is on the page without another search. Each is what that product finds searched alone.
    from vibe.locate.query import tried
    from vibe.search.matcher import Matcher
    from vibe.store.artifacts import load_artifacts

    matcher = Matcher(load_artifacts(built[0]), tiny_encoder)
    busy = two_products_on_noise()
    res = matcher.find(_png(busy), mode="same", k=3)
    kept, others = res.query_view["proposal"], res.query_view["others"]
    found = matcher.locator.views(busy)
    listed = [o["proposal"] for o in others]
    assert others and len(set(listed)) == len(listed) and set(listed) <= set(tried(found.proposals)) - {kept}
    for o in others:
        alone = matcher.find(_png(busy), mode="same", k=1, proposal=o["proposal"])
        assert o["score"] == pytest.approx(alone.familiarity, abs=1e-4) and o["box"] == alone.query_view["box"]
        assert o["verdict"] == ("match" if o["score"] >= matcher.same_photo_cosine else "no match")
        assert o["path"] == matcher.art.items["path"].iat[int(np.flatnonzero(matcher.art.items["id"] == o["id"])[0])]
    one = matcher.find(_png(busy), mode="same", k=1, proposal=listed[0])  # a product picked: nothing else was tried
    assert one.query_view["others"] == []


def test_busy_reshoots_are_cached_with_the_photos_their_backdrop_is_made_of(built, tiny_encoder, tmp_path):
    from vibe.eval.queries import Originals, embed_reshoots
    from vibe.eval.reshoot import backdrop_photos
    from vibe.store.artifacts import load_artifacts
    from vibe.store.cache import EmbeddingStore

    art = load_artifacts(built[0])
    rows = np.arange(4)
    originals = Originals(rows=rows, ids=art.items["id"].to_numpy()[rows],
                          paths=[art.catalog_root / p for p in art.items["path"].iloc[rows]],
                          hashes=art.items["hash"].iloc[rows].astype(str).tolist())
    store = EmbeddingStore(tmp_path, tiny_encoder.fingerprint, tiny_encoder.dim)
    first = backdrop_photos(art.items, art.catalog_root, n=16)
    later = backdrop_photos(art.items, art.catalog_root, ids=first.ids[8:])  # the catalogue changed: other backdrops
    assert later.ids == first.ids[8:] and later.digest != first.digest
    a = embed_reshoots(tiny_encoder, store, originals, ["busy", "crop"], 0, first)
    n = len(store)
    b = embed_reshoots(tiny_encoder, store, originals, ["busy", "crop"], 0, later)
    assert len(store) > n  # the busy photos were made again and embedded, not taken from the cache
    assert all(np.array_equal(x, y) for x, y in zip(a["crop"], b["crop"]))  # a crop has no backdrop: reused
    assert not all(np.array_equal(x, y) for x, y in zip(a["busy"], b["busy"]))
    assert len(store) == len(EmbeddingStore(tmp_path, tiny_encoder.fingerprint, tiny_encoder.dim))
    embed_reshoots(tiny_encoder, store, originals, ["busy"], 0, later)
    assert len(store) == len(EmbeddingStore(tmp_path, tiny_encoder.fingerprint, tiny_encoder.dim))  # nothing new


def test_a_white_backdrop_under_a_colour_cast_is_also_searched_evened_out_and_a_coloured_one_is_not():
    from vibe.locate.query import Locator, white_gains

    assert white_gains((255, 255, 255)) is None and white_gains((90, 90, 95)) is None  # white already; dark
    assert white_gains((240, 215, 225)) is None  # pink paper is a colour, not a white balance
    # red clipped on the backdrop: its cast read off green and blue ((R/G)(B/G) = 1 along the warm-cool axis)
    assert np.allclose(white_gains((255, 236, 212)), ((212 / 255) / (236 / 255) ** 2, 255 / 236, 255 / 212))
    assert np.allclose(white_gains((240, 236, 212)), (255 / 240, 255 / 236, 255 / 212))  # nothing clipped: as read
    photo = Image.open(sorted((SAMPLE / "images").iterdir())[3]).convert("RGB").resize((240, 320))
    warm = Image.fromarray((np.asarray(photo, np.float32) * (1.0, 0.93, 0.84)).clip(0, 255).astype(np.uint8))
    locator = Locator(True, 160, segmenter=False, detector=False)
    plain = locator.views(photo)
    cast = locator.views(warm)
    assert len(plain.views) == 1 and len(cast.views) == 2, cast.names
    truth = np.asarray(plain.views[0].resize((80, 80)), np.float32)
    as_shot, evened = (np.abs(np.asarray(v.resize((80, 80)), np.float32) - truth).mean() for v in cast.views)
    assert evened < 0.5 * as_shot, (as_shot, evened)
    # a cool light that clips blue on the backdrop (blue up, red down): blue's cast is read off red and green, and the
    # backdrop stays white (a gain under 1 on a clipped channel would tint it)
    cool = Image.fromarray((np.asarray(photo, np.float32) * (0.88, 0.97, 1.12)).clip(0, 255).astype(np.uint8))
    views = locator.views(cool).views
    assert (np.asarray(views[1])[:3, :3] == 255).all()
    as_shot, evened = (np.abs(np.asarray(v.resize((80, 80)), np.float32) - truth).mean() for v in views)
    assert evened < 0.5 * as_shot, (as_shot, evened)


def test_a_default_search_tries_the_first_proposals_but_not_a_pages_thumbnails():
    from vibe.locate.proposals import Proposal
    from vibe.locate.query import TRY, TRY_AREA, tried

    product = Proposal((10, 10, 210, 310), 0.9)  # 200 x 300
    thumbnail = Proposal((300, 300, 360, 360), 0.8)  # under TRY_AREA of the first one's area: not tried by default
    backdrop = Proposal((0, 200, 300, 400), 0.5)  # a piece of the backdrop as large as the product: tried
    assert 60 * 60 < TRY_AREA * 200 * 300 <= 300 * 200
    assert tried([product, thumbnail, backdrop]) == [0, 2]
    assert tried([thumbnail, product]) == [0, 1]  # the first proposal is always tried, whatever its size
    assert tried([product] + [backdrop] * 9) == list(range(TRY))


def test_the_fast_masks_are_scipys_definitions():
    """background_mask (OpenCV's 4-connected components) and opened (OpenCV's opening, nothing outside the photo) mark
    the very pixels scipy.ndimage's label and binary_opening do, on photos and their analysis copies."""
    from scipy import ndimage

    from vibe.locate.framing import _border, background_mask, close_to, distance_to, opened, reduced

    for path in sorted((SAMPLE / "images").iterdir())[:40]:
        arr = np.asarray(reduced(Image.open(path).convert("RGB"), 96), dtype=np.uint8)
        colour = np.median(_border(arr), axis=0)
        close = distance_to(arr, colour) < 32
        assert np.array_equal(close_to(arr, colour, 32), close)
        labels, _ = ndimage.label(close)
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        mask = background_mask(arr, colour)
        assert np.array_equal(mask, np.isin(labels, edge[edge > 0]))
        assert np.array_equal(opened(~mask), ndimage.binary_opening(~mask, iterations=1))
