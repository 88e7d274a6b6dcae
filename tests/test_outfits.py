"""Mix & match answers as an outfit, the style space is measured by what it ranks, and merchandisers' marks train it."""
import errno

import numpy as np
import pytest
from conftest import fast_build_config

from vibe.catalog.rules import COMPLETES
from vibe.search.matcher import Matcher
from vibe.search.outfit import outfit_order
from vibe.store.artifacts import load_artifacts


@pytest.fixture(scope="module")
def matcher(built, tiny_encoder):
    return Matcher(load_artifacts(built[0]), tiny_encoder)


def test_combo_never_returns_the_querys_own_slot_and_answers_as_an_outfit(matcher):
    items = matcher.art.items
    seen_slots = set()
    for row in range(0, len(items), 7):
        res = matcher.find(item_id=int(items["id"].iat[row]), mode="combo", k=8)
        own = items["slot"].iat[row]
        assert res.query_slot["slot"] == own and "catalogue" in res.query_slot["how"]
        assert all(m.slot != own and m.slot in COMPLETES.get(own, ()) for m in res.matches)
        assert all(matcher.labels["slot"][m.row] == m.slot for m in res.matches)
        assert list(res.outfit) == [s for s in COMPLETES.get(own, ()) if s in res.outfit]  # the table's order
        assert res.matches == outfit_order(res.outfit, 8)
        for options in res.outfit.values():
            scores = [m.score for m in options]
            assert scores == sorted(scores, reverse=True)
        if own in COMPLETES:
            seen_slots.add(own)
            first_round = res.matches[: len(res.outfit)]
            assert len({m.slot for m in first_round}) == len(first_round)  # the best of every slot before a second option
        else:
            assert res.matches == [] and res.outfit == {}
    assert {"top", "footwear"} <= seen_slots


def test_a_random_style_space_scores_near_one_half_and_a_trained_one_higher(built, built_mini):
    import dataclasses

    from vibe.catalog.rules import Compatibility
    from vibe.eval.ranking import style_space_report, style_triplets, triplet_accuracy
    from vibe.models.style import ProjectionHead
    from vibe.store.index import VectorIndex
    from vibe.util.vectors import l2_normalize

    art = load_artifacts(built[0])
    rng = np.random.default_rng(0)
    noise = l2_normalize(rng.normal(size=(len(art.items), 512)))  # embeddings that know nothing of the labels
    random_space = ProjectionHead(512, 256).eval().project(noise)
    triplets = style_triplets(Compatibility(art.items), np.arange(len(art.items)), np.arange(len(art.items)), rng)
    assert len(triplets) > 200
    assert abs(triplet_accuracy(random_space, triplets) - 0.5) < 0.07
    # a space that gives each usage, gender and season its own direction ranks the true-label triplets
    informed = noise * 0.1
    for offset, head in ((0, "style"), (100, "gender"), (200, "season")):
        codes = {v: i for i, v in enumerate(art.items[head].dropna().unique())}
        informed += np.eye(512)[[offset + codes.get(v, 99) for v in art.items[head]]]
    informed = l2_normalize(informed)
    assert triplet_accuracy(informed, triplets) > 0.8
    report = style_space_report(dataclasses.replace(art, style=VectorIndex.build(informed)), np.arange(len(art.items)))
    assert report["triplet_accuracy"]["style"] > 0.8 and abs(report["triplet_accuracy"]["random"] - 0.5) < 0.1
    # and the style space a build trains, on vibe-mini's embeddings, scored on its held-out items it never trained on
    trained = load_artifacts(built_mini[0])
    held = np.flatnonzero((trained.items["split"] == "heldout").to_numpy())
    report = style_space_report(trained, held)
    accuracy = report["triplet_accuracy"]
    assert report["n_triplets"] > 50 and accuracy["style"] > accuracy["random"] + 0.15, accuracy


def test_a_mark_survives_a_crash_mid_write_and_trains_the_next_build(small_catalog, tmp_path, monkeypatch):
    import shutil

    import vibe.util.files
    from vibe.build.pipeline import build
    from vibe.catalog.marks import GOES, read_marks, record_mark

    catalog = tmp_path / "cat"
    shutil.copytree(small_catalog, catalog)
    workdir = tmp_path / "w"
    build(fast_build_config(catalog, workdir))
    art = load_artifacts(workdir)
    items = art.items
    top = int(items["id"][items["slot"] == "top"].iat[0])
    bottom = int(items["id"][items["slot"] == "bottom"].iat[0])
    first = record_mark(catalog, items, top, bottom, True, "asha")
    assert first["mark"] == GOES and first["anchor"] == str(top) and first["positive"] == str(bottom)
    assert items.set_index("id").loc[int(first["negative"]), "slot"] == "top"  # filled: another top completes no top
    before = (catalog / "curated_triplets.csv").read_bytes()

    def crash(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vibe.util.files.os, "replace", crash)  # the new file is written, then the rename fails
    from vibe.errors import VibeError

    with pytest.raises(VibeError, match="No space left on device.*earlier marks are as they were"):
        record_mark(catalog, items, top, int(items["id"][items["slot"] == "footwear"].iat[0]), False, "asha")
    monkeypatch.undo()
    assert (catalog / "curated_triplets.csv").read_bytes() == before
    assert [p.name for p in catalog.iterdir() if p.name.startswith(".")] == []
    second = record_mark(catalog, items, top, int(items["id"][items["slot"] == "footwear"].iat[0]), False, "ravi")
    assert second["positive"] == str(bottom)  # the anchor's earlier "goes with" completes the triplet
    assert list(read_marks(catalog)["who"]) == ["asha", "ravi"]

    logs = []
    result = build(fast_build_config(catalog, workdir), log=logs.append)
    assert any("2 from merchandisers' marks" in line for line in logs)
    assert load_artifacts(workdir).manifest["training"]["projection"]["curated_marks"] == 2
    assert result.n_items == len(items)


def test_reversing_a_mark_keeps_the_latest_and_never_puts_one_item_twice_in_a_triplet(built, tmp_path):
    from vibe.catalog.marks import curated_triplets, read_marks, record_mark

    items = load_artifacts(built[0]).items
    top = int(items["id"][items["slot"] == "top"].iat[0])
    x, y = (int(i) for i in items["id"][items["slot"] == "bottom"].iloc[:2])
    record_mark(tmp_path, items, top, x, True, "asha")
    assert record_mark(tmp_path, items, top, y, False, "asha")["positive"] == str(x)  # her "goes with" completes it
    changed = record_mark(tmp_path, items, top, x, False, "ravi")  # x does not go with the top after all
    assert changed["negative"] == str(x) and changed["positive"] not in (str(x), str(top))
    triplets, skipped = curated_triplets(tmp_path, items)
    ids = items["id"].to_numpy()
    named = [[int(ids[r]) for r in t] for t in triplets]
    assert skipped == 0 and len(named) == 2  # one triplet per (anchor, item) in force: the latest mark on x, and y's
    assert all(len(set(t)) == 3 for t in named)
    assert all(t[1] != x for t in named)  # the reversed "goes with" trains nothing any more
    assert sorted(t[2] for t in named) == sorted([x, y])
    assert len(read_marks(tmp_path)) == 3  # the file keeps every mark, as history
