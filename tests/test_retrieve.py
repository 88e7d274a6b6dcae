import json
import shutil

import numpy as np
import pytest

from vibe.config import HEADS
from vibe.errors import VibeError
from vibe.search.matcher import Matcher
from vibe.store.artifacts import FORMAT, load_artifacts


@pytest.fixture(scope="module")
def matcher(built, tiny_encoder):
    workdir, _ = built
    return Matcher(load_artifacts(workdir), tiny_encoder)


def test_the_query_never_matches_itself(matcher, small_catalog, tmp_path):
    from vibe.catalog.rules import COMPLETES

    items = matcher.art.items
    for row in range(0, len(items), 37):
        item_id = int(items["id"].iat[row])
        for mode in ("same", "combo"):
            res = matcher.find(item_id=item_id, mode=mode, k=5)
            assert item_id not in [m.id for m in res.matches]
            # a slot that completes no outfit (innerwear, personal care...) gets no mix & match
            assert len(res.matches) == (5 if mode == "same" or items["slot"].iat[row] in COMPLETES else 0)
    # the same photo uploaded under another name is recognised by its bytes, and reuses the stored embedding
    path = small_catalog / items["path"].iat[0]
    copy = tmp_path / "upload.jpg"
    shutil.copy(path, copy)
    res = matcher.find(copy, mode="same", k=5)
    assert int(items["id"].iat[0]) not in [m.id for m in res.matches]


def test_same_mode_filters_on_labels_then_relaxes_the_least_confident_filter_first(matcher):
    emb = matcher.art.clip.vector(0)
    res = matcher.search(emb, mode="same", k=3)
    tau = matcher.same_photo_cosine
    assert all(m.score >= tau for m in res.matches if m.note)  # near-identical photos may pass the filters...
    for m in (m for m in res.matches if not m.note):  # ...every other match passes every applied filter
        for head, value in res.filters.items():
            assert m.labels[head] == value if head != "gender" else m.labels[head] in (value, "Unisex", None)
    # relaxation: ask for more items than the rarest item type holds, so filters must go
    labels = matcher.art.items["item_type"]
    rare = labels.value_counts().index[-1]
    k = int((labels == rare).sum()) + 2
    res = matcher.search(emb, mode="same", k=k, known={"item_type": rare, "colour": None, "gender": None})
    notes = {f.head: f for f in res.filter_notes}
    assert notes["item_type"].source == "catalogue" and notes["item_type"].confidence == 1.0
    assert res.relaxed and res.relaxed[-1] == "item_type"  # the only sure filter goes last
    predicted = sorted((f for f in res.filter_notes if f.source == "predicted" and f.status != "skipped"),
                       key=lambda f: f.confidence)
    assert res.relaxed == [f.head for f in predicted] + ["item_type"]  # least confident first; unsure ones never applied
    assert all(notes[h].status == "relaxed" and "fewer than" in notes[h].reason for h in res.relaxed)
    assert "item_type" not in res.filters and len(res.matches) == k


def test_a_mens_query_keeps_its_gender_while_a_less_sure_filter_goes(matcher):
    from vibe.catalog.rules import gender_compatible

    items = matcher.art.items
    men_ok = gender_compatible(items["gender"].to_numpy(dtype=object), "Men")
    for row in np.flatnonzero((items["gender"] == "Men").to_numpy()):
        same_type = (items["item_type"] == items["item_type"].iat[row]).to_numpy() & men_ok
        same_type[row] = False
        exact = same_type & (items["colour"] == items["colour"].iat[row]).to_numpy()
        if exact.sum() + 1 <= same_type.sum():
            break
    else:
        pytest.skip("no men's item whose type has several colours in this catalogue")
    known = {h: items[h].iat[row] for h in ("item_type", "colour", "gender")}
    res = matcher.search(matcher.art.clip.vector(row), mode="same", k=int(exact.sum()) + 1, known=known, exclude=[row])
    assert res.relaxed == ["colour"]  # all three are the item's own labels (a tie): colour goes before gender
    assert res.filters == {"item_type": known["item_type"], "gender": "Men"}
    assert all(gender_compatible(m.labels["gender"], "Men") for m in res.matches)  # never a women's item


def test_relaxation_reports_only_what_it_relaxed(matcher):
    item_type = matcher.art.items["item_type"].iat[5]
    n_type = int((matcher.art.items["item_type"] == item_type).sum())
    res = matcher.search(matcher.art.clip.vector(5), mode="same", k=max(1, min(3, n_type - 1)), known={"item_type": item_type},
                         exclude=[5])
    assert "item_type" not in res.relaxed and res.filters["item_type"] == item_type
    assert all(m.labels["item_type"] == item_type for m in res.matches)


def test_results_serialise_to_json(matcher):
    res = matcher.find(item_id=int(matcher.art.items["id"].iat[3]), mode="same", k=2)
    data = json.loads(json.dumps(res.to_dict()))
    assert set(data["predictions"]) == set(HEADS) and len(data["matches"]) == 2


def test_an_index_built_with_another_backbone_is_refused(built, tiny_clip_dir):
    from vibe import Encoder

    workdir, _ = built
    with pytest.raises(VibeError, match=r"built with backbone 'tiny-random'.*python -m vibe build"):
        Matcher(load_artifacts(workdir), Encoder(str(tiny_clip_dir)))


