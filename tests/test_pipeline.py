"""The build pipeline: warm starts only within one catalogue split, one build folder per load, pruning, cache faults."""
import dataclasses
import errno
import json
import shutil

import numpy as np
import pytest
from conftest import fast_build_config

from vibe.build.pipeline import build
from vibe.errors import VibeError
from vibe.search.bundle import current_build_id, load_bundle
from vibe.store.artifacts import current_build, load_artifacts, publish, verify_files


def test_the_manifest_records_the_split_and_warm_starts_stay_within_it(small_catalog, tmp_path):
    workdir = tmp_path / "w"
    logs = []
    build(fast_build_config(small_catalog, workdir), log=logs.append)
    split = load_artifacts(workdir).manifest["catalog"]["split"]
    assert split["subset"] == "all" and split["holdout_fraction"] == 0.2 and split["root"] == str(small_catalog.resolve())

    logs.clear()
    build(fast_build_config(small_catalog, workdir, subset="train"), log=logs.append)
    # heads that saw the holdout items must not continue into a build meant to be scored on them
    assert not any(line.startswith("warm start") for line in logs)
    assert any("no warm start" in line and "subset" in line for line in logs)
    assert load_artifacts(workdir).manifest["catalog"]["subset"] == "train"

    logs.clear()
    build(fast_build_config(small_catalog, workdir, subset="train"), log=logs.append)
    assert any(line.startswith("warm start") for line in logs)

    # new training settings take full effect: two warm epochs would not show what they do
    changed = fast_build_config(small_catalog, workdir, subset="train")
    changed = dataclasses.replace(changed, projection=dataclasses.replace(changed.projection, structure_weight=0.0))
    logs.clear()
    build(changed, log=logs.append)
    assert not any(line.startswith("warm start") for line in logs)
    assert any("training settings changed (projection.structure_weight)" in line for line in logs)
    logs.clear()
    build(dataclasses.replace(changed, projection=dataclasses.replace(changed.projection, epochs=3)), log=logs.append)
    assert any(line.startswith("warm start") for line in logs)  # only longer: continues

    # a curated triplets file shapes the style space: a new one (or new contents) trains from scratch too
    items = load_artifacts(workdir).items
    top = items["id"][items["slot"] == "top"].tolist()
    bottom = items["id"][items["slot"] == "bottom"].tolist()
    triplets = tmp_path / "triplets.csv"
    triplets.write_text(f"anchor,positive,negative\n{top[0]},{bottom[0]},{top[1]}\n")
    curated = dataclasses.replace(changed, projection=dataclasses.replace(changed.projection, triplets_csv=triplets))
    for contents, warm in ((None, False), (None, True), (f"{top[2]},{bottom[1]},{top[3]}\n", False)):
        if contents:
            triplets.write_text(triplets.read_text() + contents)
        logs.clear()
        build(curated, log=logs.append)
        assert any(line.startswith("warm start") for line in logs) == warm, logs
    assert any("projection.triplets_digest" in line for line in logs)

    other = tmp_path / "copy"
    shutil.copytree(small_catalog, other)
    logs.clear()
    build(fast_build_config(other, workdir, subset="train"), log=logs.append)
    assert any("no warm start" in line and "root" in line for line in logs)


def test_the_build_scores_its_own_check_on_photos_it_did_not_calibrate_on(built):
    art = load_artifacts(built[0])
    filters, report = art.metrics["filters"], art.metrics["retrieval"]
    held = set(art.items["id"][art.items["split"] == "heldout"].astype(int))
    calibrated, scored = set(filters["calibrated_on"]), set(report["scored_ids"])
    assert calibrated and scored and calibrated <= held and scored <= held
    assert not calibrated & scored  # the thresholds were fitted on other photos than the ones ranked with them
    assert report["n_originals"] == len(scored) and report["same"]["n"] == len(scored) * len(report["changes"])
    assert report["backdrop_ids"] and set(report["backdrop_ids"]) <= set(art.items["id"][art.items["split"] == "train"])


def test_a_load_reads_one_build_even_when_a_rebuild_is_published_meanwhile(built, tmp_path, monkeypatch):
    import vibe.store.artifacts

    workdir = tmp_path / "w"
    shutil.copytree(built[0], workdir, symlinks=True)
    first = current_build(workdir)
    real_read = vibe.store.artifacts.read_manifest

    def publish_meanwhile(*args):
        manifest = real_read(*args)
        if current_build(workdir) == first:  # another build is swapped in right after this load read the manifest
            staging = workdir / ".staging-race"
            shutil.copytree(first, staging)
            (staging / "metrics.json").write_text(json.dumps({"n_heldout": -1, "heads": {}}))
            publish(workdir, staging)
        return manifest

    monkeypatch.setattr(vibe.store.artifacts, "read_manifest", publish_meanwhile)
    art = load_artifacts(workdir)
    assert art.path == first and current_build(workdir) != first
    assert art.metrics["n_heldout"] >= 0  # every file from the build the manifest describes
    verify_files(art.path, art.manifest, workdir)

    monkeypatch.setattr(vibe.store.artifacts, "read_manifest", real_read)
    bundle = load_bundle(workdir, first.name)  # a cache keyed by build id gets exactly that build
    assert bundle.build_id == first.name and bundle.artifacts.path == first


