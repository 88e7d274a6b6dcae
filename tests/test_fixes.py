"""Fixes that flow back: label decisions and duplicate verdicts saved beside styles.csv (never editing it), read over
the catalogue by the next build, and left out of the audit once decided; a malformed row costs one report line."""
import io
import shutil
import subprocess
import sys

import pandas as pd
from conftest import REPO, SAMPLE, fast_build_config

from vibe.catalog.fixes import (
    ACCEPTED,
    DIFFERENT,
    FIX_COLUMNS,
    RIGHT,
    SAME,
    SET,
    fixes_path,
    read_fixes,
    record_fix,
    record_verdict,
)


def _copy(catalog, tmp_path):
    out = tmp_path / "catalog"
    shutil.copytree(catalog, out)
    return out


def test_malformed_fix_rows_are_skipped_one_line_each_and_the_latest_decision_is_in_force(tmp_path):
    rows = ["id,attribute,old,new,action,who,when",
            "10,item_type,Shirts,Tshirts,accepted,asha,2026-12-01T10:00:00+00:00",
            "10,item_type,Shirts,Tops,set,ravi,2026-12-01T11:00:00+00:00",  # a later decision on the same label wins
            "11,colour,Blue,Blue,right,asha,2026-12-01T10:00:00+00:00",
            "12,item_type,Shirts,Tshirts,accepted,asha",  # 6 fields
            "x13,item_type,Shirts,Tshirts,accepted,asha,now",
            "14,brand,Nike,Puma,set,asha,now",
            "15,item_type,Shirts,Tshirts,guessed,asha,now",
            "16,item_type,Shirts,,set,asha,now",
            "17,colour,Blue,Red,right,asha,now"]
    (tmp_path / "label_fixes.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    read = read_fixes(tmp_path)
    assert [n for n, _ in read.skipped] == [5, 6, 7, 8, 9, 10]
    assert "6 fields" in read.skipped[0][1] and "brand" in read.skipped[2][1] and "right" in read.skipped[5][1]
    assert read.fixes[["id", "attribute", "new", "action"]].values.tolist() == [[10, "item_type", "Tops", SET],
                                                                                [11, "colour", "Blue", RIGHT]]


def test_fixes_survive_a_rebuild_are_applied_and_reported_and_styles_csv_is_never_edited(small_catalog, tmp_path):
    from vibe.build.pipeline import build
    from vibe.catalog.reader import load_catalog
    from vibe.store.artifacts import load_artifacts

    root = _copy(small_catalog, tmp_path)
    styles = (root / "styles.csv").read_bytes()
    items = load_catalog(root).items.set_index("id")
    a, b, c = items.index[:3]
    other = next(t for t in items["item_type"].value_counts().index if t != items.at[a, "item_type"])  # a common type
    record_fix(root, a, "item_type", items.at[a, "item_type"], other, SET, "asha")
    record_fix(root, b, "colour", items.at[b, "colour"], items.at[b, "colour"], RIGHT, "ravi")
    record_fix(root, c, "season", "Not its label", "Winter", ACCEPTED, "ravi")  # styles.csv changed since: stale
    with open(fixes_path(root), "a", encoding="utf-8") as f:
        f.write("not,a,fix\n")
    workdir = tmp_path / "w"
    result = build(fast_build_config(root, workdir, audit_folds=3))
    report = result.catalog_report["label_fixes"]
    assert report["applied"] == 1 and report["confirmed"] == 1 and report["stale"] == [int(c)]
    assert report["skipped"] == [[5, "3 fields, expected 7"]]
    lines = load_catalog(root).report.lines()
    assert sum("label_fixes.csv line 5 skipped" in ln for ln in lines) == 1
    art = load_artifacts(workdir)
    built = art.items.set_index("id")
    assert built.at[a, "item_type"] == other
    assert art.heads.vocabs["item_type"][built.at[a, "item_type_code"]] == other
    assert built.at[c, "season"] == items.at[c, "season"]
    assert (root / "styles.csv").read_bytes() == styles
    result = build(fast_build_config(root, workdir, audit_folds=3))  # and again: the fixes are read every time
    assert result.catalog_report["label_fixes"]["applied"] == 1
    assert load_artifacts(workdir).items.set_index("id").at[a, "item_type"] == other


def test_an_item_marked_right_or_fixed_is_not_listed_again(tmp_path):
    from test_audit import _artifacts

    from vibe.qa.labels import audit_labels

    art, flipped = _artifacts(tmp_path)
    before = audit_labels(art, "item_type")
    first, second = before.table.iloc[0], before.table.iloc[1]
    assert before.decided == 0 and len(before.shown) == min(before.estimate, len(before.table))
    record_fix(tmp_path, first.id, "item_type", first.label, first.label, RIGHT, "asha")
    record_fix(tmp_path, second.id, "item_type", second.label, second.suggested, ACCEPTED, "asha")  # waits for a build
    after = audit_labels(art, "item_type")
    assert first.id not in set(after.table["id"]) and second.id not in set(after.table["id"])
    assert after.decided == 2 and len(after.table) == len(before.table) - 2
    assert audit_labels(art, "colour").decided == 0  # a decision on one attribute leaves the others listed
    assert abs(before.estimate - len(flipped)) <= 0.3 * len(flipped)  # confident learning's count of the 24 flipped


def test_a_group_marked_different_products_never_returns_and_same_product_is_kept_with_its_verdict(tmp_path):
    from test_audit import _artifacts, _photos

    from vibe.qa.duplicates import find_groups, groups_table

    copies = [(0, 1), (10, 11), (20, 21)]
    art, _ = _artifacts(tmp_path, flip=0.0, copies=copies)
    _photos(tmp_path, art, copies)
    groups = find_groups(art, 0.99)
    assert [g.ids for g in groups] == [[1000, 1001], [1010, 1011], [1020, 1021]]
    assert all(g.witnesses == ("embedding",) and g.cosine >= 0.99 and not g.verdict for g in groups)
    record_verdict(tmp_path, [1000, 1001], DIFFERENT, "asha")
    record_verdict(tmp_path, [1011, 1010], SAME, "asha")
    after = {tuple(g.ids): g for g in find_groups(art, 0.99)}
    assert set(after) == {(1010, 1011), (1020, 1021)} and after[(1010, 1011)].verdict == SAME
    table = groups_table(art, list(after.values()))
    assert list(table.columns) == ["group", "id", "name", "path", "witnesses", "cosine", "hash_distance", "verdict"]


def test_the_photo_hash_groups_re_encoded_copies_the_embedding_threshold_misses(tmp_path):
    from dataclasses import replace

    from PIL import Image
    from test_audit import _artifacts

    from vibe.qa.duplicates import HASH_DISTANCE, find_groups
    from vibe.util.perceptual import photo_hash

    art, _ = _artifacts(tmp_path, flip=0.0)
    photos = sorted((SAMPLE / "images").iterdir())
    photo, other = (Image.open(photos[i]).convert("RGB") for i in (3, 40))
    bordered = Image.new("RGB", (photo.width + 24, photo.height + 24), photo.getpixel((0, 0)))
    bordered.paste(photo, (12, 12))  # a border of the backdrop's colour: trimmed away before hashing
    recompressed = io.BytesIO()
    photo.save(recompressed, "JPEG", quality=90)
    framed = Image.new("RGB", (bordered.width + 40, bordered.height + 40), (40, 40, 40))
    framed.paste(bordered, (20, 20))  # and a dark frame around that: trimmed in a second pass
    copies = {0: photo, 1: Image.open(recompressed), 2: other, 5: bordered, 6: framed}
    (tmp_path / "images").mkdir()
    for r, image in copies.items():
        image.save(tmp_path / art.items["path"].iat[r])
    hashes = [photo_hash(copies[r]) if r in copies else None for r in range(len(art.items))]
    groups = find_groups(replace(art, items=art.items.assign(photo_hash=hashes)), 0.9999)  # no embedding pair this close
    assert [g.ids for g in groups] == [[1000, 1001, 1005, 1006]] and groups[0].witnesses == ("photo hash",)
    assert groups[0].hash_distance <= HASH_DISTANCE


def test_cli_records_a_fix_and_exports_the_fixes(small_catalog, tmp_path):
    from test_audit import _cli

    from vibe.build.pipeline import build

    root = _copy(small_catalog, tmp_path)
    workdir = tmp_path / "w"
    build(fast_build_config(root, workdir, audit_folds=3))
    listed = _cli("audit", "labels", "--json", "--workdir", str(workdir))
    assert listed["estimate"] >= 0 and len(listed["items"]) == min(listed["estimate"], listed["disagreements"])
    every = _cli("audit", "labels", "--all", "--json", "--workdir", str(workdir))
    assert len(every["items"]) == every["disagreements"] >= len(listed["items"])
    first = every["items"][0]
    r = subprocess.run([sys.executable, "-m", "vibe", "audit", "fix", str(first["id"]), "--accept", "--who", "cli",
                        "--workdir", str(workdir)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "the next build applies it" in r.stderr, r.stderr
    out = tmp_path / "fixes.csv"
    r = subprocess.run([sys.executable, "-m", "vibe", "audit", "fixes", "--out", str(out), "--workdir", str(workdir)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    exported = pd.read_csv(out, dtype=str)
    assert list(exported.columns) == list(FIX_COLUMNS)
    assert exported[["id", "old", "new", "action", "who"]].values.tolist() == [
        [str(first["id"]), first["label"], first["suggested"], ACCEPTED, "cli"]]
    after = _cli("audit", "labels", "--all", "--json", "--workdir", str(workdir))
    assert first["id"] not in {i["id"] for i in after["items"]} and after["decided"] == 1
