"""Copy a ~1,000-item sample catalogue from a labelled catalogue into data/sample (run once; the result ships).

Items are spread over item types round-robin (one per type at a time, in a hashed order within each type), so
rare types are represented too. Nothing decides the train/holdout split but the item ids, so the sample splits
about 80/20 like any catalogue, and `--subset train` / `--subset holdout` work on a fresh clone.
The shipped vibe-mini is trained with `--exclude data/sample`, so it has seen none of these photos.

    python scripts/make_sample.py --src PATH/TO/fashion-small
"""
import argparse
import hashlib
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vibe.catalog.reader import load_catalog  # noqa: E402
from vibe.config import SAMPLE_DATA  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--src", type=Path, required=True, help="a catalogue folder (styles.csv + images/)")
ap.add_argument("--out", type=Path, default=SAMPLE_DATA)
ap.add_argument("-n", type=int, default=1000)
a = ap.parse_args()

items = load_catalog(a.src).items
order = items["id"].map(lambda i: hashlib.blake2b(f"sample{i}".encode(), digest_size=8).hexdigest())
items = items.assign(order=order).sort_values("order")
groups = [g["id"].tolist() for _, g in items.groupby(items["item_type"].fillna("?"))]
chosen: list[int] = []
while len(chosen) < min(a.n, len(items)):
    for g in groups:
        if g and len(chosen) < a.n:
            chosen.append(g.pop(0))
keep = {str(i) for i in chosen}
if (a.out / "images").is_dir():
    shutil.rmtree(a.out / "images")
(a.out / "images").mkdir(parents=True)
for i in chosen:
    shutil.copy(a.src / "images" / f"{i}.jpg", a.out / "images" / f"{i}.jpg")
lines = (a.src / "styles.csv").read_text(encoding="utf-8").splitlines()
rows = [ln for ln in lines[1:] if ln.split(",", 1)[0] in keep]
(a.out / "styles.csv").write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
print(f"{len(chosen)} items over {len(groups)} item types -> {a.out}")