def test_publish_keeps_the_current_and_previous_builds_and_drops_the_rest(built, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(built[0], workdir, symlinks=True)
    (workdir / "builds" / "99999999T000000000000Z").mkdir()  # half-published by a killed build: newer by name
    views = current_build(workdir) / "views"
    views.mkdir(exist_ok=True)
    (views / "clip-10.npz").write_bytes(b"layout")
    ids = [current_build_id(workdir)]
    for _ in range(2):
        staging = workdir / ".staging-x"
        shutil.copytree(current_build(workdir), staging)
        publish(workdir, staging)
        ids.append(current_build_id(workdir))
    assert sorted(p.name for p in (workdir / "builds").iterdir()) == sorted(ids[1:])
    assert not views.exists()  # a build's UMAP layouts go with it


def test_a_full_disk_while_caching_embeddings_is_one_clear_error_and_keeps_what_was_saved(small_catalog, tmp_path, monkeypatch):
    import vibe.store.cache

    workdir = tmp_path / "w"
    monkeypatch.setattr(vibe.store.cache, "CHUNK", 100)
    calls = []
    real_write = vibe.store.cache.EmbeddingStore._write_shard

    def fill_up(self, keys, emb):
        calls.append(len(keys))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, keys, emb)

    monkeypatch.setattr(vibe.store.cache.EmbeddingStore, "_write_shard", fill_up)
    with pytest.raises(VibeError, match="No space left on device.*embeddings saved before are kept"):
        build(fast_build_config(small_catalog, workdir))
    assert current_build(workdir) is None and not list(workdir.glob(".staging-*"))
    monkeypatch.setattr(vibe.store.cache.EmbeddingStore, "_write_shard", real_write)
    result = build(fast_build_config(small_catalog, workdir))
    assert result.reused == 100 and result.embedded == result.n_items - 100


def test_an_empty_subset_names_the_subset_and_the_split(small_catalog, tmp_path):
    from vibe.catalog.reader import load_catalog
    from vibe.catalog.split import in_holdout
    from vibe.config import CatalogConfig

    lines = (small_catalog / "styles.csv").read_text().splitlines()
    keep = [ln for ln in lines[1:] if not in_holdout(int(ln.split(",")[0]), 0.2)]
    cat = tmp_path / "cat"
    shutil.copytree(small_catalog, cat)
    (cat / "styles.csv").write_text("\n".join([lines[0], *keep]) + "\n")
    with pytest.raises(VibeError, match=r"The holdout subset of .* is empty.*20% of item ids.*--subset all"):
        load_catalog(CatalogConfig(root=cat, subset="holdout"))


def test_umap_layouts_live_in_their_build_folder(built, tmp_path):
    from vibe.explore.layout import layout

    shutil.copytree(built[0], tmp_path / "w", symlinks=True)
    shutil.rmtree(current_build(tmp_path / "w") / "views", ignore_errors=True)
    art = load_artifacts(tmp_path / "w")
    frame, facts = layout(art, "style")
    assert not facts["cached"] and len(frame) == len(art.items)
    assert list((art.path / "views").iterdir()) and layout(art, "style")[1]["cached"]
    np.testing.assert_array_equal(layout(art, "style")[0]["row"], frame["row"])


def test_the_manifest_records_the_runtime_index_kinds_and_engine(built):
    from vibe.store.artifacts import load_artifacts

    m = load_artifacts(built[0]).manifest
    assert m["backbone"]["runtime"]["name"] == m["backbone"]["precision"] == "fp32"  # the tiny backbone stays exact
    assert m["index"]["clip"]["kind"] == m["index"]["style"]["kind"] == "exact"  # 300 items: far below EXACT_MAX
    assert m["engine"] == "local"


def test_a_click_or_lasso_picks_the_latest_event_of_either_view_and_neighbours_come_from_its_space(built):
    from vibe.explore.selection import latest_event, neighbours

    # each view counts its own events: an older click in the 512-D view (its 5th) against a newer one in the style view
    events = {"clip": {"event": "click", "row": 3, "n": 5, "at": 1000}, "style": {"event": "click", "row": 7, "n": 1, "at": 2000}}
    assert latest_event(events) == ("style", events["style"])
    assert latest_event({"clip": None, "style": None}) is None
    art = load_artifacts(built[0])
    rows, scores = neighbours(art, "style", 7)
    assert rows[0] == 7 and np.allclose(scores, art.style.vectors(rows) @ art.style.vector(7), atol=1e-4)
    clip_rows, _ = neighbours(art, "clip", 7)
    assert list(rows) != list(clip_rows)  # the style space ranks its own neighbours