def test_a_truncated_or_foreign_artifact_is_detected(built, tmp_path):
    workdir, _ = built
    copy = tmp_path / "w"
    shutil.copytree(workdir, copy, symlinks=True)
    target = (copy / "current" / "clip.faiss")
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(VibeError, match="truncated or changed.*python -m vibe build"):
        load_artifacts(copy)
    manifest = copy / "current" / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"{FORMAT}"', '"vibe-artifacts-1"'))
    assert FORMAT != "vibe-artifacts-1" and "vibe-artifacts-1" in manifest.read_text()
    with pytest.raises(VibeError, match="another version of vibe"):
        load_artifacts(copy)
    with pytest.raises(VibeError, match="No built index"):
        load_artifacts(tmp_path / "empty")


def test_a_near_identical_photo_passes_filters_that_a_wrong_prediction_would_apply(matcher, monkeypatch):
    items = matcher.art.items
    row = 0
    other = next(t for t in items["item_type"].dropna().unique() if t != items["item_type"].iat[row])
    wrong = {"item_type": other, "colour": None, "gender": None}  # as if the head had mistaken the item's type
    emb = matcher.art.clip.vector(row)
    filters = dict(matcher.art.metrics.get("filters", {}))
    monkeypatch.setitem(matcher.art.metrics, "filters", {**filters, "same_photo_cosine": 0.999})
    res = matcher.search(emb, mode="same", k=5, known=wrong)
    assert res.matches[0].row == row and "as close as the same item's are" in res.matches[0].note  # its own photo first
    assert all(m.labels["item_type"] == other for m in res.matches[1:] if not m.note)
    scores = [m.score for m in res.matches]
    assert scores == sorted(scores, reverse=True)
    monkeypatch.setitem(matcher.art.metrics, "filters", {**filters, "same_photo_cosine": 1.01})  # never that sure
    assert row not in [m.row for m in matcher.search(emb, mode="same", k=5, known=wrong).matches]


def test_the_build_calibrates_the_same_photo_cosine_and_it_holds_on_photos_it_was_not_fitted_on(built_mini):
    from vibe.models.encoder import Encoder

    art = load_artifacts(built_mini[0])
    tau, precision = art.metrics["filters"]["same_photo_cosine"], art.metrics["filters"]["precision"]
    assert 0.5 < tau < 1.0  # a calibrated cosine, not the "never that sure" 1.01
    # the scored re-shots were not used to fit it: there, an unfiltered first match at or above it is the photo's own item
    report = art.metrics["retrieval"]
    assert not set(report["scored_ids"]) & set(art.metrics["filters"]["calibrated_on"])
    from vibe.eval.queries import Originals, embed_reshoots
    from vibe.eval.reshoot import backdrop_photos
    from vibe.store.cache import EmbeddingStore

    encoder = Encoder("vibe-mini")
    matcher = Matcher(art, encoder)
    rows = np.array([matcher.row_of_id[i] for i in report["scored_ids"]])
    originals = Originals(rows=rows, ids=art.items["id"].to_numpy()[rows], hashes=art.items["hash"].iloc[rows].tolist(),
                          paths=[art.catalog_root / p for p in art.items["path"].iloc[rows]])
    store = EmbeddingStore(built_mini[0] / "cache", encoder.fingerprint, encoder.dim)
    queries = embed_reshoots(encoder, store, originals, list(report["changes"]), 0,
                             backdrop_photos(art.items, art.catalog_root, ids=report["backdrop_ids"]), locator=matcher.locator)
    right = []
    for per_photo in queries.values():
        for row, views in zip(rows, per_photo):
            found, scores = art.clip.search(matcher.pick_view(views)[0], 1)
            if scores[0] >= tau:
                right.append(int(found[0]) in {int(row), *matcher.rows_of_hash[matcher.hashes[row]]})
    assert len(right) >= 50 and np.mean(right) >= precision - 0.05, (len(right), np.mean(right))


def test_a_photo_search_says_whether_match_1_is_its_own_item(matcher, monkeypatch):
    filters = dict(matcher.art.metrics.get("filters", {}))
    own = matcher.art.clip.vector(0)
    far = np.random.default_rng(0).normal(size=own.shape).astype(np.float32)
    far /= np.linalg.norm(far)  # a direction no catalogue photo is near
    monkeypatch.setitem(matcher.art.metrics, "filters", {**filters, "same_photo_cosine": 0.99})
    found = matcher.search(own, mode="same", k=3)
    assert found.verdict == "match" and found.same_item["best"] >= 0.99
    assert found.same_item_note().startswith("Match 1 is close enough to be this very product")
    lost = matcher.search(far, mode="same", k=3)
    assert lost.verdict == "no match" and lost.same_item["best"] < 0.99 and lost.matches  # the lookalikes are still shown
    assert lost.same_item_note().startswith("Not sure match 1 is this very product")
    assert matcher.search(far, mode="combo", k=3).verdict == "outfit"
    assert matcher.find(item_id=int(matcher.art.items["id"].iat[0]), k=3).same_item_note() is None  # no photo to judge
    monkeypatch.setitem(matcher.art.metrics, "filters", {**filters, "same_photo_cosine": 1.01})  # a build with no cut
    unchecked = matcher.search(own, mode="same", k=3)
    assert unchecked.verdict == "unchecked" and unchecked.same_item_note() is None
