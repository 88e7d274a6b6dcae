from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED, requires_shared

from vibe.catalog.reader import load_catalog, read_styles
from vibe.catalog.split import in_holdout
from vibe.config import CatalogConfig
from vibe.errors import VibeError

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"


@requires_shared
def test_real_styles_csv_recovers_the_22_unquoted_comma_rows():
    frame, report = read_styles(SHARED / "styles.csv")
    assert report.rows_read == 44446
    assert len(report.recovered) == 22
    assert not report.malformed
    assert len(frame) == 44446
    name = frame.loc[frame["id"] == 44065, "name"].item()
    assert name == "Boss Men Perfume, After Shave Balm and Shower Gel Set"
    # the recovered row keeps its labels in the right columns
    row = frame.loc[frame["id"] == 44065].iloc[0]
    assert (row["item_type"], row["colour"], row["style"]) == ("Perfume and Body Mist", "Blue", "Casual")


@requires_shared
def test_real_catalogue_skips_rows_without_images_and_counts_missing_labels():
    cat = load_catalog(SHARED)
    assert len(cat) == 7671
    assert cat.report.no_image == 44446 - 7671
    assert cat.report.missing_labels["style"] == int(cat.items["style"].isna().sum()) > 0
    assert all((SHARED / p).is_file() for p in cat.items["path"].head(50))
    text = "\n".join(cat.report.lines())
    assert "recovered 22 rows" in text and "no image" in text


def _catalog(tmp_path: Path, body: str, images=(1, 2, 3)) -> Path:
    (tmp_path / "images").mkdir()
    for i in images:
        (tmp_path / "images" / f"{i}.jpg").write_bytes(b"x")
    (tmp_path / "styles.csv").write_bytes(body.encode("utf-8") if isinstance(body, str) else body)
    return tmp_path


def test_malformed_rows_duplicates_and_na_are_reported(tmp_path):
    body = HEADER + (
        "1,Men,Apparel,Topwear,Shirts,Blue,Summer,2012,NA,Shirt one\n"
        "2,Women,Apparel,Topwear\n"  # too few fields
        "1,Men,Apparel,Topwear,Shirts,Blue,Summer,2012,Casual,Duplicate id\n"
        "x3,Men,Apparel,Topwear,Shirts,Blue,Summer,2012,Casual,bad id\n"
        "3,Men,Apparel,Topwear,Shirts,,Summer,2012,Casual,A, B, and C\n"
    )
    cat = load_catalog(_catalog(tmp_path, body))
    r = cat.report
    assert [n for n, _ in r.malformed] == [3, 5]
    assert "expected 10" in r.malformed[0][1] and "not a whole number" in r.malformed[1][1]
    assert r.duplicates == [1]
    assert r.recovered == [6]
    assert list(cat.items["id"]) == [1, 3]
    assert pd.isna(cat.items.loc[0, "style"])  # the literal NA is a missing label, not a class
    assert pd.isna(cat.items.loc[1, "colour"]) and cat.items.loc[1, "name"] == "A, B, and C"
    assert r.missing_labels == {"item_type": 0, "gender": 0, "colour": 1, "season": 0, "style": 1}


def test_non_utf8_bytes_are_read_and_reported(tmp_path):
    body = HEADER.encode() + "1,Men,Apparel,Topwear,Shirts,Blue,Summer,2012,Casual,Caf\xe9 shirt\n".encode("latin-1")
    cat = load_catalog(_catalog(tmp_path, body))
    assert cat.items.loc[0, "name"] == "Café shirt"
    assert cat.report.redecoded == [2]


@pytest.mark.parametrize("body, message", [
    ("", "is empty"),
    ("id,gender,articleType\n1,Men,Shirts\n", "lacks the column(s) baseColour, season, usage"),
])
def test_unusable_csv_is_one_clear_error(tmp_path, body, message):
    with pytest.raises(VibeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_catalog(_catalog(tmp_path, body))


def test_missing_folder_and_images_are_clear_errors(tmp_path):
    with pytest.raises(VibeError, match="does not exist"):
        load_catalog(tmp_path / "nope")
    (tmp_path / "styles.csv").write_text(HEADER)
    with pytest.raises(VibeError, match="no images/ folder"):
        load_catalog(tmp_path)


def test_subsets_are_disjoint_deterministic_and_cover_everything(small_catalog):
    full = load_catalog(small_catalog)
    train = load_catalog(CatalogConfig(root=small_catalog, subset="train"))
    hold = load_catalog(CatalogConfig(root=small_catalog, subset="holdout"))
    assert set(train.items["id"]).isdisjoint(hold.items["id"])
    assert set(train.items["id"]) | set(hold.items["id"]) == set(full.items["id"])
    assert 0.1 < len(hold) / len(full) < 0.3
    assert all(in_holdout(i, 0.2) for i in hold.items["id"])
