"""Batch matching (`vibe match`): one row per (photo, rank), bad photos one row each, a photo of a catalogue item's
very bytes answered by that item, folders and zips, and an interrupted run that resumes without matching twice."""
from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vibe.cli import main
from vibe.errors import VibeError
from vibe.search.batch import COLUMNS, match_to_csv, photos_in, photos_in_zip
from vibe.search.bundle import load_bundle


@pytest.fixture(scope="module")
def folder(tmp_path_factory, built):
    workdir, _ = built
    items = load_bundle(workdir).artifacts.items
    root = tmp_path_factory.mktemp("batch")
    (root / "new").mkdir()
    src = load_bundle(workdir).artifacts.catalog_root
    for p in items["path"].iloc[:5]:  # the catalogue's own bytes
        shutil.copy(src / p, root / p.split("/")[-1])
    for i, p in enumerate(items["path"].iloc[5:11]):  # re-encoded: embedded for real
        Image.open(src / p).convert("RGB").resize((180, 240)).save(root / "new" / f"shot{i}.jpg", quality=85)
    (root / "new" / "broken.jpg").write_bytes(b"not a photo")
    (root / ".hidden.jpg").write_bytes(b"ignored")
    (root / "notes.txt").write_text("ignored")
    return root


def test_every_photo_gets_k_rows_and_a_bad_one_gets_its_error(built, folder, tmp_path):
    matcher = load_bundle(built[0]).matcher
    photos = photos_in(folder)
    assert len(photos) == 12 and all(not p.name.startswith(".") for p in photos)
    summary, rows = match_to_csv(matcher, photos, tmp_path / "m.csv", k=3)
    assert list(rows.columns) == COLUMNS and summary.errors == 1 and summary.matched + summary.no_match == 11
    on_disk = pd.read_csv(tmp_path / "m.csv", dtype={"rank": "Int64", "id": "Int64"})
    assert len(on_disk) == len(rows) == 11 * 3 + 1
    bad = on_disk[on_disk["query"] == "new/broken.jpg"]
    assert len(bad) == 1 and bad["status"].iloc[0] == "error" and "not an image" in bad["error"].iloc[0]
    items = matcher.art.items
    for p in items["path"].iloc[:5]:  # a catalogue photo is its own item, first
        mine = on_disk[on_disk["query"] == p.split("/")[-1]]
        assert mine["rank"].tolist() == [1, 2, 3] and mine["id"].iloc[0] == int(items.loc[items["path"] == p, "id"].iloc[0])
        assert mine["score"].iloc[0] > 0.999 and mine["status"].iloc[0] == "match"
    shot = on_disk[on_disk["query"] == "new/shot0.jpg"]
    want = matcher.find((folder / "new" / "shot0.jpg").read_bytes(), k=3)
    assert shot["id"].tolist() == [m.id for m in want.matches]
    assert np.allclose(shot["score"], [round(m.score, 4) for m in want.matches])


def test_an_interrupted_batch_resumes_without_matching_a_photo_twice(built, folder, tmp_path):
    matcher = load_bundle(built[0]).matcher
    photos, out = photos_in(folder), tmp_path / "m.csv"

    def stop_after_first_chunk(stage, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        match_to_csv(matcher, photos, out, k=2, chunk=4, progress=stop_after_first_chunk)
    first = pd.read_csv(out, keep_default_na=False)
    assert first["query"].nunique() == 4  # the first chunk was written before the interruption
    summary, rows = match_to_csv(matcher, photos, out, k=2, chunk=4)
    assert summary.skipped == 4 and summary.matched + summary.no_match + summary.errors == 8
    assert rows["query"].nunique() == 12 and len(rows) == 11 * 2 + 1
    again, _ = match_to_csv(matcher, photos, out, k=2, chunk=4)
    assert again.skipped == 11 and again.errors == 1  # the unreadable photo is tried again, not listed twice
    assert len(pd.read_csv(out)) == 11 * 2 + 1


def test_a_zip_is_matched_like_a_folder_and_a_damaged_one_is_one_error(built, folder, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.rglob("*.jpg")):
            z.write(p, str(p.relative_to(folder)))
        z.writestr("__MACOSX/._x.jpg", b"resource fork")
    zipped = photos_in_zip(buf.getvalue())
    assert sorted(p.name for p in zipped) == sorted(p.name for p in photos_in(folder))
    (tmp_path / "p.zip").write_bytes(buf.getvalue())
    assert main(["match", str(tmp_path / "p.zip"), "--workdir", str(built[0]), "--out", str(tmp_path / "z.csv"),
                 "-k", "2", "--quiet"]) == 0
    assert pd.read_csv(tmp_path / "z.csv")["query"].nunique() == 12
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(VibeError, match="not a readable zip"):
        photos_in(tmp_path / "bad.zip")
    assert main(["match", str(tmp_path / "missing"), "--workdir", str(built[0])]) == 2
