"""Copy a ~1,000-item sample catalogue from ../shared/data/fashion-small into data/sample (run once; the result ships).

Items come from the deterministic holdout subset, so vibe-mini (trained on the train subset) never saw them,
spread over item types by taking them round-robin, one per type at a time.
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vibe.catalog import load_catalog  # noqa: E402
from vibe.config import SAMPLE_DATA, CatalogConfig  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared/data/fashion-small")
ap.add_argument("--out", type=Path, default=SAMPLE_DATA)
ap.add_argument("-n", type=int, default=1000)
a = ap.parse_args()

items = load_catalog(CatalogConfig(root=a.src, subset="holdout")).items
groups = [g["id"].tolist() for _, g in items.groupby(items["item_type"].fillna("?"))]
chosen = []
while len(chosen) < min(a.n, len(items)):
    for g in groups:
        if g and len(chosen) < a.n:
            chosen.append(g.pop(0))
keep = {str(i) for i in chosen}
(a.out / "images").mkdir(parents=True, exist_ok=True)
for i in chosen:
    shutil.copy(a.src / "images" / f"{i}.jpg", a.out / "images" / f"{i}.jpg")
lines = (a.src / "styles.csv").read_text(encoding="utf-8").splitlines()
rows = [ln for ln in lines[1:] if ln.split(",", 1)[0] in keep]
(a.out / "styles.csv").write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
print(f"{len(chosen)} items over {len(groups)} item types -> {a.out}")
